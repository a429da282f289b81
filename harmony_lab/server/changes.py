"""The postgres_changes engine: one change capture, fanned out to channel subscribers.

:class:`ChangesHub` runs ONE :class:`~harmony_lab.capture.stream.ChangeStream` on the publication and
processes every captured :class:`~harmony_lab.capture.types.Change` once, in batches of whatever has
arrived, for all subscribers:

1. candidates: the subscriptions on that table (bindings are expanded to concrete tables at
   subscribe time, as Supabase does) whose ``event`` matches;
2. filters, evaluated in Python with Postgres semantics (:mod:`harmony_lab.filters`), with the rare
   cases Python cannot decide sent to Postgres in one batched query;
3. per role: tables without a primary key → ``Error 400``; a role that may not SELECT the key →
   ``Error 401``; with RLS enabled (INSERT/UPDATE, roles without BYPASSRLS) one visibility query per
   distinct ``(role, claims)`` for all rows of the batch (:func:`.rls.visible_rows`). Like Supabase,
   the check looks the row up by primary key when the change is processed, so a row deleted or
   changed again in the meantime is judged by its current state (or hidden if gone);
4. one ``data`` object per ``(role, select)`` shape (:func:`.payloads.build_data`), shared by every
   subscriber with that shape, handed over with :meth:`Subscriber.deliver` — one call per change per
   subscriber, ``ids`` listing all of its matching bindings.

Reads of a row's current state (the RLS check, TOAST fill) first wait until the batch's transactions
are visible to new snapshots: Postgres sends a commit to logical decoding once its WAL is flushed,
*before* the committing backend leaves the proc array, so a read made right away — easily, on a
loaded machine — does not see the row yet and the change was hidden as if RLS had refused it
(:func:`xid_running`, one ``pg_current_snapshot()`` per such batch; normally no wait at all).

UPDATEs with unchanged TOAST values: values come from the old image under REPLICA IDENTITY FULL,
otherwise the hub reads the current values of those columns by primary key (one query per such
change) — so ``record`` is complete, unlike Supabase, which leaves such columns out. If the row is
gone by then, the columns are left out.

Broadcast from Database: the hub also runs the capture of ``realtime.messages`` inserts (its own
temporary slot on ``supabase_realtime_messages_publication``, as Supabase does; see
:mod:`harmony_lab.server._bfd`) and hands each message to the server's fan-out
(:meth:`attach_broadcasts`, called by the server with ``Registry.broadcast_from_db``).

The hub survives anything a single change or subscriber does: errors are logged with context and the
next change is processed. Capture reconnects are logged (changes committed while disconnected are
lost, as with Supabase's temporary slot); if the capture gives up, the hub starts a new one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

import psycopg

from harmony_lab.capture.types import UNCHANGED_TOAST, Change
from harmony_lab.filters import (
    DEFER,
    Condition,
    FilterError,
    Predicate,
    compile_condition,
    parse_filter,
    pg_text,
)
from harmony_lab.server import rls
from harmony_lab.server._bfd import MESSAGES_PUBLICATION, MessagesCapture, Sink
from harmony_lab.server._supervise import keep_capturing
from harmony_lab.server.payloads import ERROR_400, ERROR_401, build_data, error_data, record_bytes

__all__ = ["ChangesHub", "Subscriber", "parse_binding", "xid_running"]

logger = logging.getLogger(__name__)

_EVENTS: Final = ("INSERT", "UPDATE", "DELETE")
_BATCH_MAX: Final = 500
_QUEUE_MAX: Final = 20_000
_ID_SPACE: Final = 2**27 - 1
_VISIBLE_WAIT_S: Final = 2.0
_UNABLE: Final = "Unable to subscribe to changes with given parameters."
UNABLE_EXCEPTION: Final = _UNABLE + " An exception happened so please check your connect parameters: "
UNABLE_NOT_ENABLED: Final = _UNABLE + " Please check Realtime is enabled for the given connect parameters: "


class Subscriber(Protocol):
    """A joined channel, as the hub sees it (the server's channel object implements this)."""

    @property
    def channel_name(self) -> str:
        """The topic without ``realtime:``."""
        ...

    def deliver(self, ids: list[int], data: dict[str, Any]) -> None:
        """Queue one postgres_changes message; must not block. ``data`` may be shared: don't mutate."""
        ...


# --------------------------------------------------------------------------------------------
# binding parsing (the real server's parse_subscription_params)


class BindingError(Exception):
    """A binding the real server rejects; ``str()`` is its exact ``system`` message."""


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedBinding:
    id: int
    event: str
    schema: str
    table: str
    conditions: tuple[Condition, ...]
    select: tuple[str, ...] | None


def _inspect(value: Any) -> str:
    """Elixir's ``inspect`` of decoded JSON (for messages that quote the client's params)."""
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("#{", "\\#{")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_inspect(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        return "%{" + ", ".join(f"{_inspect(k)} => {_inspect(v)}" for k, v in items) + "}"
    return repr(value)


def _to_log(params: ParsedBinding) -> str:
    """``event: *, schema: public, table: x, filters: [...], select: nil`` (params_to_log)."""
    filters = (
        "["
        + ", ".join(
            "{"
            + ", ".join(
                [
                    _inspect(c.column),
                    _inspect(c.op),
                    _inspect(c.wire_value),
                    "true" if c.negate else "false",
                ]
            )
            + "}"
            for c in params.conditions
        )
        + "]"
    )
    select = "nil" if params.select is None else _inspect(list(params.select))
    return (
        f"event: {params.event}, schema: {params.schema}, table: {params.table}, "
        f"filters: {filters}, select: {select}"
    )


def _action(raw: Mapping[str, Any]) -> str:
    event = raw.get("event")
    if isinstance(event, str) and event.upper() in _EVENTS:
        return event.upper()
    return "*"


def parse_binding(raw: Mapping[str, Any]) -> ParsedBinding:
    """Parse one ``postgres_changes`` binding like Supabase; raises :class:`BindingError`."""
    if not isinstance(raw, Mapping):
        raise BindingError(
            "No subscription params provided. Please provide at least a `schema` or `table` to subscribe "
            f"to: {_inspect(raw)}"
        )
    event = _action(raw)
    select: tuple[str, ...] | None = None
    if "select" in raw:
        sel = raw["select"]
        if isinstance(sel, str):
            raise BindingError(
                "Error parsing `select` params: expected a list of column name strings, "
                'e.g. select: ["col1", "col2"]'
            )
        if isinstance(sel, list):
            names = tuple(s for s in sel if isinstance(s, str))
            select = names or None
    schema, table, filt = raw.get("schema"), raw.get("table"), raw.get("filter")
    has = {k: k in raw for k in ("schema", "table", "filter")}
    conditions: tuple[Condition, ...] = ()
    if (
        has["schema"]
        and has["table"]
        and has["filter"]
        and all(isinstance(v, str) for v in (schema, table, filt))
    ):
        try:
            conditions = parse_filter(filt)
        except FilterError as exc:
            if exc.stage == "parse":
                raise BindingError(f"Error parsing `filter` params: {exc.reason}") from exc
            # a check-stage problem: the real server's trigger raises it inside Postgres
            raise _CheckStageError(exc.reason, event, str(schema), str(table), filt, select) from exc
    elif (
        has["schema"]
        and has["table"]
        and not has["filter"]
        and isinstance(schema, str)
        and isinstance(table, str)
    ):
        pass
    elif has["schema"] and not has["table"] and not has["filter"] and isinstance(schema, str):
        table = "*"
    elif has["table"] and not has["schema"] and not has["filter"] and isinstance(table, str):
        schema = "public"
    elif "user_token" in raw or "auth_token" in raw:
        raise BindingError(
            "No subscription params provided. Please provide at least a `schema` or `table` to subscribe "
            "to: <redacted>"
        )
    else:
        raise BindingError(
            "No subscription params provided. Please provide at least a `schema` or `table` to subscribe "
            f"to: {_inspect(dict(raw))}"
        )
    assert isinstance(schema, str)
    assert isinstance(table, str)
    if select is not None and (schema == "*" or table == "*"):
        raise BindingError(
            "Column selection is not supported for wildcard subscriptions. Provide an explicit schema and "
            "table name."
        )
    return ParsedBinding(ChangesHub.binding_id(raw), event, schema, table, conditions, select)


class _CheckStageError(BindingError):
    """A filter problem the real server finds in its subscription trigger (message built later)."""

    def __init__(
        self, reason: str, event: str, schema: str, table: str, filt: str, select: tuple[str, ...] | None
    ) -> None:
        self.reason = reason
        self.params_text = (
            f"event: {event}, schema: {schema}, table: {table}, filters: {_inspect(filt)}, "
            f"select: {'nil' if select is None else _inspect(list(select))}"
        )
        super().__init__(
            f"{UNABLE_EXCEPTION}[{self.params_text}]. Exception: ERROR P0001 (raise_exception) {reason}"
        )


# --------------------------------------------------------------------------------------------
# state


@dataclasses.dataclass(slots=True)
class _Filter:
    condition: Condition
    column: str
    regtype: str
    predicate: Predicate
    key: tuple[Any, ...] = ()
    """Identifies identical conditions on the same column type: evaluated once per change."""

    def __post_init__(self) -> None:
        c = self.condition
        self.key = (c.column, c.op, c.wire_value, c.negate, self.regtype)


@dataclasses.dataclass(slots=True)
class _Sub:
    """One binding of one subscriber on one concrete table."""

    binding_id: int
    event: str
    oid: int
    filters: list[_Filter]
    select: tuple[str, ...] | None


@dataclasses.dataclass(slots=True)
class _SubscriberState:
    subscriber: Subscriber
    role: str
    claims_json: str
    subs: list[_Sub]
    raw_bindings: list[dict[str, Any]]


@dataclasses.dataclass(slots=True)
class _Entry:
    """A subscriber's bindings on one table, by the operation they want."""

    key: int
    state: _SubscriberState
    by_op: dict[str, list[_Sub]]


@dataclasses.dataclass(slots=True)
class _Item:
    """One change of a batch on its way through the stages of :meth:`ChangesHub._process`."""

    change: Change
    hits: list[tuple[_Entry, list[_Sub]]]
    """The subscriber entries on the change's table that want its operation, with those bindings."""
    table: rls.TableInfo | None = None
    """Set by the prepare stage (items whose table vanished are dropped there)."""
    matches: dict[int, list[int]] = dataclasses.field(default_factory=dict)
    """Subscriber key → the ids of its bindings that match."""
    errors: dict[int, str] = dataclasses.field(default_factory=dict)
    """Subscriber key → the 400/401 error it gets instead of the record."""
    hidden: set[int] = dataclasses.field(default_factory=set)
    """Subscriber keys RLS does not let see the row."""

    @property
    def table_info(self) -> rls.TableInfo:
        if self.table is None:
            raise RuntimeError("the prepare stage has not run for this change")
        return self.table

    def reads_rows(self, table: rls.TableInfo) -> bool:
        """Whether processing reads the row's current state (TOAST fill or an RLS check)."""
        change = self.change
        if change.op == "UPDATE" and change.unchanged_toast:
            return True
        return (
            change.op != "DELETE"
            and table.rls
            and any(not table.bypass.get(e.state.role, False) for e, _ in self.hits)
        )


_MISSING: Final = object()


class ChangesHub:
    """Fan out captured row changes to ``postgres_changes`` subscribers (see the module docstring).

    >>> hub = ChangesHub(dsn)                                            # doctest: +SKIP
    >>> await hub.start()                                                # doctest: +SKIP
    >>> err = await hub.subscribe(channel, bindings, claims)             # None = subscribed
    """

    def __init__(
        self,
        dsn: str,
        *,
        publication: str = "supabase_realtime",
        max_record_bytes: int = 1_048_576,
        broadcast_from_db: bool = True,
        max_broadcast_bytes: int = 256 * 1024,
    ) -> None:
        if not isinstance(dsn, str) or not dsn:
            raise TypeError(f"dsn must be a libpq connection string or URL, got {dsn!r}")
        if not isinstance(max_record_bytes, int) or max_record_bytes <= 0:
            raise ValueError(f"max_record_bytes must be a positive int, got {max_record_bytes!r}")
        self._dsn = dsn
        self._publication = publication
        self._max_record_bytes = max_record_bytes
        self._subscribers: dict[int, _SubscriberState] = {}
        self._by_table: dict[int, dict[int, _Entry]] = {}
        self._queue: asyncio.Queue[Change] = asyncio.Queue(_QUEUE_MAX)
        self._stream: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._work: psycopg.AsyncConnection[Any] | None = None
        self._sub_conn: psycopg.AsyncConnection[Any] | None = None
        self._sub_lock = asyncio.Lock()
        self._started = False
        self._closed = False
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "changes",
                "changes_matched",
                "deliveries",
                "deliver_errors",
                "batches",
                "rls_queries",
                "sql_filter_checks",
                "toast_fetches",
                "errors",
                "capture_restarts",
                "capture_reconnects",
                "visibility_waits",
            ),
            0,
        )
        self._process_s = 0.0
        self._max_batch = 0
        self._last_latency_ms: float | None = None
        # Broadcast from Database: realtime.messages inserts, on their own slot (see server._bfd)
        self._bfd: MessagesCapture | None = None
        self._bfd_wanted = broadcast_from_db
        self._bfd_max_bytes = max_broadcast_bytes
        self._bfd_sink: Sink | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the change capture; returns when it is live (changes committed from now on count)."""
        if self._started:
            raise RuntimeError("ChangesHub.start() was already called; create a new hub to restart")
        self._started = True
        self._work = await rls.connect(self._dsn, application_name="harmony_lab_changes")
        self._sub_conn = await rls.connect(self._dsn, application_name="harmony_lab_subscribe")
        self._stream = await self._open_stream()
        await self._start_bfd()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._capture_loop(), name="changes-hub-capture"),
            loop.create_task(self._process_loop(), name="changes-hub-process"),
        ]
        logger.info("postgres_changes hub started on publication %r", self._publication)

    async def close(self) -> None:
        """The old spelling of :meth:`aclose` (it warns)."""
        warnings.warn("ChangesHub.close() is now `await hub.aclose()`", DeprecationWarning, stacklevel=2)
        await self.aclose()

    async def aclose(self) -> None:
        """Stop capture and processing and close the connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)  # a cancellation of close() itself still propagates
        for task in self._tasks:
            if not task.cancelled() and (exc := task.exception()) is not None:
                logger.error("postgres_changes: task %s had failed", task.get_name(), exc_info=exc)
        if self._stream is not None:
            await self._stream.aclose()
        if self._bfd is not None:
            await self._bfd.aclose()
        for conn in (self._work, self._sub_conn):
            if conn is not None:
                await conn.close()
        self._subscribers.clear()
        self._by_table.clear()
        logger.info("postgres_changes hub closed")

    async def _start_bfd(self) -> None:
        """Start the Broadcast from Database capture when the database has the messages publication."""
        if not self._bfd_wanted:
            return
        assert self._sub_conn is not None
        if not await MessagesCapture.available(self._sub_conn):
            logger.warning(
                "publication %r is missing (the realtime schema is not applied): "
                "Broadcast from Database is off",
                MESSAGES_PUBLICATION,
            )
            return
        self._bfd = MessagesCapture(self._dsn, max_payload_bytes=self._bfd_max_bytes)
        if self._bfd_sink is not None:
            self._bfd.attach(self._bfd_sink)
        await self._bfd.start()

    def attach_broadcasts(self, sink: Sink) -> None:
        """Hand Broadcast from Database messages to ``sink`` (the server's registry fan-out)."""
        self._bfd_sink = sink
        if self._bfd is not None:
            self._bfd.attach(sink)

    async def _open_stream(self) -> Any:
        from harmony_lab.capture.stream import ChangeStream

        stream = ChangeStream(self._dsn, publication=self._publication, on_reconnect=self._on_reconnect)
        await stream.start()
        return stream

    def _on_reconnect(self, reason: str) -> None:
        self._counts["capture_reconnects"] += 1
        logger.warning(
            "postgres_changes capture reconnected after %s; changes committed meanwhile were not seen", reason
        )

    async def _capture_loop(self) -> None:
        await keep_capturing(
            "postgres_changes capture",
            stream=lambda: self._stream,
            put=self._queue.put,
            reopen=self._reopen,
            closed=lambda: self._closed,
        )

    async def _reopen(self) -> None:
        self._stream = await self._open_stream()
        self._counts["capture_restarts"] += 1

    async def _process_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < _BATCH_MAX and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            t0 = time.perf_counter()
            self._counts["batches"] += 1
            self._counts["changes"] += len(batch)
            try:
                await self._process(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(
                    "postgres_changes: a batch of %d changes failed; processing them one by one", len(batch)
                )
                for change in batch if len(batch) > 1 else ():
                    try:
                        await self._process([change])
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        self._counts["errors"] += 1
                        logger.exception(
                            "postgres_changes: dropping the %s on %s.%s at LSN %X (commit %d µs); continuing",
                            change.op,
                            change.schema,
                            change.table,
                            change.lsn,
                            change.commit_ts_us,
                        )
                if len(batch) == 1:
                    self._counts["errors"] += 1
            self._process_s += time.perf_counter() - t0
            self._max_batch = max(self._max_batch, len(batch))

    # -- API ---------------------------------------------------------------------------------

    @staticmethod
    def binding_id(binding: Mapping[str, Any]) -> int:
        """Deterministic id in ``1..2**27-1`` (identical maps → identical ids, in any process)."""
        items = {k: v for k, v in binding.items() if k != "id"} if isinstance(binding, Mapping) else binding
        canonical = json.dumps(items, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        digest = hashlib.sha256(canonical.encode()).digest()
        return int.from_bytes(digest[:8], "big") % _ID_SPACE + 1

    async def subscribe(
        self, subscriber: Subscriber, bindings: list[dict[str, Any]], claims: Mapping[str, Any]
    ) -> str | None:
        """Validate and register ``bindings`` for ``subscriber`` (replacing earlier ones).

        Returns ``None`` on success, else the real server's ``system`` error message (nothing is
        registered then: all bindings or none).
        """
        try:
            state = await self._build_state(subscriber, bindings, claims)
        except BindingError as exc:
            return str(exc)
        except psycopg.Error as exc:
            logger.exception("postgres_changes subscribe for %r failed in Postgres", _name(subscriber))
            return f"{UNABLE_EXCEPTION}[]. Exception: {rls.pg_error_message(exc)}"
        self._register(subscriber, state)
        return None

    async def update_claims(self, subscriber: Subscriber, claims: Mapping[str, Any]) -> str | None:
        """Re-check the subscriber's bindings with new claims (``access_token``); same convention.

        On error the previous claims stay in force (the real server's insert is rolled back).
        """
        current = self._subscribers.get(id(subscriber))
        if current is None:
            return None
        return await self.subscribe(subscriber, current.raw_bindings, claims)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget the subscriber (idempotent)."""
        state = self._subscribers.pop(id(subscriber), None)
        if state is None:
            return
        for oid in {sub.oid for sub in state.subs}:
            entries = self._by_table.get(oid)
            if entries is not None:
                entries.pop(id(subscriber), None)
                if not entries:
                    del self._by_table[oid]

    @property
    def stats(self) -> dict[str, Any]:
        return {
            **self._counts,
            "subscribers": len(self._subscribers),
            "subscriptions": sum(len(s.subs) for s in self._subscribers.values()),
            "tables": len(self._by_table),
            "queued": self._queue.qsize(),
            "last_latency_ms": self._last_latency_ms,
            "process_s": round(self._process_s, 3),
            "max_batch": self._max_batch,
            "capture": self._stream.stats if self._stream is not None else None,
            "broadcast_from_db": self._bfd.stats if self._bfd is not None else None,
        }

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._started else "not started")
        return (
            f"<ChangesHub {self._publication!r} {state} subscribers={len(self._subscribers)} "
            f"changes={self._counts['changes']} deliveries={self._counts['deliveries']}>"
        )

    # -- subscribing -------------------------------------------------------------------------

    async def _build_state(
        self, subscriber: Subscriber, bindings: Sequence[Mapping[str, Any]], claims: Mapping[str, Any]
    ) -> _SubscriberState:
        if not isinstance(bindings, (list, tuple)):
            raise BindingError(f"bindings must be a list of postgres_changes maps, got {_inspect(bindings)}")
        parsed: list[tuple[Mapping[str, Any], ParsedBinding | _CheckStageError]] = []
        for raw in bindings:
            if raw is None:
                continue  # the real server drops nil entries
            try:
                parsed.append((raw, parse_binding(raw)))
            except _CheckStageError as exc:
                parsed.append((raw, exc))
        conn = self._sub_conn
        if conn is None:
            raise RuntimeError("ChangesHub.subscribe() before start()")
        claims_json = json.dumps(dict(claims), separators=(",", ":"), ensure_ascii=False, default=str)
        subs: list[_Sub] = []
        role: str | None = None
        for _raw, item in parsed:
            if isinstance(item, _CheckStageError):
                raise item
            p = item
            # the lock is taken per binding, not per join: a join with many bindings (each checked in
            # the database) cannot hold everyone else's joins back until all of its own are checked
            async with self._sub_lock:
                tables = await rls.publication_tables(conn, self._publication, p.schema, p.table)
                if not tables:
                    raise BindingError(f"{UNABLE_NOT_ENABLED}[{_to_log(p)}]")
                try:
                    if role is None:
                        role = await rls.check_role(conn, claims.get("role"))
                    infos = await rls.load_tables(conn, [oid for oid, _s, _t in tables], [role])
                    for oid, _schema, _table in tables:
                        info = infos.get(oid)
                        if info is None:
                            continue  # dropped meanwhile
                        checked = await rls.check_subscription(conn, info, role, p.conditions, p.select)
                        filters = [
                            _Filter(
                                c.condition,
                                c.condition.column,
                                c.column.ctype.regtype,
                                compile_condition(c.condition, c.column.ctype, c.canonical),
                            )
                            for c in checked
                        ]
                        subs.append(_Sub(p.id, p.event, oid, filters, p.select))
                except rls.CheckError as exc:
                    raise BindingError(f"{UNABLE_EXCEPTION}[{_to_log(p)}]. Exception: {exc}") from exc
        raw_bindings = [dict(b) for b in bindings if b is not None]
        return _SubscriberState(
            subscriber, role or str(claims.get("role") or ""), claims_json, subs, raw_bindings
        )

    def _register(self, subscriber: Subscriber, state: _SubscriberState) -> None:
        self.unsubscribe(subscriber)
        key = id(subscriber)
        self._subscribers[key] = state
        for oid in {sub.oid for sub in state.subs}:
            on_table = [s for s in state.subs if s.oid == oid]
            by_op = {op: [s for s in on_table if s.event in ("*", op)] for op in _EVENTS}
            self._by_table.setdefault(oid, {})[key] = _Entry(key, state, by_op)

    # -- processing --------------------------------------------------------------------------

    async def _process(self, batch: list[Change]) -> None:
        """Run one batch through the stages; each stage narrows or annotates the batch's items."""
        items = self._candidates(batch)
        if not items:
            return
        conn = await self._work_conn()
        items = await self._prepare(conn, items)
        await self._filter(conn, items)
        await self._apply_rls(conn, items)
        self._deliver_batch(items)

    def _candidates(self, batch: list[Change]) -> list[_Item]:
        """Stage 1: the changes some subscription wants, with the subscriptions that want them."""
        items: list[_Item] = []
        for change in batch:
            if change.op not in _EVENTS:
                continue  # TRUNCATE is never emitted
            entries = self._by_table.get(change.relation_id)
            if not entries:
                continue
            op = change.op
            hits = [(e, subs) for e in entries.values() if (subs := e.by_op[op])]
            if hits:
                items.append(_Item(change, hits))
        return items

    async def _prepare(self, conn: psycopg.AsyncConnection[Any], items: list[_Item]) -> list[_Item]:
        """Stage 2: table metadata; wait for visibility where current rows are read; fill TOAST."""
        oids = {item.change.relation_id for item in items}
        roles = {e.state.role for item in items for e, _ in item.hits}
        tables = await rls.load_tables(conn, oids, roles)
        reads = {
            item.change.xid
            for item in items
            if (table := tables.get(item.change.relation_id)) is not None and item.reads_rows(table)
        }
        if reads:
            await self._await_visible(conn, reads)
        prepared: list[_Item] = []
        for item in items:
            change = item.change
            table = tables.get(change.relation_id)
            if table is None:
                logger.warning(
                    "postgres_changes: %s.%s vanished before delivery", change.schema, change.table
                )
                continue
            item.table = table
            if change.op == "UPDATE" and change.unchanged_toast:
                item.change = await self._fill_toast(conn, change, table)
            prepared.append(item)
        return prepared

    async def _filter(self, conn: psycopg.AsyncConnection[Any], items: list[_Item]) -> None:
        """Stage 3: 400/401 errors per role, then filters (Python first; the undecided in one SQL batch)."""
        deferred: list[tuple[_Item, int, int, rls.SqlCheck]] = []  # (item, key, binding id, check)
        pending: set[tuple[int, int, int]] = set()  # (item position, key, binding id) waiting for SQL
        for pos, item in enumerate(items):
            change, table = item.change, item.table_info
            role_error: dict[str, str | None] = {}
            memo: dict[tuple[Any, ...], Any] = {}
            for entry, subs in item.hits:
                key = entry.key
                if change.op != "DELETE":
                    role = entry.state.role
                    err = role_error.get(role, _MISSING)
                    if err is _MISSING:
                        err = None
                        if not table.pk:
                            err = ERROR_400
                        elif not table.can_select_pk(role):
                            err = ERROR_401
                        role_error[role] = err
                    if err is not None:
                        item.errors[key] = str(err)
                        item.matches[key] = _dedupe(s.binding_id for s in subs)
                        continue
                matched: list[int] = []
                for sub in subs:
                    if not sub.filters:
                        if sub.binding_id not in matched:
                            matched.append(sub.binding_id)
                        continue
                    try:
                        verdict = self._evaluate(change, sub, memo)
                    except Exception:
                        self._counts["errors"] += 1
                        logger.exception(
                            "postgres_changes: filter evaluation failed for %s on %s.%s",
                            _name(entry.state.subscriber),
                            change.schema,
                            change.table,
                        )
                        continue
                    if verdict is True:
                        if sub.binding_id not in matched:
                            matched.append(sub.binding_id)
                    elif isinstance(verdict, list):
                        pending.add((pos, key, sub.binding_id))
                        for check in verdict:
                            deferred.append((item, key, sub.binding_id, check))
                if matched:
                    item.matches[key] = matched
        if not deferred:
            return
        self._counts["sql_filter_checks"] += len(deferred)
        results = await rls.evaluate_sql(conn, [d[3] for d in deferred])
        position = {id(item): pos for pos, item in enumerate(items)}
        failed = {
            (position[id(item)], key, bid)
            for (item, key, bid, _c), ok in zip(deferred, results, strict=True)
            if not ok
        }
        for pos, key, bid in sorted(pending - failed):
            ids = items[pos].matches.setdefault(key, [])
            if bid not in ids:
                ids.append(bid)

    async def _apply_rls(self, conn: psycopg.AsyncConnection[Any], items: list[_Item]) -> None:
        """Stage 4: per table, per ``(role, claims)`` group, one visibility query for all its rows."""
        # table oid → group (role, claims) → list of (item position, subscriber key)
        todo: dict[int, dict[tuple[str, str], list[tuple[int, int]]]] = {}
        for pos, item in enumerate(items):
            table = item.table_info
            if item.change.op == "DELETE" or not table.rls:
                continue
            for entry, _subs in item.hits:
                key = entry.key
                state = entry.state
                if key not in item.matches or key in item.errors:
                    continue
                if table.bypass.get(state.role, False):
                    continue
                todo.setdefault(table.oid, {}).setdefault((state.role, state.claims_json), []).append(
                    (pos, key)
                )
        for oid, groups in todo.items():
            positions = sorted({pos for members in groups.values() for pos, _ in members})
            table = items[positions[0]].table_info
            rows = [dict(items[p].change.new or {}) for p in positions]
            row_of = {p: n for n, p in enumerate(positions)}
            group_keys = list(groups)
            self._counts["rls_queries"] += len(group_keys)
            try:
                visible = await rls.visible_rows(conn, table, group_keys, rows)
            except psycopg.Error:
                logger.exception(
                    "postgres_changes: RLS check on table oid %d failed; hiding the changes", oid
                )
                visible = [set() for _ in group_keys]
            for group, seen in zip(group_keys, visible, strict=True):
                for pos, key in groups[group]:
                    if row_of[pos] not in seen:
                        items[pos].hidden.add(key)

    def _deliver_batch(self, items: list[_Item]) -> None:
        """Stage 5: one ``data`` per ``(role, select)`` shape per change, handed to each subscriber."""
        now_us = time.time_ns() // 1000
        for item in items:
            if not item.matches:
                continue
            change, table = item.change, item.table_info
            self._counts["changes_matched"] += 1
            self._last_latency_ms = max(0.0, (now_us - change.commit_ts_us) / 1000)
            shapes: dict[tuple[Any, ...], dict[str, Any]] = {}
            oversize: bool | None = None
            for entry, subs in item.hits:
                key = entry.key
                ids = item.matches.get(key)
                if not ids or key in item.hidden:
                    continue
                state = entry.state
                try:
                    err = item.errors.get(key)
                    if err is not None:
                        shape_key: tuple[Any, ...] = ("error", err)
                        if shape_key not in shapes:
                            shapes[shape_key] = error_data(change, err)
                        self._deliver(state, ids, shapes[shape_key])
                        continue
                    if oversize is None:
                        oversize = record_bytes(change) > self._max_record_bytes
                    for select, group_ids in _by_select(subs, ids).items():
                        shape_key = (state.role, select)
                        data = shapes.get(shape_key)
                        if data is None:
                            data = build_data(change, table, state.role, select, oversize=oversize)
                            shapes[shape_key] = data
                        self._deliver(state, group_ids, data)
                except Exception:
                    self._counts["errors"] += 1
                    logger.exception(
                        "postgres_changes: building the %s of %s.%s for %s failed",
                        change.op,
                        change.schema,
                        change.table,
                        _name(state.subscriber),
                    )

    def _evaluate(
        self, change: Change, sub: _Sub, memo: dict[tuple[Any, ...], Any]
    ) -> bool | list[rls.SqlCheck]:
        """``True``/``False``, or the conditions Postgres must decide (all others passed)."""
        if not sub.filters:
            return True
        images: list[Mapping[str, Any]] = [change.old or {}] if change.op == "DELETE" else [change.new or {}]
        for image in images:
            checks: list[rls.SqlCheck] = []
            ok = True
            for f in sub.filters:
                if f.column not in image or image[f.column] is UNCHANGED_TOAST:
                    ok = False  # fail closed: the filter column is not in this image
                    break
                value = image[f.column]
                r = memo.get(f.key, _MISSING)
                if r is _MISSING:
                    r = memo[f.key] = f.predicate(value)
                if r is DEFER:
                    checks.append(rls.SqlCheck(f.condition, f.regtype, pg_text(value)))
                elif r is not True:
                    ok = False
                    break
            if ok:
                return checks or True
        return False

    async def _fill_toast(
        self, conn: psycopg.AsyncConnection[Any], change: Change, table: rls.TableInfo
    ) -> Change:
        missing = sorted(change.unchanged_toast)
        new = dict(change.new or {})
        old = change.old or {}
        for name in list(missing):
            if name in old and old[name] is not UNCHANGED_TOAST:
                new[name] = old[name]
                missing.remove(name)
        if missing:
            self._counts["toast_fetches"] += 1
            try:
                current = await rls.fetch_columns(conn, table, new, missing)
            except psycopg.Error:
                logger.exception(
                    "postgres_changes: reading unchanged TOAST columns %s of %s.%s failed",
                    missing,
                    change.schema,
                    change.table,
                )
                current = None
            for name in missing:
                if current is not None and name in current:
                    new[name] = current[name]
                else:
                    new.pop(name, None)
        return dataclasses.replace(change, new=new)

    async def _await_visible(self, conn: psycopg.AsyncConnection[Any], xids: set[int]) -> None:
        """Wait (briefly) until no transaction in ``xids`` is still running for a new snapshot."""
        deadline = time.monotonic() + _VISIBLE_WAIT_S
        delay = 0.001
        while True:
            cur = await conn.execute("select pg_current_snapshot()::text")
            row = await cur.fetchone()
            snapshot = str(row[0]) if row else ""
            running = [x for x in xids if xid_running(snapshot, x)]
            if not running:
                return
            if time.monotonic() >= deadline:
                logger.warning(
                    "postgres_changes: transactions %s still not visible after %.1f s; reading anyway",
                    running,
                    _VISIBLE_WAIT_S,
                )
                return
            self._counts["visibility_waits"] += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _deliver(self, state: _SubscriberState, ids: list[int], data: dict[str, Any]) -> None:
        try:
            state.subscriber.deliver(list(ids), data)
            self._counts["deliveries"] += 1
        except Exception:
            self._counts["deliver_errors"] += 1
            logger.exception("postgres_changes: deliver() of %s raised; continuing", _name(state.subscriber))

    async def _work_conn(self) -> psycopg.AsyncConnection[Any]:
        conn = self._work
        if conn is None or conn.closed or conn.broken:
            logger.warning("postgres_changes: reconnecting the processing connection")
            conn = self._work = await rls.connect(self._dsn, application_name="harmony_lab_changes")
        return conn


def xid_running(snapshot: str, xid: int) -> bool:
    """Whether the 32-bit ``xid`` (as pgoutput reports it) is still running in ``snapshot``, the text of
    a ``pg_snapshot`` (``xmin:xmax:xip,...``, 64-bit ids): at or past ``xmax``, or listed in ``xip``.

    The 64-bit id is the one within 2**31 of ``xmax`` with the same low 32 bits.
    """
    xmin_text, xmax_text, xip_text = snapshot.split(":")
    xmin, xmax = int(xmin_text), int(xmax_text)
    full = (xmax & ~0xFFFFFFFF) | (xid & 0xFFFFFFFF)
    if full > xmax + 2**31:
        full -= 2**32
    elif full < xmax - 2**31:
        full += 2**32
    if full >= xmax:
        return True
    if full < xmin:
        return False
    return str(full) in xip_text.split(",")


def _by_select(subs: list[_Sub], ids: list[int]) -> dict[tuple[str, ...] | None, list[int]]:
    """The matching binding ids grouped by their ``select`` (one payload shape per group)."""
    first = subs[0].select
    if len(subs) == 1 or all(s.select == first for s in subs):
        return {first: ids}
    groups: dict[tuple[str, ...] | None, list[int]] = {}
    for sub in subs:
        if sub.binding_id in ids:
            group = groups.setdefault(sub.select, [])
            if sub.binding_id not in group:
                group.append(sub.binding_id)
    return groups


def _dedupe(ids: Any) -> list[int]:
    out: list[int] = []
    for i in ids:
        if i not in out:
            out.append(i)
    return out


def _name(subscriber: Any) -> str:
    try:
        return repr(subscriber.channel_name)
    except Exception:
        return repr(subscriber)
