"""What a named subscription asks for: validated before any join."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from harmony_lab._strict import strict_kwargs, unknown_kwargs_error
from harmony_lab.filters import Condition, Filter, FilterError, format_filter, parse_filter

__all__ = [
    "EVENTS",
    "MAX_REPLAY",
    "Backfill",
    "BroadcastReplay",
    "ChannelSpec",
    "TableSubscription",
    "strict_kwargs",
    "unknown_kwargs_error",
]

EVENTS = ("*", "INSERT", "UPDATE", "DELETE")
MAX_REPLAY = 25
"""Stored broadcasts one join can replay at most (the Realtime server's limit)."""


def _identifier(owner: str, name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{owner}.{name} must be a non-empty string, got {value!r}")
    return value


@strict_kwargs
@dataclasses.dataclass(frozen=True, slots=True)
class Backfill:
    """Fetch what changed during a gap when the connection comes back.

    ``column``: a timestamp (or other monotonically increasing) column that every write you want
    backfilled sets (``updated_at`` catches updates, ``created_at`` only inserts); rows with
    ``column >= gap_start - lookback`` are fetched, filtered like the subscription and under the
    subscriber's role and claims (RLS), ordered by ``column``, at most ``limit``. ``gap_start`` is
    when the channel last received data (a frame or a heartbeat reply), whatever the cause, so
    ``lookback`` only has to cover the skew between the database's clock and ours plus the time a
    commit takes to reach us (``column`` defaults such as ``now()`` are stamped at transaction start:
    give long transactions a longer lookback).

    ``deletes`` (default True; only for ``event="*"`` subscriptions): the manager remembers the
    primary keys it delivered as present (one entry per row in the subscription's view) and after each
    gap looks them up by primary key (one query, same filter and RLS); keys no longer visible —
    deleted during the gap, or moved out of the filter or the role's view — are delivered as DELETE
    events with ``backfilled=True`` and ``old`` = the primary key. Cost: that memory, and one key
    lookup per gap proportional to the keys held. ``deletes=False`` turns both off.

    Backfilled changes arrive as change events with ``backfilled=True``: op ``INSERT``, or ``UPDATE``
    when the key was delivered before, or ``DELETE``. Nothing arrives twice: a row whose (primary key,
    ``column`` value) was already delivered is skipped, and so is a live event that repeats a row the
    backfill just delivered. Live events are never delayed; a backfilled change for a key that changed
    live since the reconnect is dropped, since the live stream is newer (see ``_backfill.py``).
    """

    column: str = "created_at"
    lookback: float = 2.0
    limit: int = 10_000
    deletes: bool = True

    def __post_init__(self) -> None:
        _identifier("Backfill", "column", self.column)
        if isinstance(self.lookback, bool) or not isinstance(self.lookback, int | float) or self.lookback < 0:
            raise ValueError(f"Backfill.lookback must be seconds >= 0, got {self.lookback!r}")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"Backfill.limit must be an int >= 1, got {self.limit!r}")
        if not isinstance(self.deletes, bool):
            raise ValueError(f"Backfill.deletes must be True or False, got {self.deletes!r}")


def _normalise_filter(value: object) -> tuple[str | None, tuple[Condition, ...]]:
    if value is None:
        return None, ()
    if isinstance(value, Condition):
        conditions: tuple[Condition, ...] = (value,)
    elif isinstance(value, Filter):
        conditions = tuple(value)
    elif isinstance(value, str):
        conditions = parse_filter(value)
    else:
        raise FilterError(
            f"filter must be a string like 'channel_id=eq.42' or an F expression, got {type(value).__name__}",
            reason=repr(value),
            stage="parse",
        )
    if not conditions:
        return None, ()
    return format_filter(conditions), conditions


@strict_kwargs
@dataclasses.dataclass(frozen=True, slots=True)
class BroadcastReplay:
    """Replay the broadcasts a private channel's topic has stored (Supabase's broadcast replay).

    The Realtime server keeps the private broadcasts written with ``realtime.send`` /
    ``realtime.broadcast_changes`` (Broadcast from Database) in ``realtime.messages`` for three days; a
    join can ask for the newest of them stored since an instant, at most :data:`MAX_REPLAY` (25).

    ``since``: the first join replays what was stored since then (an aware ``datetime``, or a
    ``timedelta`` back from the moment of subscribing; None: nothing on the first join).
    ``catch_up`` (default True): after each gap (a reconnect for whatever reason), the rejoin replays
    what was stored since the gap began, minus ``lookback`` seconds (the skew between the database's
    clock and ours). ``limit`` caps each replay (1 to 25, the newest win). Replayed broadcasts arrive
    as broadcast events with ``backfilled=True``; none arrives twice (the manager drops a message whose
    id it already delivered). A catch-up that returns ``limit`` messages may have missed older ones:
    it is logged as a warning. Only private channels replay (the server refuses it on public ones).
    """

    since: datetime | timedelta | None = None
    limit: int = MAX_REPLAY
    catch_up: bool = True
    lookback: float = 2.0

    def __post_init__(self) -> None:
        since = self.since
        if since is not None and not (
            isinstance(since, timedelta) or (isinstance(since, datetime) and since.utcoffset() is not None)
        ):
            raise ValueError(
                f"BroadcastReplay.since must be an aware datetime, a timedelta back from now, or None; "
                f"got {since!r}"
            )
        if isinstance(since, timedelta) and since < timedelta(0):
            raise ValueError(
                f"BroadcastReplay.since as a timedelta must be >= 0 (back from now), got {since!r}"
            )
        if (
            isinstance(self.limit, bool)
            or not isinstance(self.limit, int)
            or not 1 <= self.limit <= MAX_REPLAY
        ):
            raise ValueError(
                f"BroadcastReplay.limit must be an int from 1 to {MAX_REPLAY}, got {self.limit!r}"
            )
        if not isinstance(self.catch_up, bool):
            raise ValueError(f"BroadcastReplay.catch_up must be True or False, got {self.catch_up!r}")
        if isinstance(self.lookback, bool) or not isinstance(self.lookback, int | float) or self.lookback < 0:
            raise ValueError(f"BroadcastReplay.lookback must be seconds >= 0, got {self.lookback!r}")


@strict_kwargs
@dataclasses.dataclass(frozen=True, slots=True)
class TableSubscription:
    """One postgres_changes binding: ``event`` on ``schema.table`` rows matching ``filter``.

    ``filter`` is a string (``"channel_id=eq.42"``) or an ``F`` expression; it is parsed here, so a bad
    filter raises :class:`~harmony_lab.filters.FilterError` before anything is sent. The wire form is
    normalised (``F.eq("a", 1)`` → ``"a=eq.1"``). ``primary_key`` names the PK column(s) when they
    cannot be introspected. ``callback`` (optional) gets this binding's change events.
    """

    table: str
    schema: str = "public"
    event: str = "*"
    filter: str | Condition | Filter | None = None
    callback: Callable[..., Any] | None = dataclasses.field(default=None, compare=False)
    backfill: Backfill | None = None
    primary_key: tuple[str, ...] | str | None = None

    def __post_init__(self) -> None:
        _identifier("TableSubscription", "table", self.table)
        _identifier("TableSubscription", "schema", self.schema)
        if not isinstance(self.event, str) or self.event.upper() not in EVENTS:
            raise ValueError(
                f"TableSubscription.event must be one of {', '.join(EVENTS)}; got {self.event!r}"
            )
        object.__setattr__(self, "event", self.event.upper())
        wire, _ = _normalise_filter(self.filter)
        object.__setattr__(self, "filter", wire)
        if self.backfill is not None and not isinstance(self.backfill, Backfill):
            raise TypeError(f"backfill must be a Backfill(...), got {self.backfill!r}")
        pk = self.primary_key
        if isinstance(pk, str):
            pk = (pk,)
        if pk is not None:
            pk = tuple(pk)
            if not pk or not all(isinstance(c, str) and c for c in pk):
                raise ValueError(
                    f"primary_key must be a column name or a tuple of them, got {self.primary_key!r}"
                )
        object.__setattr__(self, "primary_key", pk)
        if self.callback is not None and not callable(self.callback):
            raise TypeError(f"callback must be callable, got {self.callback!r}")

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return parse_filter(self.filter) if isinstance(self.filter, str) else ()

    def binding(self) -> dict[str, Any]:
        """The postgres_changes binding as sent in the join."""
        out: dict[str, Any] = {"event": self.event, "schema": self.schema, "table": self.table}
        if self.filter:
            out["filter"] = self.filter
        return out

    def describe(self) -> str:
        flt = f" filter={self.filter}" if self.filter else ""
        return f"{self.event} {self.schema}.{self.table}{flt}"


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelSpec:
    """Everything that defines the join of one named channel (equality = "same subscription")."""

    name: str
    tables: tuple[TableSubscription, ...] = ()
    broadcast: bool = True
    presence_key: str | None = None
    topic: str | None = None
    """The Realtime topic joined (without ``realtime:``); None: the channel's name."""
    private: bool = False
    """Join as a private channel (Realtime Authorization: the server checks ``realtime.messages``
    policies for the subscriber's role and claims)."""
    replay: BroadcastReplay | None = None
    """Replay stored broadcasts on join and after gaps (private channels only)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"channel name must be a non-empty string, got {self.name!r}")
        if self.topic is not None:
            if not isinstance(self.topic, str) or not self.topic.strip():
                raise ValueError(f"topic must be a non-empty string, got {self.topic!r}")
            if self.topic.startswith("realtime:"):
                raise ValueError(
                    f"topic {self.topic!r}: give it without the 'realtime:' prefix (the client adds it)"
                )
        if not isinstance(self.private, bool):
            raise TypeError(f"private must be True or False, got {self.private!r}")
        if self.replay is not None:
            if not isinstance(self.replay, BroadcastReplay):
                raise TypeError(
                    "replay must be None or a harmony_lab.BroadcastReplay(since=..., limit=...); "
                    f"got {self.replay!r}"
                )
            if not self.private:
                raise ValueError(
                    "replay needs a private channel: the Realtime server replays stored broadcasts only on "
                    "private channels (pass private=True, with a SELECT policy on realtime.messages)"
                )

    @property
    def wire_topic(self) -> str:
        """The topic as sent on the wire (``realtime:<topic>``)."""
        return f"realtime:{self.topic or self.name}"

    @property
    def postgres(self) -> bool:
        return bool(self.tables)

    def bindings(self) -> list[str]:
        out = [t.describe() for t in self.tables]
        if self.broadcast:
            out.append("broadcast *")
        if self.presence_key is not None:
            out.append(f"presence key={self.presence_key}")
        if self.topic is not None:
            out.append(f"topic {self.topic}")
        if self.private:
            out.append("private")
        if self.replay is not None:
            out.append(f"replay limit={self.replay.limit}" + (" catch-up" if self.replay.catch_up else ""))
        return out
