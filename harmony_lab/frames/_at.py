"""A table as it was at an instant of a recording, computed in DuckDB (``LiveFrame.at``).

The state of an upsert :class:`~harmony_lab.frames.LiveFrame` after a stream of change events is a
function of, per primary key, a handful of events: the row exists when the key's last event is not a
DELETE; its position is that of the first INSERT/UPDATE after the key's last DELETE (the frame keeps
rows in order of arrival, and an INSERT of a held key overwrites in place); its values are the last
INSERT (or that first event) merged with every UPDATE after it. DuckDB finds those events with a few
aggregates over the part files (nothing but the key and the order columns is materialised), and only
the events that contribute values are decoded in Python — the last one of each live key, plus the
rare earlier ones carrying a column the last one lacks.

A key-changing UPDATE moves a row under a new key while keeping its position, which aggregates per
key cannot follow; a table whose recording holds one before the instant is rebuilt by feeding that
table's change events, streamed from DuckDB in arrival order, through a frame (same result).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harmony_lab.events import RealtimeEvent, aware_instant

if TYPE_CHECKING:
    import duckdb

    from harmony_lab.frames._live import LiveFrame

logger = logging.getLogger(__name__)

__all__ = [
    "Instant",
    "SeekIndex",
    "adopt",
    "connect",
    "frame_at",
    "instant_us",
    "parse_instant",
    "recording_parts",
]

MEMORY_LIMIT = "1GB"
"""DuckDB's memory cap for one query (it spills to a temporary directory beyond it)."""
_MAX_KEY_COLUMNS = 32
_MAX_NAME_CHARS = 1000
_ORDER = "received_at, session_id, received_mono_ns, seq"
_BATCH = 8192


Instant = datetime | str
"""An instant: a timezone-aware ``datetime`` (a ``pandas.Timestamp`` is one) or an ISO 8601 string
with a UTC offset."""


def parse_instant(value: Instant, name: str = "instant") -> datetime:
    """A timezone-aware datetime (``datetime``, ``pandas.Timestamp`` or ISO 8601 string), as UTC."""
    return aware_instant(value, name)


