"""Analysis of recorded event streams, in memory or out of core.

Every function takes a *source*: the DataFrame :func:`harmony_lab.read_recording` returns (one row
per event, the recording schema), a recording path (a directory written by ``Recorder``), or a
DuckDB relation over recording rows (e.g. ``connect_recording(path).table("events")`` narrowed
with ``.filter(...)``). For a path or relation the work runs inside DuckDB, which reads only the
columns and row groups it needs, so recordings far larger than memory work; the result is a small
pandas DataFrame, the same one the in-memory path gives for the same events. Nothing is modified in
place. The plots return matplotlib ``Figure`` objects built without pyplot (no global state, safe
with the Agg backend) that render as PNG in notebooks, including statically saved ones.

Public as :mod:`harmony_lab.analysis`.
"""

from __future__ import annotations

import contextvars
import functools
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
import pyarrow as pa

from harmony_lab._presence import PresenceState
from harmony_lab.events import ChannelStatus
from harmony_lab.recording._codec import JSON_COLUMNS, TS, decode_json
from harmony_lab.recording._duck import _connect, damaged_parts
from harmony_lab.recording._reader import ARRIVAL_ORDER, table_to_pandas

if TYPE_CHECKING:
    import duckdb
    from matplotlib.figure import Figure

    Source = pd.DataFrame | str | os.PathLike[str] | duckdb.DuckDBPyRelation

__all__ = [
    "event_rates",
    "gaps",
    "lag_summary",
    "parse_json",
    "plot_rates",
    "plot_status_timeline",
    "presence_sessions",
    "status_durations",
]

_STATUSES = [s.value for s in ChannelStatus]
_BY = ("kind", "channel", "table", "op")
_US = pd.Timedelta(microseconds=1)
_US_DTYPE = pd.DatetimeTZDtype("us", "UTC")


