"""Row changes out of PostgreSQL: an asyncio consumer of a logical replication stream.

:class:`ChangeStream` opens a ``replication=database`` connection (psycopg 3, libpq copy-both
driven by ``loop.add_reader`` — no threads), creates a **temporary** ``pgoutput`` slot, and yields
:class:`~harmony_lab.capture.types.Change` records in commit order, one transaction's changes
together and only after its commit.

:func:`poll_changes` is the synchronous fallback over ``pg_logical_slot_get_binary_changes`` with
the same decoder.

Requirements (checked at start, with a message that says how to fix them): ``wal_level=logical``;
the publication exists; every published table that publishes UPDATE/DELETE has a replica identity
(a primary key, an identity index, or ``REPLICA IDENTITY FULL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import secrets
import struct
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any, Final

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from harmony_lab.capture.pgoutput import (
    PG_EPOCH_OFFSET_US,
    Begin,
    Commit,
    LogicalMessage,
    PgOutputDecoder,
    Relation,
    TypeInfo,
    lsn_to_str,
    parse_message,
)
from harmony_lab.capture.types import Change

__all__ = ["ChangeStream", "ChangeStreamError", "poll_changes"]

logger = logging.getLogger(__name__)

# Session settings for the decoding session: value text forms (timestamps, intervals) must not
# depend on the server's or the role's defaults. See harmony_lab.capture._convert.
SESSION_SETTINGS: Final = {"TimeZone": "UTC", "DateStyle": "ISO", "IntervalStyle": "postgres"}

_STATUS_INTERVAL = 10.0  # seconds between unsolicited standby status updates
_HIGH_WATER = 50_000  # stop reading the socket when this many changes wait for the consumer
_LOW_WATER = 10_000
_DRAIN_BUDGET = 1_000  # copy messages handled per loop callback before yielding to the loop
_IO_TIMEOUT = 30.0  # seconds to wait for the server while starting replication
_XLOG_DATA = struct.Struct(">QQq")
_KEEPALIVE = struct.Struct(">QqB")
_STATUS = struct.Struct(">cQQQqB")

_TYPES_SQL: Final = """
SELECT t.oid::int8, t.typname::text,
       CASE WHEN t.typtype = 'd' THEN bt.typname::text
            WHEN et.oid IS NOT NULL
              THEN '_' || CASE WHEN et.typtype = 'd' THEN ebt.typname ELSE et.typname END
            ELSE t.typname::text END
FROM pg_type t
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
LEFT JOIN pg_type ebt ON ebt.oid = et.typbasetype
WHERE t.oid = ANY(%s::oid[])
"""

_PUBLICATION_SQL: Final = """
SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relreplident::text,
       (SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum))
          FROM pg_index i
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
         WHERE i.indrelid = c.oid AND i.indisprimary) AS pk,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident) AS ident_index,
       (SELECT array_agg(DISTINCT a.atttypid::int8) FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           AND a.atttypid >= 16384) AS custom_types
