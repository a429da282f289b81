"""Plain HTTP on the websocket port: reading a request within bounds, strict JSON, JSON responses.

``websockets`` parses only ``GET`` requests. :class:`HttpAwareConnection` reads any other request
(its head and body) itself and hands ``websockets`` an equivalent ``GET`` head, keeping the method and
body on the connection so the server's ``process_request`` can answer it (REST broadcast, admin). It
also drops, with a DEBUG log, a client that hangs up before its request is answered (see
:meth:`HttpAwareConnection.handshake`).
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import math
import urllib.parse
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake
from websockets.http11 import Response
from websockets.protocol import CONNECTING

from harmony_lab.server._limits import ServerLimits

__all__ = ["HttpAwareConnection", "HttpGate", "json_response", "loads_strict"]

logger = logging.getLogger(__name__)

CORS = {
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


def loads_strict(body: bytes) -> Any:
    """Parse a request body as strict JSON: ``NaN``, ``Infinity``, ``-Infinity`` and numbers that
    overflow to infinity (``1e999``) are refused.

    Python's parser accepts those by default; a value parsed from them would then either be echoed
    back as non-standard JSON or travel on to clients whose parsers reject it.
    """
    return json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)


def json_response(status: int, body: Any = None, extra: dict[str, str] | None = None) -> Response:
    """A JSON response (CORS headers, ``Connection: close``); ``body=None`` sends no body."""
    raw = b"" if body is None else json.dumps(body, allow_nan=False).encode()
    headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(raw)), **CORS})
    headers["Connection"] = "close"
    for k, v in (extra or {}).items():
        headers[k] = v
    return Response(status, http.HTTPStatus(status).phrase, headers, raw)


class HttpGate:
    """What the HTTP connections of one server share: its limits, how many requests wait for an answer
    and how many body bytes they hold, and an early look at each request's head.

    ``check_head(method, target, headers)`` sees a request's line and headers (names lower case)
    before its body is read and returns ``(status, message)`` to refuse it at once, or None.
    ``rejected`` counts refusals by kind (the server's stats).
    """

    def __init__(
        self,
        limits: ServerLimits,
        check_head: Callable[[str, str, Mapping[str, str]], tuple[int, str] | None],
        rejected: Counter[str],
    ) -> None:
        self.limits = limits
        self.check_head = check_head
        self.rejected = rejected
        self.pending = 0
        self.buffered = 0


class HttpAwareConnection(ServerConnection):
    """Lets non-GET HTTP requests (REST broadcast, admin) reach ``process_request``, and bounds every
    request by the limits of its :class:`HttpGate`: head bytes (431), declared body bytes (413, before
    any of the body is read), body bytes held by all connections together (503), connections waiting
    for an answer (503) and read time (408). A refused request is answered with a JSON error by
    ``process_request`` (``http_error``); whatever else the client sends is discarded.
    """

    def __init__(self, *args: Any, gate: HttpGate, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate
        self.http_method = "GET"
        self.http_body = b""
        self.http_error: tuple[int, str] | None = None
        # (vsn, apikey, the request's x-* headers) once the handshake is accepted
        self.harmony: tuple[str, str, dict[str, str]] | None = None
        self._sniff: bytearray | None = bytearray()
        self._head: tuple[str, bytes, int] | None = None  # (method, head for websockets, body length)
        self._discard = False  # a refused request: nothing more the client sends is read
        self._pending = False  # counted in gate.pending
        self._reserved = 0  # body bytes reserved in gate.buffered
        self._read_timer: asyncio.TimerHandle | None = None
        self._handshake_task: asyncio.Task[Any] | None = None  # while the request is being answered
        self._abandoned = False  # the client hung up before its answer was written; task cancelled

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        gate = self.gate
        limits = gate.limits
        if gate.pending >= limits.max_pending_connections:
            self.loop.call_soon(
                self._refuse, 503,
                f"{gate.pending} connections are waiting for an answer (the limit is "
                f"{limits.max_pending_connections}); retry shortly",
            )  # fmt: skip
            return
        gate.pending += 1
        self._pending = True
        self._read_timer = self.loop.call_later(limits.http_read_timeout_s, self._read_timed_out)

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self._sniff is not None:
            self._refuse(
                408, f"the request was not complete within {self.gate.limits.http_read_timeout_s:g} s"
            )

    def _finish(self) -> None:
        """The request is answered (or the client is gone): release what it holds of the gate."""
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        if self._pending:
            self._pending = False
            self.gate.pending -= 1
        if self._reserved:
            self.gate.buffered -= self._reserved
            self._reserved = 0

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        """websockets' opening handshake, minus ERROR tracebacks for clients that hang up early.

        ``websockets`` writes whatever ``process_request`` returns. If the client hung up while the
        answer was being prepared (``process_request`` waits out a stall fault, or the configured
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
            self._finish()

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
        self._sniff = None
        self._hung_up()
        self._finish()

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
            if not self._discard:
                super().data_received(data)
            return
        buf = self._sniff
        buf += data
        limits = self.gate.limits
        if self._head is None:
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0 or head_end > limits.max_http_head_bytes:
                if len(buf) > limits.max_http_head_bytes:
                    self._refuse(
                        431,
                        f"the request line and headers must be at most {limits.max_http_head_bytes} bytes",
                    )
                return
            if not self._read_head(bytes(buf[:head_end]), head_end + 4):
                return
            del buf[: head_end + 4]
        assert self._head is not None
        method, head, length = self._head
        if len(buf) < length:
            return  # wait for the rest of the body
        self.http_method = method
        self.http_body = bytes(buf[:length])
        self._pass(head)
        self._discard = True  # bytes past the declared body are not read: one request per connection

    def _read_head(self, raw: bytes, head_len: int) -> bool:
        """Check a complete request head; True when its body is to be read next."""
        assert self._sniff is not None
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            self._pass(bytes(self._sniff))  # websockets answers the malformed request
            return False
        method, target, version = parts
        if method == "GET":
            self._pass(bytes(self._sniff))  # bytes after a websocket's head are its first frames
            return False
        headers: dict[str, str] = {}
        kept: list[str] = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            lname = name.strip().lower()
            headers[lname] = value.strip()
            if lname not in ("content-length", "transfer-encoding"):
                kept.append(line)
        limits, gate = self.gate.limits, self.gate
        if "transfer-encoding" in headers:
            self._refuse(411, "chunked request bodies are not supported; send Content-Length")
            return False
        declared = headers.get("content-length", "0")
        length = int(declared) if declared.isdigit() and len(declared) <= 19 else -1
        if length < 0:
            self._refuse(400, f"Content-Length must be a non-negative integer; got {declared!r}")
            return False
        if length > limits.max_http_body_bytes:
            self._refuse(
                413,
                f"the request body of {length} bytes is over the limit of {limits.max_http_body_bytes} bytes",
            )
            return False
        early = gate.check_head(method.upper(), target, headers)
        if early is not None:
            self._refuse(*early)
            return False
        if length and gate.buffered + length > limits.max_http_buffered_bytes:
            self._refuse(
                503, f"the server holds {gate.buffered} bytes of request bodies (the limit is "
                f"{limits.max_http_buffered_bytes}); retry shortly",
            )  # fmt: skip
            return False
        gate.buffered += length
        self._reserved = length
        head = "\r\n".join([f"GET {target} {version}", *kept]) + "\r\n\r\n"
        self._head = (method.upper(), head.encode("latin-1"), length)
        return True

    def _refuse(self, status: int, message: str) -> None:
        """Answer the request with ``status`` without reading (more of) it."""
        if self._sniff is None:
            return  # already handed to websockets (or the client is gone)
        self.gate.rejected[f"http {status}"] += 1
        logger.info("refused an HTTP request from %s with %d: %s", self.remote_address, status, message)
        self.http_error = (status, message)
        self._pass(b"GET / HTTP/1.1\r\nHost: harmony-lab\r\n\r\n")
        self._discard = True

    def _pass(self, data: bytes) -> None:
        self._sniff = None
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        super().data_received(data)
