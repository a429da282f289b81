"""Fault injection for the embedded server: drop, stall, refuse, rapid closes, latency.

``rt.faults`` (a :class:`Faults`) is thread-safe: call it from the server's loop, from a notebook's
loop while the stack runs on its own thread, or from any other thread. :class:`RemoteFaults` offers the
same methods over the admin HTTP endpoint (``POST /admin/v1/faults/{kind}``, service-role key), so
another kernel or process can drive a running server::

    rt.faults.stall(5)                      # sockets stay open; nothing is sent or answered for 5 s
    RemoteFaults(rt.url, rt.service_role_key).drop_all(code=1012)

Semantics:

* ``drop_all(code, reason)`` closes every open websocket now (a proper close frame with ``code``);
  returns how many were open.
* ``stall(seconds)`` — the server stops reading (so no heartbeat replies, no websocket pongs) and stops
  writing; new handshakes and REST requests wait (the admin API keeps answering, so ``clear()``
  works); one whose client gives up meanwhile is dropped at once (logged at DEBUG). Afterwards
  everything that queued up meanwhile — inbound frames and outbound traffic (replies, broadcasts,
  changes) — is processed and **delivered, in order, not dropped**. Idle timeouts are not counted
  during a stall. The byte bound still holds: a socket whose backlog passes
  ``ServerLimits.max_outbound_bytes`` meanwhile is closed as a slow consumer.
* ``refuse(seconds, status)`` — new websocket handshakes get an HTTP ``status`` with a JSON error body.
* ``rapid_close(count, code)`` — the next ``count`` websocket connections are closed with ``code`` right
  after their handshake.
* ``latency(ms, seconds=None)`` — every outbound frame leaves ``ms`` later than it was produced (order is
  kept; throughput is not reduced), for ``seconds`` or until :meth:`Faults.clear`.
* ``clear()`` ends every fault now (a stall ends immediately and the backlog is delivered).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = ["FaultError", "Faults", "RemoteFaults", "validate_close_code"]

KINDS = ("drop_all", "stall", "refuse", "rapid_close", "latency", "clear")


class FaultError(ValueError):
    """A fault was requested with invalid arguments (the message names the valid forms)."""


def validate_close_code(code: Any) -> int:
    """A close code a server may send: 1000–1003, 1007–1014 or 3000–4999."""
    if isinstance(code, bool) or not isinstance(code, int):
        raise FaultError(f"close code must be an integer; got {code!r}")
    if code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999:
        return code
    raise FaultError(f"close code {code} cannot be sent; use 1000-1003, 1007-1014 or 3000-4999")


def _seconds(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != value:
        raise FaultError(f"{name} must be a non-negative number; got {value!r}")
    return float(value)


class Faults:
    """Fault switches of one server (thread-safe).

    The server hands in what the switches act on: ``drop_all(code, reason)`` closes its sockets and
    returns how many were open, ``on_change()`` tells it a stall began or ended. Without them (a bare
    ``Faults()``) the switches only record and report, which is what the unit tests drive.
    """

    def __init__(
        self,
        *,
        drop_all: Callable[[int, str], int] | None = None,
        on_change: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._drop_all = drop_all
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._history: list[dict[str, Any]] = []
        self.stalled_until = 0.0
        self.refuse_until = 0.0
        self.refuse_status = 503
        self.rapid_close_remaining = 0
        self.rapid_close_code = 1011
        self.latency_s = 0.0
        self.latency_until: float | None = None

    # -- the public switches -------------------------------------------------------------------

    def drop_all(self, code: int = 1001, reason: str = "fault: drop") -> int:
        """Close every websocket now with ``code``; returns how many were open."""
        code = validate_close_code(code)
        if not isinstance(reason, str) or len(reason.encode()) > 123:
            raise FaultError("reason must be a string of at most 123 bytes")
        self._record("drop_all", code=code, reason=reason)
        return 0 if self._drop_all is None else self._drop_all(code, reason)

    def stall(self, seconds: float) -> None:
        """Stop reading and writing on every socket for ``seconds``; the backlog is delivered afterwards."""
        s = _seconds("seconds", seconds)
        assert s is not None
        with self._lock:
            self.stalled_until = max(self.stalled_until, self._clock() + s)
        self._record("stall", seconds=s)
        self._notify()

    def refuse(self, seconds: float, status: int = 503) -> None:
        """Reject new websocket handshakes with HTTP ``status`` for ``seconds``."""
        s = _seconds("seconds", seconds)
        assert s is not None
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise FaultError(f"status must be an HTTP error status 400-599; got {status!r}")
        with self._lock:
            self.refuse_until = self._clock() + s
            self.refuse_status = status
        self._record("refuse", seconds=s, status=status)

    def rapid_close(self, count: int, code: int = 1011) -> None:
        """Close the next ``count`` websocket connections right after they open."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise FaultError(f"count must be a non-negative integer; got {count!r}")
        code = validate_close_code(code)
        with self._lock:
            self.rapid_close_remaining = count
            self.rapid_close_code = code
        self._record("rapid_close", count=count, code=code)

    def latency(self, ms: float, seconds: float | None = None) -> None:
        """Delay every outbound frame by ``ms`` milliseconds, for ``seconds`` (None = until clear)."""
        m = _seconds("ms", ms)
        s = _seconds("seconds", seconds, allow_none=True)
        assert m is not None
        with self._lock:
            self.latency_s = m / 1000.0
            self.latency_until = None if s is None else self._clock() + s
        self._record("latency", ms=m, seconds=s)

    def clear(self) -> None:
        """End every fault now."""
        with self._lock:
            self.stalled_until = 0.0
            self.refuse_until = 0.0
            self.rapid_close_remaining = 0
            self.latency_s = 0.0
            self.latency_until = None
        self._record("clear")
        self._notify()

    @property
    def history(self) -> list[dict[str, Any]]:
        """What was injected and when (``at`` is ISO-8601 UTC), oldest first."""
        with self._lock:
            return [dict(h) for h in self._history]

    def apply(self, kind: str, kwargs: dict[str, Any]) -> Any:
        """Call fault ``kind`` with keyword arguments (the admin endpoint's entry point)."""
        if kind not in KINDS:
            raise FaultError(f"unknown fault {kind!r}; valid: {', '.join(KINDS)}")
        method = getattr(self, kind)
        try:
            return method(**kwargs)
        except TypeError as exc:
            raise FaultError(f"bad arguments for {kind}: {exc}") from None

    # -- what the server asks ------------------------------------------------------------------

    def stalled(self) -> bool:
        return self._clock() < self.stalled_until

    def stall_remaining(self) -> float:
        return max(0.0, self.stalled_until - self._clock())

    def refusing(self) -> int | None:
        """The HTTP status to refuse a handshake with, or None."""
        return self.refuse_status if self._clock() < self.refuse_until else None

    def take_rapid_close(self) -> int | None:
        """The close code if this new connection must be closed right away."""
        with self._lock:
            if self.rapid_close_remaining <= 0:
                return None
            self.rapid_close_remaining -= 1
            return self.rapid_close_code

    def current_latency(self) -> float:
        if self.latency_s <= 0:
            return 0.0
        until = self.latency_until
        if until is not None and self._clock() >= until:
            return 0.0
        return self.latency_s

    def _record(self, kind: str, **args: Any) -> None:
        with self._lock:
            self._history.append({"kind": kind, "at": datetime.now(UTC).isoformat(), **args})

    def _notify(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def __repr__(self) -> str:
        active = []
        if self.stalled():
            active.append(f"stall {self.stall_remaining():.1f}s")
        if self.refusing() is not None:
            active.append(f"refuse {self.refuse_status}")
        if self.rapid_close_remaining:
            active.append(f"rapid_close x{self.rapid_close_remaining}")
        if self.current_latency():
            active.append(f"latency {self.latency_s * 1000:.0f}ms")
        return f"<Faults {', '.join(active) or 'none active'}; {len(self._history)} injected>"


class RemoteFaults:
    """The :class:`Faults` API over HTTP, for a server running in another kernel or process.

    ``url`` is the project URL (``rt.url``); ``service_role_key`` authorises the admin endpoint.
    """

    def __init__(self, url: str, service_role_key: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._key = service_role_key
        self.timeout = timeout

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self._key}", "apikey": self._key,
                     "Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise FaultError(f"{method} {path} failed with HTTP {exc.code}: {detail}") from None

    def _fault(self, kind: str, **kwargs: Any) -> Any:
        return self._request("POST", f"/admin/v1/faults/{kind}", kwargs).get("result")

    def drop_all(self, code: int = 1001, reason: str = "fault: drop") -> int:
        return int(self._fault("drop_all", code=code, reason=reason))

    def stall(self, seconds: float) -> None:
        self._fault("stall", seconds=seconds)

    def refuse(self, seconds: float, status: int = 503) -> None:
        self._fault("refuse", seconds=seconds, status=status)

    def rapid_close(self, count: int, code: int = 1011) -> None:
        self._fault("rapid_close", count=count, code=code)

    def latency(self, ms: float, seconds: float | None = None) -> None:
        self._fault("latency", ms=ms, seconds=seconds)

    def clear(self) -> None:
        self._fault("clear")

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "/admin/v1/faults")["history"])

    def stats(self) -> dict[str, Any]:
        return dict(self._request("GET", "/admin/v1/stats"))

    def __repr__(self) -> str:
        return f"<RemoteFaults {self.url}>"
