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
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake
from websockets.http11 import Response
from websockets.protocol import CONNECTING

__all__ = ["MAX_HTTP_BODY", "MAX_HTTP_HEAD", "HttpAwareConnection", "json_response", "loads_strict"]

logger = logging.getLogger(__name__)

MAX_HTTP_BODY = 8 * 1024 * 1024
MAX_HTTP_HEAD = 64 * 1024
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


class HttpAwareConnection(ServerConnection):
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
            if len(buf) > MAX_HTTP_HEAD:
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
            if length < 0 or length > MAX_HTTP_BODY:
                self.http_error = (413, f"request body must be 0..{MAX_HTTP_BODY} bytes")
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