def _need(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{what} expects a DataFrame from read_recording(); got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs the columns {missing} (use a DataFrame from read_recording())")


def _is_relation(source: Any) -> bool:
    duckdb = sys.modules.get("duckdb")  # a relation can only exist once duckdb was imported
    return duckdb is not None and isinstance(source, duckdb.DuckDBPyRelation)


@contextmanager
def _relation(source: Any, columns: Iterable[str], what: str) -> Iterator[duckdb.DuckDBPyRelation | None]:
    """The DuckDB relation for a path or relation source (checked for ``columns``); None for a DataFrame."""
    if isinstance(source, pd.DataFrame):
        _need(source, columns, what)
        yield None
        return
    if isinstance(source, str | os.PathLike):
        con = _connect(source, skip=_SKIP.get())
        try:
            yield con.table("events")
        finally:
            con.close()
        return
    if _is_relation(source):
        missing = [c for c in columns if c not in source.columns]
        if missing:
            raise ValueError(
                f"{what} needs the columns {missing}; the relation has {source.columns} "
                "(use connect_recording(path).table('events'), narrowed with .filter(...))"
            )
        yield source
        return
    raise TypeError(
        f"{what} expects a DataFrame from read_recording(), a recording path or a DuckDB relation "
        f"over recording rows; got {type(source).__name__}"
    )


_SKIP: contextvars.ContextVar[frozenset[Path]] = contextvars.ContextVar("skip", default=frozenset())
F = TypeVar("F", bound=Callable[..., Any])


def _skipping_damaged_parts(fn: F) -> F:
    """On a recording path, a query that fails on a damaged part runs again without it.

    DuckDB reads data pages only when a query needs them, so a part with a good footer and a bad
    page fails the query. Then every part is read in full, each damaged one is named with a
    :class:`CorruptPartWarning`, and the function runs once more without them.
    """

    @functools.wraps(fn)
    def wrapper(source: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(source, str | os.PathLike) or _SKIP.get():
            return fn(source, *args, **kwargs)
        import duckdb

        try:
            return fn(source, *args, **kwargs)
        except duckdb.Error:
            bad = damaged_parts(source)
            if not bad:
                raise
        token = _SKIP.set(frozenset(bad))
        try:
            return fn(source, *args, **kwargs)
        finally:
            _SKIP.reset(token)

    return wrapper  # type: ignore[return-value]


def _query(rel: duckdb.DuckDBPyRelation, sql: str) -> pd.DataFrame:
    """``sql`` over ``rel`` (named ``ev`` in it) as a DataFrame with read_recording's dtypes.

    Timestamps come back in UTC whatever the relation's connection time zone is.
    """
    table = rel.query("ev", sql).to_arrow_table()
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type) and field.type != TS:
            table = table.set_column(i, field.name, table.column(i).cast(TS))
    return table_to_pandas(table)


def _rows(rel: duckdb.DuckDBPyRelation, columns: Iterable[str], where: str) -> pd.DataFrame:
    """Selected rows and columns in arrival order (``where`` is SQL written in this module)."""
    order = ", ".join(f'"{c}"' for c in ARRIVAL_ORDER if c in rel.columns)
    cols = ", ".join(f'"{c}"' for c in columns if c in rel.columns)
    return _query(rel, f"SELECT {cols} FROM ev WHERE {where} ORDER BY {order}")


def _tick(freq: str | pd.Timedelta) -> pd.Timedelta:
    try:
        td = pd.Timedelta(freq)
    except (ValueError, TypeError):
        raise ValueError(
            f"freq must be a fixed duration such as '100ms', '1s', '10s', '1min'; got {freq!r}"
        ) from None
    if td <= pd.Timedelta(0):
        raise ValueError(f"freq must be positive; got {freq!r}")
    return td


def parse_json(df: pd.DataFrame, columns: Iterable[str] = JSON_COLUMNS) -> pd.DataFrame:
    """A copy of ``df`` with the JSON text columns (``pk``, ``new``, ``old``, ``payload``) parsed.

    Values get back the Python types they were recorded with (datetimes, Decimals, tuples…) using
    the ``json_types`` column; without it, plain ``json.loads`` results.
    """
    cols = list(columns)
    bad = [c for c in cols if c not in JSON_COLUMNS]
    if bad:
        raise ValueError(f"not JSON columns: {bad}; the JSON columns are {list(JSON_COLUMNS)}")
    _need(df, cols, "parse_json")
    out = df.copy()
    if "json_types" in df.columns:
        notes = [json.loads(t) if isinstance(t, str) and t else {} for t in df["json_types"]]
    else:
        notes = [{}] * len(df)
    for c in cols:
        out[c] = pd.Series(
            [
                decode_json(v if isinstance(v, str) else None, n.get(c))
                for v, n in zip(df[c], notes, strict=True)
            ],
            index=df.index,
            dtype=object,
        )
    return out


@_skipping_damaged_parts
def event_rates(source: Source, freq: str | pd.Timedelta = "1s", *, by: str | None = "kind") -> pd.DataFrame:
    """Events per second in bins of ``freq``, one column per value of ``by`` (or ``events``).

    The index is the bin start (UTC, bins aligned to the Unix epoch), covering every bin from the
    first to the last event (empty bins are 0). ``by`` is one of ``kind``, ``channel``, ``table``,
    ``op`` or None for the total (a missing ``table``/``op`` counts as ``<none>``).
    """
    if by is not None and by not in _BY:
        raise ValueError(f"by must be one of {list(_BY)} or None; got {by!r}")
    td = _tick(freq)
    step = td // _US
    if step * _US != td:
        raise ValueError(f"freq must be a whole number of microseconds; got {freq!r}")
    with _relation(source, ["received_at"] + ([by] if by else []), "event_rates") as rel:
        if rel is None:
            df = source
            us = df["received_at"].astype(_US_DTYPE).astype("int64")
            key = (
                pd.Series("events", index=df.index)
                if by is None
                else df[by].astype(object).where(df[by].notna(), "<none>")
            )
            long = pd.DataFrame({"bin": us - us % step, "key": key}).groupby(["bin", "key"]).size()
            long = long.rename("n").reset_index()
        else:
            key_sql = "'events'" if by is None else f"coalesce(\"{by}\", '<none>')"
            # floor division that is also right before 1970 (SQL % keeps the dividend's sign)
            long = _query(
                rel,
                f"SELECT us - ((us % {step}) + {step}) % {step} AS bin, key, count(*) AS n FROM "
                f"(SELECT epoch_us(received_at) AS us, {key_sql} AS key FROM ev) GROUP BY ALL",
            )
    if long.empty:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="time"))
    long["bin"] = pd.to_datetime(long["bin"].astype("int64"), unit="us", utc=True).astype(_US_DTYPE)
    counts = long.pivot_table(index="bin", columns="key", values="n", aggfunc="sum", fill_value=0)
    counts = counts[sorted(counts.columns)]
    full = pd.date_range(counts.index.min(), counts.index.max(), freq=td, unit="us")
    counts = counts.reindex(full, fill_value=0)
    rates = counts.astype(float) / td.total_seconds()
    rates.index.name = "time"
    rates.columns.name = by or None
    return rates


