"""The embedded Realtime server: lifecycle, fault switches, and routing each connection.

One port serves websockets and plain HTTP. :mod:`._http` reads a request within bounds;
:mod:`._rest` answers REST broadcast, the admin API and health checks; a websocket handshake is
checked here and the open socket then runs in :mod:`._socket` with one sans-I/O
:class:`~._session.Session`, which holds everything protocol-related.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import urllib.parse
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from harmony_lab.server._auth import AuthError, TokenVerifier
from harmony_lab.server._authz import Authorizer, request_headers
from harmony_lab.server._codec import V1, VSNS
from harmony_lab.server._http import HttpAwareConnection, HttpGate, json_response
from harmony_lab.server._limits import ServerLimits
from harmony_lab.server._rest import WEBSOCKET_PATHS, RestApi
from harmony_lab.server._session import TOPIC_PREFIX, Registry, Session, default_binding_id
from harmony_lab.server._socket import Socket
from harmony_lab.server.faults import Faults

__all__ = ["WEBSOCKET_PATHS", "RealtimeServer"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class RealtimeServer:
    """A Supabase-Realtime-compatible websocket server (Phoenix V1 JSON and V2 array frames).

    ``jwt_secret`` verifies every token (HS256, ``role`` and ``exp`` required). ``hub`` is the
    postgres_changes engine (:class:`harmony_lab.server.changes.ChangesHub`, started by the caller);
    without one, joins with postgres_changes bindings get a ``system`` error and broadcast/presence work.
    ``authorizer`` evaluates Realtime Authorization for private channels (without one, private joins
    are refused); ``private_only=True`` refuses public channels, like turning "Allow public access" off.
    Runs on the event loop that calls :meth:`start`.
    """

    def __init__(
        self,
        *,
        jwt_secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: ServerLimits | None = None,
        hub: Any = None,
        clock: Callable[[], float] = time.time,
        authorizer: Authorizer | None = None,
        private_only: bool = False,
    ) -> None:
        if not isinstance(jwt_secret, str) or not jwt_secret:
            raise ValueError(
                "jwt_secret must be a non-empty string (the HS256 secret tokens are signed with)"
            )
        if limits is not None and not isinstance(limits, ServerLimits):
            raise TypeError(f"limits must be a ServerLimits; got {type(limits).__name__}")
        self.host = host
        self._requested_port = port
        self.limits = limits or ServerLimits()
        self.verifier = TokenVerifier(jwt_secret)
        self.hub = hub
        self.clock = clock
        if authorizer is not None and not isinstance(authorizer, Authorizer):
            raise TypeError(f"authorizer must be a harmony_lab.server._authz.Authorizer; got {authorizer!r}")
        if not isinstance(private_only, bool):
            raise TypeError(f"private_only must be True or False; got {private_only!r}")
        self.authorizer = authorizer
        self.private_only = private_only
        self.registry = Registry()
        if hub is not None and hasattr(hub, "attach_broadcasts"):
            hub.attach_broadcasts(self.registry.broadcast_from_db)  # Broadcast from Database
        self.faults = Faults(
            drop_all=lambda code, reason: self._call_in_loop(lambda: self._drop_all(code, reason), default=0),
            on_change=lambda: self._call_in_loop(self._stall_changed, default=None, wait=False),
        )
        self._rest = RestApi(
            limits=self.limits, verifier=self.verifier, registry=self.registry, faults=self.faults,
            clock=self.clock, stats=lambda: self.stats, authorizer=authorizer,
        )  # fmt: skip
        self._gate = HttpGate(self.limits, self._rest.check_head, self.registry.stats.rejected)
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sockets: dict[HttpAwareConnection, Socket] = {}
        self._next_sid = 1
        self._unstalled: asyncio.Event | None = None
        self._stall_handle: asyncio.TimerHandle | None = None
        self._paused: set[HttpAwareConnection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> RealtimeServer:
        if self._server is not None:
            return self
        self._loop = asyncio.get_running_loop()
        self._unstalled = asyncio.Event()
        self._unstalled.set()
        self._server = await serve(
            self._serve_socket,
            self.host,
            self._requested_port,
            process_request=self._process_request,
            create_connection=functools.partial(HttpAwareConnection, gate=self._gate),
            compression=None,  # Phoenix does not compress by default
            ping_interval=None,  # the real server never pings; idle timeout is ours
            max_size=self.limits.max_frame_bytes,
            open_timeout=60,
            server_header="harmony-lab-realtime",
            logger=logging.getLogger("harmony_lab.server.websockets"),
        )
        sock = next(iter(self._server.sockets))
        self.port = int(sock.getsockname()[1])
        logger.info("Realtime server listening on %s", self.url)
        return self

    async def close(self) -> None:
        """The old spelling of :meth:`aclose` (it warns)."""
        warnings.warn(
            "RealtimeServer.close() is now `await server.aclose()`", DeprecationWarning, stacklevel=2
        )
        await self.aclose()

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        if self._stall_handle is not None:
            self._stall_handle.cancel()
        # A stall ends with the server: paused sockets could not read the clients' close frames, and
        # every closing handshake would wait out websockets' close timeout (10 s).
        self._resume_reading()
        if self._unstalled is not None:
            self._unstalled.set()
        server.close()
        await server.wait_closed()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)  # outcomes are logged by _task_done
        logger.info("Realtime server on port %s stopped", self.port)

    async def __aenter__(self) -> RealtimeServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        """The Supabase-style project URL (``http://host:port``)."""
        if self.port is None:
            raise RuntimeError("the server is not started; await server.start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/realtime/v1"

    @property
    def connection_count(self) -> int:
        return len(self._sockets)

    @property
    def stats(self) -> dict[str, Any]:
        out = self.registry.stats.as_dict()
        out["connections"] = len(self._sockets)
        out["topics"] = len(self.registry.topics())
        if self.authorizer is not None:  # Realtime Authorization checks made for private channels
            out["authorization"] = {k: round(v, 3) if isinstance(v, float) else v
                                    for k, v in self.authorizer.stats.items()}  # fmt: skip
        return out

    def broadcast(self, topic: str, event: str, payload: Any, *, private: bool = False) -> int:
        """Send a broadcast to every channel on ``topic`` (name with or without ``realtime:``).

        Thread-safe; returns how many channels received it.
        """
        full = topic if topic.startswith(TOPIC_PREFIX) else TOPIC_PREFIX + topic
        return self._call_in_loop(lambda: self.registry.broadcast(full, event, payload, private=private), 0)

    def __repr__(self) -> str:
        state = f"on {self.url}" if self.running else "stopped"
        return f"<RealtimeServer {state} connections={len(self._sockets)} hub={'yes' if self.hub else 'no'}>"

    # -- thread helpers ------------------------------------------------------------------------

    def _call_in_loop(self, fn: Callable[[], T], default: T, *, wait: bool = True) -> T:
        loop = self._loop
        if loop is None or loop.is_closed() or self._server is None:
            return default
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return fn()
        if not wait:
            loop.call_soon_threadsafe(fn)
            return default

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=30)

    # -- faults (on the loop) ------------------------------------------------------------------

    def _drop_all(self, code: int, reason: str) -> int:
        conns = list(self._sockets)
        for conn in conns:
            self._spawn(conn.close(code, reason))
        logger.info("fault: dropped %d connection(s) with code %d", len(conns), code)
        return len(conns)

    def _stall_changed(self) -> None:
        assert self._unstalled is not None
        if self._stall_handle is not None:
            self._stall_handle.cancel()
            self._stall_handle = None
        remaining = self.faults.stall_remaining()
        if remaining > 0:
            if self._unstalled.is_set():
                logger.info("fault: stalling every socket for %.1f s", remaining)
            self._unstalled.clear()
            for conn in self._sockets:
                if conn not in self._paused:
                    self._pause_reading(conn)
            assert self._loop is not None
            self._stall_handle = self._loop.call_later(remaining, self._stall_changed)
        else:
            self._resume_reading()
            if not self._unstalled.is_set():
                logger.info("fault: stall over")
            self._unstalled.set()

    def _pause_reading(self, conn: HttpAwareConnection) -> None:
        """Stop reading a socket (stall fault); a failure is logged and the other sockets still pause."""
        self._paused.add(conn)
        try:
            conn.transport.pause_reading()  # a no-op on a closing transport
        except Exception:
            logger.exception("fault: could not pause reading from %s; it is not stalled", conn.remote_address)

    def _resume_reading(self) -> None:
        for conn in self._paused:
            try:
                conn.transport.resume_reading()  # a no-op on a closing transport
            except Exception:
                logger.exception("fault: could not resume reading from %s", conn.remote_address)
        self._paused.clear()

    async def _wait_unstalled(self) -> None:
        if self._unstalled is not None:
            await self._unstalled.wait()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("server task failed", exc_info=task.exception())

    # -- HTTP ----------------------------------------------------------------------------------

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        assert isinstance(conn, HttpAwareConnection)
        if conn.http_error is not None:
            status, message = conn.http_error
            return json_response(status, {"error": message})
        url = urllib.parse.urlsplit(request.path)
        path = url.path.rstrip("/") or "/"
        query = urllib.parse.parse_qs(url.query)
        method = conn.http_method
        if self.faults.stalled() and not path.startswith("/admin/"):
            await self._wait_unstalled()  # a stalled server answers nothing (the admin API still works)
        try:
            if method == "GET" and path in WEBSOCKET_PATHS:
                return await self._handshake(conn, request, query)
            return await self._rest.answer(method, path, query, request, conn.http_body)
        except Exception:
            logger.exception("HTTP %s %s failed", method, request.path)
            return json_response(500, {"error": "internal server error; see the server log"})

    async def _handshake(
        self, conn: HttpAwareConnection, request: Request, query: dict[str, list[str]]
    ) -> Response | None:
        status = self.faults.refusing()
        if status is not None:
            logger.info("fault: refused a websocket handshake with HTTP %d", status)
            return json_response(status, {"error": "fault: refused"})
        apikey = request.headers.get("x-api-key") or (query.get("apikey") or [None])[0]
        error: tuple[int, str] | None = None
        if not apikey:
            error = (401, "API key is missing")
        else:
            try:
                self.verifier.verify(apikey, self.clock())
            except AuthError as exc:
                error = (401, exc.message)
        vsn = (query.get("vsn") or [V1])[0]
        if error is None and vsn not in VSNS:
            error = (403, f"unsupported vsn {vsn!r}; use one of {', '.join(VSNS)}")
        if error is None and len(self._sockets) >= self.limits.max_connections:
            error = (429, "Too many connected users")
        if error is not None:
            self.registry.stats.rejected[f"handshake {error[0]}"] += 1
            logger.info("rejected websocket handshake (HTTP %d %s) from %s", *error, conn.remote_address)
            if self.limits.connect_error_delay_s > 0:
                await asyncio.sleep(self.limits.connect_error_delay_s)
            return json_response(error[0], {"error": error[1]})
        assert apikey is not None
        conn.harmony = (vsn, apikey, request_headers(request.headers, only_x=True))
        return None

    # -- websockets ----------------------------------------------------------------------------

    async def _serve_socket(self, conn: ServerConnection) -> None:
        assert isinstance(conn, HttpAwareConnection)
        assert conn.harmony is not None
        code = self.faults.take_rapid_close()
        if code is not None:
            logger.info("fault: rapid close of a new connection with code %d", code)
            await conn.close(code, "fault: rapid close")
            return
        vsn, apikey, headers = conn.harmony
        hub = self.hub
        sock = Socket(
            conn, faults=self.faults, wait_unstalled=self._wait_unstalled, limits=self.limits,
            clock=self.clock, hub=hub,
        )  # fmt: skip
        sid = self._next_sid
        self._next_sid += 1
        session = Session(
            sid=sid,
            vsn=vsn,
            apikey=apikey,
            verifier=self.verifier,
            registry=self.registry,
            send=sock.send,
            clock=self.clock,
            limits=self.limits,
            binding_id=getattr(hub, "binding_id", None) or default_binding_id,
            pg_available=hub is not None,
            authorizer=self.authorizer,
            private_only=self.private_only,
            headers=headers,
        )
        sock.session = session
        self._sockets[conn] = sock
        self.registry.stats.connections_total += 1
        if self.faults.stalled():
            self._pause_reading(conn)
        sock.start_writer()
        logger.debug("socket %d open (vsn %s) from %s", sid, vsn, conn.remote_address)
        try:
            await sock.read_loop()
        finally:
            self._sockets.pop(conn, None)
            self._paused.discard(conn)
            try:
                await sock.perform(session.close())
            finally:
                await sock.stop_writer()
            logger.debug("socket %d closed (%s)", sid, conn.close_code)
