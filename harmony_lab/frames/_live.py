"""LiveFrame: one table's change stream as an always-current, typed pandas DataFrame."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import itertools
import json
import logging
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import pyarrow as pa

from harmony_lab._feed import EventFeed, is_table_source, pump, source_kind
from harmony_lab._strict import strict_kwargs
from harmony_lab.events import EventKind, RealtimeEvent
from harmony_lab.filters import Condition, Filter
from harmony_lab.frames import _broadcast, _dtypes
from harmony_lab.frames._at import frame_at
from harmony_lab.frames._filter import RowFilter, compile_filter
from harmony_lab.frames._rate import RateMeter

if TYPE_CHECKING:
    from harmony_lab.manager import Backfill
    from harmony_lab.widgets import LiveTableWidget

logger = logging.getLogger(__name__)

__all__ = ["FrameChange", "LiveFrame"]

ChangeOp = Literal["insert", "update", "delete", "evict", "schema", "reset"]
_OPS = ("INSERT", "UPDATE", "DELETE")
_MODES = ("upsert", "append")
_COUNTERS = (
    "events",  # change events applied to this frame (live and backfilled)
    "inserts",  # live INSERTs that created a row (append mode: INSERT events logged)
    "updates",  # live UPDATEs applied (append mode: UPDATE events logged)
    "deletes",  # live DELETEs that removed a row (append mode: DELETE events logged)
    "key_changes",  # UPDATEs whose primary key changed
    "unknown_deletes",  # DELETEs of keys the frame did not hold (no error)
    "duplicates",  # live INSERTs of a key already held (applied as an overwrite)
    "backfilled",  # backfilled events applied (not counted as inserts/updates/deletes)
    "snapshot",  # rows loaded from the table when the frame started
    "suppressed",  # events the manager marked suppressed (applied: the data did change)
    "evicted",  # rows dropped because of max_rows (oldest first)
    "unkeyed",  # events without any primary-key information
    "ignored",  # events for another table, kind, op or not matching the filter
    "errors",  # events that carried server errors (applied as far as they go)
    "callback_errors",  # on_change callbacks that raised (logged)
)
_APPEND_META = {"_op": "text", "_commit_ts": "timestamptz"}
_STATIC_ROWS = 20
_SNAPSHOT_CAP = 100_000  # rows a frame with max_rows=None loads at most when it starts
_CHANNEL_STATUSES = ("disconnected", "connecting", "connected", "reconnecting", "error")
_sub_counter = itertools.count(1)


@dataclasses.dataclass(frozen=True, slots=True)
class FrameChange:
    """What one applied event did to a frame; passed to ``on_change`` callbacks.

    ``op``: ``insert``, ``update``, ``delete``, ``evict`` (dropped by ``max_rows``), ``schema`` (new
    columns or types; ``columns`` lists them) or ``reset`` (``clear()``). ``rid`` is the frame's
    internal row id (stable for a row's life, also across key-changing updates), ``key`` the primary
    key tuple (``old_key`` the previous one for a key-changing update).
    """

    op: ChangeOp
    rid: int | None = None
    key: tuple[Any, ...] | None = None
    old_key: tuple[Any, ...] | None = None
    event: RealtimeEvent | None = None
    columns: tuple[str, ...] = ()


class _Row:
    __slots__ = ("key", "values")

    def __init__(self, key: tuple[Any, ...], values: dict[str, Any]) -> None:
        self.key = key
        self.values = values


def _freeze(key: tuple[Any, ...]) -> tuple[Any, ...]:
    try:
        hash(key)
    except TypeError:
        return tuple(
            json.dumps(v, sort_keys=True, default=str) if isinstance(v, dict | list) else v for v in key
        )
    return key


class LiveFrame:
    """A live, typed view of one table, fed by change events.

    ``source`` is one of:

    * a ``RealtimeConnectionManager``: the frame subscribes itself (``subscribe_to_table``) under a
      channel name of its own (``name``, default ``liveframe-<table>-<n>``);
    * anything else with ``add_listener(fn)`` (an event source): every event it observes;
    * a replay of a recording, or any async iterable of ``RealtimeEvent``: the frame consumes it;
    * an iterable of ``RealtimeEvent`` (a list): applied at once;
    * ``None``: feed it yourself with :meth:`apply`.

    **Starting.** The constructor is synchronous. When an event loop is running (always the case in a
    Jupyter cell) it schedules the subscription/consumption as a task on that loop and returns at
    once; ``await lf.ready()`` waits until the subscription is confirmed (or the source is being
    read) and re-raises its failure; for a manager, confirmed means the channel is ``connected`` (the
    manager keeps retrying a failed first attempt, and ``ready()`` waits for it; it also returns when
    the channel ends in ``error``, see :attr:`status`). Outside a running loop nothing starts until
    ``await lf.ready()``.
    ``await lf.aclose()`` (or ``async with LiveFrame(...) as lf``) unsubscribes and stops.

    **The table as it is.** With a manager source (``snapshot=True``, the default), once the
    subscription is confirmed the frame loads the table's current rows — the newest ``max_rows`` by
    ``order_by`` (default ``created_at``/``inserted_at``, else the first timestamp column, else the key),
    filtered like the subscription, read as the subscriber (the token's role and claims, ``anon`` when
    unknown) so row level security hides exactly what the stream would — and ``ready()`` returns after
    that. The read starts after the subscription is live, so nothing committed in between is lost; a
    row the stream changed meanwhile keeps its live version, so nothing is doubled or stale. The read
    goes through the manager's ``dsn`` (one consistent snapshot) or PostgREST for
    ``RealtimeConnectionManager.from_supabase``; without either the frame logs one warning and shows
    changes from then on. The table's key (primary key, else replica-identity index) comes with it.
    :attr:`snapshot_info` says what was loaded (or why not).

    **Semantics.** ``mode="upsert"`` keeps one row per primary key: the key comes from ``key`` (a
    column name or names) or, when ``key`` is None, from the events' ``pk`` (falling back to an ``id``
    column). INSERT adds (an INSERT of a held key overwrites it, counted in ``duplicates``), UPDATE
    merges the new values into the row (a changed key moves the row; an unseen key adds it), DELETE
    removes (unknown keys are counted, never an error). ``mode="append"`` keeps every event as a row of
    a rolling log with ``_op`` and ``_commit_ts`` columns in front. At most ``max_rows`` rows are kept;
    the oldest-inserted go first (``None``: unbounded). New columns may appear at any time: earlier
    rows read them as missing. Backfilled events are applied but counted only in ``backfilled`` (and a
    backfilled row identical to the held one changes nothing). Suppressed events are applied: the data
    did change, suppression is about notifying a user.

    Each event costs O(row width), independent of the number of rows. The DataFrame (``.df``,
    :meth:`to_pandas`) and Arrow table (:meth:`to_arrow`) are built on demand, typed from the Postgres
    column types (see :mod:`harmony_lab.frames._dtypes`; ``numeric`` becomes ``Float64``), and cached
    until the next change. Rows are in insertion order with a fresh ``RangeIndex``.

    ``filter`` (``"column=op.value"`` or an ``F`` expression, the grammar of
    :mod:`harmony_lab.filters`) goes to the server for a manager source and is evaluated here for
    other sources (DELETEs are not filtered, as on Supabase). ``event`` is ``"*"`` or one of INSERT,
    UPDATE, DELETE.

    **Gaps** (manager source only). ``backfill=Backfill(column="updated_at")`` asks the manager to
    fetch what changed while the channel was down (a dropped connection, a stall, a restart) once it
    is back: inserts, updates and — for ``event="*"`` — deletes arrive as backfilled events, so the
    frame equals the table again without a reload (see :class:`~harmony_lab.manager.Backfill` for
    what ``column`` must be and for ``lookback``; the manager needs ``dsn=`` or
    ``RealtimeConnectionManager.from_supabase``). Without it, a gap shows up as a ``gap`` event on
    the manager and rows changed meanwhile stay stale. A ``key`` given here also goes to the manager
    as the table's ``primary_key``, so its events, the backfill and this frame agree on row identity
    (pass the primary-key column(s); without ``key`` the manager introspects the primary key)::

        lf = LiveFrame(manager, "messages", backfill=Backfill(column="updated_at"))
        await lf.ready()  # connected: events flow

    **Broadcast from Database.** ``via="broadcast", topic="channel:general", private=True`` reads the
    rows from a topic a ``realtime.broadcast_changes`` row trigger sends to, instead of Postgres
    Changes, with the same semantics; give the ``filter`` that selects the topic's rows so the starting
    snapshot matches (see :mod:`harmony_lab.frames._broadcast` for what else differs).

    Apply events on the event loop's thread (callbacks and widgets assume it).
    """

    at = classmethod(frame_at)  # LiveFrame.at(recording, table, instant): the table as it was then

    @strict_kwargs
    def __init__(
        self,
        source: EventFeed | None,
        table: str,
        *,
        key: str | Sequence[str] | None = None,
        mode: str = "upsert",
        max_rows: int | None = 10_000,
        filter: str | Condition | Filter | None = None,
        event: str = "*",
        schema: str = "public",
        name: str | None = None,
        backfill: Backfill | None = None,
        snapshot: bool = True,
        order_by: str | Sequence[str] | None = None,
        rate_window_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        via: str = "postgres_changes",
        topic: str | None = None,
        private: bool = False,
    ) -> None:
        if not isinstance(table, str) or not table:
            raise TypeError(f"table must be a non-empty string such as 'messages'; got {table!r}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {', '.join(map(repr, _MODES))}; got {mode!r}")
        if max_rows is not None and (
            not isinstance(max_rows, int) or isinstance(max_rows, bool) or max_rows <= 0
        ):
            raise ValueError(f"max_rows must be a positive int or None (unbounded); got {max_rows!r}")
        ev = (event or "").upper()
        if ev not in ("*", *_OPS):
            raise ValueError(f"event must be '*', 'INSERT', 'UPDATE' or 'DELETE'; got {event!r}")
        if key is None:
            key_cols: tuple[str, ...] | None = None
        elif isinstance(key, str):
            key_cols = (key,)
        elif isinstance(key, Sequence) and key and all(isinstance(k, str) for k in key):
            key_cols = tuple(key)
        else:
            raise TypeError(f"key must be None, a column name or a sequence of column names; got {key!r}")
        if mode == "append" and key is not None:
            raise ValueError("key has no meaning with mode='append' (every event is its own row); drop it")
        self._row_filter: RowFilter | None = compile_filter(filter) if filter is not None else None
        self.table = table
        self.schema = schema
        self.mode = mode
        self.max_rows = max_rows
        self.filter = str(self._row_filter) if self._row_filter is not None else None
        self.event = ev
        self._key_cols = key_cols
        self._key_given = key_cols is not None
        self._source = source
        self._is_manager = is_table_source(source)
        self._kind = "table" if self._is_manager else source_kind(source, "LiveFrame", iterables=True)
        if backfill is not None:
            from harmony_lab.manager import Backfill  # frames stay importable without the manager

            if not isinstance(backfill, Backfill):
                raise TypeError(
                    "backfill must be None or a harmony_lab.Backfill(column=..., lookback=...); "
                    f"got {type(backfill).__name__}"
                )
            if not self._is_manager:
                raise ValueError(
                    "backfill needs a RealtimeConnectionManager source (it fetches from the database "
                    "what changed during a gap); a replay or hand-fed frame has nothing to fetch from"
                )
        self.backfill = backfill
        # via="broadcast": the rows come from a realtime.broadcast_changes topic (frames._broadcast)
        _broadcast.check_options(via, topic, private, is_manager=self._is_manager, backfill=backfill)
        self.via, self.topic, self.private = via, topic, private
        if not isinstance(snapshot, bool):
            raise TypeError(f"snapshot must be True (load the current rows first) or False; got {snapshot!r}")
        if order_by is not None and not (
            isinstance(order_by, str)
            or (isinstance(order_by, Sequence) and order_by and all(isinstance(c, str) for c in order_by))
        ):
            raise TypeError(f"order_by must be None, a column name or a sequence of names; got {order_by!r}")
        self._snapshot_wanted = snapshot and self._is_manager
        self._order_by = order_by
        self.snapshot_info: dict[str, Any] | None = None
        self._touched: set[tuple[Any, ...]] | None = None
        self.name = name or f"liveframe-{table}-{next(_sub_counter)}"

        self._rows: OrderedDict[int, _Row] = OrderedDict()
        self._index: dict[tuple[Any, ...], int] = {}
        self._next_rid = 0
        self._columns: dict[str, str | None] = dict(_APPEND_META) if mode == "append" else {}
        self._last_columns: tuple[tuple[str, str], ...] | None = None
        self._counters = dict.fromkeys(_COUNTERS, 0)
        self._rate = RateMeter(rate_window_s, clock=clock)
        self._version = 0
        self._df: pd.DataFrame | None = None
        self._df_version = -1
        self._listeners: list[Callable[[FrameChange], Any]] = []
        self._warned_unkeyed = False
        self._status = "idle"
        self._channel_status: str | None = None
        self._channel_reason: str | None = None
        self._channel_attempt = 0
        self._trouble_reported = False
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._unsub_status: Callable[[], Any] | None = None
        self._remove_listener: Callable[[], Any] | None = None
        self._subscribed = False
        self._widget: LiveTableWidget | None = None

        if self._kind == "none":
            self._ready.set()
        elif self._kind == "listener":
            self._remove_listener = source.add_listener(self.apply)
            self._status = "live"
            self._ready.set()
        elif self._kind in ("table", "stream"):
            self._status = "pending"
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                logger.debug("LiveFrame %s: no running loop; starts on `await ready()`", self.table)
            else:
                self._task = loop.create_task(self._run(), name=f"LiveFrame[{self.schema}.{self.table}]")
        else:
            for e in source:
                self.apply(e)
            self._status = "finished"
            self._ready.set()

    # ------------------------------------------------------------------ lifecycle

    async def _run(self) -> None:
        src = self._source
        try:
            if self._is_manager:
                self._status = "subscribing"
                self._subscribed = True
                if callable(getattr(src, "on_status_change", None)):
                    self._unsub_status = src.on_status_change(self.name, self._on_channel_status)
                extra: dict[str, Any] = {}
                if self.backfill is not None:
                    extra["backfill"] = self.backfill
                if self._key_given:
                    extra["primary_key"] = self._key_cols
                if self._snapshot_wanted:
                    self._touched = set()  # keys changed live before the snapshot is merged
                subscribe = (
                    _broadcast.subscriber(self, src) if self.via == "broadcast" else src.subscribe_to_table
                )
                state = await subscribe(
                    self.name,
                    self.table,
                    schema=self.schema,
                    event=self.event,
                    filter=self.filter,
                    callback=self._on_manager_event,
                    **extra,
                )
                # the manager returns after the first attempt, possibly still retrying: ready() means
                # events flow (or the channel gave up / was stopped), so wait for that
                status = str(getattr(state, "status", "connected"))
                if status not in ("connected", "error") and callable(getattr(src, "wait_for_status", None)):
                    state = await src.wait_for_status(
                        self.name, "connected", "error", "disconnected", timeout=None
                    )
                    status = str(getattr(state, "status", status))
                if self._snapshot_wanted and status == "connected":
                    await self._load_snapshot()
                self._touched = None
                self._status = "live"
                self._ready.set()
                return
            self._status = "live"
            self._ready.set()
            await pump(src, self.apply)
            self._status = "finished"
        except asyncio.CancelledError:
            self._status = "closed"
            raise
        except Exception as exc:
            self._error = exc
            self._status = "error"
            logger.exception("LiveFrame %s.%s: the source failed (%s)", self.schema, self.table, self.name)
            self._ready.set()

    def _on_manager_event(self, event: RealtimeEvent, *_: Any) -> None:
        self.apply(event)

    async def _load_snapshot(self) -> None:
        """Merge the table's current rows (as the subscriber sees them) under the live stream.

        The subscription is confirmed before the read starts, so every commit after the read's
        snapshot arrives as a live event; a row whose key already changed live is skipped (the live
        event is at least as new as the read), every other row is current.
        """
        limit = self.max_rows if self.max_rows is not None else _SNAPSHOT_CAP
        try:
            snap = await self._source.snapshot(
                self.table, schema=self.schema, filter=self.filter, order_by=self._order_by, limit=limit
            )
        except Exception as exc:
            self.snapshot_info = {"error": str(exc)}
            logger.warning(
                "LiveFrame %s.%s: could not load the table's current rows (%s); the frame shows changes "
                "from now on (pass snapshot=False to start empty on purpose)",
                self.schema,
                self.table,
                exc,
            )
            return
        loaded = self.load_rows(snap.rows, columns=snap.columns, key=snap.key)
        self.snapshot_info = {
            "rows": loaded,
            "read": len(snap.rows),
            "via": snap.via,
            "role": snap.role,
            "order_by": list(snap.order_by),
        }
        logger.debug("LiveFrame %s: snapshot %s", self.table, self.snapshot_info)

    def load_rows(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        columns: Sequence[tuple[str, str]] = (),
        key: Sequence[str] | None = None,
    ) -> int:
        """Merge existing rows, newest first, as older than everything the frame holds; returns how
        many were added.

        A row whose key the frame holds or changed live since the subscription started is skipped;
        at most ``max_rows`` rows are kept (the newest). ``columns`` are ``(name, postgres type)``;
        ``key`` names the key columns when the frame has none yet. Listeners get one ``reset``.
        """
        if self.mode == "append":
            raise ValueError("load_rows() needs mode='upsert' (a log of events has no current rows)")
        if columns:
            self._merge_columns(RealtimeEvent(kind=EventKind.CHANGE, channel="", columns=tuple(columns)))
        if self._key_cols is None and key:
            self._key_cols = tuple(key)
        touched = self._touched or set()
        room = None if self.max_rows is None else max(0, self.max_rows - len(self._rows))
        added = 0
        for values in rows:
            if room is not None and added >= room:
                break
            for name in values:
                if name not in self._columns:
                    self._columns[name] = None
            k = self._key_cols
            row_key = _freeze(tuple(values.get(c) for c in k)) if k and all(c in values for c in k) else None
            if row_key is not None and (row_key in self._index or row_key in touched):
                continue
            rid = self._next_rid
            self._next_rid += 1
            stored = (("__rid__", rid),) if row_key is None else row_key
            self._rows[rid] = _Row(stored, dict(values))
            self._rows.move_to_end(rid, last=False)  # older than every row already held
            self._index[stored] = rid
            added += 1
        if added:
            self._counters["snapshot"] += added
            self._version += 1
            if self._listeners:
                self._emit(FrameChange("reset"))
        return added

    def _on_channel_status(self, *args: Any) -> None:
        for a in args:
            status = getattr(a, "status", a)
            if status is not None and str(status) in _CHANNEL_STATUSES:
                self._channel_status = str(status)
                self._channel_reason = getattr(a, "reason", None)
                self._channel_attempt = int(getattr(a, "attempt", 0) or 0)
                self._report_channel()
                return

    def _report_channel(self) -> None:
        """One log line when the channel gets into trouble (not one per retry), one when it is back."""
        status = self._channel_status
        if status in ("reconnecting", "error") and not self._trouble_reported:
            self._trouble_reported = True
            logger.warning(
                "LiveFrame %s.%s: channel %r is %s: %s%s",
                self.schema,
                self.table,
                self.name,
                status,
                self._channel_reason or "no reason given",
                " (retrying in the background; the frame's status and status_reason follow it)"
                if status == "reconnecting"
                else " (not retrying: fix the cause, then subscribe again)",
            )
        elif status == "connected" and self._trouble_reported:
            self._trouble_reported = False
            logger.info("LiveFrame %s.%s: channel %r is connected again", self.schema, self.table, self.name)

    async def ready(self) -> LiveFrame:
        """Wait until the subscription is confirmed / the source is being read; re-raise its failure.

        Bound the wait with ``asyncio.timeout(...)`` if you need to.
        """
        if self._task is None and self._status == "pending":
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"LiveFrame[{self.schema}.{self.table}]"
            )
        waiter = asyncio.ensure_future(self._ready.wait())
        try:
            waits: set[asyncio.Future[Any]] = {waiter}
            if self._task is not None:
                waits.add(self._task)
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if self._error is not None:
            raise RuntimeError(
                f"LiveFrame {self.schema}.{self.table}: the source failed: {self._error}"
            ) from self._error
        return self

    async def wait_until(
        self, predicate: Callable[[LiveFrame], bool], *, within_s: float = 10.0, poll_s: float = 0.01
    ) -> LiveFrame:
        """Wait until ``predicate(frame)`` is true (e.g. ``lambda lf: len(lf) >= 3``).

        Raises TimeoutError (showing the frame) when that takes longer than ``within_s`` seconds.
        """
        deadline = time.monotonic() + within_s
        while not predicate(self):
            if self._error is not None:
                raise RuntimeError(f"the source failed: {self._error}") from self._error
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {within_s} s: {self!r}")
            await asyncio.sleep(poll_s)
        return self

    async def close(self) -> None:
        """Deprecated spelling of :meth:`aclose` (async work is closed with ``aclose`` everywhere)."""
        warnings.warn("LiveFrame.close() is now `await frame.aclose()`", DeprecationWarning, stacklevel=2)
        await self.aclose()

    async def aclose(self) -> None:
        """Stop consuming / unsubscribe from the manager. Rows stay readable."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for remove in (self._unsub_status, self._remove_listener):
            if remove is not None:
                remove()
        self._unsub_status = self._remove_listener = None
        if self._subscribed:
            self._subscribed = False
            await self._source.unsubscribe(self.name)
        self._status = "closed"

    async def __aenter__(self) -> LiveFrame:
        return await self.ready()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ applying events

    def on_change(self, callback: Callable[[FrameChange], Any]) -> Callable[[], None]:
        """Call ``callback(change)`` after every change (see :class:`FrameChange`); returns a remover."""
        if not callable(callback):
            raise TypeError(f"callback must be callable; got {callback!r}")
        self._listeners.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return remove

    def _emit(self, change: FrameChange) -> None:
        for cb in tuple(self._listeners):
            try:
                cb(change)
            except Exception:
                self._counters["callback_errors"] += 1
                logger.exception(
                    "LiveFrame %s: on_change callback %r raised on %s", self.table, cb, change.op
                )

    def apply(self, event: RealtimeEvent) -> bool:
        """Apply one event; returns True when the frame changed. Other tables/kinds are ignored."""
        c = self._counters
        if event.kind is not EventKind.CHANGE or event.table != self.table:
            c["ignored"] += 1
            return False
        if event.schema is not None and event.schema != self.schema:
            c["ignored"] += 1
            return False
        self._merge_columns(event)  # the schema is learnt from every event of the table
        op = (event.op or "").upper()
        if op not in _OPS or (self.event != "*" and op != self.event):
            c["ignored"] += 1
            return False
        if (
            self._row_filter is not None
            and (not self._is_manager or self.via == "broadcast")
            and op != "DELETE"
            and not self._row_filter.matches(event.new, event.columns)
        ):
            c["ignored"] += 1
            return False
        c["events"] += 1
        if event.errors:
            c["errors"] += 1
            logger.debug("LiveFrame %s: event with server errors %s", self.table, event.errors)
        if event.suppressed:
            c["suppressed"] += 1
        if event.backfilled:
            c["backfilled"] += 1
        else:
            self._rate.add()
        changed = self._append(event, op) if self.mode == "append" else self._upsert(event, op)
        if changed:
            self._version += 1
        return changed

    def _merge_columns(self, event: RealtimeEvent) -> None:
        added: list[str] = []
        retyped = False
        cols = event.columns
        if cols and cols is not self._last_columns and cols != self._last_columns:
            for name, typ in cols:
                have = self._columns.get(name, ...)
                if have is ...:
                    self._columns[name] = typ
                    added.append(name)
                elif have != typ:
                    self._columns[name] = typ
                    retyped = True
            self._last_columns = cols
        values = event.new or event.old
        if values:
            for name in values:
                if name not in self._columns:
                    self._columns[name] = None
                    added.append(name)
        if added or retyped:
            self._version += 1
            if self._listeners:
                self._emit(FrameChange("schema", event=event, columns=tuple(added)))

    def _key_from(
        self, event: RealtimeEvent, values: Mapping[str, Any] | None, *, use_pk: bool = True
    ) -> tuple[Any, ...] | None:
        cols = self._key_cols
        pk = event.pk if use_pk else None
        if cols is None:
            if pk:
                cols = self._key_cols = tuple(pk)
            elif values and "id" in values:
                cols = self._key_cols = ("id",)
                logger.info("LiveFrame %s: events carry no primary key; keying rows by 'id'", self.table)
            else:
                return None
        if values and all(c in values for c in cols):
            return _freeze(tuple(values[c] for c in cols))
        if pk and len(pk) == len(cols) and all(c in pk for c in cols):
            return _freeze(tuple(pk[c] for c in cols))
        return None

    def _new_row(self, key: tuple[Any, ...] | None, values: dict[str, Any], event: RealtimeEvent) -> int:
        rid = self._next_rid
        self._next_rid += 1
        row_key = (("__rid__", rid),) if key is None else key
        self._rows[rid] = _Row(row_key, values)
        self._index[row_key] = rid
        if self._listeners:
            self._emit(FrameChange("insert", rid, row_key, event=event))
        if self.max_rows is not None:
            while len(self._rows) > self.max_rows:
                old_rid, old = self._rows.popitem(last=False)
                if self._index.get(old.key) == old_rid:
                    del self._index[old.key]
                self._counters["evicted"] += 1
                if self._listeners:
                    self._emit(FrameChange("evict", old_rid, old.key))
        return rid

    def _remove(self, rid: int, event: RealtimeEvent | None) -> None:
        row = self._rows.pop(rid)
        if self._index.get(row.key) == rid:
            del self._index[row.key]
        if self._listeners:
            self._emit(FrameChange("delete", rid, row.key, event=event))

    def _append(self, event: RealtimeEvent, op: str) -> bool:
        values = dict(event.old if op == "DELETE" and event.old else event.new or event.old or {})
        values["_op"] = op
        values["_commit_ts"] = event.commit_ts.isoformat() if event.commit_ts is not None else None
        if not event.backfilled:
            self._counters[{"INSERT": "inserts", "UPDATE": "updates", "DELETE": "deletes"}[op]] += 1
        self._new_row(None, values, event)
        return True

    def _upsert(self, event: RealtimeEvent, op: str) -> bool:
        c = self._counters
        live = not event.backfilled
        touched = self._touched
        if op == "DELETE":
            key = self._key_from(event, event.old or event.new)
            if touched is not None and key is not None:
                touched.add(key)
            rid = self._index.get(key) if key is not None else None
            if rid is None:
                c["unknown_deletes"] += 1
                if key is None:
                    c["unkeyed"] += 1
                return False
            self._remove(rid, event)
            if live:
                c["deletes"] += 1
            return True

        new = event.new or {}
        key = self._key_from(event, new)
        if touched is not None and key is not None:
            touched.add(key)
        if key is None:
            c["unkeyed"] += 1
            if not self._warned_unkeyed:
                self._warned_unkeyed = True
                if self._key_given and self._key_cols is not None:
                    missing = [k for k in self._key_cols if k not in new]
                    logger.warning(
                        "LiveFrame %s: key column(s) %s missing from an %s row (its columns: %s); pass "
                        "key= naming existing columns, or key=None for the table's primary key (rows "
                        "without a key are kept but can never be updated or deleted)",
                        self.table,
                        ", ".join(missing),
                        op,
                        ", ".join(new) or "none",
                    )
                else:
                    logger.warning(
                        "LiveFrame %s: %s event without primary-key information; pass key=... "
                        "(rows without a key are kept but can never be updated or deleted)",
                        self.table,
                        op,
                    )
            if live:
                c["inserts" if op == "INSERT" else "updates"] += 1
            self._new_row(None, dict(new), event)
            return True

        if op == "UPDATE" and event.old and self._key_cols is not None:
            old_key = self._key_from(event, event.old, use_pk=False)
            if touched is not None and old_key is not None:
                touched.add(old_key)
            if old_key is not None and old_key != key and old_key in self._index:
                return self._move(event, old_key, key, new, live)

        rid = self._index.get(key)
        if rid is None:
            if live:
                c["inserts" if op == "INSERT" else "updates"] += 1
            self._new_row(key, dict(new), event)
            return True
        row = self._rows[rid]
        if op == "INSERT":
            if not live and row.values == new:
                return False
            row.values = dict(new)
        else:
            if not live and all(row.values.get(k, ...) == v for k, v in new.items()):
                return False
            row.values.update(new)
        if live:
            c["duplicates" if op == "INSERT" else "updates"] += 1
        if self._listeners:
            self._emit(FrameChange("update", rid, key, event=event))
        return True

    def _move(
        self,
        event: RealtimeEvent,
        old_key: tuple[Any, ...],
        key: tuple[Any, ...],
        new: Mapping[str, Any],
        live: bool,
    ) -> bool:
        rid = self._index.pop(old_key)
        clash = self._index.get(key)
        if clash is not None:
            # a row already holds the new key: its DELETE (or key change) was missed; the move wins
            logger.debug("LiveFrame %s: key change %r → %r replaces a held row", self.table, old_key, key)
            self._remove(clash, event)
        row = self._rows[rid]
        row.key = key
        row.values.update(new)
        self._index[key] = rid
        if live:
            self._counters["updates"] += 1
        self._counters["key_changes"] += 1
        if self._listeners:
            self._emit(FrameChange("update", rid, key, old_key, event))
        return True

    def clear(self) -> None:
        """Drop every row (counters and columns stay)."""
        self._rows.clear()
        self._index.clear()
        self._version += 1
        if self._listeners:
            self._emit(FrameChange("reset"))

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: object) -> bool:
        return self._normal_key(key) in self._index

    def _normal_key(self, key: object) -> tuple[Any, ...]:
        return _freeze(key if isinstance(key, tuple) else (key,))

    def get(self, key: object, default: Any = None) -> dict[str, Any] | Any:
        """The raw (JSON-like) values of the row with this key (a value or a tuple), or ``default``."""
        rid = self._index.get(self._normal_key(key))
        return default if rid is None else dict(self._rows[rid].values)

    @property
    def key(self) -> tuple[str, ...] | None:
        """The primary-key column names (learnt from the first keyed event when not given)."""
        return self._key_cols

    @property
    def columns(self) -> list[tuple[str, str | None]]:
        """``(name, postgres type)`` in order of first appearance (type None when never reported)."""
        return list(self._columns.items())

    @property
    def counters(self) -> dict[str, float]:
        """A snapshot of the counters plus ``events_per_s`` and ``rows``."""
        out: dict[str, float] = dict(self._counters)
        out["rows"] = len(self._rows)
        out["events_per_s"] = round(self._rate.rate(), 3)
        return out

    @property
    def inserts(self) -> int:
        return self._counters["inserts"]

    @property
    def updates(self) -> int:
        return self._counters["updates"]

    @property
    def deletes(self) -> int:
        return self._counters["deletes"]

    @property
    def events_per_s(self) -> float:
        """Live (non-backfilled) events per second over the sliding window."""
        return self._rate.rate()

    def rate_history(self, seconds: int = 60) -> list[int]:
        """Live events per whole second for the last ``seconds`` seconds (oldest first)."""
        return self._rate.history(seconds)

    @property
    def status(self) -> str:
        """idle (fed by hand), pending, subscribing, live, finished, error or closed.

        For a manager source, the channel's status (connected, reconnecting, …) once it is known.
        """
        if self._status in ("subscribing", "live") and self._channel_status is not None:
            return self._channel_status
        return self._status

    @property
    def status_reason(self) -> str:
        """Why :attr:`status` is not a healthy one, in one line (empty while all is well): the
        channel's reason and attempt while it is connecting again or in error, or the source's failure."""
        if self._error is not None:
            return f"the source failed: {self._error}"
        status = self.status
        if status not in ("connecting", "reconnecting", "error", "disconnected"):
            return ""
        reason, attempt = self._channel_reason, self._channel_attempt
        get_status = getattr(self._source, "get_status", None)
        if self._subscribed and callable(get_status):
            state = get_status(self.name)  # the latest reason and attempt, also within one status
            reason = getattr(state, "reason", None) or reason
            attempt = int(getattr(state, "attempt", 0) or 0)
        if not reason:
            return ""
        return f"{reason} · attempt {attempt}" if attempt else str(reason)

    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def version(self) -> int:
        """Increments on every change; equal versions mean equal contents."""
        return self._version

    def _column_values(self, rows: Sequence[_Row], name: str) -> list[Any]:
        return [r.values.get(name) for r in rows]

    @property
    def df(self) -> pd.DataFrame:
        """The rows as a typed DataFrame (cached until the next change; a cheap copy each call)."""
        if self._df is None or self._df_version != self._version:
            rows = list(self._rows.values())
            data = {
                name: _dtypes.to_pandas(self._column_values(rows, name), typ, name)
                for name, typ in self._columns.items()
            }
            df = pd.DataFrame(data, index=pd.RangeIndex(len(rows)))
            df.attrs["pg_types"] = dict(self._columns)
            df.attrs["key"] = list(self._key_cols or ())
            df.attrs["table"] = f"{self.schema}.{self.table}"
            self._df = df
            self._df_version = self._version
        return self._df.copy(deep=False)

    def to_pandas(self) -> pd.DataFrame:
        """Same as :attr:`df`."""
        return self.df

    def to_arrow(self) -> pa.Table:
        """The rows as a typed Arrow table (json as JSON text, arrays as lists)."""
        rows = list(self._rows.values())
        arrays = [_dtypes.to_arrow(self._column_values(rows, n), t, n) for n, t in self._columns.items()]
        meta = {
            b"pg_types": json.dumps(dict(self._columns)).encode(),
            b"table": f"{self.schema}.{self.table}".encode(),
        }
        schema = pa.schema(
            [pa.field(n, a.type) for n, a in zip(self._columns, arrays, strict=True)], metadata=meta
        )
        return pa.Table.from_arrays(arrays, schema=schema)

    # ------------------------------------------------------------------ rows by id

    def row_ids(self) -> list[int]:
        """The ids of the rows the frame holds, oldest first: a row's ``rid`` in :class:`FrameChange`,
        stable for the row's life (also across key-changing updates)."""
        return list(self._rows)

    def arrow_batch(self, row_ids: Iterable[int], *, row_id_column: str = "rid") -> pa.RecordBatch:
        """The rows with these ids that the frame still holds (in the given order) as one record batch.

        ``row_id_column`` (int64) holds their ids and comes first; then every column in the Arrow type
        closest to its Postgres type, exact where :meth:`to_arrow` is not: ``numeric`` as decimal128,
        arrays as lists, dates as date32, timestamps as timestamp[us] (UTC for ``timestamptz``), json as
        JSON text whose field carries Arrow's ``arrow.json`` extension name.
        """
        if row_id_column in self._columns:
            raise ValueError(
                f"row_id_column {row_id_column!r} is also a column of {self.schema}.{self.table}; "
                "pass another name"
            )
        ids: list[int] = []
        rows: list[_Row] = []
        for rid in row_ids:
            row = self._rows.get(rid)
            if row is not None:
                ids.append(rid)
                rows.append(row)
        arrays = [pa.array(ids, type=pa.int64())]
        fields = [pa.field(row_id_column, pa.int64(), nullable=False)]
        for n, t in self._columns.items():
            arr = _dtypes.to_native(self._column_values(rows, n), t, n)
            arrays.append(arr)
            fields.append(_dtypes.native_field(n, t, arr))
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))

    # ------------------------------------------------------------------ display

    def widget(self, **options: Any) -> LiveTableWidget:
        """This frame's :class:`~harmony_lab.widgets.LiveTableWidget` (created once, again after close
        or when ``options`` are given — e.g. ``names={user_id: "Alice"}``, ``title=``, ``height=``)."""
        if self._widget is None or self._widget.comm is None or options:
            from harmony_lab.widgets import LiveTableWidget  # widgets build on frames

            self._widget = LiveTableWidget(self, **options)
        return self._widget

    def __repr__(self) -> str:
        key = ",".join(self._key_cols) if self._key_cols else "?"
        c = self._counters
        return (
            f"<LiveFrame {self.schema}.{self.table} mode={self.mode} key=({key}) "
            f"rows={len(self._rows)}/{self.max_rows if self.max_rows is not None else '∞'} "
            f"inserts={c['inserts']} updates={c['updates']} deletes={c['deletes']} "
            f"rate={self._rate.rate():.1f}/s status={self.status}"
            + (f" backfill={self.backfill.column}" if self.backfill is not None else "")
            + ">"
        )

    def _repr_html_(self) -> str:
        """A static table of the newest rows (what nbviewer and GitHub show)."""
        df = self.df
        c = self._counters
        tail = df.tail(_STATIC_ROWS)
        shown = f"last {len(tail)} of {len(df)}" if len(df) > len(tail) else f"{len(df)}"
        summary = (
            f"LiveFrame <b>{html.escape(self.schema)}.{html.escape(self.table)}</b> · {shown} rows · "
            f"{c['inserts']} inserts, {c['updates']} updates, {c['deletes']} deletes · "
            f"{self._rate.rate():.1f} events/s · {html.escape(self.status)}"
        )
        table = tail.to_html(index=False, border=0, na_rep="NA", classes="harmony-liveframe", escape=True)
        return f'<div class="harmony-liveframe-static"><p>{summary}</p>{table}</div>'

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None, **_: Any
    ) -> dict[str, Any] | tuple[dict[str, Any], dict[str, Any]]:
        data: dict[str, Any] = {"text/plain": repr(self), "text/html": self._repr_html_()}
        metadata: dict[str, Any] = {}
        if _widgets_can_render():
            bundle = self.widget()._repr_mimebundle_()
            if bundle is not None:
                wdata, wmeta = bundle if isinstance(bundle, tuple) else (bundle, {})
                for mime, value in wdata.items():
                    if mime != "text/plain":
                        data[mime] = value
                metadata.update(wmeta or {})
        if include:
            data = {k: v for k, v in data.items() if k in include}
        if exclude:
            data = {k: v for k, v in data.items() if k not in exclude}
        return data, metadata


def _widgets_can_render() -> bool:
    """True inside a Jupyter kernel (a front end with a widget manager may be listening)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
