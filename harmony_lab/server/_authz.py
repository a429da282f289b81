"""Realtime Authorization: what a subscriber may do on a private channel, asked of Postgres.

The policies live on ``realtime.messages`` and Postgres evaluates them, the way Supabase's Realtime
server does it, in transactions that are always rolled back (nothing is stored):

* **read** — insert one probe row per extension (``broadcast``, and ``presence`` when presence is
  on) for the topic as the server's own role, then set ``role``, ``realtime.topic``,
  ``request.jwt.claims`` (and ``request.jwt.claim.sub`` / ``.role``, ``request.headers``) to the
  subscriber's, and select the probes back: a probe that comes back means reading that extension is
  allowed;
* **write** — with the same settings, insert one probe per extension under a savepoint: success
  allows writing it, ``insufficient_privilege`` (an RLS ``WITH CHECK`` refusal) refuses it; any
  other error is an error of the check.

The results are kept per channel (:class:`Policies`, ``None`` = not evaluated yet) until the
channel's token changes, as the real server keeps them in its channel state. Every check runs on a
small pool of connections (bounded: pool size, time to get a connection, ``statement_timeout``, and
an overall deadline), never blocking the event loop.

:func:`rest_broadcast_allowed` is the check of a REST broadcast into private topics: messages of a
topic the caller's role may not write are dropped, as the real server drops them (the request still
succeeds); ``service_role`` passes because it bypasses RLS in Postgres, not by a rule here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import psycopg

from harmony_lab.server.rls import pg_error_message

__all__ = [
    "EXTENSIONS",
    "Authorizer",
    "AuthzError",
    "Policies",
    "Replayed",
    "no_longer_readable",
    "rest_broadcast_allowed",
    "unreadable",
]

logger = logging.getLogger(__name__)

EXTENSIONS: Final = ("broadcast", "presence")
MAX_REPLAY: Final = 25
"""Messages a private join's ``broadcast.replay`` gets at most (Supabase's hard limit)."""
_EPOCH: Final = dt.datetime(1970, 1, 1)  # naive UTC, as realtime.messages.inserted_at

_SETTINGS_SQL: Final = (
    "select set_config('role', %s, true), set_config('realtime.topic', %s, true), "
    "set_config('request.jwt.claims', %s, true), set_config('request.jwt.claim.sub', %s, true), "
    "set_config('request.jwt.claim.role', %s, true), set_config('request.headers', %s, true)"
)


def unreadable(topic: str) -> str:
    """Why a private channel may not be read (``topic`` without ``realtime:``); a refused join's
    reason is this with ``Unauthorized:`` in front, a channel closed on a new token gets it as is."""
    return f"You do not have permissions to read from this Channel topic: {topic}"


def no_longer_readable(topic: str) -> str:
    """The ``system`` error that closes a channel whose new token lost a read permission."""
    return f"You no longer have permission to read from this Channel topic: {topic}"


@dataclasses.dataclass(slots=True)
class Policies:
    """Read and write permission per extension on one private channel; ``None`` = not evaluated yet."""

    broadcast_read: bool | None = None
    broadcast_write: bool | None = None
    presence_read: bool | None = None
    presence_write: bool | None = None

    def get(self, extension: str, action: str) -> bool | None:
        value: bool | None = getattr(self, f"{extension}_{action}")
        return value

    def set(self, extension: str, action: str, value: bool) -> None:
        setattr(self, f"{extension}_{action}", value)

    @property
    def can_read(self) -> bool:
        """Whether a join is admitted: reading broadcast or presence is allowed."""
        return bool(self.broadcast_read or self.presence_read)

    def revoked_since(self, previous: Policies) -> bool:
        """Whether a read permission ``previous`` had (True) is now refused (False)."""
        return (previous.broadcast_read is True and self.broadcast_read is False) or (
            previous.presence_read is True and self.presence_read is False
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Replayed:
    """One stored private broadcast a join asked to replay."""

    id: str
    event: str | None
    payload: Any
    binary: bytes | None = None
    """the ``binary_payload`` of a message sent with ``realtime.send_binary`` (then ``payload`` is None)"""


class AuthzError(Exception):
    """A check could not be made (database unreachable, timed out, a policy raised an error).

    ``kind`` is one of ``"policy"`` (a policy or setting failed in Postgres), ``"canceled"``
    (``statement_timeout``), ``"pool"`` (no connection free in time) or ``"unavailable"``;
    ``detail`` says what happened.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail

    def join_reason(self, topic: str) -> str:
        """The reason of the refused join, in the real server's words."""
        if self.kind == "policy":
            return f"Unauthorized: {unreadable(topic)}"
        if self.kind == "canceled":
            return f"QueryCanceled: {self.detail}"
        if self.kind == "pool":
            return "IncreaseConnectionPool: Please increase your connection pool size"
        return "UnableToConnectToProject: Realtime was unable to connect to the project database"

    def shutdown_message(self, topic: str) -> str:
        """The ``system`` error that closes a channel whose re-check (new token) failed."""
        if self.kind == "policy":
            return unreadable(topic)
        if self.kind == "canceled":
            return "Query was cancelled, please try again"
        if self.kind == "pool":
            return "Please increase your connection pool size"
        return "Realtime was unable to connect to the project database"


