"""Fan-out of RealtimeEvents to listeners and ``async for`` streams; user code can never stop delivery."""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from harmony_lab.events import EventKind, RealtimeEvent

__all__ = ["CallbackGuard", "EventBus", "EventStream"]

logger = logging.getLogger("harmony_lab.manager")


class CallbackGuard:
    """Calls user callbacks so that an exception is logged and counted, never propagated.

    A coroutine returned by a callback is scheduled as a task; its exception is handled the same way.
    """

    def __init__(self) -> None:
        self.errors: collections.Counter[str] = collections.Counter()
        self.last_error: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def call(self, where: str, fn: Callable[..., Any], *args: Any) -> None:
        try:
            result = fn(*args)
        except Exception as exc:
            self._record(where, fn, exc)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(lambda t: self._done(where, fn, t))

    def _done(self, where: str, fn: Callable[..., Any], task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)  # type: ignore[arg-type]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._record(where, fn, exc)

    def _record(self, where: str, fn: Callable[..., Any], exc: BaseException) -> None:
        self.errors[where] += 1
        self.last_error[where] = f"{type(exc).__name__}: {exc}"
        name = getattr(fn, "__qualname__", repr(fn))
        logger.error(
            "callback %s for %s raised %s: %s (delivery continues; %d error(s) so far)",
            name,
            where,
            type(exc).__name__,
            exc,
            self.errors[where],
            exc_info=(type(exc), exc, exc.__traceback__),
        )

    async def drain(self) -> None:
        """Wait for callback coroutines still running (used by cleanup)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class EventStream:
    """``async for ev in manager.events()``: a bounded buffer per iterator.

    When the consumer falls behind and the buffer (``maxsize``) is full, the **oldest** buffered event
    is dropped and counted (``dropped``); before the next event the consumer then receives a
    ``system`` event with ``reason="overflow"`` and ``payload={"dropped": n, "total_dropped": m}``.
    Nothing is lost silently. The stream ends when closed (``aclose()``, leaving an ``async with``
    block, or the manager's ``cleanup()``).
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        maxsize: int = 10_000,
        kinds: Iterable[EventKind | str] | None = None,
        channels: Iterable[str] | None = None,
    ) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"maxsize must be an int >= 1, got {maxsize!r}")
        self._bus = bus
        self.maxsize = maxsize
        self.kinds = frozenset(EventKind(k) for k in kinds) if kinds is not None else None
        self.channels = frozenset(channels) if channels is not None else None
        self._buffer: collections.deque[RealtimeEvent] = collections.deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._pending_drops = 0
        self.dropped = 0
        self.delivered = 0
        bus._streams.add(self)

    def _accepts(self, ev: RealtimeEvent) -> bool:
        if self.kinds is not None and ev.kind not in self.kinds:
            return False
        return self.channels is None or ev.channel in self.channels

    def push(self, ev: RealtimeEvent) -> None:
        if self._closed or not self._accepts(ev):
            return
        if len(self._buffer) >= self.maxsize:
            self._buffer.popleft()
            self.dropped += 1
            self._pending_drops += 1
            if self._pending_drops == 1:
                logger.warning(
                    "events() consumer is behind: buffer of %d full, dropping the oldest events", self.maxsize
                )
        self._buffer.append(ev)
        self._wakeup.set()

    def close(self) -> None:
        self._closed = True
        self._bus._streams.discard(self)
        self._wakeup.set()

    async def aclose(self) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[RealtimeEvent]:
        return self

    async def __anext__(self) -> RealtimeEvent:
        while True:
            if self._pending_drops:
                n, self._pending_drops = self._pending_drops, 0
                return self._bus.make(
                    kind=EventKind.SYSTEM,
                    channel="*",
                    reason="overflow",
                    payload={"dropped": n, "total_dropped": self.dropped, "maxsize": self.maxsize},
                )
            if self._buffer:
                self.delivered += 1
                return self._buffer.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._buffer)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<EventStream {state} buffered={len(self._buffer)} dropped={self.dropped} "
            f"maxsize={self.maxsize}>"
        )


class EventBus:
    """Numbers events (``seq``) and hands them to listeners and streams."""

    def __init__(self, make: Callable[..., RealtimeEvent], guard: CallbackGuard) -> None:
        self.make = make
        self._guard = guard
        self._listeners: list[Callable[[RealtimeEvent], Any]] = []
        self._streams: set[EventStream] = set()

    def add_listener(self, fn: Callable[[RealtimeEvent], Any]) -> Callable[[], None]:
        if not callable(fn):
            raise TypeError(f"add_listener takes a callable, got {fn!r}")
        self._listeners.append(fn)

        def remove() -> None:
            if fn in self._listeners:
                self._listeners.remove(fn)

        return remove

    def publish(self, ev: RealtimeEvent) -> None:
        for fn in list(self._listeners):
            self._guard.call("listener", fn, ev)
        for stream in list(self._streams):
            stream.push(ev)

    def close(self) -> None:
        for stream in list(self._streams):
            stream.close()

    @property
    def streams(self) -> int:
        return len(self._streams)
