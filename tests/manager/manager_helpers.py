"""Helpers shared by the manager's integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

# realtime-py 2.34.1 logs ConnectionClosed.code/.reason, deprecated in websockets 13.1; with the
# suite's "warnings are errors" that would kill realtime-py's listener on abnormal closes, which
# never happens in a notebook. Ignore exactly those two deprecations here.
REALTIME_PY_DEPRECATIONS = [
    pytest.mark.filterwarnings("ignore:ConnectionClosed.code is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ConnectionClosed.reason is deprecated:DeprecationWarning"),
]


async def eventually(
    predicate: Callable[[], bool],
    timeout: float = 10.0,  # noqa: ASYNC109 - a polling deadline
    what: str = "condition",
) -> None:
    """Poll ``predicate`` until true; fail with ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