_LAG_COLUMNS = ["count", "min_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms"]


@_skipping_damaged_parts
def lag_summary(source: Source) -> pd.DataFrame:
    """Commit → receive latency of change events per ``(schema, table)``, in milliseconds.

    Columns ``count``, ``min_ms``, ``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms``, ``mean_ms``.
    Percentiles interpolate linearly (numpy's default). Backfilled rows (read by query, not
    streamed) and rows without ``commit_ts``, ``schema`` or ``table`` are left out.
    """
    need = ["kind", "received_at", "commit_ts", "schema", "table", "backfilled"]
    with _relation(source, need, "lag_summary") as rel:
        if rel is None:
            df = source
            ch = df[
                (df["kind"] == "change")
                & df["commit_ts"].notna()
                & df["schema"].notna()
                & df["table"].notna()
                & ~df["backfilled"].astype(bool)
            ]
            lag = (ch["received_at"] - ch["commit_ts"]) / pd.Timedelta(milliseconds=1)
            g = lag.groupby([ch["schema"], ch["table"]])
            out = pd.DataFrame(
                {
                    "count": g.size(),
                    "min_ms": g.min(),
                    "p50_ms": g.quantile(0.50),
                    "p95_ms": g.quantile(0.95),
                    "p99_ms": g.quantile(0.99),
                    "max_ms": g.max(),
                    "mean_ms": g.mean(),
                }
            )
        else:
            out = _query(
                rel,
                'SELECT "schema", "table", count(*) AS count, min(lag) AS min_ms, '
                "quantile_cont(lag, 0.5) AS p50_ms, quantile_cont(lag, 0.95) AS p95_ms, "
                "quantile_cont(lag, 0.99) AS p99_ms, max(lag) AS max_ms, avg(lag) AS mean_ms FROM "
                '(SELECT "schema", "table", (epoch_us(received_at) - epoch_us(commit_ts)) / 1000.0 AS lag '
                "FROM ev WHERE kind = 'change' AND commit_ts IS NOT NULL AND \"schema\" IS NOT NULL "
                'AND "table" IS NOT NULL AND NOT backfilled) GROUP BY ALL ORDER BY "schema", "table"',
            ).set_index(["schema", "table"])
    if out.empty:
        return pd.DataFrame(
            columns=_LAG_COLUMNS, index=pd.MultiIndex.from_tuples([], names=["schema", "table"])
        ).astype(float)
    out["count"] = out["count"].astype("int64")
    out.index.names = ["schema", "table"]
    return out[_LAG_COLUMNS]


