"""Liveness bookkeeping, pure: heartbeat refs and round trips, and wall-clock jump detection.

realtime-py sends heartbeats with ``ref: null`` and never looks at the replies, so a silent
socket goes unnoticed by it. The runner sends its own heartbeat every ``interval`` seconds with a
ref of its own, feeds the replies here, and tells every tick when the connection last received a
frame of any kind.

A stall is a socket that has gone silent, not one whose heartbeat reply is late: under load (thousands
of changes per second) a reply queues behind the backlog of postgres_changes frames the server sent
before it, and can take longer than an interval on a perfectly healthy socket. So a tick declares a
stall only when a heartbeat is unanswered **and nothing at all has arrived since it was sent** — at
least one interval of complete silence. A heartbeat is sent at every tick, also while earlier ones are
pending (the server's idle timer needs them, and the newest one dates the silence), so a socket that
goes silent at ``s`` is declared stalled at the second tick after ``s``: within two intervals.

RTTs are those of the replies to our refs (queueing included: that is the round trip the connection
gives right now); frames that are not replies never produce or shorten one.
"""

from __future__ import annotations

import collections
import dataclasses
import statistics

__all__ = ["ClockWatch", "HeartbeatTracker", "Tick"]


@dataclasses.dataclass(frozen=True, slots=True)
class Tick:
    """What to do at a heartbeat tick: send ``ref``, or (``stalled``) reconnect.

    ``waited``: how long the oldest unanswered heartbeat has been pending (when stalled: the one sent
    first after the last frame received); ``silent``: seconds since the last frame of any kind (None:
    nothing received yet).
    """

    ref: str | None
    stalled: bool = False
    waited: float = 0.0
    silent: float | None = None


class HeartbeatTracker:
    """Pending heartbeat refs, the stall rule and an RTT history (seconds).

    ``max_pending`` bounds the refs kept while replies are late (the oldest are forgotten: a reply to
    one of them is then ignored, and gives no RTT).
    """

    def __init__(self, prefix: str = "hl", history: int = 100, *, max_pending: int = 64) -> None:
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"max_pending must be an int >= 1, got {max_pending!r}")
        self._prefix = prefix
        self._counter = 0
        self._pending: dict[str, float] = {}
        self._max_pending = max_pending
        self.rtts: collections.deque[float] = collections.deque(maxlen=history)
        self.sent = 0
        self.replies = 0
        self.late_ticks = 0
        self.last_reply_at: float | None = None

    def tick(self, now: float, last_rx: float | None = None) -> Tick:
        """Call every interval with the time the connection last received a frame (None: never).

        Returns ``stalled`` when a pending heartbeat was sent after the last frame received (nothing
        arrived since, for at least the interval between two ticks); otherwise the next ref to send.
        """
        silent = None if last_rx is None else max(0.0, now - last_rx)
        if self._pending:
            unanswered = [sent for sent in self._pending.values() if last_rx is None or sent > last_rx]
            if unanswered:
                return Tick(ref=None, stalled=True, waited=now - min(unanswered), silent=silent)
            # replies are late but frames keep arriving: a busy socket, not a stalled one
            self.late_ticks += 1
        while len(self._pending) >= self._max_pending:
            del self._pending[next(iter(self._pending))]
        self._counter += 1
        ref = f"{self._prefix}-{self._counter}"
        self._pending[ref] = now
        self.sent += 1
        waited = now - next(iter(self._pending.values()))
        return Tick(ref=ref, waited=waited, silent=silent)

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
            "late_ticks": self.late_ticks,
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
