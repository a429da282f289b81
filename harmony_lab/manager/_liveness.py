"""Liveness bookkeeping, pure: heartbeat refs and round trips, and wall-clock jump detection.

realtime-py sends heartbeats with ``ref: null`` and never looks at the replies (protocol notes §6.4,
§9 #28). The driver sends its own heartbeat every ``interval`` seconds with a ref of its own and feeds
replies here. At each tick, if the previous heartbeat is still unanswered the connection has stalled:
a silent stall is therefore noticed at most two intervals after the last reply that did arrive.
"""

from __future__ import annotations

import collections
import dataclasses
import statistics

__all__ = ["ClockWatch", "HeartbeatTracker", "Tick"]


@dataclasses.dataclass(frozen=True, slots=True)
class Tick:
    """What to do at a heartbeat tick: send ``ref``, or (``stalled``) reconnect."""

    ref: str | None
    stalled: bool = False
    waited: float = 0.0


class HeartbeatTracker:
    """Pending heartbeat refs and an RTT history (seconds)."""

    def __init__(self, prefix: str = "hl", history: int = 100) -> None:
        self._prefix = prefix
        self._counter = 0
        self._pending: dict[str, float] = {}
        self.rtts: collections.deque[float] = collections.deque(maxlen=history)
        self.sent = 0
        self.replies = 0
        self.last_reply_at: float | None = None

    def tick(self, now: float) -> Tick:
        """Call every interval: either the next ref to send, or ``stalled`` if the last one is unanswered."""
        if self._pending:
            oldest = min(self._pending.values())
            return Tick(ref=None, stalled=True, waited=now - oldest)
        self._counter += 1
        ref = f"{self._prefix}-{self._counter}"
        self._pending[ref] = now
        self.sent += 1
        return Tick(ref=ref)

    def reply(self, ref: str | None, now: float) -> float | None:
        """A ``phx_reply`` on topic ``phoenix`` arrived; the RTT if ``ref`` is one of ours, else None."""
        if ref is None:
            return None
        sent_at = self._pending.pop(ref, None)
        if sent_at is None:
            return None
        rtt = max(0.0, now - sent_at)
        self.rtts.append(rtt)
        self.replies += 1
        self.last_reply_at = now
        return rtt

    def reset(self) -> None:
        """Forget pending refs (a new connection starts with a clean slate; history is kept)."""
        self._pending.clear()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def summary(self) -> dict[str, float | int | None]:
        rtts = list(self.rtts)
        return {
            "last_ms": rtts[-1] * 1000 if rtts else None,
            "mean_ms": statistics.fmean(rtts) * 1000 if rtts else None,
            "max_ms": max(rtts) * 1000 if rtts else None,
            "samples": len(rtts),
            "sent": self.sent,
            "replies": self.replies,
            "pending": len(self._pending),
        }


class ClockWatch:
    """Notices when the wall clock moves differently from the monotonic clock.

    ``observe(mono, wall_ts)`` returns the discrepancy in seconds when it exceeds ``threshold``
    (then re-bases), else None. ``wall_ts`` is a POSIX timestamp.
    """

    def __init__(self, threshold: float = 5.0) -> None:
        if threshold <= 0:
            raise ValueError(f"ClockWatch threshold must be > 0 seconds, got {threshold!r}")
        self.threshold = threshold
        self._last: tuple[float, float] | None = None

    def observe(self, mono: float, wall_ts: float) -> float | None:
        last = self._last
        self._last = (mono, wall_ts)
        if last is None:
            return None
        delta = (wall_ts - last[1]) - (mono - last[0])
        if abs(delta) > self.threshold:
            return delta
        return None

    def reset(self) -> None:
        self._last = None
