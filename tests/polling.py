"""Waiting in tests: one way to poll for a condition, and one way to check that nothing else happens.

Prefer waiting on an event the code under test exposes (a future, an ``asyncio.Event``, a queue). Poll
only where there is none: server counters, presence state, a row count in Postgres.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["eventually", "eventually_sync", "stays"]


def _describe(predicate: Callable[[], Any], what: str | None) -> str:
    return what or getattr(predicate, "__name__", None) or repr(predicate)


async def eventually(
    predicate: Callable[[], T], within: float = 10.0, *, what: str | None = None, interval: float = 0.02
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; fail after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(
                f"timed out after {within} s waiting for {_describe(predicate, what)} (last value {value!r})"
            )
        await asyncio.sleep(interval)


async def stays(
    probe: Callable[[], T],
    expected: T,
    *,
    for_s: float = 0.5,
    what: str | None = None,
    interval: float = 0.02,
) -> None:
    """Check that ``probe()`` equals ``expected`` now and for the next ``for_s`` seconds.

    The quiescence check: "and nothing else arrived". It fails at the first differing value, so a late
    extra event is reported as soon as it shows up, with the value it produced.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + for_s
    while True:
        value = probe()
        if value != expected:
            raise AssertionError(f"{_describe(probe, what)} changed: expected {expected!r}, got {value!r}")
        if loop.time() >= end:
            return
        await asyncio.sleep(interval)


def eventually_sync(
    predicate: Callable[[], T], within: float = 10.0, *, what: str | None = None, interval: float = 0.1
) -> T:
    """:func:`eventually` for code with no event loop (a thread, a subprocess, a browser page)."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {within} s waiting for {_describe(predicate, what)} (last value {value!r})"
            )
        time.sleep(interval)