def recording_parts(recording: str | os.PathLike[str]) -> list[str]:
    """The readable part files of a recording (damaged ones skipped with a ``CorruptPartWarning``)."""
    # frames sit beside recording in the layers; this lazy import is the one way in (pyproject.toml)
    from harmony_lab.recording import part_files

    return part_files(recording)


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection set up for recordings (UTC, bounded memory)."""
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    con.execute("SET TimeZone = 'UTC'")
    return con


def _pointer(name: str) -> str:
    """The JSON pointer of a top-level member (bound as a parameter, never spliced into SQL)."""
    return "/" + name.replace("~", "~0").replace("/", "~1")


def _lit(text: str) -> str:
    """``text`` as an SQL string literal (quotes doubled; NUL refused)."""
    if "\x00" in text:
        raise ValueError(f"names and paths cannot contain NUL characters; got {text!r}")
    return "'" + text.replace("'", "''") + "'"


def _check_names(names: Sequence[str], what: str) -> None:
    if len(names) > _MAX_KEY_COLUMNS:
        raise ValueError(f"{what}: at most {_MAX_KEY_COLUMNS} key columns; got {len(names)}")
    for n in names:
        if not isinstance(n, str) or len(n) > _MAX_NAME_CHARS:
            raise ValueError(f"{what}: key column names must be strings of at most {_MAX_NAME_CHARS} chars")


class _Query:
    """The SQL pieces for one table of one recording up to one instant."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        parts: list[str],
        table: str,
        schema: str,
        instant: datetime,
        *,
        located: bool = False,
    ) -> None:
        self.con = con
        # views cannot take parameters: the values go in as quoted literals
        files = "[" + ", ".join(_lit(p) for p in parts) + "]"
        where = "filename = true, file_row_number = true, " if located else ""
        con.execute(
            f"CREATE TEMP VIEW ev AS SELECT * FROM read_parquet({files}, {where}hive_partitioning = false)"
        )
        con.execute(
            "CREATE TEMP VIEW tev AS SELECT *, upper(op) AS uop, "
            "CASE WHEN upper(op) = 'DELETE' THEN coalesce(nullif(old, '{}'), new) ELSE new END AS vals "
            f"FROM ev WHERE kind = 'change' AND \"table\" = {_lit(table)} "
            f"AND (schema IS NULL OR schema = {_lit(schema)}) "
            f"AND received_at <= {_lit(instant.isoformat())}::TIMESTAMPTZ"
        )

    def sql(self, text: str, params: Any = None) -> duckdb.DuckDBPyConnection:
        return self.con.execute(text, params)

    def learn_key(self) -> tuple[str, ...] | None:
        """The key a frame with ``key=None`` learns: the first event's ``pk`` columns, else ``id``."""
        found = self.learn_key_at()
        return None if found is None else found[0]

    def learn_key_at(self) -> tuple[tuple[str, ...], datetime] | None:
        """:meth:`learn_key` and when the event it comes from was received."""
        row = self.sql(
            "SELECT CASE WHEN pk IS NOT NULL AND pk <> '{}' THEN json_keys(pk) ELSE ['id'] END, received_at "
            "FROM tev "
            "WHERE uop IN ('INSERT', 'UPDATE', 'DELETE') "
            "AND ((pk IS NOT NULL AND pk <> '{}') OR json_exists(vals, '/id')) "
            f"ORDER BY {_ORDER} LIMIT 1"
        ).fetchall()
        return (tuple(row[0][0]), row[0][1]) if row else None

    def key_sql(self, key: tuple[str, ...] | None) -> tuple[str, list[Any]]:
        """An SQL expression of an event's key (JSON text of the key values; NULL when unkeyed)."""
        if key is None:
            return "NULL::VARCHAR", []
        ptrs = [_pointer(c) for c in key]
        in_vals = " AND ".join("json_exists(vals, ?)" for _ in ptrs)
        from_vals = "json_array(" + ", ".join("json_extract(vals, ?)" for _ in ptrs) + ")"
        in_pk = " AND ".join("json_exists(pk, ?)" for _ in ptrs)
        from_pk = "json_array(" + ", ".join("json_extract(pk, ?)" for _ in ptrs) + ")"
        expr = (
            f"CASE WHEN vals IS NOT NULL AND vals <> '{{}}' AND {in_vals} THEN {from_vals}::VARCHAR "
            f"WHEN pk IS NOT NULL AND pk <> '{{}}' AND json_array_length(json_keys(pk)) = {len(ptrs)} "
            f"AND {in_pk} THEN {from_pk}::VARCHAR END"
        )
        return expr, [*ptrs, *ptrs, *ptrs, *ptrs]

    def has_key_change(self, key: tuple[str, ...] | None) -> bool:
        if key is None:
            return False
        ptrs = [_pointer(c) for c in key]
        in_old = " AND ".join("json_exists(old, ?)" for _ in ptrs)
        old_key = "json_array(" + ", ".join("json_extract(old, ?)" for _ in ptrs) + ")::VARCHAR"
        new_key, params = self.key_sql(key)
        row = self.sql(
            f"SELECT 1 FROM tev WHERE uop = 'UPDATE' AND old IS NOT NULL AND old <> '{{}}' AND {in_old} "
            f"AND {old_key} IS DISTINCT FROM ({new_key}) LIMIT 1",
            [*ptrs, *ptrs, *params],
        ).fetchall()
        return bool(row)

    def columns(self) -> list[tuple[str, str | None]]:
        """``(name, type)`` as the events report them, in the order a frame fed them learns them, each
        with its last reported type (columns only present in values are added from the rows)."""
        groups = self.sql(
            # grouping by the list's hash is about twice as fast as by the list itself
            f"SELECT any_value(columns), min(({_ORDER})) AS first, max(({_ORDER})) AS last FROM tev "
            "GROUP BY hash(columns) ORDER BY first"
        ).fetchall()
        order: dict[str, None] = {}
        typed: dict[str, tuple[Any, str]] = {}
        for cols, _first, last in groups:
            for c in cols or ():
                order.setdefault(c["name"], None)
                seen = typed.get(c["name"])
                if seen is None or last > seen[0]:
                    typed[c["name"]] = (last, c["type"])
        return [(n, typed[n][1] if n in typed else None) for n in order]

    def contributing(self, key: tuple[str, ...] | None) -> pa.Table:
        """The events that make up the live rows, with ``__birth`` (the row's position) and ``__key``."""
        key_expr, params = self.key_sql(key)
        self.sql(
            "CREATE TEMP TABLE k AS SELECT session_id AS sid, seq, uop, "
            f"({_ORDER}) AS o, coalesce(({key_expr}), "
            "CASE WHEN uop <> 'DELETE' THEN '\u0000unkeyed:' || session_id || ':' || seq END) AS key "
            "FROM tev WHERE uop IN ('INSERT', 'UPDATE', 'DELETE')",
            params,
        )
        self.sql("DELETE FROM k WHERE key IS NULL")  # a DELETE without a key removes nothing
        self.sql(
            "CREATE TEMP TABLE agg AS SELECT key, max(o) AS last, arg_max(uop, o) AS last_op, "
            "max(o) FILTER (WHERE uop = 'DELETE') AS last_del, "
            "max(o) FILTER (WHERE uop = 'INSERT') AS last_ins FROM k GROUP BY key"
        )
        self.sql("DELETE FROM agg WHERE last_op = 'DELETE'")
        self.sql(
            "CREATE TEMP TABLE life AS SELECT k.key, min(k.o) AS birth, any_value(agg.last) AS last, "
            "any_value(agg.last_ins) AS last_ins FROM k JOIN agg USING (key) "
            "WHERE k.uop <> 'DELETE' AND (agg.last_del IS NULL OR k.o > agg.last_del) GROUP BY k.key"
        )
        # values: the last event, plus events since the row's last INSERT (or birth) that carry a column
        # the last one lacks (every other column's latest value is in the last event)
        return self.con.sql(
            "WITH span AS (SELECT k.sid, k.seq, k.o, life.key, life.birth, life.last FROM k JOIN life "
            "USING (key) WHERE k.o >= greatest(life.birth, coalesce(life.last_ins, life.birth)) "
            "AND k.o <= life.last), "
            "lastev AS (SELECT span.key, json_keys(tev.new) AS names FROM span JOIN tev "
            "ON tev.session_id = span.sid AND tev.seq = span.seq WHERE span.o = span.last) "
            "SELECT tev.new, tev.json_types, span.birth AS __birth, span.o AS __o, span.key AS __key "
            "FROM span JOIN tev ON tev.session_id = span.sid AND tev.seq = span.seq "
            "JOIN lastev USING (key) "
            "WHERE span.o = span.last OR NOT list_has_all(lastev.names, "
            "json_keys(coalesce(tev.new, '{}'))) ORDER BY __birth, __o"
        ).to_arrow_table()

    def stream(self) -> Iterator[RealtimeEvent]:
        """Every change event of the table up to the instant, in arrival order."""
        from harmony_lab.recording import events_from_table

        reader = self.con.sql(f"SELECT * EXCLUDE (uop, vals) FROM tev ORDER BY {_ORDER}").to_arrow_reader(
            _BATCH
        )
        for batch in reader:
            yield from events_from_table(batch)


