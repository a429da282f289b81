"""The server's HTTP endpoints other than the websocket: REST broadcast, the admin API, health.

:meth:`RestApi.answer` routes one request already read by :class:`~._http.HttpAwareConnection`.
Both REST broadcast forms (the batch ``POST /api/broadcast`` and the single
``POST /api/broadcast/{topic}/events/{event}``) parse their request into :class:`RestMessage` values and
hand them to one function, :meth:`RestApi.broadcast`, which checks and delivers them.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from websockets.http11 import Request, Response

from harmony_lab.server._auth import AuthError, TokenVerifier
from harmony_lab.server._authz import Authorizer, request_headers, rest_broadcast_allowed
from harmony_lab.server._http import json_response, loads_strict
from harmony_lab.server._limits import ServerLimits
from harmony_lab.server._session import TOPIC_PREFIX, Registry, flexible_bool
from harmony_lab.server.faults import FaultError, Faults

__all__ = ["WEBSOCKET_PATHS", "RestApi", "RestMessage"]

logger = logging.getLogger(__name__)

WEBSOCKET_PATHS = ("/realtime/v1/websocket", "/socket/websocket")
BROADCAST_PATHS = ("/realtime/v1/api/broadcast", "/api/broadcast")
BROADCAST_EVENT = re.compile(r"(?:/realtime/v1)?/api/broadcast/([^/]+)/events/([^/]+)")
ADMIN_FAULT = re.compile(r"/admin/v1/faults/([A-Za-z_]+)")
HEALTH_PATHS = ("/", "/realtime/v1", "/api/ping", "/realtime/v1/api/ping", "/healthz")


@dataclass(frozen=True, slots=True)
class RestMessage:
    """One message a REST broadcast request asks to send. ``topic`` is without ``realtime:``;
    ``payload`` is the parsed JSON value, or the raw bytes of a binary broadcast."""

    topic: str
    event: str
    payload: Any
    private: bool
    binary: bool = False


def _payload_bytes(m: RestMessage) -> int:
    if isinstance(m.payload, bytes):
        return len(m.payload)
    return len(json.dumps(m.payload, separators=(",", ":"), allow_nan=False).encode())


class _EventWindow:
    """Messages sent in the last ``window`` seconds, at most ``rate * window`` of them (Supabase's two
    refusals: over the rate already, or a batch that does not fit)."""

    __slots__ = ("_sent", "capacity", "total", "window")

    def __init__(self, rate: float, window: float) -> None:
        self.window = window
        self.capacity = max(1, round(rate * window))
        self._sent: deque[tuple[float, int]] = deque()
        self.total = 0

    def take(self, n: int, now: float) -> str | None:
        """Count ``n`` messages sent at ``now``; or, without counting them, the reason they may not be."""
        sent, horizon = self._sent, now - self.window
        while sent and sent[0][0] <= horizon:
            self.total -= sent.popleft()[1]
        if self.total >= self.capacity:
            return "You have exceeded your rate limit"
        if self.total + n > self.capacity:
            return "Too many messages to broadcast, please reduce the batch size"
        sent.append((now, n))
        self.total += n
        return None


class RestApi:
    """Answers the HTTP requests that are not websocket handshakes.

    ``stats`` returns the server's counters for ``GET /admin/v1/stats``.
    """

    def __init__(
        self,
        *,
        limits: ServerLimits,
        verifier: TokenVerifier,
        registry: Registry,
        faults: Faults,
        clock: Callable[[], float],
        stats: Callable[[], dict[str, Any]],
        authorizer: Authorizer | None = None,
    ) -> None:
        self.limits = limits
        self.authorizer = authorizer
        self.verifier = verifier
        self.registry = registry
        self._sent = _EventWindow(limits.max_rest_events_per_second, limits.rate_window_s)
        self.faults = faults
        self.clock = clock
        self.stats = stats

    @staticmethod
    def is_known(path: str) -> bool:
        return (
            path in WEBSOCKET_PATHS or path in BROADCAST_PATHS or path in HEALTH_PATHS
            or bool(BROADCAST_EVENT.fullmatch(path)) or path.startswith("/admin/v1/")
        )  # fmt: skip

    async def answer(
        self, method: str, path: str, query: dict[str, list[str]], request: Request, body: bytes
    ) -> Response:
        """The response to one HTTP request (``path`` without trailing slash, ``method`` upper case)."""
        if method == "OPTIONS":
            return json_response(204)
        if method == "POST":
            if path in BROADCAST_PATHS:
                return await self._batch_broadcast(request, body)
            if m := BROADCAST_EVENT.fullmatch(path):
                return await self._single_broadcast(request, query, body, m.group(1), m.group(2))
            if m := ADMIN_FAULT.fullmatch(path):
                return self._admin_fault(request, m.group(1), body)
        if method == "GET":
            if path in HEALTH_PATHS:
                return json_response(200, {"message": "ok", "server": "harmony-lab-realtime"})
            if path == "/admin/v1/faults":
                return self._admin_auth(request) or json_response(200, {"history": self.faults.history})
            if path == "/admin/v1/stats":
                return self._admin_auth(request) or json_response(200, self.stats())
        if self.is_known(path):
            return json_response(405, {"error": f"method {method} not allowed on {path}"})
        return json_response(404, {"error": "Not Found"})

    def check_head(self, method: str, target: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
        """Refuse a request that needs a token and carries no valid one before its body is read:
        ``(401, reason)``, or None."""
        if method != "POST":
            return None
        path = urllib.parse.urlsplit(target).path.rstrip("/") or "/"
        if not (path in BROADCAST_PATHS or BROADCAST_EVENT.fullmatch(path) or ADMIN_FAULT.fullmatch(path)):
            return None
        _, problem = self._verify(headers)
        return None if problem is None else (401, problem)

    # -- auth ----------------------------------------------------------------------------------

    def _verify(self, headers: Mapping[str, str]) -> tuple[dict[str, Any] | None, str | None]:
        auth = headers.get("authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        apikey = headers.get("apikey") or headers.get("x-api-key") or ""
        chosen = token if token and not token.startswith("sb_") else apikey
        if not chosen:
            return None, "API key is missing"
        try:
            return self.verifier.verify(chosen, self.clock()), None
        except AuthError as exc:
            return None, exc.message

    def token_claims(self, request: Request) -> tuple[dict[str, Any] | None, Response | None]:
        """The verified claims of the request's token (``Authorization: Bearer`` or ``apikey``), or
        the 401 response to send."""
        claims, problem = self._verify(request.headers)
        if problem is not None:
            return None, json_response(401, {"error": problem})
        return claims, None

    # -- REST broadcast ------------------------------------------------------------------------

    async def _batch_broadcast(self, request: Request, body: bytes) -> Response:
        claims, denied = self.token_claims(request)
        if denied is not None:
            return denied
        assert claims is not None
        try:
            doc = loads_strict(body or b"null")
        except ValueError:
            return json_response(
                400, {"error": 'body must be strict JSON: {"messages": [{topic, event, payload}]}'}
            )
        items = doc.get("messages") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            return json_response(
                422, {"error": 'expected {"messages": [{"topic", "event", "payload", "private"?}]}'}
            )
        messages: list[RestMessage] = []
        for i, m in enumerate(items):
            if not (
                isinstance(m, dict) and isinstance(m.get("topic"), str) and isinstance(m.get("event"), str)
            ):
                return json_response(422, {"error": f"messages[{i}] needs string topic and event"})
            messages.append(
                RestMessage(m["topic"], m["event"], m.get("payload", {}), flexible_bool(m.get("private")))
            )
        return await self.broadcast(claims, messages, headers=request_headers(request.headers))

    async def _single_broadcast(
        self, request: Request, query: dict[str, list[str]], body: bytes, topic: str, event: str
    ) -> Response:
        claims, denied = self.token_claims(request)
        if denied is not None:
            return denied
        assert claims is not None
        topic, event = urllib.parse.unquote(topic), urllib.parse.unquote(event)
        private = (query.get("private") or ["false"])[0].lower() == "true"
        ctype = (request.headers.get("content-type") or "application/json").split(";")[0].strip().lower()
        if ctype == "application/octet-stream":
            return await self.broadcast(
                claims,
                [RestMessage(topic, event, body, private, binary=True)],
                headers=request_headers(request.headers),
            )
        try:
            payload = loads_strict(body or b"null")
        except ValueError:
            return json_response(
                400, {"error": "body must be strict JSON (or application/octet-stream for binary)"}
            )
        return await self.broadcast(
            claims, [RestMessage(topic, event, payload, private)], headers=request_headers(request.headers)
        )

    async def broadcast(
        self, claims: dict[str, Any], messages: list[RestMessage], *, headers: Mapping[str, str] | None = None
    ) -> Response:
        """Check and deliver the messages of one REST broadcast request (sent by the holder of
        ``claims``); the response says whether they were accepted.

        A message whose payload is over ``max_broadcast_bytes`` refuses the whole request (422, as
        Supabase: ``{"errors": {"payload": ["Payload size exceeds tenant limit"]}}``); so
        does going over ``max_rest_events_per_second`` (429, Supabase's texts). Private messages go
        only to topics the caller's role may write (Realtime Authorization); the others are dropped.
        """
        limit = self.limits.max_broadcast_bytes
        for i, m in enumerate(messages):
            size = _payload_bytes(m)
            if size > limit:
                where = f"messages[{i}]" if len(messages) > 1 else "the message"
                text = "Payload size exceeds tenant limit"
                detail = f"{where} has a {size}-byte payload; the limit is {limit} bytes"
                # Supabase answers 422 with its changeset errors; the detail is ours
                return json_response(
                    422, {"errors": {"payload": [text]}, "message": text, "error": f"{text}: {detail}"}
                )
        refusal = self._sent.take(len(messages), self.clock())
        if refusal is not None:
            self.registry.stats.rejected["rest broadcast 429"] += 1
            logger.info("REST broadcast of %d message(s) refused with 429: %s", len(messages), refusal)
            return json_response(429, {"message": refusal, "error": refusal})
        allowed = await rest_broadcast_allowed(
            self.authorizer,
            claims,
            [{"topic": m.topic} for m in messages],
            private=[m.private for m in messages],
            headers=headers,
        )
        for m in (m for m, ok in zip(messages, allowed, strict=True) if ok):
            full = TOPIC_PREFIX + m.topic
            if m.binary:
                self.registry.broadcast_binary(full, m.event, m.payload, private=m.private)
            else:
                self.registry.broadcast(full, m.event, m.payload, private=m.private)
        return json_response(202)

    # -- admin ---------------------------------------------------------------------------------

    def _admin_auth(self, request: Request) -> Response | None:
        claims, denied = self.token_claims(request)
        if denied is not None:
            return denied
        assert claims is not None
        if claims.get("role") != "service_role":
            return json_response(403, {"error": "the admin API needs the service_role key"})
        return None

    def _admin_fault(self, request: Request, kind: str, body: bytes) -> Response:
        denied = self._admin_auth(request)
        if denied is not None:
            return denied
        try:
            kwargs = loads_strict(body) if body.strip() else {}
        except ValueError as exc:
            return json_response(
                400, {"error": f"body must be a strict JSON object of keyword arguments: {exc}"}
            )
        if not isinstance(kwargs, dict):
            return json_response(400, {"error": "body must be a JSON object of keyword arguments"})
        try:
            result = self.faults.apply(kind, kwargs)
        except FaultError as exc:
            return json_response(400, {"error": str(exc)})
        return json_response(200, {"ok": True, "result": result})
