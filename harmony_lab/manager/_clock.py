"""Injectable clocks: the manager reads time only through one of these."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FakeClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Two readings: a monotonic one for durations and a wall one (UTC) for timestamps.

    Comparing how far each advanced between two readings is how the manager notices a wall-clock
    jump (a laptop that slept, an NTP step).
    """

    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...


class SystemClock:
    """The real clocks: ``time.monotonic()`` and ``datetime.now(UTC)``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


class FakeClock:
    """A clock that moves only when told to (tests and notebooks exploring the state machine)."""

    def __init__(self, start: datetime | None = None, monotonic: float = 1000.0) -> None:
        self._wall = start or datetime(2026, 1, 1, tzinfo=UTC)
        if self._wall.tzinfo is None:
            raise ValueError("FakeClock start must be timezone-aware")
        self._mono = float(monotonic)

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        return self._wall

    def advance(self, seconds: float) -> None:
        """Both clocks advance together (time passes normally)."""
        if seconds < 0:
            raise ValueError(f"time only moves forward; got advance({seconds!r})")
        self._mono += seconds
        self._wall += timedelta(seconds=seconds)

    def jump_wall(self, seconds: float) -> None:
        """Only the wall clock moves (suspend/resume or an NTP step); may be negative."""
        self._wall += timedelta(seconds=seconds)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._wall.isoformat()}, monotonic={self._mono})"