@_skipping_damaged_parts
def presence_sessions(source: Source) -> pd.DataFrame:
    """Join → leave intervals per presence key and channel.

    Presence is folded with the one reducer the roster and the manager use
    (:class:`harmony_lab._presence.PresenceState`). A key is present while it has at least one
    presence (meta; told apart by ``presence_ref``):
    a ``join`` opens a session, the ``leave`` of its last meta closes it (``end_reason='leave'``); a
    ``sync`` reopens the keys it lists and closes those it no longer lists (``'sync'``); a status
    change of the channel away from ``connected`` closes every open session (``'disconnect'``,
    presence is unknown then). Sessions still open at the end have ``left_at`` NaT and
    ``end_reason='open'``. Columns: channel, key, joined_at, left_at, duration, end_reason.
    """
    need = ["kind", "channel", "op", "payload", "received_at", "status"]
    with _relation(source, need, "presence_sessions") as rel:
        if rel is None:
            df = source
            rows_df = df[(df["kind"] == "presence") | (df["kind"] == "status")]
            rows_df = rows_df.sort_values("received_at", kind="stable")
        else:
            rows_df = _rows(rel, need, "kind IN ('presence', 'status')")
    return _sessions(rows_df)


def _sessions(rel: pd.DataFrame) -> pd.DataFrame:
    """Sessions from presence and status rows in arrival order."""
    cols = ["channel", "key", "joined_at", "left_at", "duration", "end_reason"]
    states: dict[str, PresenceState] = {}
    open_: dict[tuple[str, str], Any] = {}  # (channel, key) -> joined_at
    rows: list[dict[str, Any]] = []

    def close(channel: str, keys: Iterable[str], at: pd.Timestamp, reason: str) -> None:
        for key in keys:
            joined = open_.pop((channel, key), None)
            if joined is not None:
                rows.append(
                    {"channel": channel, "key": key, "joined_at": joined, "left_at": at, "end_reason": reason}
                )

    for kind, channel, op, payload_text, at, status in zip(
        rel["kind"], rel["channel"], rel["op"], rel["payload"], rel["received_at"], rel["status"], strict=True
    ):
        state = states.setdefault(channel, PresenceState())
        if kind == "status":
            if status != "connected":  # presence is unknown until the next sync
                close(channel, state.clear().left, at, "disconnect")
            continue
        payload = json.loads(payload_text) if isinstance(payload_text, str) else None
        diff = state.apply(str(op or ""), payload)
        close(channel, diff.left, at, "sync" if op == "sync" else "leave")
        for key in diff.joined:
            open_[(channel, key)] = at
    for (channel, key), joined in open_.items():
        rows.append(
            {"channel": channel, "key": key, "joined_at": joined, "left_at": pd.NaT, "end_reason": "open"}
        )
    out = pd.DataFrame(rows, columns=cols)
    out["joined_at"] = pd.to_datetime(out["joined_at"], utc=True)
    out["left_at"] = pd.to_datetime(out["left_at"], utc=True)
    out["duration"] = out["left_at"] - out["joined_at"]
    return out.sort_values(["channel", "joined_at", "key"], kind="stable").reset_index(drop=True)


def _status_rows(rel: duckdb.DuckDBPyRelation | None, source: Any) -> tuple[pd.DataFrame, Any]:
    """Status events in arrival order, and the last ``received_at`` of each recording session.

    From the relation when there is one, else from ``source``, a DataFrame.
    """
    if rel is None:
        df: pd.DataFrame = source
        st = df[df["kind"] == "status"].sort_values(["received_at"], kind="stable")
        last_seen = df.groupby("session_id")["received_at"].max() if "session_id" in df else None
        return st, last_seen
    st = _rows(rel, ["session_id", "channel", "status", "received_at"], "kind = 'status'")
    if "session_id" not in rel.columns:
        return st, None
    last = _query(rel, "SELECT session_id, max(received_at) AS last FROM ev GROUP BY session_id")
    return st, last.set_index("session_id")["last"]


