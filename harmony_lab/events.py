"""The one envelope: everything harmony_lab observes becomes a :class:`RealtimeEvent`.

The manager produces these; ``LiveFrame``, the widgets, the recorder, replay and user
callbacks consume them. Nothing downstream of the manager parses wire JSON.

Field use per ``kind``:

============  ==========================================================================
kind          fields that carry meaning
============  ==========================================================================
``change``    schema, table, op (INSERT/UPDATE/DELETE), commit_ts, new, old, pk, columns,
              errors, backfilled, suppressed
``broadcast`` op (the user event name), payload
``presence``  op (``sync``/``join``/``leave``), payload (``{"key", "current", "new"/"left"}``
              for join/leave, the whole state for sync)
``status``    status, reason, attempt, payload (extra details, e.g. the planned delay)
``gap``       gap_start, gap_end, reason (the cause)
``system``    payload (the server's system message), reason
``heartbeat`` payload ``{"rtt_ms": float}`` (or ``{"timeout": True}``)
============  ==========================================================================
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "ChannelStatus",
    "EventKind",
    "PresenceStatus",
    "RealtimeEvent",
    "aware_instant",
    "utc_now",
]


class ChannelStatus(StrEnum):
    """Per-channel connection status (the seed's words)."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    ERROR = "error"


class PresenceStatus(StrEnum):
    """What a user shows to others. ``invisible`` is never tracked: others see the user offline."""

    ONLINE = "online"
    AWAY = "away"
    DND = "dnd"
    INVISIBLE = "invisible"

    @classmethod
    def coerce(cls, value: PresenceStatus | str) -> PresenceStatus:
        """``value`` as a PresenceStatus; a ValueError naming the valid ones otherwise."""
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(s.value for s in cls)
            raise ValueError(f"presence status must be one of {valid}; got {value!r}") from None


class EventKind(StrEnum):
    CHANGE = "change"
    BROADCAST = "broadcast"
    PRESENCE = "presence"
    STATUS = "status"
    GAP = "gap"
    SYSTEM = "system"
    HEARTBEAT = "heartbeat"


def utc_now() -> datetime:
    return datetime.now(UTC)


def aware_instant(value: object, name: str = "instant") -> datetime:
    """A timezone-aware ``datetime``, ``pandas.Timestamp`` or ISO 8601 string with an offset, as UTC.

    Anything else is refused with an error naming ``name`` and the accepted forms."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{name} must be an ISO 8601 timestamp with a UTC offset; got {value!r}"
            ) from None
    elif hasattr(value, "to_pydatetime"):  # pandas.Timestamp
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        raise TypeError(
            f"{name} must be a timezone-aware datetime, pandas.Timestamp or ISO string; got {value!r}"
        )
    if value.tzinfo is None:
        raise ValueError(
            f"{name} must be timezone-aware (e.g. datetime(..., tzinfo=UTC)); got naive {value!r}"
        )
    return value.astimezone(UTC)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RealtimeEvent:
    """One observation, whatever its kind. Immutable; ``seq`` orders events of one manager."""

    kind: EventKind
    channel: str
    topic: str = ""
    seq: int = 0
    received_at: datetime = dataclasses.field(default_factory=utc_now)
    received_mono_ns: int = dataclasses.field(default_factory=time.monotonic_ns)
    # postgres changes
    schema: str | None = None
    table: str | None = None
    op: str | None = None
    commit_ts: datetime | None = None
    new: Mapping[str, Any] | None = None
    old: Mapping[str, Any] | None = None
    pk: Mapping[str, Any] | None = None
    columns: tuple[tuple[str, str], ...] = ()
    errors: tuple[str, ...] | None = None
    backfilled: bool = False
    suppressed: bool = False
    # broadcast / presence / system / heartbeat
    payload: Any = None
    # status
    status: ChannelStatus | None = None
    reason: str | None = None
    attempt: int | None = None
    # gap
    gap_start: datetime | None = None
    gap_end: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, EventKind):
            object.__setattr__(self, "kind", EventKind(self.kind))
        if self.status is not None and not isinstance(self.status, ChannelStatus):
            object.__setattr__(self, "status", ChannelStatus(self.status))
        if self.received_at.tzinfo is None:
            raise ValueError("received_at must be timezone-aware (UTC); got a naive datetime")

    def replace(self, **changes: Any) -> RealtimeEvent:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    @property
    def key(self) -> tuple[Any, ...] | None:
        """The primary-key values as a tuple, in column order, or None."""
        if self.pk is None:
            return None
        return tuple(self.pk.values())

    def __repr__(self) -> str:
        parts = [f"#{self.seq}", str(self.kind), repr(self.channel)]
        if self.kind is EventKind.CHANGE:
            parts.append(f"{self.op} {self.schema}.{self.table} pk={dict(self.pk or {})}")
            if self.backfilled:
                parts.append("backfilled")
            if self.suppressed:
                parts.append("suppressed")
        elif self.kind is EventKind.STATUS:
            parts.append(f"{self.status} reason={self.reason!r} attempt={self.attempt}")
        elif self.kind is EventKind.GAP:
            parts.append(f"{self.gap_start} → {self.gap_end} cause={self.reason!r}")
        elif self.op:
            parts.append(str(self.op))
        return f"<RealtimeEvent {' '.join(parts)}>"
