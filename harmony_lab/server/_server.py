"""The asyncio glue: a ``websockets`` server running one :class:`~._session.Session` per socket.

Everything protocol-related lives in the sans-I/O :mod:`._session` and :mod:`._codec`; this module
reads frames (in order, one socket at a time), performs the effects a session returns (the
postgres_changes hub, error backoff, disconnects), writes queued frames (honouring stall/latency
faults), answers plain HTTP (REST broadcast, admin faults, health) and enforces idle timeouts and
token expiry timers.

HTTP requests other than ``GET`` are not parsed by ``websockets``; :class:`_HttpAwareConnection` reads
such a request (headers and body) itself and hands ``websockets`` an equivalent ``GET`` head, keeping
method and body on the connection so ``process_request`` can answer it. It also drops, with a DEBUG
log, a client that hangs up before its request is answered (see :meth:`_HttpAwareConnection.handshake`).
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import math
import re
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.http11 import Request, Response
from websockets.protocol import CONNECTING

from harmony_lab.server._auth import AuthError, TokenVerifier
from harmony_lab.server._authz import Authorizer, rest_broadcast_allowed
from harmony_lab.server._codec import V1, VSNS
from harmony_lab.server._limits import ServerLimits
from harmony_lab.server._session import (
    TOPIC_PREFIX,
    Await,
    Channel,
    DeferredReply,
    Disconnect,
    Effect,
    PgSubscribe,
    PgUnsubscribe,
    PgUpdateClaims,
    Registry,
    Session,
    Sleep,
    default_binding_id,
    flexible_bool,
)
from harmony_lab.server.faults import FaultError, Faults

__all__ = ["WEBSOCKET_PATHS", "RealtimeServer"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

WEBSOCKET_PATHS = ("/realtime/v1/websocket", "/socket/websocket")
_BROADCAST_PATHS = ("/realtime/v1/api/broadcast", "/api/broadcast")
_BROADCAST_EVENT = re.compile(r"(?:/realtime/v1)?/api/broadcast/([^/]+)/events/([^/]+)")
_ADMIN_FAULT = re.compile(r"/admin/v1/faults/([A-Za-z_]+)")
_HEALTH_PATHS = ("/", "/realtime/v1", "/api/ping", "/realtime/v1/api/ping", "/healthz")
_MAX_HTTP_BODY = 8 * 1024 * 1024
_MAX_HTTP_HEAD = 64 * 1024
_MAX_OUTBOX = 200_000
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "apikey, authorization, content-type, x-client-info, x-api-key",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (JSON has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a JSON number")
    return value


def _loads(body: bytes) -> Any:
    """Parse a request body as strict JSON: ``NaN``, ``Infinity``, ``-Infinity`` and numbers that
    overflow to infinity (``1e999``) are refused.

    Python's parser accepts those by default; a value parsed from them would then either be echoed
    back as non-standard JSON or travel on to clients whose parsers reject it.
    """
    return json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)


def _json_response(status: int, body: Any = None, extra: dict[str, str] | None = None) -> Response:
    raw = b"" if body is None else json.dumps(body, allow_nan=False).encode()
    headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(raw)), **_CORS})
    headers["Connection"] = "close"
    for k, v in (extra or {}).items():
        headers[k] = v
    return Response(status, http.HTTPStatus(status).phrase, headers, raw)


# ---------------------------------------------------------------------------------------------
# HTTP-aware connection


class _HttpAwareConnection(ServerConnection):
    """Lets non-GET HTTP requests (REST broadcast, admin) reach ``process_request``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http_method = "GET"
        self.http_body = b""
        self.http_error: tuple[int, str] | None = None
        self.harmony: tuple[str, str] | None = None  # (vsn, apikey) once the handshake is accepted
        self._sniff: bytearray | None = bytearray()
        self._handshake_task: asyncio.Task[Any] | None = None  # while the request is being answered
        self._abandoned = False  # the client hung up before its answer was written; task cancelled

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        """websockets' opening handshake, minus ERROR tracebacks for clients that hang up early.

        ``websockets`` writes whatever ``process_request`` returns. If the client hung up while the
        answer was being prepared (our ``process_request`` waits out a stall fault, or the configured
        connect-error delay), that write trips an internal assertion, logged at ERROR as "unexpected
        internal error" and "opening handshake failed"; a client that hangs up before its request is
        complete (a TCP probe, a client giving up mid-body) also gets an ERROR traceback. Instead, a
        hang-up before the answer is written cancels this handshake (:meth:`_hung_up`); the cancellation
        is absorbed here with a DEBUG log, and ``websockets`` then aborts the transport quietly because
        the connection never opened. A request that is no valid websocket handshake (a browser or curl
        on the websocket URL, a malformed request) is the client's error as well: ``websockets`` has
        answered it (400/426) and it is logged at INFO with the reason, not as an ERROR traceback. Any
        other failure (e.g. an exception from ``process_request``) propagates to ``websockets``' log.
        """
        task = asyncio.current_task()
        assert task is not None
        self._handshake_task = task
        try:
            await super().handshake(*args, **kwargs)
        except asyncio.CancelledError:
            if not self._abandoned or task.uncancel() > 0:
                raise  # (also) cancelled by someone else: the open timeout, a shutdown
            exc = self.protocol.handshake_exc
            if isinstance(exc, InvalidHandshake) and not isinstance(exc.__cause__, EOFError):
                self._log_rejected(exc)  # a malformed request, then the client hung up
            else:
                self._log_hang_up()
        except InvalidHandshake as exc:
            self._log_rejected(exc)
        finally:
            self._handshake_task = None

    def _request_line(self) -> str:
        if self.request is None:
            return "no complete request"
        path = urllib.parse.urlsplit(self.request.path).path  # the query may hold an apikey
        return f"{self.http_method} {path}"

    def _log_hang_up(self) -> None:
        peer = self.remote_address
        if self.request is None:
            logger.debug("%s hung up before sending a complete HTTP request; dropped it", peer)
        else:
            logger.debug(
                "%s hung up before its HTTP request (%s) was answered; dropped it", peer, self._request_line()
            )

    def _log_rejected(self, exc: InvalidHandshake) -> None:
        reason = str(exc) if exc.__cause__ is None else f"{exc} ({exc.__cause__})"
        logger.info(
            "rejected an HTTP request from %s (%s): %s", self.remote_address, self._request_line(), reason
        )

    def eof_received(self) -> bool | None:
        result = super().eof_received()
        self._hung_up()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._hung_up()

    def _hung_up(self) -> None:
        """The client closed its side: abandon the handshake if its answer is not written yet."""
        task = self._handshake_task
        if task is None or self.response is not None or self._abandoned:
            return
        if self.protocol.state is CONNECTING:
            return  # not a hang-up the protocol acted on; websockets goes on normally
        self._abandoned = True
        task.cancel()

    def data_received(self, data: bytes) -> None:
        if self._sniff is None:
            super().data_received(data)
            return
        self._sniff += data
        buf = self._sniff
        line_end = buf.find(b"\r\n")
        if line_end >= 0 and buf.startswith(b"GET "):
            self._pass(bytes(buf))
            return
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            if len(buf) > _MAX_HTTP_HEAD:
                self._pass(bytes(buf))  # let websockets reject it
            return
        head = bytes(buf[:head_end]).decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            self._pass(bytes(buf))
            return
        method, target, version = parts
        headers: dict[str, str] = {}
        kept: list[str] = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            lname = name.strip().lower()
            headers[lname] = value.strip()
            if lname not in ("content-length", "transfer-encoding"):
                kept.append(line)
        body = bytes(buf[head_end + 4 :])
        if "transfer-encoding" in headers:
            self.http_error = (411, "chunked request bodies are not supported; send Content-Length")
        else:
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                length = -1
            if length < 0 or length > _MAX_HTTP_BODY:
                self.http_error = (413, f"request body must be 0..{_MAX_HTTP_BODY} bytes")
            elif len(body) < length:
                return  # wait for the rest of the body
            else:
                body = body[:length]
        self.http_method = method.upper()
        self.http_body = body
        synthetic = "\r\n".join([f"GET {target} {version}", *kept]) + "\r\n\r\n"
        self._pass(synthetic.encode("latin-1"))

    def _pass(self, data: bytes) -> None:
        self._sniff = None
        super().data_received(data)


