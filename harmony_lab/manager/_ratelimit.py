"""A sliding-window call budget, pure (the server allows 5 presence calls per 30 s per channel)."""

from __future__ import annotations

import collections

__all__ = ["CallWindow"]


class CallWindow:
    """At most ``max_calls`` calls in any ``window`` seconds."""

    def __init__(self, max_calls: int = 5, window: float = 30.0) -> None:
        if isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 1:
            raise ValueError(f"max_calls must be an int >= 1, got {max_calls!r}")
        if window <= 0:
            raise ValueError(f"window must be > 0 seconds, got {window!r}")
        self.max_calls = max_calls
        self.window = float(window)
        self._calls: collections.deque[float] = collections.deque()

    def _prune(self, now: float) -> None:
        while self._calls and now - self._calls[0] >= self.window:
            self._calls.popleft()

    def wait_time(self, now: float) -> float:
        """Seconds until one more call fits (0.0 when it fits now)."""
        self._prune(now)
        if len(self._calls) < self.max_calls:
            return 0.0
        return self._calls[0] + self.window - now

    def record(self, now: float) -> None:
        self._prune(now)
        self._calls.append(now)

    def used(self, now: float) -> int:
        self._prune(now)
        return len(self._calls)