def _status_intervals(st: pd.DataFrame, last_seen: Any, end: Any = None) -> pd.DataFrame:
    """One row per status interval: session_id, channel, status, start, end."""
    end_ts = None if end is None else pd.Timestamp(end)
    if end_ts is not None and end_ts.tzinfo is None:
        raise ValueError(f"end must be timezone-aware; got {end!r}")
    rows = []
    sess_col = st["session_id"] if "session_id" in st else pd.Series("", index=st.index)
    for (sid, channel), grp in st.groupby([sess_col, st["channel"]], sort=True):
        times = list(grp["received_at"])
        statuses = list(grp["status"])
        stop = end_ts if end_ts is not None else (last_seen[sid] if last_seen is not None else times[-1])
        for i, (t, s) in enumerate(zip(times, statuses, strict=True)):
            nxt = times[i + 1] if i + 1 < len(times) else max(stop, t)
            rows.append({"session_id": sid, "channel": channel, "status": s, "start": t, "end": nxt})
    return pd.DataFrame(rows, columns=["session_id", "channel", "status", "start", "end"])


@_skipping_damaged_parts
def status_durations(source: Source, *, end: Any = None) -> pd.DataFrame:
    """Seconds spent in each status per channel, with reconnect and error counts.

    A status lasts from its status event to the channel's next one; the last lasts until ``end``
    (default: the last event of that recording session). One row per channel; columns: one per
    status (seconds), ``total_s``, ``reconnects`` (times the channel became ``connected`` again
    after having been connected in the same session), ``reconnect_attempts`` (``reconnecting``
    status events) and ``errors`` (entries into ``error``).
    """
    with _relation(source, ["kind", "channel", "status", "received_at"], "status_durations") as rel:
        st, last_seen = _status_rows(rel, source)
    cols = [*_STATUSES, "total_s", "reconnects", "reconnect_attempts", "errors"]
    iv = _status_intervals(st, last_seen, end)
    if iv.empty:
        return pd.DataFrame(columns=cols, index=pd.Index([], name="channel"))
    iv["seconds"] = (iv["end"] - iv["start"]).dt.total_seconds()
    secs = iv.pivot_table(index="channel", columns="status", values="seconds", aggfunc="sum", fill_value=0.0)
    out = pd.DataFrame(index=secs.index)
    for s in _STATUSES:
        out[s] = secs[s].astype(float) if s in secs.columns else 0.0
    out["total_s"] = out[_STATUSES].sum(axis=1)
    reconnects: dict[str, int] = {}
    attempts: dict[str, int] = {}
    errors: dict[str, int] = {}
    for (_sid, channel), grp in iv.groupby(["session_id", "channel"], sort=False):
        prev = None
        connected_before = False
        for s in grp["status"]:
            if s == "reconnecting":
                attempts[channel] = attempts.get(channel, 0) + 1
            if s != prev:
                if s == "connected":
                    if connected_before:
                        reconnects[channel] = reconnects.get(channel, 0) + 1
                    connected_before = True
                elif s == "error":
                    errors[channel] = errors.get(channel, 0) + 1
            prev = s
    out["reconnects"] = [reconnects.get(c, 0) for c in out.index]
    out["reconnect_attempts"] = [attempts.get(c, 0) for c in out.index]
    out["errors"] = [errors.get(c, 0) for c in out.index]
    out.index.name = "channel"
    out.columns.name = None
    return out[cols]