def _healthy(con: duckdb.DuckDBPyConnection, parts: list[str]) -> list[str]:
    """The parts DuckDB can read in full (each damaged one named in a ``CorruptPartWarning``)."""
    import duckdb

    from harmony_lab.recording import CorruptPartWarning

    out = []
    for p in parts:
        try:
            con.execute(
                "SELECT count(new), count(old), count(pk), count(columns), count(received_at), "
                'count(op), count("table") FROM read_parquet(?, hive_partitioning = false)',
                [p],
            ).fetchall()
        except duckdb.Error as exc:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            warnings.warn(
                f"skipping unreadable recording part {p}: {reason} (the other parts are read; move or "
                "delete this file to silence this warning)",
                CorruptPartWarning,
                stacklevel=4,
            )
            continue
        out.append(p)
    return out


def frame_at(
    cls: type[LiveFrame],
    recording: str | os.PathLike[str],
    table: str,
    instant: Instant,
    *,
    key: str | Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    schema: str = "public",
) -> LiveFrame:
    """The table as it was at ``instant`` of a recording, as a new hand-fed :class:`LiveFrame`.

    ``recording`` is a directory written by :class:`~harmony_lab.Recorder` (or one part file);
    ``instant`` a timezone-aware ``datetime``, ``pandas.Timestamp`` or ISO 8601 string (inclusive:
    events received at that instant count). The frame equals one fed the recording's change events of
    ``schema.table`` up to ``instant`` in arrival order (``max_rows=None``): the last version of each
    key, deletes applied, rows in arrival order. ``key`` names the key column(s) when the events carry
    no primary key; ``columns`` keeps only those columns. Computed in DuckDB over the part files (see
    the module docstring); damaged parts are skipped with a ``CorruptPartWarning``::

        lf = LiveFrame.at("recordings/today", "messages", "2025-11-03T09:31:00+00:00")
        lf.df.tail()
    """
    import duckdb

    if not isinstance(table, str) or not table:
        raise TypeError(f"table must be a non-empty string such as 'messages'; got {table!r}")
    if not isinstance(schema, str) or not schema:
        raise TypeError(f"schema must be a non-empty string such as 'public'; got {schema!r}")
    when = parse_instant(instant)
    key_cols: tuple[str, ...] | None
    if key is None:
        key_cols = None
    elif isinstance(key, str):
        key_cols = (key,)
    elif isinstance(key, Sequence) and key and all(isinstance(k, str) for k in key):
        key_cols = tuple(key)
    else:
        raise TypeError(f"key must be None, a column name or a sequence of column names; got {key!r}")
    if key_cols is not None:
        _check_names(key_cols, "key")
    if columns is not None:
        if isinstance(columns, str):
            columns = [columns]
        if not all(isinstance(c, str) for c in columns):
            raise TypeError(f"columns must be column names (str); got {columns!r}")
    parts = recording_parts(recording)
    rows: list[dict[str, Any]] = []
    cols: list[tuple[str, str | None]] = []
    learnt = key_cols
    if parts:
        con = connect()
        try:
            try:
                rows, cols, learnt = _compute(cls, con, parts, table, schema, when, key_cols)
            except duckdb.Error:
                logger.debug("reading the parts together failed; checking them one by one", exc_info=True)
                con.close()
                con = connect()
                good = _healthy(con, parts)
                if good:
                    rows, cols, learnt = _compute(cls, con, good, table, schema, when, key_cols)
        finally:
            con.close()
    if columns is not None:
        names = [n for n, _ in cols]
        unknown = [c for c in columns if c not in names]
        if unknown and names:
            raise ValueError(f"unknown column(s) {unknown}; the table's columns are: {', '.join(names)}")
        types = dict(cols)
        cols = [(c, types.get(c)) for c in columns]
        rows = [{c: r[c] for c in columns if c in r} for r in rows]
        if learnt is not None and not all(c in columns for c in learnt):
            learnt = None
    frame = cls(None, table, key=learnt if key_cols is not None else None, schema=schema, max_rows=None)
    # newest first: load_rows puts each row before the ones it already holds
    frame.load_rows(list(reversed(rows)), columns=cols, key=learnt)  # type: ignore[arg-type]
    return frame


