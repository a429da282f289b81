"""Small asyncio helpers shared by the parts that run their own event loop on a thread."""

from __future__ import annotations

import asyncio
import logging

__all__ = ["close_loop"]

logger = logging.getLogger(__name__)


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Close a loop that is no longer running, the way ``asyncio.run`` does.

    Tasks still pending (for example the realtime client's push timeouts) are cancelled and run to
    completion first, so closing never prints "Task was destroyed but it is pending!". A task that
    ends with an error other than cancellation is logged, not swallowed.
    """
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        for task in pending:
            if not task.cancelled() and task.exception() is not None:
                logger.error("task %r failed while its loop was closing", task, exc_info=task.exception())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
