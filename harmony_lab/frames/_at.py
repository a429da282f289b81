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
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from harmony_lab.events import RealtimeEvent

if TYPE_CHECKING:
    import duckdb

    from harmony_lab.frames._live import LiveFrame

logger = logging.getLogger(__name__)

__all__ = ["frame_at", "parse_instant", "recording_parts"]

MEMORY_LIMIT = "1GB"
"""DuckDB's memory cap for one query (it spills to a temporary directory beyond it)."""
_MAX_KEY_COLUMNS = 32
_MAX_NAME_CHARS = 1000
_ORDER = "received_at, session_id, received_mono_ns, seq"
_BATCH = 8192


def parse_instant(value: Any, name: str = "instant") -> datetime:
    """A timezone-aware datetime (``datetime``, ``pandas.Timestamp`` or ISO 8601 string), as UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{name} must be an ISO 8601 timestamp with a UTC offset; got {value!r}"
            ) from None
    elif hasattr(value, "to_pydatetime"):  # pandas.Timestamp
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        raise TypeError(
            f"{name} must be a timezone-aware datetime, pandas.Timestamp or ISO string; got {value!r}"
        )
    if value.tzinfo is None:
        raise ValueError(
            f"{name} must be timezone-aware (e.g. datetime(..., tzinfo=UTC)); got naive {value!r}"
        )
    return value.astimezone(UTC)


def recording_parts(recording: str | os.PathLike[str]) -> list[str]:
    """The readable part files of a recording (damaged ones skipped with a ``CorruptPartWarning``)."""
    # frames sit beside recording in the layers; this lazy import is the one way in (pyproject.toml)
    from harmony_lab.recording._layout import iter_parts
    from harmony_lab.recording._parts import readable_parts

    root = Path(recording)
    if not root.exists():
        raise FileNotFoundError(f"no recording at {root} (expected a directory written by Recorder)")
    parts = sorted(iter_parts(root), key=lambda p: p.sort_key)
    return [str(p.path) for p in readable_parts(parts)]


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
        from harmony_lab.recording._codec import events_from_table

        reader = self.con.sql(f"SELECT * EXCLUDE (uop, vals) FROM tev ORDER BY {_ORDER}").to_arrow_reader(
            _BATCH
        )
        for batch in reader:
            yield from events_from_table(batch)


def _healthy(con: duckdb.DuckDBPyConnection, parts: list[str]) -> list[str]:
    """The parts DuckDB can read in full (each damaged one named in a ``CorruptPartWarning``)."""
    import duckdb

    from harmony_lab.recording._parts import CorruptPartWarning

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
    instant: Any,
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
    from harmony_lab.recording._codec import decode_json

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


class SeekIndex:
    """One table of one recording, indexed for many :meth:`at` calls (what the Player seeks with).

    Building it reads the table's change events once and keeps, per event, only its key, operation,
    arrival time and order, a hash of its reported columns and of its values' column names, and where
    it is stored (file and row). A seek then aggregates that index in memory and reads just the rows
    that make up the live rows from their files: far less than :func:`frame_at` reading every event.
    The result is the same (a table with a key-changing UPDATE, and instants before the first keyed
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
        self._con: duckdb.DuckDBPyConnection | None = None
        self._learnt_at: datetime | None = None
        self._usable = False
        self._colmap: dict[int, Any] = {}
        parts = recording_parts(recording)
        if not parts:
            return
        con = connect()
        try:
            q = _Query(con, parts, table, schema, _FOREVER, located=True)
            learnt = self._key_cols
            if learnt is None:
                found = q.learn_key_at()
                if found is not None:
                    learnt, self._learnt_at = found
            if learnt is not None:
                _check_names(learnt, "the recorded primary key")
            if q.has_key_change(learnt):
                con.close()
                return
            key_expr, params = q.key_sql(learnt)
            q.sql(
                "CREATE TABLE idx AS SELECT coalesce((" + key_expr + "), CASE WHEN uop <> 'DELETE' THEN "
                "'\u0000unkeyed:' || session_id || ':' || seq END) AS key, uop, received_at AS t, "
                "hash(columns) AS ch, "
                "CASE WHEN uop <> 'DELETE' THEN hash(json_keys(coalesce(new, '{}'))) END AS nk, "
                "filename AS f, file_row_number AS r FROM tev "
                f"WHERE uop IN ('INSERT', 'UPDATE', 'DELETE') ORDER BY {_ORDER}",
                params,
            )
            self._colmap = {
                int(h): cols
                for h, cols in q.sql(
                    "SELECT hash(columns), any_value(columns) FROM tev GROUP BY ALL"
                ).fetchall()
            }
            self._key = learnt
        except BaseException:
            con.close()
            raise
        self._con = con
        self._usable = True

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def at(self, instant: Any) -> LiveFrame:
        """The table at ``instant`` (the same frame :func:`frame_at` gives)."""
        when = parse_instant(instant)
        if not self._usable or (
            self._key_cols is None and (self._learnt_at is None or when < self._learnt_at)
        ):
            return frame_at(
                self._cls, self.recording, self.table, when, key=self._key_arg, schema=self.schema
            )
        with self._lock:
            con = self._con
            if con is None:
                raise RuntimeError("this SeekIndex is closed")
            rows, cols = self._rows(con, when)
        frame = self._cls(None, self.table, key=self._key_cols, schema=self.schema, max_rows=None)
        frame.load_rows(list(reversed(rows)), columns=cols, key=self._key)  # type: ignore[arg-type]
        return frame

    def _rows(
        self, con: duckdb.DuckDBPyConnection, when: datetime
    ) -> tuple[list[dict[str, Any]], list[tuple[str, str | None]]]:
        from harmony_lab.recording._codec import decode_json

        t = f"{_lit(when.isoformat())}::TIMESTAMPTZ"
        order: dict[str, None] = {}
        typed: dict[str, tuple[int, str]] = {}
        for ch, _first, last in con.execute(
            f"SELECT ch, min(rowid), max(rowid) FROM idx WHERE t <= {t} GROUP BY ch ORDER BY 2"
        ).fetchall():
            for c in self._colmap.get(int(ch)) or ():
                order.setdefault(c["name"], None)
                seen = typed.get(c["name"])
                if seen is None or last > seen[0]:
                    typed[c["name"]] = (last, c["type"])
        cols: list[tuple[str, str | None]] = [(n, typed[n][1] if n in typed else None) for n in order]
        con.execute(
            "CREATE OR REPLACE TEMP TABLE agg AS SELECT key, max(rowid) AS last, "
            "arg_max(uop, rowid) AS last_op, arg_max(nk, rowid) AS last_nk, "
            "max(rowid) FILTER (WHERE uop = 'DELETE') AS last_del, "
            "max(rowid) FILTER (WHERE uop = 'INSERT') AS last_ins "
            f"FROM idx WHERE t <= {t} AND key IS NOT NULL "
            "GROUP BY key HAVING arg_max(uop, rowid) <> 'DELETE'"
        )
        located = con.execute(
            "WITH life AS (SELECT idx.key, min(idx.rowid) AS birth FROM idx JOIN agg USING (key) "
            f"WHERE idx.t <= {t} AND idx.uop <> 'DELETE' "
            "AND (agg.last_del IS NULL OR idx.rowid > agg.last_del) "
            "GROUP BY idx.key) "
            "SELECT idx.f, idx.r, idx.key, life.birth, idx.rowid FROM idx "
            "JOIN life USING (key) JOIN agg USING (key) "
            "WHERE idx.rowid >= greatest(life.birth, coalesce(agg.last_ins, life.birth)) "
            "AND idx.rowid <= agg.last "
            "AND (idx.rowid = agg.last OR idx.nk IS DISTINCT FROM agg.last_nk) ORDER BY life.birth, idx.rowid"
        ).fetchall()
        by_file: dict[str, list[int]] = {}
        for f, r, *_ in located:
            by_file.setdefault(f, []).append(int(r))
        values: dict[tuple[str, int], tuple[str | None, str | None]] = {}
        for f, wanted in by_file.items():
            got = con.execute(
                "SELECT file_row_number, new, json_types FROM read_parquet(?, file_row_number = true, "
                "hive_partitioning = false) WHERE file_row_number IN (SELECT unnest(?::BIGINT[]))",
                [f, wanted],
            ).fetchall()
            for r, text, types in got:
                values[(f, int(r))] = (text, types)
        rows: list[dict[str, Any]] = []
        current: object = object()
        for f, r, k, _birth, _o in located:
            if k != current:
                current = k
                rows.append({})
            text, types = values.get((f, int(r)), (None, None))
            new = decode_json(text, json.loads(types).get("new") if types else None)
            if new:
                rows[-1].update(new)
        known = {n for n, _ in cols}
        for row in rows:
            for name in row:
                if name not in known:
                    known.add(name)
                    cols.append((name, None))
        return rows, cols
