"""The asyncio glue of one websocket: its reader, its outbound queue and writer, and the effects its
sans-I/O :class:`~._session.Session` asks for.

The reader reads frames in order and enforces the idle timeout and token-expiry timers; the writer
sends queued frames in order, honouring stall and latency faults. Effects (postgres_changes
subscriptions on the hub, error backoff, disconnects) are performed between frames.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.exceptions import ConnectionClosed

from harmony_lab.server._http import HttpAwareConnection
from harmony_lab.server._limits import ServerLimits
from harmony_lab.server._session import (
    Await,
    Channel,
    DeferredReply,
    Disconnect,
    Effect,
    PgSubscribe,
    PgUnsubscribe,
    PgUpdateClaims,
    Session,
    Sleep,
)
from harmony_lab.server.faults import Faults

__all__ = ["MAX_OUTBOX", "Socket"]

logger = logging.getLogger(__name__)

MAX_OUTBOX = 200_000


class Socket:
    """One open websocket: outbound queue, writer task, read loop and effects.

    ``wait_unstalled`` returns once no stall fault is active; ``hub`` is the postgres_changes engine
    (or None) and ``clock`` the wall clock tokens expire by.
    """

    __slots__ = (
        "clock", "close_request", "closer", "conn", "event", "faults", "hub", "limits", "outbox",
        "overflowed", "queued_bytes", "session", "wait_unstalled", "writer",
    )  # fmt: skip

    def __init__(
        self,
        conn: HttpAwareConnection,
        *,
        faults: Faults,
        wait_unstalled: Callable[[], Awaitable[None]],
        limits: ServerLimits,
        clock: Callable[[], float],
        hub: Any,
    ) -> None:
        self.conn = conn
        self.faults = faults
        self.wait_unstalled = wait_unstalled
        self.limits = limits
        self.clock = clock
        self.hub = hub
        self.outbox: deque[tuple[float, str | bytes]] = deque()
        self.event = asyncio.Event()
        self.queued_bytes = 0  # of the frames in outbox
        self.overflowed = False  # too much was queued: the queue is dropped and the socket closing
        self.close_request: tuple[int, str] | None = None
        self.session: Session | None = None
        self.writer: asyncio.Task[None] | None = None
        self.closer: asyncio.Task[None] | None = None

    @property
    def sid(self) -> int:
        return self.session.sid if self.session is not None else -1

    # -- writing -------------------------------------------------------------------------------

    def send(self, frame: str | bytes) -> None:
        """Queue one frame for the writer; a socket whose queue grows past ``max_outbound_bytes`` (or
        :data:`MAX_OUTBOX` frames) is closed instead (:meth:`_overflow`)."""
        if self.overflowed:
            return
        size = len(frame)
        if self.queued_bytes + size > self.limits.max_outbound_bytes:
            self._overflow(
                f"more than {self.limits.max_outbound_bytes} bytes queued for it "
                f"({self.queued_bytes} queued, {size} more sent)"
            )
            return
        if len(self.outbox) >= MAX_OUTBOX:
            self._overflow(f"{MAX_OUTBOX} frames queued for it")
            return
        self.queued_bytes += size
        self.outbox.append((time.monotonic(), frame))
        self.event.set()

    def _overflow(self, why: str) -> None:
        """The client reads slower than it is sent to: drop its queue and close it now with 1008
        ``slow consumer`` (the close frame goes out behind what the transport already holds; a client
        that does not read it within 5 s is disconnected)."""
        self.overflowed = True
        self.outbox.clear()
        self.queued_bytes = 0
        if self.session is not None:
            self.session.registry.stats.rejected["slow consumer"] += 1
        logger.warning(
            "socket %d: closing with 1008 slow consumer: %s; the client does not read fast enough "
            "(raise ServerLimits.max_outbound_bytes for bursts it can absorb)",
            self.sid, why,
        )  # fmt: skip
        self.request_close(1008, "slow consumer")
        self.closer = asyncio.get_running_loop().create_task(self._close_now(1008, "slow consumer"))

    async def _close_now(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(5):
                await self.conn.close(code, reason)
        except TimeoutError:
            logger.info("socket %d: the client read nothing for 5 s after its close; disconnected", self.sid)
            self.conn.transport.abort()

    def request_close(self, code: int, reason: str) -> None:
        """Close after the frames queued so far have been written."""
        self.close_request = (code, reason)
        self.event.set()

    def start_writer(self) -> None:
        self.writer = asyncio.create_task(self._write_loop())

    async def _write_loop(self) -> None:
        conn, outbox, faults = self.conn, self.outbox, self.faults
        try:
            while True:
                if not outbox:
                    if self.close_request is not None:
                        await conn.close(*self.close_request)
                        return
                    self.event.clear()
                    await self.event.wait()
                    continue
                produced, frame = outbox.popleft()
                self.queued_bytes -= len(frame)
                if faults.stalled():
                    await self.wait_unstalled()
                delay = faults.current_latency()
                if delay:
                    wait = produced + delay - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                await conn.send(frame)
        except ConnectionClosed:
            return

    async def stop_writer(self) -> None:
        """End the writer, after letting it flush (5 s at most) if a close was requested.

        The writer is cancelled even if this task is cancelled meanwhile (and that cancellation goes
        on); a writer that failed is logged with the socket's id, never dropped silently.
        """
        writer = self.writer
        assert writer is not None
        try:
            if self.close_request is not None and not writer.done():
                await asyncio.wait([writer], timeout=5)
                if not writer.done():
                    logger.info(
                        "socket %d: its frames were not written within 5 s of the close request (stall or "
                        "latency fault, slow client); closing with %d still queued",
                        self.sid, len(self.outbox),
                    )  # fmt: skip
        finally:
            writer.cancel()
        await asyncio.wait([writer])  # never raises the writer's outcome; read just below
        if not writer.cancelled() and (exc := writer.exception()) is not None:
            logger.error("socket %d: writer failed", self.sid, exc_info=exc)
        closer = self.closer
        if closer is not None:
            await asyncio.wait([closer])  # it ends within 5 s: the close completes or the transport aborts
            if not closer.cancelled() and (exc := closer.exception()) is not None:
                logger.error("socket %d: closing a slow consumer failed", self.sid, exc_info=exc)

    # -- reading -------------------------------------------------------------------------------

    async def read_loop(self) -> None:
        """Read and handle frames until the socket closes, idles out or a close is requested."""
        session = self.session
        assert session is not None
        conn, faults, limits = self.conn, self.faults, self.limits
        last_rx = time.monotonic()
        while self.close_request is None:
            now_mono = time.monotonic()
            deadline: float | None = None
            if limits.idle_timeout_s is not None:
                deadline = last_rx + limits.idle_timeout_s
            exp = session.next_deadline()
            if exp is not None:
                exp_mono = now_mono + (exp - self.clock())
                deadline = exp_mono if deadline is None else min(deadline, exp_mono)
            try:
                async with asyncio.timeout(
                    None if deadline is None else max(0.0, deadline - now_mono) + 0.001
                ):
                    frame = await conn.recv()
            except TimeoutError:
                if faults.stalled():
                    await self.wait_unstalled()
                    last_rx = time.monotonic()
                    continue
                exp = session.next_deadline()
                if exp is not None and exp <= self.clock():
                    await self.perform(session.tick())
                    continue
                if limits.idle_timeout_s is not None and time.monotonic() - last_rx >= limits.idle_timeout_s:
                    logger.info("socket %d: idle for %.0f s, closing", session.sid, limits.idle_timeout_s)
                    self.request_close(1000, "idle timeout")
                    return
                continue
            except ConnectionClosed:
                return
            if faults.stalled():
                await self.wait_unstalled()
            last_rx = time.monotonic()
            effects = session.receive(frame)
            if effects:
                await self.perform(effects)

    # -- effects -------------------------------------------------------------------------------

    async def perform(self, effects: list[Effect]) -> None:
        hub = self.hub
        for e in effects:
            if isinstance(e, DeferredReply):
                e.run()
            elif isinstance(e, Sleep):
                await asyncio.sleep(e.seconds)
            elif isinstance(e, Await):
                await self.perform(await e.run())
            elif isinstance(e, Disconnect):
                self.request_close(e.code, e.reason)
            elif isinstance(e, PgSubscribe):
                e.channel.pg_result(await self._hub_call("subscribe", e.channel, e.bindings, e.claims))
            elif isinstance(e, PgUpdateClaims):
                e.channel.pg_result(await self._hub_call("update_claims", e.channel, e.claims))
            elif isinstance(e, PgUnsubscribe) and hub is not None:
                try:
                    hub.unsubscribe(e.channel)
                except Exception:
                    logger.exception("postgres_changes hub: unsubscribe of %r failed", e.channel)

    async def _hub_call(self, name: str, channel: Channel, *args: Any) -> str | None:
        hub = self.hub
        if hub is None:
            return "Realtime was unable to connect to the project database"
        try:
            result = await getattr(hub, name)(channel, *args)
        except Exception as exc:
            logger.exception("postgres_changes hub: %s for %r failed", name, channel)
            return (
                "Unable to subscribe to changes with given parameters. An exception happened so please "
                f"check your connect parameters: {channel.bindings!r}. Exception: {exc}"
            )
        return result if result is None or isinstance(result, str) else str(result)