def _compute(
    cls: type[LiveFrame],
    con: duckdb.DuckDBPyConnection,
    parts: list[str],
    table: str,
    schema: str,
    when: datetime,
    key_cols: tuple[str, ...] | None,
) -> tuple[list[dict[str, Any]], list[tuple[str, str | None]], tuple[str, ...] | None]:
    """The live rows in order, the columns (name, type) and the key."""
    from harmony_lab.recording import decode_json

    q = _Query(con, parts, table, schema, when)
    learnt = key_cols if key_cols is not None else q.learn_key()
    if learnt is not None:
        _check_names(learnt, "the recorded primary key")
    if q.has_key_change(learnt):
        logger.debug(
            "%s.%s: a key-changing UPDATE; rebuilding by replaying the table's events", schema, table
        )
        fed = cls(None, table, key=key_cols, schema=schema, max_rows=None)
        for ev in q.stream():
            fed.apply(ev)
        return [dict(r.values) for r in fed._rows.values()], fed.columns, fed.key
    cols = q.columns()
    contributing = q.contributing(learnt)
    keys = contributing.column("__key").to_pylist()
    texts = contributing.column("new").to_pylist()
    notes = contributing.column("json_types").to_pylist()
    rows: list[dict[str, Any]] = []
    current: object = object()
    for k, text, types in zip(keys, texts, notes, strict=True):
        if k != current:
            current = k
            rows.append({})
        new = decode_json(text, json.loads(types).get("new") if types else None)
        if new:
            rows[-1].update(new)
    known = {n for n, _ in cols}
    for row in rows:  # columns only present in values, in order of appearance
        for name in row:
            if name not in known:
                known.add(name)
                cols.append((name, None))
    return rows, cols, learnt


