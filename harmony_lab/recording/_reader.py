"""Reading recordings back: :func:`read_recording` (a DataFrame) and :func:`replay` (events again)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from harmony_lab.events import EventKind, RealtimeEvent, aware_instant
from harmony_lab.recording._codec import SCHEMA, TS, events_from_table
from harmony_lab.recording._layout import PartFile, iter_parts
from harmony_lab.recording._parts import SkippedPart, read_parts, readable_parts, warn_skipped

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

__all__ = ["read_recording", "replay"]

ARRIVAL_ORDER: tuple[str, ...] = ("received_at", "session_id", "received_mono_ns", "seq")
"""The order of events every reader gives them in (read_recording, SQL readers)."""
_SORT_KEYS = [(k, "ascending") for k in ARRIVAL_ORDER]
_REPLAY_BATCH = 4096


def _kinds(kinds: Iterable[str | EventKind] | str | None) -> list[str] | None:
    if kinds is None:
        return None
    if isinstance(kinds, str):
        kinds = [kinds]
    out = []
    for k in kinds:
        try:
            out.append(str(EventKind(k)))
        except ValueError:
            valid = ", ".join(repr(v.value) for v in EventKind)
            raise ValueError(f"unknown event kind {k!r}; valid kinds: {valid}") from None
    return out


def _channels(channels: Iterable[str] | str | None) -> list[str] | None:
    if channels is None:
        return None
    if isinstance(channels, str):
        return [channels]
    out = list(channels)
    bad = [c for c in out if not isinstance(c, str)]
    if bad:
        raise TypeError(f"channels must be channel names (str); got {bad!r}")
    return out


def _instant(value: Any, name: str) -> datetime | None:
    return None if value is None else aware_instant(value, name)


def _select_parts(
    root: Path, channels: list[str] | None, start: datetime | None, end: datetime | None
) -> list[PartFile]:
    """Partition pruning from the hive path: date and (decodable) channel directories."""
    if not root.exists():
        raise FileNotFoundError(f"no recording at {root} (expected a directory written by Recorder)")
    wanted = None if channels is None else set(channels)
    out = []
    for part in iter_parts(root):
        if part.day is not None:
            if start is not None and part.day < start.date():
                continue
            if end is not None and part.day > end.date():
                continue
        if wanted is not None and part.channel is not None and part.channel not in wanted:
            continue
        out.append(part)
    out.sort(key=lambda p: p.sort_key)
    return out


def _row_filter(
    kinds: list[str] | None, channels: list[str] | None, start: datetime | None, end: datetime | None
) -> ds.Expression | None:
    expr: ds.Expression | None = None

    def both(e: ds.Expression) -> None:
        nonlocal expr
        expr = e if expr is None else expr & e

    if kinds is not None:
        both(ds.field("kind").isin(kinds))
    if channels is not None:
        both(ds.field("channel").isin(channels))
    if start is not None:
        both(ds.field("received_at") >= pa.scalar(start, TS))
    if end is not None:
        both(ds.field("received_at") < pa.scalar(end, TS))
    return expr


_OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in", "is null", "is not null")
_LIST_COLUMNS = frozenset(f.name for f in SCHEMA if pa.types.is_list(f.type))
Condition = tuple[str, str] | tuple[str, str, Any]
Where = ds.Expression | Iterable[Condition] | Iterable[Iterable[Condition]]


def _columns(columns: Iterable[str] | None) -> list[str] | None:
    if columns is None:
        return None
    if isinstance(columns, str):
        columns = [columns]
    out = list(columns)
    unknown = [c for c in out if c not in SCHEMA.names]
    if unknown:
        raise ValueError(f"unknown column(s) {unknown}; the recording's columns are {SCHEMA.names}")
    return out


def _condition(cond: Any) -> ds.Expression:
    if (
        not isinstance(cond, tuple)
        or len(cond) not in (2, 3)
        or not all(isinstance(x, str) for x in cond[:2])
    ):
        raise TypeError(
            f"a where condition is a tuple (column, op, value) or (column, 'is null'); got {cond!r}"
        )
    column, op = cond[0], cond[1].lower()
    if column not in SCHEMA.names or column in _LIST_COLUMNS:
        raise ValueError(
            f"where: {column!r} is not a scalar column of the recording; use one of "
            f"{[n for n in SCHEMA.names if n not in _LIST_COLUMNS]}"
        )
    if op not in _OPS:
        raise ValueError(f"where: unknown operator {cond[1]!r}; use one of {list(_OPS)}")
    field = ds.field(column)
    if op in ("is null", "is not null"):
        if len(cond) != 2:
            raise TypeError(f"where: {op!r} takes no value; got {cond!r}")
        return field.is_null() if op == "is null" else field.is_valid()
    if len(cond) != 3:
        raise TypeError(f"where: {op!r} needs a value: (column, op, value); got {cond!r}")
    typ = SCHEMA.field(column).type

    def scalar(v: Any) -> pa.Scalar:
        if pa.types.is_timestamp(typ):
            v = _instant(v, f"where value for {column!r}")
        try:
            return pa.scalar(v, typ)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise TypeError(f"where: {v!r} is not a valid {typ} value for {column!r} ({exc})") from None

    value = cond[2]
    if op in ("in", "not in"):
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise TypeError(f"where: {op!r} needs a list of values; got {value!r}")
        values = pa.array([scalar(v).as_py() for v in value], typ)
        expr = field.isin(values)
        return ~expr if op == "not in" else expr
    v = scalar(value)
    return {
        "==": field == v,
        "!=": field != v,
        "<": field < v,
        "<=": field <= v,
        ">": field > v,
        ">=": field >= v,
    }[op]


def _where(where: Where | None) -> ds.Expression | None:
    """A pyarrow expression from the structured ``where`` (see :func:`read_recording`)."""
    if where is None or isinstance(where, ds.Expression):
        return where
    if isinstance(where, str):
        raise TypeError(
            "where takes conditions, not SQL text: e.g. [('table', '==', 'messages'), ('op', 'in', "
            "['INSERT', 'UPDATE'])]; for ad-hoc SQL use connect_recording(path).sql('SELECT … FROM events')"
        )
    items = list(where)
    if not items:
        return None
    groups = [items] if isinstance(items[0], tuple) else [list(g) for g in items]
    ors = []
    for group in groups:
        if not group:
            raise ValueError("where: an empty group of conditions")
        conj = _condition(group[0])
        for cond in group[1:]:
            conj = conj & _condition(cond)
        ors.append(conj)
    out = ors[0]
    for e in ors[1:]:
        out = out | e
    return out


def read_table(
    path: str | os.PathLike[str],
    *,
    columns: Iterable[str] | None = None,
    kinds: Iterable[str | EventKind] | str | None = None,
    channels: Iterable[str] | str | None = None,
    start: Any = None,
    end: Any = None,
    where: Where | None = None,
) -> pa.Table:
    """Like :func:`read_recording`, as an Arrow table (sorted by arrival)."""
    cols = _columns(columns)
    kinds_l, channels_l = _kinds(kinds), _channels(channels)
    start_dt, end_dt = _instant(start, "start"), _instant(end, "end")
    expr = _row_filter(kinds_l, channels_l, start_dt, end_dt)
    extra = _where(where)
    if extra is not None:
        expr = extra if expr is None else expr & extra
    root = Path(path)
    parts = _select_parts(root, channels_l, start_dt, end_dt)
    read_cols = None if cols is None else list(dict.fromkeys([*cols, *(k for k, _ in _SORT_KEYS)]))
    table = read_parts(parts, columns=read_cols, filter=expr)
    table = table.sort_by(_SORT_KEYS)
    return table if cols is None else table.select(cols)


def read_recording(
    path: str | os.PathLike[str],
    *,
    columns: Iterable[str] | None = None,
    kinds: Iterable[str | EventKind] | str | None = None,
    channels: Iterable[str] | str | None = None,
    start: Any = None,
    end: Any = None,
    where: Where | None = None,
) -> pd.DataFrame:
    """A recording (a directory written by :class:`Recorder`, or one part file) as a DataFrame.

    One row per event, in arrival order, with the recording schema's columns (or only ``columns``).
    ``kinds`` and ``channels`` select event kinds / channel names; ``start`` (inclusive) and ``end``
    (exclusive) bound ``received_at`` and must be timezone-aware (datetime, ``pandas.Timestamp`` or
    ISO string).

    ``where`` selects rows by conditions, never SQL text: a list of ``(column, op, value)`` tuples
    that must all hold, or a list of such lists of which one must hold. ``op`` is one of ``==``,
    ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in`` (value: a list), or ``is null`` /
    ``is not null`` (no value: ``(column, op)``); ``column`` is any scalar column; values are
    converted to the column's type (timestamps must be timezone-aware). A ``pyarrow.dataset``
    expression is accepted as is. For anything else use SQL on :func:`connect_recording`::

        read_recording(path, columns=["received_at", "new"],
                       where=[("table", "==", "messages"), ("op", "in", ["INSERT", "UPDATE"])])

    Selection is pushed down: ``date=``/``channel=`` directories outside the selection are never
    opened, the remaining files skip row groups by their Parquet statistics, and only the requested
    columns are read. ``received_at``, ``commit_ts``, ``gap_start``, ``gap_end`` are
    ``datetime64[us, UTC]``; ``attempt`` is nullable ``Int64``. ``pk``, ``new``, ``old`` and
    ``payload`` stay JSON text: parse them with :func:`harmony_lab.analysis.parse_json` (exact Python
    types, using the ``json_types`` column) or query them as JSON in duckdb/polars. An unreadable part
    file is skipped with a :class:`CorruptPartWarning` naming it.
    """
    table = read_table(
        path, columns=columns, kinds=kinds, channels=channels, start=start, end=end, where=where
    )
    return table_to_pandas(table)


def table_to_pandas(table: pa.Table) -> pd.DataFrame:
    """Recording rows as the DataFrame :func:`read_recording` returns (``attempt`` as ``Int64``)."""
    import pandas as pd

    df = table.to_pandas()
    if "attempt" in table.column_names:
        df["attempt"] = table.column("attempt").to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    return df


# --------------------------------------------------------------------------- replay


class _FileCursor:
    """Events of one part file, read a batch at a time (on a worker thread)."""

    def __init__(self, part: PartFile, kinds: list[str] | None, channels: list[str] | None) -> None:
        self.part = part
        self.kinds = kinds
        self.channels = channels
        self._batches: Iterator[pa.RecordBatch] | None = None
        self._fh: pq.ParquetFile | None = None

    def next_events(self) -> list[RealtimeEvent] | None:
        """The next non-empty list of events, or None at the end (blocking I/O).

        A file that turns out damaged part-way ends there, with a :class:`CorruptPartWarning`
        (the events before the damage were already given out).
        """
        try:
            return self._next_events()
        except (pa.ArrowException, OSError) as exc:
            self.close()
            warn_skipped(SkippedPart(self.part.path, f"{exc} (replay stops reading it here)"))
            return None

    def _next_events(self) -> list[RealtimeEvent] | None:
        if self._batches is None:
            self._fh = pq.ParquetFile(self.part.path)
            self._batches = self._fh.iter_batches(batch_size=_REPLAY_BATCH)
        for batch in self._batches:
            mask = None
            if self.kinds is not None:
                mask = pc.is_in(batch.column("kind"), pa.array(self.kinds))
            if self.channels is not None:
                m = pc.is_in(batch.column("channel"), pa.array(self.channels))
                mask = m if mask is None else pc.and_(mask, m)
            if mask is not None:
                batch = batch.filter(mask)
            if batch.num_rows:
                return list(events_from_table(batch))
        self.close()
        return None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _first_received_at(part: PartFile) -> datetime:
    """The earliest ``received_at`` in a file, from its footer statistics (no data read)."""
    meta = pq.read_metadata(part.path)
    idx = meta.schema.to_arrow_schema().get_field_index("received_at")
    lows = []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(idx).statistics
        if stats is None or not stats.has_min_max:
            return datetime.min.replace(tzinfo=UTC)
        low = stats.min
        if isinstance(low, int):
            low = datetime.fromtimestamp(0, UTC) + timedelta(microseconds=low)
        elif low.tzinfo is None:
            low = low.replace(tzinfo=UTC)
        lows.append(low)
    return min(lows) if lows else datetime.max.replace(tzinfo=UTC)


def _sort_key(ev: RealtimeEvent) -> tuple[datetime, int, int]:
    return (ev.received_at, ev.received_mono_ns, ev.seq)


async def _merged(
    root: Path, kinds: list[str] | None, channels: list[str] | None
) -> AsyncIterator[RealtimeEvent]:
    """Events of every selected file merged by arrival time; only files whose time has come are open."""
    parts = await asyncio.to_thread(lambda: readable_parts(_select_parts(root, channels, None, None)))
    starts = await asyncio.to_thread(lambda: [(_first_received_at(p), p) for p in parts])
    starts.sort(key=lambda sp: (sp[0], sp[1].sort_key))
    pending = iter(starts)
    upcoming = next(pending, None)
    counter = itertools.count()
    heap: list[tuple[tuple[datetime, int, int], int, RealtimeEvent, list[RealtimeEvent], _FileCursor]] = []

    async def push_from(cursor: _FileCursor, buf: list[RealtimeEvent]) -> None:
        if not buf:
            nxt = await asyncio.to_thread(cursor.next_events)
            if nxt is None:
                return
            nxt.reverse()
            buf = nxt
        ev = buf.pop()
        heapq.heappush(heap, (_sort_key(ev), next(counter), ev, buf, cursor))

    try:
        while heap or upcoming is not None:
            while upcoming is not None and (not heap or upcoming[0] <= heap[0][0][0]):
                await push_from(_FileCursor(upcoming[1], kinds, channels), [])
                upcoming = next(pending, None)
            if not heap:
                continue
            _, _, ev, buf, cursor = heapq.heappop(heap)
            yield ev
            await push_from(cursor, buf)
    finally:
        for item in heap:
            item[4].close()


def replay(
    path: str | os.PathLike[str],
    *,
    speed: float | None = 1.0,
    kinds: Iterable[str | EventKind] | str | None = None,
    channels: Iterable[str] | str | None = None,
) -> AsyncIterator[RealtimeEvent]:
    """The recorded events again, as :class:`RealtimeEvent` s equal to the ones recorded.

    Events come in arrival order with the original inter-arrival times (from ``received_at``)
    divided by ``speed``; ``speed=None`` yields them as fast as possible. Timing is scheduled
    against the loop clock from the first event, so delays do not accumulate. The recording is
    streamed file by file (memory stays bounded). Usable anywhere an event source is expected::

        async for ev in replay("recordings/today", speed=10):
            ...
    """
    if speed is not None and (isinstance(speed, bool) or not isinstance(speed, int | float) or not speed > 0):
        raise ValueError(f"speed must be a positive number or None (as fast as possible); got {speed!r}")
    if not Path(path).exists():
        raise FileNotFoundError(f"no recording at {path} (expected a directory written by Recorder)")
    return _replay(Path(path), None if speed is None else float(speed), _kinds(kinds), _channels(channels))


async def _replay(
    root: Path, speed: float | None, kinds: list[str] | None, channels: list[str] | None
) -> AsyncIterator[RealtimeEvent]:
    loop = asyncio.get_running_loop()
    first: datetime | None = None
    started = 0.0
    n = 0
    async for ev in _merged(root, kinds, channels):
        if speed is not None:
            if first is None:
                first, started = ev.received_at, loop.time()
            else:
                due = started + (ev.received_at - first).total_seconds() / speed
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
        n += 1
        if speed is None and n % 1000 == 0:
            await asyncio.sleep(0)
        yield ev
