"""Wiring a widget to whatever feeds it: a manager, a presence handle, an async iterable, or nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Callable, Mapping
from datetime import datetime
from typing import Any

from harmony_lab._feed import pump, source_kind
from harmony_lab.events import RealtimeEvent

logger = logging.getLogger(__name__)

__all__ = ["MAX_NAMES", "Feed", "display_names", "to_ms"]

MAX_NAMES = 10_000
"""Display names a widget accepts (``names=``); more is refused rather than shipped to every view."""
_MAX_NAME_CHARS = 200


def display_names(names: Mapping[str, str] | None, what: str) -> dict[str, str]:
    """``names`` (user id → display name) checked and bounded: str keys and values, at most
    :data:`MAX_NAMES` entries, each name cut to 200 characters."""
    if names is None:
        return {}
    if not isinstance(names, Mapping):
        raise TypeError(
            f"{what}: names must be a mapping of user id → display name; got {type(names).__name__}"
        )
    if len(names) > MAX_NAMES:
        raise ValueError(
            f"{what}: names holds {len(names)} entries; at most {MAX_NAMES} are sent to the browser — "
            "pass only the users this view shows"
        )
    return {str(k): str(v)[:_MAX_NAME_CHARS] for k, v in names.items()}


def to_ms(when: datetime | str | float | None) -> int | None:
    """Epoch milliseconds of a datetime, an ISO string or epoch seconds/ms; None stays None."""
    if when is None:
        return None
    if isinstance(when, datetime):
        return int(when.timestamp() * 1000)
    if isinstance(when, int | float):
        return int(when if when > 1e11 else when * 1000)
    try:
        return int(datetime.fromisoformat(str(when).replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        logger.debug("not a timestamp: %r", when)
        return None


class Feed:
    """Connects ``handler(event)`` to a source; ``close()`` disconnects it.

    * an object with ``add_listener(fn) -> remove`` (the manager): every event it observes;
    * an async iterable of events (a replay): consumed by a task on the running loop;
    * None: nothing (the owner calls its ``apply`` itself).
    """

    def __init__(self, source: Any, handler: Callable[[RealtimeEvent], Any], what: str) -> None:
        self._remove: Callable[[], Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None
        kind = source_kind(source, what)
        if kind == "listener":
            self._remove = source.add_listener(handler)
        elif kind == "stream":
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(
                    f"{what}: reading an async iterable needs a running event loop "
                    "(create the widget in a notebook cell or inside `async def`)"
                ) from None
            self._task = loop.create_task(self._consume(source, handler, what), name=what)

    async def _consume(
        self, source: AsyncIterable[RealtimeEvent], handler: Callable[..., Any], what: str
    ) -> None:
        try:
            await pump(source, handler)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.error = exc
            logger.exception("%s: the event source failed", what)

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    def close(self) -> None:
        if self._remove is not None:
            self._remove()
            self._remove = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
