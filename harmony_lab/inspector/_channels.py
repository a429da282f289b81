"""What the Inspector joins: one validated :class:`ChannelConfig` per topic, and joining it on a manager.

A config is validated before anything is sent (Postgres Changes bindings become the manager's
:class:`~harmony_lab.manager.TableSubscription`, so a bad table, event or filter raises the manager's
own error). Configs are kept so that switching identity can join every channel again.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from harmony_lab.events import PresenceStatus
from harmony_lab.manager import RealtimeConnectionManager, TableSubscription

__all__ = ["ChannelConfig", "join_on", "parse_events", "parse_tables"]

_MAX_TOPIC = 255
_MAX_BINDINGS = 50
_EVENT = re.compile(r"[^\s,]{1,200}")
# a binding written as a mapping takes TableSubscription's fields, except the Python-only ones
_TABLE_KEYS = tuple(
    f.name for f in dataclasses.fields(TableSubscription) if f.name not in ("callback", "backfill")
)


def parse_tables(value: Any) -> tuple[TableSubscription, ...]:
    """``None``, a ``TableSubscription``, a ``"schema.table"`` / ``"table"`` string, a mapping with
    ``table`` (and ``schema``, ``event``, ``filter``, ``primary_key``), or a list of those."""
    if value is None or value is False:
        return ()
    items = [value] if isinstance(value, str | Mapping | TableSubscription) else list(value)
    if len(items) > _MAX_BINDINGS:
        raise ValueError(f"at most {_MAX_BINDINGS} postgres_changes bindings per channel; got {len(items)}")
    out: list[TableSubscription] = []
    for item in items:
        if isinstance(item, TableSubscription):
            out.append(item)
        elif isinstance(item, str):
            schema, _, table = item.rpartition(".")
            out.append(TableSubscription(table, schema=schema or "public"))
        elif isinstance(item, Mapping):
            unknown = sorted(set(item) - set(_TABLE_KEYS))
            if unknown:
                raise TypeError(
                    f"postgres_changes binding has unknown key(s) {', '.join(map(repr, unknown))}; "
                    f"valid: {', '.join(_TABLE_KEYS)}"
                )
            if "table" not in item:
                raise ValueError("a postgres_changes binding needs a table, e.g. {'table': 'messages'}")
            kwargs = {k: v for k, v in item.items() if k != "table" and v not in (None, "")}
            out.append(TableSubscription(item["table"], **kwargs))
        else:
            raise TypeError(
                "postgres_changes takes a table name ('public.messages'), a mapping "
                "({'table': 'messages', 'filter': 'channel_id=eq.1'}), a TableSubscription or a list of "
                f"those; got {type(item).__name__}"
            )
    return tuple(out)


def parse_events(value: Any) -> frozenset[str] | None:
    """Broadcast events to show: ``True``/``"*"`` (all: None), ``False`` (none), a comma-separated string
    or a collection of names."""
    if value is True or value is None or value == "*":
        return None
    if value is False:
        return frozenset()
    names = value.split(",") if isinstance(value, str) else list(value)
    out = set()
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"broadcast event names must be strings; got {name!r}")
        name = name.strip()
        if not name:
            continue
        if name == "*":
            return None
        if not _EVENT.fullmatch(name):
            raise ValueError(
                f"broadcast event name {name!r} must be 1-200 characters without spaces or commas"
            )
        out.add(name.lower())
    return frozenset(out)


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelConfig:
    """One channel the Inspector observes."""

    topic: str
    private: bool = False
    tables: tuple[TableSubscription, ...] = ()
    broadcast: frozenset[str] | None = None  # events shown; None = all
    presence_key: str | None = None  # None: presence off

    def __post_init__(self) -> None:
        if not isinstance(self.topic, str) or not self.topic.strip():
            raise ValueError(f"topic must be a non-empty string, e.g. 'room:1'; got {self.topic!r}")
        if len(self.topic) > _MAX_TOPIC or any(c.isspace() for c in self.topic):
            raise ValueError(
                f"topic must be at most {_MAX_TOPIC} characters without spaces; got {self.topic!r}"
            )
        if self.topic.startswith("realtime:"):
            raise ValueError(
                f"give the topic without the 'realtime:' prefix (the clients add it): {self.topic[9:]!r}"
            )
        if not isinstance(self.private, bool):
            raise TypeError(f"private must be True or False; got {self.private!r}")

    def shows_broadcast(self, event: str) -> bool:
        return self.broadcast is None or event.lower() in self.broadcast

    def bindings(self) -> list[str]:
        out = [t.describe() for t in self.tables]
        if self.broadcast is None:
            out.append("broadcast *")
        elif self.broadcast:
            out.append("broadcast " + ",".join(sorted(self.broadcast)))
        if self.presence_key is not None:
            out.append(f"presence key={self.presence_key}")
        return out


def _ignore(_ev: Any) -> None:
    """Events reach the Inspector through the manager's listener; channel callbacks have nothing to do."""


async def join_on(manager: RealtimeConnectionManager, cfg: ChannelConfig) -> Any:
    """Join ``cfg`` on ``manager``; returns the channel's state once the first attempt settled.

    The manager's public calls cover a channel with broadcast only, with tables, or with presence; a
    channel with tables *and* presence (or private tables) joins with everything at once
    (:meth:`~harmony_lab.RealtimeConnectionManager.join_channel`). Presence joins untracked
    (``invisible``): the roster arrives and :meth:`Inspector.track` shows the Inspector to others.
    """
    private: dict[str, Any] = {"private": True} if cfg.private else {}
    key = cfg.presence_key
    if key is None and not cfg.tables:
        broadcast_only = getattr(manager, "subscribe_to_broadcast", None)
        if broadcast_only is not None:
            return await broadcast_only(cfg.topic, cfg.topic, **private)
        return await manager.subscribe(cfg.topic, "*", _ignore)
    if key is None and not private:
        return await manager.subscribe_to_multiple_tables(cfg.topic, cfg.tables)
    if key is not None and not cfg.tables:
        handle = await manager.join_presence(cfg.topic, key, PresenceStatus.INVISIBLE, **private)
        return manager.get_status(handle.name)
    return await manager.join_channel(
        cfg.topic, tables=cfg.tables, presence_key=key, presence_status=PresenceStatus.INVISIBLE, **private
    )