FROM pg_publication_tables pt
JOIN pg_namespace n ON n.nspname = pt.schemaname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
WHERE pt.pubname = %s
"""

_PK_SQL: Final = """
SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum))
FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = %s::oid AND i.indisprimary
"""


class ChangeStreamError(RuntimeError):
    """Change capture cannot start or continue; the message says why and what to do."""


_CLOSED: Final = object()


def _check_rows(
    publication: str, wal_level: str, pub: tuple[Any, ...] | None, tables: Sequence[tuple[Any, ...]]
) -> None:
    if wal_level != "logical":
        raise ChangeStreamError(
            f"wal_level is {wal_level!r}, change capture needs 'logical'. Run "
            "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL "
            "(harmony_lab's LocalPostgres sets it for you)."
        )
    if pub is None:
        raise ChangeStreamError(
            f"publication {publication!r} does not exist. Create it, e.g. with "
            "harmony_lab.local.schema.apply_schema(dsn) for the Harmony tables, or "
            f"CREATE PUBLICATION {publication} FOR TABLE ...;"
        )
    if not (pub[0] or pub[1]):  # publishes neither UPDATE nor DELETE: identity is irrelevant
        return
    bad = []
    for _oid, schema, table, ident, pk, ident_index, _types in tables:
        if ident == "n" or (ident == "d" and not pk) or (ident == "i" and not ident_index):
            bad.append(f"{schema}.{table}")
    if bad:
        fixes = " ".join(f"ALTER TABLE {name} REPLICA IDENTITY FULL;" for name in bad)
        raise ChangeStreamError(
            f"published table(s) {', '.join(bad)} in {publication!r} have no replica identity, so "
            f"UPDATE and DELETE on them fail and cannot be captured. Add a primary key, or run: {fixes}"
        )


def _type_infos(rows: Sequence[tuple[Any, ...]]) -> dict[int, TypeInfo]:
    return {int(oid): TypeInfo(name, conv or name) for oid, name, conv in rows}


def _session_options(dsn: str) -> dict[str, Any]:
    params = conninfo_to_dict(dsn)
    extra = " ".join(f"-c {k}={v}" for k, v in SESSION_SETTINGS.items())
    params["options"] = f"{params.get('options', '')} {extra}".strip()
    params.setdefault("application_name", "harmony_lab_capture")
    return params


# ---------------------------------------------------------------------------------------------
# polling fallback

_poll_types: weakref.WeakKeyDictionary[Any, dict[int, TypeInfo]] = weakref.WeakKeyDictionary()


def poll_changes(
    conn: psycopg.Connection[Any],
    slot: str,
    publication: str = "supabase_realtime",
    *,
    upto_nchanges: int | None = None,
) -> list[Change]:
    """Consume everything pending in logical ``slot`` (a ``pgoutput`` slot) as :class:`Change` records.

    Synchronous, over ``pg_logical_slot_get_binary_changes`` on an ordinary connection: the
    baseline transport (half the poll interval of latency; never poll in a tight loop). The slot
    must exist, e.g. ``SELECT pg_create_logical_replication_slot('s', 'pgoutput', true)`` on the
    same connection for a temporary one.
    """
    types = _poll_types.setdefault(conn, {})
    pks: dict[int, tuple[str, ...] | None] = {}

    def resolve_type(oid: int) -> TypeInfo | None:
        if oid not in types:
            rows = conn.execute(_TYPES_SQL, [[oid]]).fetchall()
            types.update(_type_infos(rows))
        return types.get(oid)

    def resolve_key(relid: int) -> Sequence[str] | None:
        if relid not in pks:
            row = conn.execute(_PK_SQL, [relid]).fetchone()
            pks[relid] = tuple(row[0]) if row and row[0] else None
        return pks[relid]

    decoder = PgOutputDecoder(type_resolver=resolve_type, key_resolver=resolve_key)
    options = ["proto_version", "1", "publication_names", _quote_ident(publication)]
    with conn.transaction():
        for name, value in SESSION_SETTINGS.items():
            conn.execute("SELECT set_config(%s, %s, true)", [name, value])
        rows = conn.execute(
            "SELECT lsn::text, data FROM pg_logical_slot_get_binary_changes(%s, NULL, %s"
            + ", %s" * len(options)
            + ")",
            [slot, upto_nchanges, *options],
        ).fetchall()
    out: list[Change] = []
    for lsn_text, data in rows:
        hi, _, lo = lsn_text.partition("/")
        out.extend(decoder.feed(data, (int(hi, 16) << 32) | int(lo, 16)))
    return out


async def _wait_fd(fd: int, *, writable: bool) -> None:
    """Wait until ``fd`` is readable (or writable) on the running loop."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    (loop.add_writer if writable else loop.add_reader)(fd, wake)
    try:
        async with asyncio.timeout(_IO_TIMEOUT):
            await ready
    finally:
        (loop.remove_writer if writable else loop.remove_reader)(fd)


