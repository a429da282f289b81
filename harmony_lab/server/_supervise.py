"""Keep a logical-replication capture running: when its stream ends or fails, start a new one.

The Postgres Changes hub and the Broadcast from Database capture each read their own slot; both
restart it the same way, with a delay doubling from 0.5 s to 10 s (reset by every change that gets
through), until their owner closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

__all__ = ["keep_capturing"]

logger = logging.getLogger(__name__)


async def keep_capturing(
    what: str,
    stream: Callable[[], AsyncIterable[Any]],
    put: Callable[[Any], Awaitable[None]],
    reopen: Callable[[], Awaitable[None]],
    closed: Callable[[], bool],
) -> None:
    """Hand every change of ``stream()`` to ``put``; when the stream ends (before ``closed()``) or
    fails, close it, wait, and ``reopen()`` (which replaces what ``stream()`` returns). ``what``
    names the capture in the log."""
    delay = 0.5
    while not closed():
        current = stream()
        try:
            async for change in current:
                await put(change)
                delay = 0.5
            if closed():
                return
            logger.error("%s ended unexpectedly; starting a new one", what)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s failed; starting a new one in %.1f s", what, delay)
        try:
            await current.aclose()  # type: ignore[attr-defined]
        except Exception:
            logger.warning("%s: closing the ended stream failed", what, exc_info=True)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)
        try:
            await reopen()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("could not restart the %s", what)