# ---------------------------------------------------------------------------------------------
# one websocket


class _Socket:
    """Outbound queue + writer task of one websocket."""

    __slots__ = ("close_request", "conn", "event", "outbox", "server", "session", "writer")

    def __init__(self, server: RealtimeServer, conn: _HttpAwareConnection) -> None:
        self.server = server
        self.conn = conn
        self.outbox: deque[tuple[float, str | bytes]] = deque()
        self.event = asyncio.Event()
        self.close_request: tuple[int, str] | None = None
        self.session: Session | None = None
        self.writer: asyncio.Task[None] | None = None

    def send(self, frame: str | bytes) -> None:
        if len(self.outbox) >= _MAX_OUTBOX:
            if self.close_request is None:
                logger.warning("socket %s: %d frames queued, closing (slow consumer)", self.sid, _MAX_OUTBOX)
                self.request_close(1008, "slow consumer")
            return
        self.outbox.append((time.monotonic(), frame))
        self.event.set()

    @property
    def sid(self) -> int:
        return self.session.sid if self.session is not None else -1

    def request_close(self, code: int, reason: str) -> None:
        """Close after the frames queued so far have been written."""
        self.close_request = (code, reason)
        self.event.set()

    async def write_loop(self) -> None:
        server, conn, outbox = self.server, self.conn, self.outbox
        faults = server.faults
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
                if faults.stalled():
                    await server._wait_unstalled()
                delay = faults.current_latency()
                if delay:
                    wait = produced + delay - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                await conn.send(frame)
        except ConnectionClosed:
            return