def _role_and_sub(claims: Mapping[str, Any]) -> tuple[str, str | None]:
    role = claims.get("role")
    if not isinstance(role, str) or not role:
        raise AuthzError("policy", f"the token's role claim must be a non-empty string; got {role!r}")
    sub = claims.get("sub")
    return role, None if sub is None else str(sub)


class Authorizer:
    """Evaluates ``realtime.messages`` policies for private channels (see the module docstring).

    ``dsn`` must connect as a role that may insert into ``realtime.messages`` regardless of its
    policies (its owner or a superuser), as the real server connects as ``supabase_realtime_admin``.
    Connections open on first use; :meth:`close` ends them.
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 2,
        statement_timeout_s: float = 5.0,
        acquire_timeout_s: float = 5.0,
    ) -> None:
        if not isinstance(dsn, str) or not dsn:
            raise TypeError(f"dsn must be a libpq connection string or URL, got {dsn!r}")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or not 1 <= pool_size <= 64:
            raise ValueError(f"pool_size must be an int from 1 to 64; got {pool_size!r}")
        for name, value in (
            ("statement_timeout_s", statement_timeout_s),
            ("acquire_timeout_s", acquire_timeout_s),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 600:
                raise ValueError(f"{name} must be a number of seconds in (0, 600]; got {value!r}")
        self._dsn = dsn
        self._statement_timeout_ms = max(1, int(statement_timeout_s * 1000))
        self._deadline_s = float(statement_timeout_s) * 2 + 1.0
        self._acquire_timeout_s = float(acquire_timeout_s)
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._closed = False
        self.stats: dict[str, Any] = dict.fromkeys(
            ("read_checks", "write_checks", "replays", "errors", "connects"), 0
        )
        self.stats["check_s"] = 0.0

    # -- connections -------------------------------------------------------------------------

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(
            self._dsn,
            autocommit=True,
            options=f"-c statement_timeout={self._statement_timeout_ms}",
            application_name="harmony_lab_authorization",
        )
        self.stats["connects"] += 1
        return conn

    async def _run(self, what: str, fn: Any) -> Any:
        if self._closed:
            raise AuthzError("unavailable", "the authorizer is closed")
        try:
            async with asyncio.timeout(self._acquire_timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            self.stats["errors"] += 1
            raise AuthzError(
                "pool", f"no database connection was free within {self._acquire_timeout_s:g} s"
            ) from None
        conn: psycopg.AsyncConnection[Any] | None = None
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(self._deadline_s):
                conn = self._idle.pop() if self._idle else await self._connect()
                return await fn(conn)
        except TimeoutError:
            self.stats["errors"] += 1
            await self._discard(conn)
            conn = None
            raise AuthzError(
                "unavailable", f"the {what} check did not finish within {self._deadline_s:g} s"
            ) from None
        except psycopg.errors.QueryCanceled as exc:
            self.stats["errors"] += 1
            raise AuthzError("canceled", pg_error_message(exc)) from exc
        except psycopg.OperationalError as exc:
            self.stats["errors"] += 1
            logger.warning("authorization: the %s check could not reach Postgres: %s", what, exc)
            await self._discard(conn)
            conn = None
            raise AuthzError("unavailable", str(exc).strip() or type(exc).__name__) from exc
        except psycopg.Error as exc:
            self.stats["errors"] += 1
            logger.warning("authorization: the %s check failed in Postgres: %s", what, pg_error_message(exc))
            raise AuthzError("policy", pg_error_message(exc)) from exc
        finally:
            self.stats["check_s"] += time.perf_counter() - t0
            if conn is not None:
                if (
                    self._closed
                    or conn.closed
                    or conn.broken
                    or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
                ):
                    await self._discard(conn)
                else:
                    self._idle.append(conn)
            self._slots.release()

    @staticmethod
    async def _discard(conn: psycopg.AsyncConnection[Any] | None) -> None:
        if conn is None:
            return
        try:
            await conn.close()
        except Exception:
            logger.warning("authorization: closing a connection failed", exc_info=True)

    async def close(self) -> None:
        """The old spelling of :meth:`aclose` (it warns)."""
        warnings.warn(
            "Authorizer.close() is now `await authorizer.aclose()`", DeprecationWarning, stacklevel=2
        )
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections; checks after this fail as ``unavailable``. Idempotent."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await self._discard(conn)

    # -- checks ------------------------------------------------------------------------------

    async def read(
        self,
        topic: str,
        claims: Mapping[str, Any],
        *,
        presence: bool = True,
        policies: Policies | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Policies:
        """Evaluate reading ``topic`` (without ``realtime:``) for ``broadcast`` (and ``presence``).

        Returns ``policies`` (or new ones) with the read flags of the checked extensions set.
        Raises :class:`AuthzError` when the check cannot be made.
        """
        role, sub = _role_and_sub(claims)
        extensions = EXTENSIONS if presence else ("broadcast",)
        probes = {ext: uuid.uuid4() for ext in extensions}
        settings = _settings(role, topic, claims, sub, headers)
        out = policies if policies is not None else Policies()

        async def check(conn: psycopg.AsyncConnection[Any]) -> Policies:
            async with conn.transaction(force_rollback=True):
                rows: list[Any] = []
                for ext, probe in probes.items():
                    rows += [probe, topic, ext]
                values = ", ".join("(%s, %s, %s)" for _ in probes)
                await conn.execute(
                    f"insert into realtime.messages (id, topic, extension) values {values}",
                    rows,
                )
                await conn.execute(_SETTINGS_SQL, settings)
                cur = await conn.execute(
                    "select id from realtime.messages where id = any(%s)", [list(probes.values())]
                )
                seen = {row[0] for row in await cur.fetchall()}
            for ext, probe in probes.items():
                out.set(ext, "read", probe in seen)
            return out

        self.stats["read_checks"] += 1
        return await self._run("read", check)

    async def write(
        self,
        topic: str,
        claims: Mapping[str, Any],
        *,
        presence: bool = True,
        policies: Policies | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Policies:
        """Evaluate writing ``topic`` (sending broadcasts, tracking presence); same conventions."""
        role, sub = _role_and_sub(claims)
        extensions = EXTENSIONS if presence else ("broadcast",)
        settings = _settings(role, topic, claims, sub, headers)
        out = policies if policies is not None else Policies()

        async def check(conn: psycopg.AsyncConnection[Any]) -> Policies:
            allowed: dict[str, bool] = {}
            async with conn.transaction(force_rollback=True):
                await conn.execute(_SETTINGS_SQL, settings)
                for ext in extensions:
                    try:
                        async with conn.transaction():
                            await conn.execute(
                                "insert into realtime.messages (topic, extension) values (%s, %s)",
                                [topic, ext],
                            )
                    except psycopg.errors.InsufficientPrivilege:
                        allowed[ext] = False
                    else:
                        allowed[ext] = True
            for ext in EXTENSIONS:
                out.set(ext, "write", allowed.get(ext, False))
            return out

        self.stats["write_checks"] += 1
        return await self._run("write", check)

    async def replay(self, topic: str, since_ms: int, limit: int) -> list[Replayed]:
        """The private broadcasts stored in ``realtime.messages`` for ``topic`` since ``since_ms`` (epoch
        milliseconds), oldest first: at most ``limit`` of the newest, ``limit`` clamped to 1..25 as
        Supabase does. Read with the server's own role (the join's read check came first).
        Raises :class:`AuthzError` when the messages cannot be read.
        """
        limit = max(1, min(limit, MAX_REPLAY))
        since = _EPOCH + dt.timedelta(milliseconds=since_ms)

        async def fetch(conn: psycopg.AsyncConnection[Any]) -> list[Replayed]:
            async with conn.transaction(force_rollback=True):
                cur = await conn.execute(
                    "select id::text, event, payload, binary_payload from realtime.messages "
                    "where topic = %s and private is true and extension = 'broadcast' and inserted_at >= %s "
                    "and inserted_at < (now() at time zone 'UTC') + interval '1 minute' "
                    "order by inserted_at desc limit %s",
                    [topic, since, limit],
                )
                rows = await cur.fetchall()
            return [
                Replayed(str(i), event, payload, None if binary is None else bytes(binary))
                for i, event, payload, binary in reversed(rows)
            ]

        self.stats["replays"] += 1
        return list(await self._run("replay", fetch))

    def __repr__(self) -> str:
        return (
            f"<Authorizer {'closed' if self._closed else 'open'} idle={len(self._idle)} "
            f"reads={self.stats['read_checks']} writes={self.stats['write_checks']}>"
        )


def request_headers(headers: Any, *, only_x: bool = False) -> dict[str, str]:
    """What ``request.headers`` holds in a policy check: the request's headers by lower-case name (a
    repeated header keeps its last value), as Supabase sets them. A websocket check sees only the
    ``x-*`` headers of the websocket request (``only_x``); a REST broadcast sees all of them.

    ``headers`` is a websockets ``Headers`` (or any mapping); the request head it comes from is bounded
    in bytes by the HTTP layer.
    """
    items = headers.raw_items() if hasattr(headers, "raw_items") else headers.items()
    out: dict[str, str] = {}
    for name, value in items:
        key = str(name).lower()
        if not only_x or key.startswith("x-"):
            out[key] = str(value)
    return out


def _settings(
    role: str, topic: str, claims: Mapping[str, Any], sub: str | None, headers: Mapping[str, str] | None
) -> list[Any]:
    return [
        role,
        topic,
        json.dumps(dict(claims), default=str),
        sub,
        role,
        json.dumps(dict(headers or {}), default=str),
    ]


async def rest_broadcast_allowed(
    authorizer: Authorizer | None,
    claims: Mapping[str, Any],
    messages: Sequence[Mapping[str, Any]],
    *,
    private: Iterable[bool],
    headers: Mapping[str, str] | None = None,
) -> list[bool]:
    """Which REST broadcast messages to deliver, in order (``private`` is each message's flag).

    Public messages always go. Private ones are grouped by topic and go only if the caller's role
    may write the topic (``broadcast`` write, evaluated like a channel's); the others are dropped
    with an INFO log, as the real server drops them without failing the request. Without an
    authorizer (a server with no database) every private message is dropped.
    """
    flags = list(private)
    verdict: dict[str, bool] = {}
    out: list[bool] = []
    for message, is_private in zip(messages, flags, strict=True):
        if not is_private:
            out.append(True)
            continue
        topic = str(message.get("topic"))
        if topic not in verdict:
            verdict[topic] = await _may_send(authorizer, claims, topic, headers)
        out.append(verdict[topic])
    dropped = sum(1 for ok in out if not ok)
    if dropped:
        logger.info(
            "REST broadcast: dropped %d private message(s) the caller's role (%s) may not send to %s",
            dropped, claims.get("role"), sorted(t for t, ok in verdict.items() if not ok),
        )  # fmt: skip
    return out


async def _may_send(
    authorizer: Authorizer | None, claims: Mapping[str, Any], topic: str, headers: Mapping[str, str] | None
) -> bool:
    if authorizer is None:
        logger.warning(
            "REST broadcast into private topic %r dropped: this server has no database to evaluate "
            "Realtime Authorization policies",
            topic,
        )
        return False
    try:
        policies = await authorizer.write(topic, claims, presence=False, headers=headers)
    except AuthzError as exc:
        logger.warning(
            "REST broadcast into private topic %r dropped: the write check failed (%s)", topic, exc
        )
        return False
    return policies.broadcast_write is True
