"""A recording as a DuckDB database: :func:`connect_recording` gives a connection with an ``events`` view.

DuckDB reads the Parquet parts directly, pushing column projections and filters into the scan, so a
query over a recording far larger than memory reads only the columns and row groups it needs and
returns a small result. The view lists the readable part files present when the connection is made
(damaged parts are skipped with a :class:`~harmony_lab.recording.CorruptPartWarning`); connect again
to see parts a running recorder adds later.

Only values this module validated itself go into SQL text (event kinds from :class:`EventKind`,
timestamps it formatted, file paths and channel names as escaped string literals); nothing a caller
writes is ever pasted into a statement.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from harmony_lab.events import EventKind
from harmony_lab.recording._codec import SCHEMA
from harmony_lab.recording._parts import SkippedPart, readable_parts, warn_skipped
from harmony_lab.recording._reader import _channels, _instant, _kinds, _select_parts

if TYPE_CHECKING:
    import duckdb

__all__ = ["connect_recording", "damaged_parts", "sql_string"]


def sql_string(text: str) -> str:
    """``text`` as a DuckDB string literal (quotes doubled; NUL, which no literal can hold, refused)."""
    if "\x00" in text:
        raise ValueError(f"a NUL character cannot be part of a recording path or channel name: {text!r}")
    return "'" + text.replace("'", "''") + "'"


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError:  # pragma: no cover - a runtime dependency
        raise ImportError("recording analysis needs duckdb: pip install duckdb") from None
    return duckdb


def connect_recording(
    path: str | os.PathLike[str],
    *,
    kinds: Iterable[str | EventKind] | str | None = None,
    channels: Iterable[str] | str | None = None,
    start: Any = None,
    end: Any = None,
    threads: int | None = None,
    memory_limit: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection whose ``events`` view is the recording at ``path``.

    The view has the recording schema's columns (one row per event); ``kinds``, ``channels``,
    ``start`` (inclusive) and ``end`` (exclusive, on ``received_at``) narrow it exactly like
    :func:`~harmony_lab.read_recording`, and directories outside them are never opened. The
    connection's time zone is UTC. ``threads`` and ``memory_limit`` (e.g. ``"1GB"``) are DuckDB
    settings for this connection::

        con = connect_recording("recordings/today")
        con.sql("SELECT kind, count(*) FROM events GROUP BY kind").df()

    A part whose footer cannot be read is left out with a :class:`CorruptPartWarning`. DuckDB reads
    data pages only when a query needs them, so damage inside a part shows as a ``duckdb.Error``
    from that query (``read_recording`` skips such a part with a warning; the analysis functions,
    given a path, find it, warn, and run again without it).
    """
    return _connect(
        path, kinds=kinds, channels=channels, start=start, end=end, threads=threads, memory_limit=memory_limit
    )


def damaged_parts(path: str | os.PathLike[str]) -> list[Path]:
    """The parts of a recording that cannot be read in full, each with a :class:`CorruptPartWarning`.

    Reads every part completely (a part with an unreadable footer is left out silently: connecting
    already warned about it), so it is meant for after a query failed, not for every query.
    """
    bad = []
    for part in readable_parts(_select_parts(Path(path), None, None, None), on_skip=lambda _skipped: None):
        try:
            pq.read_table(part.path)
        except (pa.ArrowException, OSError) as exc:
            warn_skipped(SkippedPart(part.path, f"{exc}".strip().splitlines()[0][:200]))
            bad.append(part.path)
    return bad


def _connect(
    path: str | os.PathLike[str],
    *,
    kinds: Iterable[str | EventKind] | str | None = None,
    channels: Iterable[str] | str | None = None,
    start: Any = None,
    end: Any = None,
    threads: int | None = None,
    memory_limit: str | None = None,
    skip: frozenset[Path] = frozenset(),
) -> duckdb.DuckDBPyConnection:
    kinds_l, channels_l = _kinds(kinds), _channels(channels)
    start_dt, end_dt = _instant(start, "start"), _instant(end, "end")
    selected = _select_parts(Path(path), channels_l, start_dt, end_dt)
    if skip:  # the second attempt: these were named already, and so were those with a bad footer
        parts = readable_parts([p for p in selected if p.path not in skip], on_skip=lambda _skipped: None)
    else:
        parts = readable_parts(selected)
    duckdb = _duckdb()
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int; got {threads!r}")
        con.execute(f"SET threads = {threads}")
    if memory_limit is not None:
        con.execute(f"SET memory_limit = {sql_string(str(memory_limit))}")
    if not parts:
        con.register("_empty_recording", SCHEMA.empty_table())
        con.execute("CREATE VIEW events AS SELECT * FROM _empty_recording")
        return con
    files = ", ".join(sql_string(str(p.path)) for p in parts)
    cols = ", ".join(f'"{name}"' for name in SCHEMA.names)
    conds = []
    if kinds_l is not None:
        conds.append(f"kind IN ({', '.join(sql_string(k) for k in kinds_l)})" if kinds_l else "false")
    if channels_l is not None:
        conds.append(
            f"channel IN ({', '.join(sql_string(c) for c in channels_l)})" if channels_l else "false"
        )
    if start_dt is not None:
        conds.append(f"received_at >= TIMESTAMPTZ {sql_string(start_dt.isoformat())}")
    if end_dt is not None:
        conds.append(f"received_at < TIMESTAMPTZ {sql_string(end_dt.isoformat())}")
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    con.execute(
        f"CREATE VIEW events AS SELECT {cols} FROM read_parquet([{files}], hive_partitioning = false, "
        f"union_by_name = true){where}"
    )
    return con
