"""LiveFrame over Broadcast from Database: a ``broadcast_changes`` topic read as row changes.

A row trigger calling ``realtime.broadcast_changes(topic, event, TG_OP, TG_TABLE_NAME,
TG_TABLE_SCHEMA, NEW, OLD)`` broadcasts ``{operation, schema, table, record, old_record}`` on
``topic``. :func:`change_event` turns such a broadcast into the same ``change`` event a
``postgres_changes`` subscription delivers (``op``, ``new`` = ``record``, ``old`` = ``old_record``),
so ``LiveFrame(..., via="broadcast", topic=...)`` keeps the frame semantics unchanged: upsert by key,
``max_rows``, the starting snapshot, ``status`` / ``status_reason``.

What differs from Postgres Changes, by construction of the path:

* the ``filter`` and ``event`` options are applied in the frame, since a broadcast topic has no
  server-side filter; DELETEs pass the filter, as on Postgres Changes;
* the broadcast carries no column types: they come from the snapshot (or stay inferred);
* no commit timestamp is broadcast, so ``_commit_ts`` (append mode) is empty;
* a topic may carry several tables (one trigger function on many tables): the frame keeps its table's;
* after a gap, a private topic catches up by replaying the broadcasts the server stored meanwhile (the
  manager's ``BroadcastReplay``: at most 25 per reconnect, marked backfilled); a public topic cannot
  (the server replays only private ones) and misses what was sent during the gap.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from harmony_lab.events import EventKind, RealtimeEvent
from harmony_lab.manager import BroadcastReplay

if TYPE_CHECKING:
    from harmony_lab.frames._live import LiveFrame

__all__ = ["VIAS", "change_event", "check_options", "subscriber"]

VIAS: Final = ("postgres_changes", "broadcast")
_OPS: Final = ("INSERT", "UPDATE", "DELETE")


def check_options(via: str, topic: str | None, private: bool, *, is_manager: bool, backfill: Any) -> None:
    """Raise a clear error for a combination of ``via`` / ``topic`` / ``private`` that cannot work."""
    if via not in VIAS:
        raise ValueError(f"via must be one of {', '.join(map(repr, VIAS))}; got {via!r}")
    if not isinstance(private, bool):
        raise TypeError(f"private must be True or False; got {private!r}")
    if via == "postgres_changes":
        if topic is not None or private:
            raise ValueError(
                "topic= and private= belong to via='broadcast' (a Broadcast from Database topic); "
                "a postgres_changes frame subscribes to its table"
            )
        return
    if not isinstance(topic, str) or not topic:
        raise ValueError(
            "via='broadcast' needs topic=, the topic the table's realtime.broadcast_changes trigger "
            "sends to (e.g. topic='channel:general', private=True)"
        )
    if not is_manager:
        raise ValueError(
            "via='broadcast' needs a RealtimeConnectionManager source (it subscribes to the topic); "
            "a replay or hand-fed frame takes change events directly"
        )
    if backfill is not None:
        raise ValueError(
            "backfill is for via='postgres_changes'; a private broadcast topic catches up after a gap by "
            "replaying what the server stored meanwhile (up to 25 messages) — drop backfill=, or subscribe "
            "to the table with via='postgres_changes' for a full gap fetch"
        )


def change_event(event: RealtimeEvent, key: Sequence[str] | None) -> RealtimeEvent | None:
    """The ``change`` event a ``broadcast_changes`` broadcast stands for, or None if it is not one."""
    if event.kind is not EventKind.BROADCAST:
        return None
    p = event.payload
    if not isinstance(p, Mapping):
        return None
    op, schema, table = p.get("operation"), p.get("schema"), p.get("table")
    if op not in _OPS or not isinstance(schema, str) or not isinstance(table, str):
        return None
    record, old_record = p.get("record"), p.get("old_record")
    new = dict(record) if isinstance(record, Mapping) and op != "DELETE" else None
    old = dict(old_record) if isinstance(old_record, Mapping) and op != "INSERT" else None
    pk = None
    values = old if op == "DELETE" else new
    if key and values is not None and all(k in values for k in key):
        pk = {k: values[k] for k in key}
    return event.replace(kind=EventKind.CHANGE, schema=schema, table=table, op=op, new=new, old=old, pk=pk)


def subscriber(frame: LiveFrame, source: Any) -> Callable[..., Awaitable[Any]]:
    """A stand-in for ``source.subscribe_to_table`` that subscribes ``frame`` to its topic instead.

    It takes the same arguments (the table, filter and event are applied in the frame) and returns
    the manager's channel state.
    """

    def on_broadcast(event: RealtimeEvent, *_: Any) -> None:
        change = change_event(event, frame._key_cols)
        if change is not None:
            frame.apply(change)

    async def subscribe(name: str, table: str, **_table_options: Any) -> Any:
        # the snapshot holds the starting rows; after a gap, a private topic replays what was missed
        replay = BroadcastReplay() if frame.private else None
        return await source.subscribe_to_broadcast(
            name, frame.topic, event="*", private=frame.private, callback=on_broadcast, replay=replay
        )

    return subscribe
