"""``until()``: a bounded wait for a condition in a notebook cell (no long sleeps, a clear timeout)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

__all__ = ["until"]


async def until(
    condition: Callable[[], Any], *, within: float = 60.0, poll: float = 0.05, what: str | None = None
) -> Any:
    """Wait until ``condition()`` returns something truthy and return it; check every ``poll`` s.

    Raises ``TimeoutError`` after ``within`` seconds, naming ``what`` (or the condition) so a stuck
    notebook says what it was waiting for.
    """
    if within <= 0:
        raise ValueError(f"within must be a positive number of seconds; got {within!r}")
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            label = what or getattr(condition, "__name__", repr(condition))
            raise TimeoutError(f"waited {within:g} s for {label}; it did not happen")
        await asyncio.sleep(poll)
