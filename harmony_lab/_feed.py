"""Where events come from, recognised one way: every consumer (LiveFrame, the widgets, the recorder)
accepts the same source forms and reads an async stream with the same loop.

Source forms, in the order they are recognised:

* ``None`` — nothing: the owner is fed by hand (``apply``/``write``);
* an :class:`EventSource` — anything with ``add_listener(fn) -> remove`` (the
  ``RealtimeConnectionManager``): ``fn(event)`` for every event it observes;
* an async iterable of :class:`~harmony_lab.events.RealtimeEvent` (``manager.events()``, a replay of a
  recording): read by :func:`pump`, which yields to the event loop every :data:`YIELD_EVERY` events so
  widgets keep ticking while a fast replay streams;
* where the consumer allows it, a plain iterable of events (a list), applied at once.

A :class:`TableSource` (the manager again) can additionally subscribe to one table itself; LiveFrame
uses that to own its channel.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from typing import Any, Literal, Protocol, runtime_checkable

from harmony_lab.events import RealtimeEvent

__all__ = [
    "YIELD_EVERY",
    "EventFeed",
    "EventSource",
    "PresenceSource",
    "SourceKind",
    "TableSource",
    "is_presence_handle",
    "is_table_source",
    "pump",
    "source_kind",
]

YIELD_EVERY = 256
"""Events :func:`pump` hands on between two yields to the event loop."""

SourceKind = Literal["none", "listener", "stream", "iterable"]


@runtime_checkable
class EventSource(Protocol):
    """Anything that calls ``fn(event)`` for every event it observes until the returned remover runs."""

    def add_listener(self, fn: Callable[[RealtimeEvent], Any]) -> Callable[[], Any]: ...


@runtime_checkable
class TableSource(Protocol):
    """An event source that can subscribe a named channel to one table (the manager)."""

    async def subscribe_to_table(self, name: str, table: str, **options: Any) -> Any: ...

    async def unsubscribe(self, name: str) -> None: ...


@runtime_checkable
class PresenceSource(Protocol):
    """A presence handle (``await manager.join_presence(...)``): a roster and change callbacks."""

    @property
    def roster(self) -> Mapping[str, Any]: ...

    def on_change(self, callback: Callable[[RealtimeEvent], Any]) -> Callable[[], None]: ...


EventFeed = EventSource | AsyncIterable[RealtimeEvent]
"""What a consumer takes as ``source``: a manager (or anything with ``add_listener``) or an async
iterable of events (``manager.events()``, ``harmony_lab.replay(path)``)."""


def is_table_source(source: object) -> bool:
    """True for a source that can subscribe to a table itself (has ``subscribe_to_table``)."""
    return callable(getattr(source, "subscribe_to_table", None))


def is_presence_handle(source: object) -> bool:
    """True for a presence handle (``await manager.join_presence(...)``): a ``roster`` mapping and
    ``on_change(fn) -> remove``; it carries presence state rather than a stream of events."""
    return callable(getattr(source, "on_change", None)) and hasattr(source, "roster")


def source_kind(source: object, what: str, *, iterables: bool = False) -> SourceKind:
    """Which form ``source`` has; a TypeError naming the accepted forms (for ``what``) otherwise.

    ``iterables``: also accept a plain iterable of events (never a string or bytes)."""
    if source is None:
        return "none"
    if callable(getattr(source, "add_listener", None)):
        return "listener"
    if isinstance(source, AsyncIterable):
        return "stream"
    if iterables and isinstance(source, Iterable) and not isinstance(source, str | bytes | bytearray):
        return "iterable"
    forms = (
        "a RealtimeConnectionManager (or anything with add_listener(fn) -> remove), an async iterable "
        "of RealtimeEvent (manager.events(), harmony_lab.replay(path))"
        + (", an iterable of RealtimeEvent" if iterables else "")
        + " or None"
    )
    raise TypeError(f"{what}: source must be {forms}; got {type(source).__name__}")


async def pump(
    source: AsyncIterable[RealtimeEvent],
    handler: Callable[[RealtimeEvent], Any],
    *,
    until: Callable[[], bool] | None = None,
) -> int:
    """Hand every event of ``source`` to ``handler``; returns how many. Yields to the event loop
    every :data:`YIELD_EVERY` events; stops early (without reading further) once ``until()`` is true."""
    n = 0
    async for event in source:
        if until is not None and until():
            break
        handler(event)
        n += 1
        if n % YIELD_EVERY == 0:
            await asyncio.sleep(0)
    return n