def adopt(target: LiveFrame, source: LiveFrame) -> None:
    """Make ``target`` hold exactly ``source``'s rows and columns (a seek); listeners get one ``reset``.

    The rows get fresh row ids from ``target``, so a view that knew the old rows never confuses them.
    """
    from harmony_lab.frames._live import FrameChange

    target._rows.clear()
    target._index.clear()
    for row in source._rows.values():
        rid = target._next_rid
        target._next_rid += 1
        target._rows[rid] = row
        target._index[row.key] = rid
    target._columns = dict(source._columns)
    target._last_columns = None
    if target._key_cols is None:
        target._key_cols = source._key_cols
    target._version += 1
    if target._listeners:
        target._emit(FrameChange("reset"))


_FOREVER = datetime(9999, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INSERT, _UPDATE, _DELETE = 0, 1, 2
VALUE_CACHE_ROWS = 200_000
"""Decoded-row texts a :class:`SeekIndex` keeps between seeks (nearby seeks share most of their rows)."""
_MANY_COLUMN_SETS = 4096


def instant_us(when: datetime) -> int:
    """Microseconds since the epoch (the unit recordings store ``received_at`` in)."""
    return (when - _EPOCH) // timedelta(microseconds=1)


def _codes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Dense int32 codes of a column's values (equal values, equal codes; nulls are -1)."""
    import pyarrow.compute as pc

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.string())
    enc = pc.dictionary_encode(arr)
    return np.asarray(enc.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int32)


def _small(values: np.ndarray) -> np.ndarray:
    """``values`` (non-negative integers) as int32 when they fit."""
    return values.astype(np.int32) if values.size == 0 or values.max() < 2**31 else values.astype(np.int64)


class RowFetcher:
    """Reads chosen rows of a recording's part files with pyarrow (only the row groups holding them),
    keeping the last :data:`VALUE_CACHE_ROWS` rows read, so nearby seeks read little."""

    def __init__(
        self, files: Sequence[str], columns: Sequence[str], cache_rows: int = VALUE_CACHE_ROWS
    ) -> None:
        self.files = list(files)
        self.columns = list(columns)
        self._groups: dict[int, np.ndarray] = {}  # file -> first row of each row group (and the end)
        self._cache: OrderedDict[tuple[int, int], tuple[Any, ...]] = OrderedDict()
        self._cache_rows = cache_rows

    def _bounds(self, f: int) -> tuple[pq.ParquetFile, np.ndarray]:
        pf = pq.ParquetFile(self.files[f])
        bounds = self._groups.get(f)
        if bounds is None:
            meta = pf.metadata
            sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
            bounds = self._groups[f] = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        return pf, bounds

    def fetch(self, files: np.ndarray, rows: np.ndarray) -> list[tuple[Any, ...]]:
        """The chosen columns of rows ``rows[i]`` of files ``files[i]``, in that order."""
        out: list[tuple[Any, ...] | None] = [None] * len(rows)
        missing: dict[int, list[tuple[int, int]]] = {}
        cache = self._cache
        for i, (f, r) in enumerate(zip(files.tolist(), rows.tolist(), strict=True)):
            hit = cache.get((f, r))
            if hit is None:
                missing.setdefault(f, []).append((r, i))
            else:
                cache.move_to_end((f, r))
                out[i] = hit
        for f, wanted in missing.items():
            pf, bounds = self._bounds(f)
            want = np.asarray([r for r, _ in wanted], dtype=np.int64)
            group_of = np.searchsorted(bounds, want, side="right") - 1
            groups = np.unique(group_of)
            table = pf.read_row_groups(groups.tolist(), columns=self.columns, use_threads=False)
            # the chosen groups' rows are read back to back: where each group starts in the table
            starts = np.concatenate([[0], np.cumsum(bounds[groups + 1] - bounds[groups])])
            local = starts[np.searchsorted(groups, group_of)] + want - bounds[group_of]
            taken = table.take(pa.array(local))
            cols = [taken.column(c).to_pylist() for c in self.columns]
            for j, (r, i) in enumerate(wanted):
                value = tuple(col[j] for col in cols)
                out[i] = value
                cache[(f, r)] = value
        while len(cache) > self._cache_rows:
            cache.popitem(last=False)
        return out  # type: ignore[return-value]