@_skipping_damaged_parts
def gaps(source: Source) -> pd.DataFrame:
    """The recorded gaps (events that may be missing): channel, gap_start, gap_end, duration, reason.

    Includes gaps the manager reported (reconnects without replay, …) and ``recorder_overflow``
    gaps the recorder wrote when it had to drop events.
    """
    need = ["kind", "channel", "gap_start", "gap_end", "reason", "received_at"]
    with _relation(source, need, "gaps") as rel:
        if rel is None:
            g = source[source["kind"] == "gap"]
        else:
            g = _rows(rel, ["session_id", "seq", *need], "kind = 'gap'")
    cols = [c for c in ("session_id", "seq", "received_at") if c in g.columns]
    out = g[[*cols, "channel", "gap_start", "gap_end", "reason"]].copy()
    out["duration"] = out["gap_end"] - out["gap_start"]
    return out.sort_values(["gap_start", "channel"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- plots

_STATUS_COLORS = {
    "connected": "#2e7d32",
    "connecting": "#f9a825",
    "reconnecting": "#ef6c00",
    "error": "#c62828",
    "disconnected": "#9e9e9e",
}


def _figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plots need matplotlib: pip install matplotlib") from None

    class NotebookFigure(Figure):
        """A Figure that shows itself as PNG in Jupyter without pyplot."""

        def _repr_png_(self) -> bytes:
            buf = io.BytesIO()
            self.savefig(buf, format="png", bbox_inches="tight")
            return buf.getvalue()

    fig = NotebookFigure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


@_skipping_damaged_parts
def plot_status_timeline(source: Source, *, end: Any = None) -> Figure:
    """A Gantt-style timeline: one row per channel, colored by status; gaps hatched on top."""
    import matplotlib.dates as mdates
    from matplotlib.patches import Patch

    with _relation(source, ["kind", "channel", "status", "received_at"], "plot_status_timeline") as rel:
        st, last_seen = _status_rows(rel, source)
        if rel is None:
            has_gaps = "gap_start" in source.columns and "gap_end" in source.columns
            g = source[source["kind"] == "gap"] if has_gaps else None
        elif "gap_start" in rel.columns and "gap_end" in rel.columns:
            g = _rows(rel, ["channel", "gap_start", "gap_end", "received_at"], "kind = 'gap'")
        else:
            g = None
    iv = _status_intervals(st, last_seen, end)
    channels = sorted(iv["channel"].unique()) if not iv.empty else []
    fig = _figure(10, 1.2 + 0.5 * max(len(channels), 1))
    ax = fig.add_subplot()
    for row, channel in enumerate(channels):
        sub = iv[iv["channel"] == channel]
        for status, grp in sub.groupby("status"):
            starts = mdates.date2num(grp["start"].dt.tz_convert("UTC").dt.tz_localize(None))
            ends = mdates.date2num(grp["end"].dt.tz_convert("UTC").dt.tz_localize(None))
            ax.broken_barh(
                list(zip(starts, ends - starts, strict=True)),
                (row - 0.4, 0.8),
                facecolors=_STATUS_COLORS.get(str(status), "#000000"),
            )
    if g is not None:
        g = g[g["gap_start"].notna() & g["gap_end"].notna()]
        for _, r in g.iterrows():
            if r["channel"] in channels:
                row = channels.index(r["channel"])
                a = mdates.date2num(r["gap_start"].tz_convert("UTC").tz_localize(None))
                b = mdates.date2num(r["gap_end"].tz_convert("UTC").tz_localize(None))
                ax.broken_barh([(a, max(b - a, 1e-9))], (row - 0.45, 0.9), facecolors="none", hatch="///")
    ax.set_yticks(range(len(channels)), channels)
    ax.set_ylim(-0.6, max(len(channels), 1) - 0.4)
    ax.xaxis_date()
    ax.set_xlabel("time (UTC)")
    ax.set_title("channel status")
    ax.legend(
        handles=[Patch(color=c, label=s) for s, c in _STATUS_COLORS.items()],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize="small",
    )
    return fig


def plot_rates(source: Source, freq: str | pd.Timedelta = "1s", *, by: str | None = "kind") -> Figure:
    """Events per second over time (see :func:`event_rates`), one line per ``by`` value."""
    rates = event_rates(source, freq, by=by)
    fig = _figure(10, 3.5)
    ax = fig.add_subplot()
    x = rates.index.tz_convert("UTC").tz_localize(None) if len(rates) else rates.index
    for col in rates.columns:
        ax.step(x, rates[col].to_numpy(), where="post", label=str(col))
    ax.set_ylabel("events / s")
    ax.set_xlabel("time (UTC)")
    ax.set_title(f"event rate ({freq} bins)")
    if len(rates.columns):
        ax.legend(fontsize="small")
    return fig
