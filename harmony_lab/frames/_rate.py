"""A sliding-window event-rate meter with O(1) updates (bucketed counts, injectable clock)."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["RateMeter"]


class RateMeter:
    """Counts events in fixed-width time buckets over a sliding window.

    ``rate()`` is events per second over the last ``window_s`` seconds (or over the time since the
    first event, when that is shorter, so a fresh stream does not read low). ``history(n)`` gives the
    per-second counts of the last ``n`` whole seconds, oldest first, for sparklines.
    """

    __slots__ = (
        "_buckets",
        "_clock",
        "_counts",
        "_first",
        "_head",
        "_hist_head",
        "_history",
        "_width",
        "window_s",
    )

    def __init__(
        self,
        window_s: float = 5.0,
        *,
        buckets: int = 50,
        history_s: int = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_s <= 0 or buckets <= 0 or history_s <= 0:
            raise ValueError("window_s, buckets and history_s must be positive")
        self.window_s = float(window_s)
        self._buckets = buckets
        self._width = self.window_s / buckets
        self._clock = clock
        self._counts = [0] * buckets
        self._head = 0  # absolute index of the newest bucket
        self._history = [0] * history_s  # per whole second, ring buffer
        self._hist_head = 0  # absolute second of the newest history slot
        self._first: float | None = None

    def _advance(self, now: float) -> None:
        idx = int(now / self._width)
        if idx > self._head:
            steps = min(idx - self._head, self._buckets)
            for k in range(1, steps + 1):
                self._counts[(self._head + k) % self._buckets] = 0
            self._head = idx
        sec = int(now)
        if sec > self._hist_head:
            n = len(self._history)
            steps = min(sec - self._hist_head, n)
            for k in range(1, steps + 1):
                self._history[(self._hist_head + k) % n] = 0
            self._hist_head = sec

    def add(self, n: int = 1, now: float | None = None) -> None:
        t = self._clock() if now is None else now
        if self._first is None:
            self._first = t
            self._head = int(t / self._width)
            self._hist_head = int(t)
        self._advance(t)
        self._counts[self._head % self._buckets] += n
        self._history[self._hist_head % len(self._history)] += n

    def rate(self, now: float | None = None) -> float:
        """Events per second over the sliding window."""
        if self._first is None:
            return 0.0
        t = self._clock() if now is None else now
        self._advance(t)
        # the newest bucket is partly elapsed: the window is the full older buckets plus that part
        covered = (self._buckets - 1) * self._width + (t - self._head * self._width)
        span = max(min(covered, t - self._first), self._width)
        return sum(self._counts) / span

    def history(self, n: int | None = None, now: float | None = None) -> list[int]:
        """Counts per whole second for the last ``n`` seconds (the current, partial second last)."""
        size = len(self._history)
        n = size if n is None else min(n, size)
        if self._first is None:
            return [0] * n
        t = self._clock() if now is None else now
        self._advance(t)
        return [self._history[(self._hist_head - k) % size] for k in range(n - 1, -1, -1)]