def _redact(dsn: str) -> str:
    """The DSN without its password (URL or key=value form)."""
    dsn = re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", dsn)
    return re.sub(r"(password\s*=\s*)(\S+)", r"\1***", dsn)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------------------------------------
# streaming

_slot_counter = itertools.count(1)


class _ChangeIterator:
    """Async iterator over a stream's queue; cancelling ``__anext__`` loses nothing."""

    def __init__(self, stream: ChangeStream) -> None:
        self._stream = stream

    def __aiter__(self) -> _ChangeIterator:
        return self

    async def __anext__(self) -> Change:
        return await self._stream._next()


class ChangeStream:
    """Stream row changes of ``publication`` from the database at ``dsn``.

    >>> async with ChangeStream(pg.dsn) as changes:        # doctest: +SKIP
    ...     async for change in changes:
    ...         print(change.op, change.table, change.new)

    :meth:`start` returns once a temporary replication slot exists: every change committed after
    that is delivered, in commit order, a transaction's changes one after another (they are held
    until its commit arrives, so a transaction is delivered whole or not at all).

    If the replication connection drops (server restart, ``pg_terminate_backend``, network), the
    stream logs it and reconnects with a new temporary slot, then calls ``on_reconnect(reason)``.
    **Changes committed between the drop and the new slot are lost** — a temporary slot dies with
    its connection, exactly like Supabase Realtime's. After ``reconnect_timeout`` seconds without
    success, iteration raises :class:`ChangeStreamError`.

    ``slot_name`` defaults to a unique ``harmony_<pid>_<n>_<random>`` (reconnects append
    ``_r<n>``). ``on_logical_message`` receives ``pg_logical_emit_message`` messages. ``stats``
    reports counts by operation, transactions, the last received and confirmed LSNs, reconnects,
    the queue length and the last error.

    Memory: a transaction's changes are held until its commit, so a transaction of N rows costs N
    decoded rows at once. When the consumer falls behind by tens of thousands of changes, reading
    pauses (the server buffers) until it catches up.
    """

    def __init__(
        self,
        dsn: str,
        *,
        publication: str = "supabase_realtime",
        slot_name: str | None = None,
        on_reconnect: Callable[[str], None] | None = None,
        reconnect_timeout: float = 60.0,
        on_logical_message: Callable[[LogicalMessage], None] | None = None,
    ) -> None:
        if not isinstance(dsn, str) or not dsn:
            raise TypeError(f"dsn must be a libpq connection string or URL, got {dsn!r}")
        if not publication:
            raise ValueError("publication must be a non-empty publication name")
        if slot_name is not None and not re.fullmatch(r"[a-z0-9_]{1,63}", slot_name):
            raise ValueError(
                f"slot_name must be lower-case letters, digits and '_' (≤ 63 chars), got {slot_name!r}"
            )
        self._dsn = dsn
        self._publication = publication
        self._slot_base = slot_name or f"harmony_{os.getpid()}_{next(_slot_counter)}_{secrets.token_hex(3)}"
        self._on_reconnect = on_reconnect
        self._on_logical_message = on_logical_message
        self._reconnect_timeout = reconnect_timeout

        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._meta: psycopg.AsyncConnection[Any] | None = None
        self._repl: psycopg.AsyncConnection[Any] | None = None
        self._pg: pq.abc.PGconn | None = None
        self._fd: int | None = None
        self._decoder: PgOutputDecoder | None = None
        self._types: dict[int, TypeInfo] = {}
        self._pks: dict[int, tuple[str, ...] | None] = {}
        self._pending: list[Change] = []  # the current transaction's changes, released at commit
        self._reading = False
        self._blocked = False  # waiting for a metadata lookup before decoding further
        self._drain_scheduled = False
        self._status_task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._resolve_task: asyncio.Task[None] | None = None
        self._started = False
        self._closing = False
        self._failed = False
        self._server_version = 0
        self.slot_name: str | None = None

        self._received_lsn = 0
        self._flushed_lsn = 0
        self._counts = {"INSERT": 0, "UPDATE": 0, "DELETE": 0, "TRUNCATE": 0}
        self._transactions = 0
        self._messages = 0
        self._logical_messages = 0
        self._keepalives = 0
        self._reconnects = 0
        self._last_error: str | None = None
        self._last_commit_ts_us = 0
        self._connected = False

    # -- public API --------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the server, create the temporary slot and start streaming."""
        if self._started:
            raise ChangeStreamError("this ChangeStream is already started; create a new one to restart")
        self._loop = asyncio.get_running_loop()
        self._started = True
        try:
            await self._connect()
        except psycopg.OperationalError as exc:
            await self._teardown()
            self._started = False
            raise ChangeStreamError(f"cannot connect to PostgreSQL at {_redact(self._dsn)}: {exc}") from exc
        except BaseException:
            await self._teardown()
            self._started = False
            raise

    def __aiter__(self) -> AsyncIterator[Change]:
        return _ChangeIterator(self)

    async def close(self) -> None:
        """The old spelling of :meth:`aclose` (it warns)."""
        warnings.warn("ChangeStream.close() is now `await stream.aclose()`", DeprecationWarning, stacklevel=2)
        await self.aclose()

    async def aclose(self) -> None:
        """Stop streaming; the temporary slot is dropped with the connection. Idempotent."""
        if self._closing:
            return
        self._closing = True
        for task in (self._reconnect_task, self._resolve_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._teardown()
        self._queue.put_nowait(_CLOSED)
        logger.info("change stream on %r closed", self._publication)

    async def __aenter__(self) -> ChangeStream:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def stats(self) -> dict[str, Any]:
        """Counters: changes by op, transactions, last LSN, reconnects, queue size, …"""
        return {
            "changes": sum(self._counts.values()),
            **{op.lower(): n for op, n in self._counts.items()},
            "transactions": self._transactions,
            "messages": self._messages,
            "logical_messages": self._logical_messages,
            "keepalives": self._keepalives,
            "reconnects": self._reconnects,
            "last_lsn": lsn_to_str(self._received_lsn),
            "flushed_lsn": lsn_to_str(self._flushed_lsn),
            "last_commit_ts_us": self._last_commit_ts_us,
            "queued": self._queue.qsize(),
            "connected": self._connected,
            "slot": self.slot_name,
            "last_error": self._last_error,
        }

    def __repr__(self) -> str:
        state = "closed" if self._closing else ("connected" if self._connected else "not connected")
        return (
            f"<ChangeStream {self._publication!r} slot={self.slot_name} {state} "
            f"changes={sum(self._counts.values())} reconnects={self._reconnects}>"
        )

    # -- consumer side -----------------------------------------------------------------------

    async def _next(self) -> Change:
        if not self._started:
            raise ChangeStreamError("iterate a ChangeStream after start() (or use `async with`)")
        item = await self._queue.get()
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)  # other iterators end too
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._queue.put_nowait(item)
            raise item
        if not self._reading and self._queue.qsize() <= _LOW_WATER:
            self._resume_reading()
        return item  # type: ignore[no-any-return]

    # -- connection --------------------------------------------------------------------------

    async def _metadata_conn(self) -> psycopg.AsyncConnection[Any]:
        if self._meta is None or self._meta.closed or self._meta.broken:
            self._meta = await psycopg.AsyncConnection.connect(
                make_conninfo(**{**_session_options(self._dsn), "application_name": "harmony_lab_meta"}),
                autocommit=True,
            )
        return self._meta

    async def _check(self) -> None:
        meta = await self._metadata_conn()
        wal_level = (await (await meta.execute("SHOW wal_level")).fetchone() or ("?",))[0]
        self._server_version = meta.info.server_version
        pub = await (
            await meta.execute(
                "SELECT pubupdate, pubdelete FROM pg_publication WHERE pubname = %s", [self._publication]
            )
        ).fetchone()
        tables = await (await meta.execute(_PUBLICATION_SQL, [self._publication])).fetchall() if pub else []
        _check_rows(self._publication, str(wal_level), pub, tables)
        for oid, _schema, _table, _ident, pk, _ii, _types in tables:
            self._pks[int(oid)] = tuple(pk) if pk else None
        wanted = sorted({int(t) for row in tables for t in (row[6] or [])} - set(self._types))
        if wanted:
            rows = await (await meta.execute(_TYPES_SQL, [wanted])).fetchall()
            self._types.update(_type_infos(rows))

    async def _connect(self) -> None:
        await self._check()
        slot = self._slot_base if self._reconnects == 0 else f"{self._slot_base[:52]}_r{self._reconnects}"
        params = _session_options(self._dsn)
        params["replication"] = "database"
        repl = await psycopg.AsyncConnection.connect(make_conninfo(**params), autocommit=True)
        self._repl = repl
        try:
            await repl.execute(f"CREATE_REPLICATION_SLOT {slot} TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT")
        except psycopg.Error as exc:
            raise ChangeStreamError(f"cannot create the temporary replication slot {slot!r}: {exc}") from exc
        self.slot_name = slot
        options = f"proto_version '1', publication_names '{_quote_ident(self._publication)}'"
        if self._server_version >= 140000:
            options += ", messages 'true'"
        pg = repl.pgconn
        pg.nonblocking = 1
        pg.send_query(f"START_REPLICATION SLOT {slot} LOGICAL 0/0 ({options})".encode())
        await self._wait_copy_both(pg)
        decoder = PgOutputDecoder(
            type_resolver=self._types.get,
            key_resolver=lambda relid: self._pks.get(relid),
            on_logical_message=self._logical_message,
        )
        for oid, info in self._types.items():
            decoder.register_type(oid, info.name, info.conv)
        self._decoder = decoder
        self._pending = []
        self._pg = pg
        self._fd = pg.socket
        self._connected = True
        self._resume_reading()
        self._status_task = asyncio.get_running_loop().create_task(self._status_loop())
        logger.info("change stream on publication %r started (slot %s)", self._publication, slot)

    async def _wait_copy_both(self, pg: pq.abc.PGconn) -> None:
        while pg.flush() != 0:
            await _wait_fd(pg.socket, writable=True)
        while True:
            pg.consume_input()
            if not pg.is_busy():
                break
            await _wait_fd(pg.socket, writable=False)
        res = pg.get_result()
        if res is None or res.status != pq.ExecStatus.COPY_BOTH:
            msg = (
                res.error_message.decode(errors="replace") if res is not None else ""
            ) or pg.get_error_message()
            raise ChangeStreamError(f"START_REPLICATION failed: {msg.strip()}")

    async def _teardown(self) -> None:
        self._pause_reading()
        self._connected = False
        if self._status_task is not None:
            self._status_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._status_task
            self._status_task = None
        self._pg = None
        self._fd = None
        for conn in (self._repl, self._meta):
            if conn is not None:
                with contextlib.suppress(psycopg.Error, OSError):
                    await conn.close()
        self._repl = None
        self._meta = None

    # -- reading -----------------------------------------------------------------------------

    def _resume_reading(self) -> None:
        if self._reading or self._fd is None or self._loop is None or self._closing or self._failed:
            return
        self._reading = True
        self._loop.add_reader(self._fd, self._on_readable)
        self._schedule_drain()  # libpq may already hold buffered messages

    def _pause_reading(self) -> None:
        if self._reading and self._fd is not None and self._loop is not None:
            self._loop.remove_reader(self._fd)
        self._reading = False

    def _schedule_drain(self) -> None:
        if not self._drain_scheduled and self._loop is not None:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)

    def _on_readable(self) -> None:
        pg = self._pg
        if pg is None:
            return
        try:
            pg.consume_input()
        except psycopg.OperationalError as exc:
            self._lost(f"replication connection lost: {exc}")
            return
        self._drain()

    def _drain(self) -> None:
        self._drain_scheduled = False
        pg = self._pg
        if pg is None or not self._reading or self._blocked:
            return
        for _ in range(_DRAIN_BUDGET):
            try:
                n, buf = pg.get_copy_data(1)
            except psycopg.OperationalError as exc:
                self._lost(f"replication connection lost: {exc}")
                return
            if n == 0:
                return
            if n < 0:
                self._lost(self._end_reason(pg, n))
                return
            try:
                self._on_copy(bytes(buf))
            except Exception as exc:  # a decoding bug must not kill the loop silently
                logger.exception("change stream: cannot handle a replication message")
                self._fail(ChangeStreamError(f"decoding the replication stream failed: {exc}"), exc)
                return
            if self._blocked or not self._reading:
                return
        self._schedule_drain()  # more may be buffered: continue after other callbacks ran

    def _end_reason(self, pg: pq.abc.PGconn, n: int) -> str:
        lines: list[str] = []
        with contextlib.suppress(psycopg.Error):
            while (res := pg.get_result()) is not None:
                lines.extend(res.error_message.decode(errors="replace").splitlines())
        lines.extend(pg.get_error_message().splitlines())
        seen: dict[str, None] = {}
        for line in lines:
            line = line.strip().removeprefix("FATAL:").strip()
            if line and not line.startswith(("This probably means", "before or while")):
                seen.setdefault(line, None)
        what = "replication stream ended" if n == -1 else "replication stream failed"
        return f"{what}: {'; '.join(seen) or 'no reason given'}"

    def _on_copy(self, data: bytes) -> None:
        tag = data[:1]
        if tag == b"w":
            start, end, _ts = _XLOG_DATA.unpack_from(data, 1)
            self._received_lsn = max(self._received_lsn, end)
            self._messages += 1
            msg = parse_message(data, 25)
            assert self._decoder is not None
            if isinstance(msg, Relation) and self._needs_lookup(msg):
                self._block_for(msg, start)
                return
            self._apply(msg, start)
        elif tag == b"k":
            wal_end, _ts, reply = _KEEPALIVE.unpack_from(data, 1)
            self._keepalives += 1
            assert self._decoder is not None
            if not self._decoder.in_transaction and not self._pending:
                self._flushed_lsn = max(self._flushed_lsn, wal_end)
            if reply:
                self._send_status()
        else:
            logger.warning("change stream: ignoring unknown copy message %r", tag)

    def _apply(self, msg: Any, lsn: int) -> None:
        assert self._decoder is not None
        changes = self._decoder.handle(msg, lsn)
        if changes:
            self._pending.extend(changes)
        elif isinstance(msg, Commit):
            for ch in self._pending:
                self._counts[ch.op] += 1
                self._queue.put_nowait(ch)
            self._pending = []
            self._transactions += 1
            self._last_commit_ts_us = msg.commit_ts_us
            self._flushed_lsn = max(self._flushed_lsn, msg.end_lsn)
            if self._queue.qsize() >= _HIGH_WATER:
                logger.debug("change stream: %d changes queued; pausing reads", self._queue.qsize())
                self._pause_reading()
        elif isinstance(msg, Begin):
            self._pending = []

    def _logical_message(self, msg: LogicalMessage) -> None:
        self._logical_messages += 1
        if self._on_logical_message is not None:
            self._on_logical_message(msg)

    # -- metadata lookups (new relations / types arriving mid-stream) ------------------------

    def _needs_lookup(self, rel: Relation) -> bool:
        assert self._decoder is not None
        return rel.relation_id not in self._pks or bool(self._decoder.unresolved_types(rel))

    def _block_for(self, rel: Relation, lsn: int) -> None:
        assert self._loop is not None
        self._blocked = True
        self._resolve_task = self._loop.create_task(self._resolve(rel, lsn))

    async def _resolve(self, rel: Relation, lsn: int) -> None:
        assert self._decoder is not None
        try:
            meta = await self._metadata_conn()
            if rel.relation_id not in self._pks:
                row = await (await meta.execute(_PK_SQL, [rel.relation_id])).fetchone()
                self._pks[rel.relation_id] = tuple(row[0]) if row and row[0] else None
            missing = self._decoder.unresolved_types(rel)
            if missing:
                rows = await (await meta.execute(_TYPES_SQL, [missing])).fetchall()
                for oid, info in _type_infos(rows).items():
                    self._types[oid] = info
                    self._decoder.register_type(oid, info.name, info.conv)
        except (psycopg.Error, OSError) as exc:
            logger.warning(
                "change stream: looking up %s.%s metadata failed (%s); type names fall back to the "
                "relation message",
                rel.schema,
                rel.table,
                exc,
            )
        self._apply(rel, lsn)
        self._blocked = False
        self._schedule_drain()

    # -- feedback ----------------------------------------------------------------------------

    def _send_status(self) -> None:
        pg = self._pg
        if pg is None:
            return
        now = int(time.time() * 1_000_000) - PG_EPOCH_OFFSET_US
        lsn = self._flushed_lsn
        try:
            pg.put_copy_data(_STATUS.pack(b"r", lsn, lsn, lsn, now, 0))
            pg.flush()
        except psycopg.OperationalError as exc:
            self._lost(f"replication connection lost while sending feedback: {exc}")

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(_STATUS_INTERVAL)
            self._send_status()

    # -- failure and reconnect ---------------------------------------------------------------

    def _lost(self, reason: str) -> None:
        if self._closing or not self._connected:
            return
        self._connected = False
        self._last_error = reason
        self._pause_reading()
        if self._pending:
            logger.warning(
                "change stream: dropping %d changes of a transaction cut off by the disconnect",
                len(self._pending),
            )
            self._pending = []
        logger.warning("change stream on %r: %s; reconnecting", self._publication, reason)
        assert self._loop is not None
        self._reconnect_task = self._loop.create_task(self._reconnect(reason))

    def _fail(self, error: ChangeStreamError, cause: BaseException | None = None) -> None:
        if cause is not None:
            error.__cause__ = cause
        self._failed = True
        self._last_error = str(error)
        self._pause_reading()
        self._connected = False
        self._queue.put_nowait(error)

    async def _reconnect(self, reason: str) -> None:
        await self._teardown()
        deadline = time.monotonic() + self._reconnect_timeout
        delay = 0.05
        attempt = 0
        while not self._closing:
            attempt += 1
            self._reconnects += 1
            try:
                await self._connect()
            except ChangeStreamError as exc:  # wal_level / publication problems: not transient
                await self._teardown()
                self._fail(exc)
                return
            except (psycopg.Error, OSError) as exc:
                await self._teardown()
                self._reconnects -= 1
                if time.monotonic() + delay > deadline:
                    self._fail(
                        ChangeStreamError(
                            f"could not reconnect the replication stream within {self._reconnect_timeout:g}"
                            f" s after: {reason}; last error: {exc}"
                        ),
                        exc,
                    )
                    return
                logger.info("change stream: reconnect attempt %d failed (%s); retrying", attempt, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            logger.warning(
                "change stream on %r reconnected (slot %s); changes committed while disconnected "
                "were not captured",
                self._publication,
                self.slot_name,
            )
            if self._on_reconnect is not None:
                try:
                    self._on_reconnect(reason)
                except Exception:
                    logger.exception("on_reconnect callback failed")
            return