class SeekIndex:
    """One table of one recording, indexed for many :meth:`at` calls (what the Player seeks with).

    Building it reads the table's change events once (one DuckDB pass) and keeps, per event and in
    arrival order, a few integers in numpy arrays: arrival time, operation, where the event is stored
    (file and row), the position of the same key's next event, and what the state of the key after
    the event depends on (the position of the row's birth — the first INSERT/UPDATE after the key's
    last DELETE — and where the values to merge start). A seek binary-searches the instant, picks
    the events that are the last of their key before it and not a DELETE (one vectorised pass), and
    reads only those events' values from the part files (the row groups that hold them; rows read by
    earlier seeks are cached). About 40 bytes per change event. The result is the frame
    :func:`frame_at` gives (a table with a key-changing UPDATE, and instants before the first keyed
    event when the key is learnt, are handed to :func:`frame_at`).
    """

    def __init__(
        self,
        cls: type[LiveFrame],
        recording: str | os.PathLike[str],
        table: str,
        *,
        key: str | Sequence[str] | None = None,
        schema: str = "public",
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        self._cls = cls
        self.recording = recording
        self.table = table
        self.schema = schema
        self._key_arg = key
        self._key_cols: tuple[str, ...] | None = (
            None if key is None else ((key,) if isinstance(key, str) else tuple(key))
        )
        self._lock = threading.Lock()
        self._closed = False
        self._learnt_at: datetime | None = None
        self._usable = False
        self._key: tuple[str, ...] | None = self._key_cols
        parts = recording_parts(recording)
        self._fetcher = RowFetcher(parts, ("new", "json_types"))
        self._n = 0
        if not parts:
            return
        own = con is None
        db = connect() if con is None else con
        try:
            self._build(db, parts)
        finally:
            db.execute("DROP VIEW IF EXISTS tev")
            db.execute("DROP VIEW IF EXISTS ev")
            db.execute("DROP TABLE IF EXISTS seek_files")
            if own:
                db.close()

    def _build(self, con: duckdb.DuckDBPyConnection, parts: list[str]) -> None:
        q = _Query(con, parts, self.table, self.schema, _FOREVER, located=True)
        learnt = self._key_cols
        if learnt is None:
            found = q.learn_key_at()
            if found is not None:
                learnt, self._learnt_at = found
        if learnt is not None:
            _check_names(learnt, "the recorded primary key")
        if q.has_key_change(learnt):
            return
        self._key = learnt
        q.sql(
            "CREATE OR REPLACE TEMP TABLE seek_files AS SELECT filename, "
            "(row_number() OVER (ORDER BY filename) - 1)::INTEGER AS fi "
            "FROM (SELECT DISTINCT filename FROM ev)"
        )
        files = [f for f, _ in q.sql("SELECT filename, fi FROM seek_files ORDER BY fi").fetchall()]
        self._fetcher = RowFetcher(files, ("new", "json_types"))
        key_expr, params = q.key_sql(learnt)
        got = con.sql(
            "SELECT coalesce((" + key_expr + "), CASE WHEN uop <> 'DELETE' THEN "
            "'\u0000unkeyed:' || session_id || ':' || seq END) AS key, "
            "CASE uop WHEN 'INSERT' THEN 0 WHEN 'UPDATE' THEN 1 ELSE 2 END::TINYINT AS op, "
            "epoch_us(received_at) AS t, hash(columns) AS ch, "
            "CASE WHEN uop <> 'DELETE' THEN hash(json_keys(coalesce(new, '{}'))) END AS nk, "
            "seek_files.fi AS f, file_row_number AS r FROM tev JOIN seek_files USING (filename) "
            f"WHERE uop IN ('INSERT', 'UPDATE', 'DELETE') ORDER BY {_ORDER}",
            params=params,
        ).to_arrow_table()
        colmap = {
            int(h): cols
            for h, cols in q.sql("SELECT hash(columns), any_value(columns) FROM tev GROUP BY ALL").fetchall()
        }
        self._index(got, colmap)
        self._usable = True

    def _index(self, got: pa.Table, colmap: dict[int, Any]) -> None:
        n = got.num_rows
        self._n = n
        self._t = np.asarray(got.column("t").to_numpy(), dtype=np.int64)
        op = np.asarray(got.column("op").to_numpy(), dtype=np.int8)
        self._op = op
        self._f = _small(np.asarray(got.column("f").to_numpy(), dtype=np.int64))
        self._r = _small(np.asarray(got.column("r").to_numpy(), dtype=np.int64))
        key = _codes(got.column("key"))
        nk = _codes(got.column("nk"))
        ch_hash = np.asarray(got.column("ch").to_numpy(), dtype=np.uint64)
        del got
        pos = np.arange(n, dtype=np.int64)
        # the column lists: codes, each one's first position, and positions grouped by code
        uniq, ch = np.unique(ch_hash, return_inverse=True)
        self._ch_cols = [colmap.get(int(h)) or () for h in uniq]
        self._ch = ch.astype(np.int32)
        by_ch = np.argsort(self._ch, kind="stable")
        self._ch_pos = _small(by_ch)
        self._ch_bounds = np.searchsorted(self._ch[by_ch], np.arange(len(uniq) + 1))
        self._ch_first = by_ch[self._ch_bounds[:-1]] if len(uniq) else np.zeros(0, np.int64)
        # chains: the events of each key in arrival order (keyless DELETEs remove nothing: no chain)
        keyed = pos[key >= 0]
        g = keyed[np.argsort(key[keyed], kind="stable")]
        m = len(g)
        gkey = key[g]
        head = np.ones(m, dtype=bool)
        head[1:] = gkey[1:] != gkey[:-1]
        nxt = np.full(n, n, dtype=np.int64)
        same = ~head[1:]
        nxt[g[:-1][same]] = g[1:][same]
        self._next = _small(nxt)
        inv = np.full(n, -1, dtype=np.int64)
        inv[g] = np.arange(m)
        self._inv = _small(inv)
        gop = op[g]
        # a row's life: from the first event after the key's last DELETE (its birth, its position)
        seg = head.copy()
        seg[1:] |= gop[:-1] == _DELETE
        seg_first = np.flatnonzero(seg)
        birth_g = seg_first[np.cumsum(seg) - 1] if m else np.zeros(0, np.int64)
        # its values: the last INSERT of that life (else its birth), merged with every later UPDATE
        last_ins = np.maximum.accumulate(np.where(gop == _INSERT, np.arange(m), -1)) if m else birth_g
        span_g = np.maximum(birth_g, last_ins)
        # uniform: every event of that span has the value names of the last one, which then holds
        # every value; otherwise the span's events with other names contribute too
        gnk = nk[g]
        run = head.copy()
        run[1:] |= gnk[1:] != gnk[:-1]
        run_first = np.maximum.accumulate(np.where(run, np.arange(m), 0)) if m else birth_g
        birth = np.zeros(n, dtype=np.int64)
        birth[g] = g[birth_g]
        self._birth = _small(birth)
        span = np.zeros(n, dtype=np.int64)
        span[g] = span_g
        self._span = _small(span)
        uniform = np.ones(n, dtype=bool)
        uniform[g] = run_first <= span_g
        self._uniform = uniform
        self._g = _small(g)
        self._gnk = gnk

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def at(self, instant: Instant) -> LiveFrame:
        """The table at ``instant`` (the same frame :func:`frame_at` gives)."""
        when = parse_instant(instant)
        if not self._usable or (
            self._key_cols is None and (self._learnt_at is None or when < self._learnt_at)
        ):
            return frame_at(
                self._cls, self.recording, self.table, when, key=self._key_arg, schema=self.schema
            )
        with self._lock:
            if self._closed:
                raise RuntimeError("this SeekIndex is closed")
            rows, cols = self._rows(when)
        frame = self._cls(None, self.table, key=self._key_cols, schema=self.schema, max_rows=None)
        frame.load_rows(list(reversed(rows)), columns=cols, key=self._key)  # type: ignore[arg-type]
        return frame

    def _columns(self, n: int) -> list[tuple[str, str | None]]:
        """The columns a frame fed the first ``n`` events learns: in order of first report, each with
        the type of its last report."""
        present = np.flatnonzero(self._ch_first < n)
        if len(present) > _MANY_COLUMN_SETS:
            rev = self._ch[:n][::-1]
            found, at_rev = np.unique(rev, return_index=True)
            last_of = dict(zip(found.tolist(), (n - 1 - at_rev).tolist(), strict=True))
        else:
            last_of = {}
            for c in present.tolist():
                lo, hi = int(self._ch_bounds[c]), int(self._ch_bounds[c + 1])
                k = lo + int(np.searchsorted(self._ch_pos[lo:hi], n)) - 1
                last_of[c] = int(self._ch_pos[k])
        order: dict[str, None] = {}
        typed: dict[str, tuple[int, str]] = {}
        for c in sorted(present.tolist(), key=lambda c: int(self._ch_first[c])):
            last = last_of[c]
            for col in self._ch_cols[c]:
                order.setdefault(col["name"], None)
                seen = typed.get(col["name"])
                if seen is None or last > seen[0]:
                    typed[col["name"]] = (last, col["type"])
        return [(name, typed[name][1] if name in typed else None) for name in order]

    def _rows(self, when: datetime) -> tuple[list[dict[str, Any]], list[tuple[str, str | None]]]:
        from harmony_lab.recording import decode_json

        n = int(np.searchsorted(self._t, instant_us(when), side="right"))
        cols = self._columns(n)
        # the live rows: each key's last event before the instant, unless a DELETE; in birth order
        live = np.flatnonzero((self._next[:n] >= n) & (self._op[:n] != _DELETE))
        live = live[np.argsort(self._birth[live], kind="stable")]
        picks: list[np.ndarray] = []
        owner: list[np.ndarray] = []
        odd = live[~self._uniform[live]]
        if len(odd):
            # the rare rows whose span mixes value names: those events contribute too (in order)
            for i in odd.tolist():
                j = int(self._inv[i])
                ks = np.arange(int(self._span[i]), j)
                extra = self._g[ks[self._gnk[ks] != self._gnk[j]]]
                picks.append(extra.astype(np.int64))
                owner.append(np.full(len(extra), i, dtype=np.int64))
        extra_pos = np.concatenate(picks) if picks else np.zeros(0, np.int64)
        extra_owner = np.concatenate(owner) if owner else np.zeros(0, np.int64)
        wanted = np.concatenate([live, extra_pos])
        values = self._fetcher.fetch(self._f[wanted], self._r[wanted])
        texts: dict[int, tuple[Any, ...]] = dict(zip(wanted.tolist(), values, strict=True))
        extras: dict[int, list[int]] = {}
        for p, o in zip(extra_pos.tolist(), extra_owner.tolist(), strict=True):
            extras.setdefault(o, []).append(p)
        rows: list[dict[str, Any]] = []
        for i in live.tolist():
            row: dict[str, Any] = {}
            for p in [*extras.get(i, ()), i]:
                text, types = texts[p]
                new = decode_json(text, json.loads(types).get("new") if types else None)
                if new:
                    row.update(new)
            rows.append(row)
        known = {name for name, _ in cols}
        for row in rows:
            for name in row:
                if name not in known:
                    known.add(name)
                    cols.append((name, None))
        return rows, cols
