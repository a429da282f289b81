"""Helpers shared by the reliability tests (a module, not a conftest, so tests import it by name)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

# realtime-py 2.34.1 reads ConnectionClosed.code/.reason (deprecated in websockets 13.1) when a socket
# closes abnormally; with "warnings are errors" that would kill its listener task. Ignore exactly those.
REALTIME_PY_DEPRECATIONS = [
    pytest.mark.filterwarnings("ignore:ConnectionClosed.code is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ConnectionClosed.reason is deprecated:DeprecationWarning"),
]


async def eventually(
    predicate: Callable[[], bool],
    timeout: float = 10.0,  # noqa: ASYNC109 - a polling deadline
    what: str = "condition",
) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