# ---------------------------------------------------------------------------------------------
# server


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
        self.faults = Faults(
            drop_all=lambda code, reason: self._call_in_loop(lambda: self._drop_all(code, reason), default=0),
            on_change=lambda: self._call_in_loop(self._stall_changed, default=None, wait=False),
        )
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sockets: dict[_HttpAwareConnection, _Socket] = {}
        self._next_sid = 1
        self._unstalled: asyncio.Event | None = None
        self._stall_handle: asyncio.TimerHandle | None = None
        self._paused: set[_HttpAwareConnection] = set()
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
            create_connection=_HttpAwareConnection,
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
        await self.close()

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

    def _pause_reading(self, conn: _HttpAwareConnection) -> None:
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
        assert isinstance(conn, _HttpAwareConnection)
        if conn.http_error is not None:
            status, message = conn.http_error
            return _json_response(status, {"error": message})
        url = urllib.parse.urlsplit(request.path)
        path = url.path.rstrip("/") or "/"
        query = urllib.parse.parse_qs(url.query)
        method = conn.http_method
        if self.faults.stalled() and not path.startswith("/admin/"):
            await self._wait_unstalled()  # a stalled server answers nothing (the admin API still works)
        try:
            if method == "OPTIONS":
                return _json_response(204)
            if method == "GET" and path in WEBSOCKET_PATHS:
                return await self._handshake(conn, request, query)
            if method == "POST":
                if path in _BROADCAST_PATHS:
                    return await self._rest_broadcast(request, conn.http_body)
                if m := _BROADCAST_EVENT.fullmatch(path):
                    return await self._rest_broadcast_event(
                        request, query, conn.http_body, m.group(1), m.group(2)
                    )
                if m := _ADMIN_FAULT.fullmatch(path):
                    return self._admin_fault(request, m.group(1), conn.http_body)
            if method == "GET":
                if path in _HEALTH_PATHS:
                    return _json_response(200, {"message": "ok", "server": "harmony-lab-realtime"})
                if path == "/admin/v1/faults":
                    return self._admin_auth(request) or _json_response(200, {"history": self.faults.history})
                if path == "/admin/v1/stats":
                    return self._admin_auth(request) or _json_response(200, self.stats)
            known = (
                path in WEBSOCKET_PATHS or path in _BROADCAST_PATHS or path in _HEALTH_PATHS
                or bool(_BROADCAST_EVENT.fullmatch(path)) or path.startswith("/admin/v1/")
            )  # fmt: skip
            if known:
                return _json_response(405, {"error": f"method {method} not allowed on {path}"})
            return _json_response(404, {"error": "Not Found"})
        except Exception:
            logger.exception("HTTP %s %s failed", method, request.path)
            return _json_response(500, {"error": "internal server error; see the server log"})

    async def _handshake(
        self, conn: _HttpAwareConnection, request: Request, query: dict[str, list[str]]
    ) -> Response | None:
        status = self.faults.refusing()
        if status is not None:
            logger.info("fault: refused a websocket handshake with HTTP %d", status)
            return _json_response(status, {"error": "fault: refused"})
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
            return _json_response(error[0], {"error": error[1]})
        assert apikey is not None
        conn.harmony = (vsn, apikey)
        return None

    def _rest_token(self, request: Request) -> tuple[dict[str, Any] | None, Response | None]:
        auth = request.headers.get("authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        apikey = request.headers.get("apikey") or request.headers.get("x-api-key") or ""
        chosen = token if token and not token.startswith("sb_") else apikey
        if not chosen:
            return None, _json_response(401, {"error": "API key is missing"})
        try:
            return self.verifier.verify(chosen, self.clock()), None
        except AuthError as exc:
            return None, _json_response(401, {"error": exc.message})

    async def _rest_broadcast(self, request: Request, body: bytes) -> Response:
        claims, denied = self._rest_token(request)
        if denied is not None:
            return denied
        assert claims is not None
        try:
            doc = _loads(body or b"null")
        except ValueError:
            return _json_response(
                400, {"error": 'body must be strict JSON: {"messages": [{topic, event, payload}]}'}
            )
        messages = doc.get("messages") if isinstance(doc, dict) else None
        if not isinstance(messages, list):
            return _json_response(
                422, {"error": 'expected {"messages": [{"topic", "event", "payload", "private"?}]}'}
            )
        for i, m in enumerate(messages):
            if not (
                isinstance(m, dict) and isinstance(m.get("topic"), str) and isinstance(m.get("event"), str)
            ):
                return _json_response(422, {"error": f"messages[{i}] needs string topic and event"})
        flags = [flexible_bool(m.get("private")) for m in messages]
        allowed = await rest_broadcast_allowed(self.authorizer, claims, messages, private=flags)
        for m, private, ok in zip(messages, flags, allowed, strict=True):
            if ok:
                self.registry.broadcast(
                    TOPIC_PREFIX + m["topic"], m["event"], m.get("payload", {}), private=private
                )
        return _json_response(202)

    async def _rest_broadcast_event(
        self, request: Request, query: dict[str, list[str]], body: bytes, topic: str, event: str
    ) -> Response:
        claims, denied = self._rest_token(request)
        if denied is not None:
            return denied
        assert claims is not None
        topic, event = urllib.parse.unquote(topic), urllib.parse.unquote(event)
        private = (query.get("private") or ["false"])[0].lower() == "true"
        if (
            private
            and not (
                await rest_broadcast_allowed(self.authorizer, claims, [{"topic": topic}], private=[True])
            )[0]
        ):
            return _json_response(202)  # dropped, as a refused private message of /api/broadcast
        full = TOPIC_PREFIX + topic
        ctype = (request.headers.get("content-type") or "application/json").split(";")[0].strip().lower()
        if ctype == "application/octet-stream":
            self.registry.broadcast_binary(full, event, body, private=private)
            return _json_response(202)
        try:
            payload = _loads(body or b"null")
        except ValueError:
            return _json_response(
                400, {"error": "body must be strict JSON (or application/octet-stream for binary)"}
            )
        self.registry.broadcast(full, event, payload, private=private)
        return _json_response(202)

    def _admin_auth(self, request: Request) -> Response | None:
        claims, denied = self._rest_token(request)
        if denied is not None:
            return denied
        assert claims is not None
        if claims.get("role") != "service_role":
            return _json_response(403, {"error": "the admin API needs the service_role key"})
        return None

    def _admin_fault(self, request: Request, kind: str, body: bytes) -> Response:
        denied = self._admin_auth(request)
        if denied is not None:
            return denied
        try:
            kwargs = _loads(body) if body.strip() else {}
        except ValueError as exc:
            return _json_response(
                400, {"error": f"body must be a strict JSON object of keyword arguments: {exc}"}
            )
        if not isinstance(kwargs, dict):
            return _json_response(400, {"error": "body must be a JSON object of keyword arguments"})
        try:
            result = self.faults.apply(kind, kwargs)
        except FaultError as exc:
            return _json_response(400, {"error": str(exc)})
        return _json_response(200, {"ok": True, "result": result})

    # -- websockets ----------------------------------------------------------------------------

    async def _serve_socket(self, conn: ServerConnection) -> None:
        assert isinstance(conn, _HttpAwareConnection)
        assert conn.harmony is not None
        code = self.faults.take_rapid_close()
        if code is not None:
            logger.info("fault: rapid close of a new connection with code %d", code)
            await conn.close(code, "fault: rapid close")
            return
        vsn, apikey = conn.harmony
        sock = _Socket(self, conn)
        sid = self._next_sid
        self._next_sid += 1
        hub = self.hub
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
        )
        sock.session = session
        self._sockets[conn] = sock
        stats = self.registry.stats
        stats.connections_total += 1
        if self.faults.stalled():
            self._pause_reading(conn)
        sock.writer = asyncio.create_task(sock.write_loop())
        logger.debug("socket %d open (vsn %s) from %s", sid, vsn, conn.remote_address)
        try:
            await self._read_loop(sock, session)
        finally:
            self._sockets.pop(conn, None)
            self._paused.discard(conn)
            try:
                await self._perform(sock, session.close())
            finally:
                await self._stop_writer(sock)
            logger.debug("socket %d closed (%s)", sid, conn.close_code)

    async def _stop_writer(self, sock: _Socket) -> None:
        """End a socket's writer, after letting it flush (5 s at most) if a close was requested.

        The writer is cancelled even if this task is cancelled meanwhile (and that cancellation goes
        on); a writer that failed is logged with the socket's id, never dropped silently.
        """
        writer = sock.writer
        assert writer is not None
        try:
            if sock.close_request is not None and not writer.done():
                await asyncio.wait([writer], timeout=5)
                if not writer.done():
                    logger.info(
                        "socket %d: its frames were not written within 5 s of the close request (stall or "
                        "latency fault, slow client); closing with %d still queued",
                        sock.sid, len(sock.outbox),
                    )  # fmt: skip
        finally:
            writer.cancel()
        await asyncio.wait([writer])  # never raises the writer's outcome; read just below
        if not writer.cancelled() and (exc := writer.exception()) is not None:
            logger.error("socket %d: writer failed", sock.sid, exc_info=exc)

    async def _read_loop(self, sock: _Socket, session: Session) -> None:
        conn, faults, limits = sock.conn, self.faults, self.limits
        last_rx = time.monotonic()
        while sock.close_request is None:
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
                    await self._wait_unstalled()
                    last_rx = time.monotonic()
                    continue
                exp = session.next_deadline()
                if exp is not None and exp <= self.clock():
                    await self._perform(sock, session.tick())
                    continue
                if limits.idle_timeout_s is not None and time.monotonic() - last_rx >= limits.idle_timeout_s:
                    logger.info("socket %d: idle for %.0f s, closing", session.sid, limits.idle_timeout_s)
                    sock.request_close(1000, "idle timeout")
                    return
                continue
            except ConnectionClosed:
                return
            if faults.stalled():
                await self._wait_unstalled()
            last_rx = time.monotonic()
            effects = session.receive(frame)
            if effects:
                await self._perform(sock, effects)

    async def _perform(self, sock: _Socket, effects: list[Effect]) -> None:
        hub = self.hub
        for e in effects:
            if isinstance(e, DeferredReply):
                e.run()
            elif isinstance(e, Sleep):
                await asyncio.sleep(e.seconds)
            elif isinstance(e, Await):
                await self._perform(sock, await e.run())
            elif isinstance(e, Disconnect):
                sock.request_close(e.code, e.reason)
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
