"""Analysis functions on synthetic recordings whose answers are known by construction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import matplotlib
import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient

from harmony_lab import analysis
from harmony_lab.events import RealtimeEvent
from harmony_lab.recording import Recorder, read_recording

T = datetime(2025, 11, 3, 10, 0, 0, tzinfo=UTC)  # on a whole second: bins are predictable


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def recorded(tmp_path, events: list[RealtimeEvent]) -> pd.DataFrame:
    with Recorder(None, tmp_path) as rec:
        for i, ev in enumerate(events):
            rec.write(ev.replace(seq=i))
    return read_recording(tmp_path)


def ev(kind: str, t: float, channel: str = "room", **kw) -> RealtimeEvent:
    return RealtimeEvent(kind=kind, channel=channel, received_at=at(t), **kw)


def test_event_rates(tmp_path):
    # bin 0: 3 changes + 1 broadcast; bin 1: nothing; bin 2: 2 changes
    times = {"change": [0.1, 0.2, 0.9, 2.0, 2.5], "broadcast": [0.4]}
    evs = [ev(k, t) for k, ts in times.items() for t in ts]
    df = recorded(tmp_path, evs)
    r = analysis.event_rates(df, "1s")
    assert list(r.index) == [pd.Timestamp(at(s)) for s in (0, 1, 2)]
    assert r["change"].tolist() == [3.0, 0.0, 2.0]
    assert r["broadcast"].tolist() == [1.0, 0.0, 0.0]
    half = analysis.event_rates(df, "500ms", by=None)
    # counts per half second: [0,.5): .1 .2 .4 -> 3 ; [.5,1): .9 -> 1; then 0,0; [2,2.5): 1; [2.5,3): 1
    assert half["events"].tolist() == [6.0, 2.0, 0.0, 0.0, 2.0, 2.0]
    assert analysis.event_rates(df, "1s", by="channel")["room"].tolist() == [4.0, 0.0, 2.0]
    with pytest.raises(ValueError, match="fixed duration"):
        analysis.event_rates(df, "1 fortnight")
    with pytest.raises(ValueError, match="by must be one of"):
        analysis.event_rates(df, by="colour")
    assert analysis.event_rates(df.iloc[0:0]).empty


def test_lag_summary(tmp_path):
    evs = []
    for k in range(1, 101):  # messages: lags 1..100 ms
        evs.append(
            ev("change", k, schema="public", table="messages", op="INSERT", commit_ts=at(k - k / 1000))
        )
    for lag_ms in (10, 20):
        evs.append(
            ev(
                "change",
                200,
                schema="public",
                table="reactions",
                op="INSERT",
                commit_ts=at(200 - lag_ms / 1000),
            )
        )
    # excluded: backfilled rows and rows without commit_ts
    evs.append(ev("change", 300, schema="public", table="messages", commit_ts=at(0), backfilled=True))
    evs.append(ev("change", 300, schema="public", table="messages", commit_ts=None))
    evs.append(ev("broadcast", 300))
    s = analysis.lag_summary(recorded(tmp_path, evs))
    m = s.loc[("public", "messages")]
    lags = np.arange(1, 101, dtype=float)
    assert m["count"] == 100
    assert m["min_ms"] == pytest.approx(1.0)
    assert m["max_ms"] == pytest.approx(100.0)
    # linear interpolation over 1..100: the q-quantile is 1 + 99 q
    assert m["p50_ms"] == pytest.approx(1 + 99 * 0.50)
    assert m["p95_ms"] == pytest.approx(1 + 99 * 0.95)
    assert m["p99_ms"] == pytest.approx(1 + 99 * 0.99)
    assert m["mean_ms"] == pytest.approx(lags.mean())
    r = s.loc[("public", "reactions")]
    assert (r["count"], r["p50_ms"], r["max_ms"]) == (2, pytest.approx(15.0), pytest.approx(20.0))
    assert analysis.lag_summary(recorded(tmp_path / "empty", [ev("gap", 0)])).empty


def test_presence_sessions(tmp_path):
    def meta(ref: str) -> dict:  # realtime-py's shape (raw Phoenix metas say phx_ref: both work)
        return {"presence_ref" if ref != "r1" else "phx_ref": ref, "status": "online"}

    evs = [
        ev("status", 0, status="connected"),
        ev("presence", 0, op="sync", payload={"a": [meta("r1")]}),
        ev("presence", 1, op="join", payload={"key": "b", "current": [], "new": [meta("r2")]}),
        ev("presence", 2, op="join", payload={"key": "b", "current": [meta("r2")], "new": [meta("r3")]}),
        ev(
            "presence", 2, channel="other", op="join", payload={"key": "c", "current": [], "new": [meta("x")]}
        ),
        ev("presence", 3, op="leave", payload={"key": "b", "current": [meta("r3")], "left": [meta("r2")]}),
        ev("presence", 4, op="leave", payload={"key": "b", "current": [], "left": [meta("r3")]}),
        ev("presence", 5, op="sync", payload={"b": {"metas": [meta("r4")]}}),
        ev("status", 6, status="reconnecting", attempt=1),
        ev("status", 7, status="connected"),
        ev("presence", 8, op="sync", payload={"a": [meta("r5")]}),
        ev("broadcast", 9),
    ]
    got = analysis.presence_sessions(recorded(tmp_path, evs))
    rows = [
        (r.channel, r.key, r.joined_at, None if pd.isna(r.left_at) else r.left_at, r.end_reason)
        for r in got.itertuples()
    ]
    ts = lambda s: pd.Timestamp(at(s))  # noqa: E731
    assert rows == [
        ("other", "c", ts(2), None, "open"),
        ("room", "a", ts(0), ts(5), "sync"),
        ("room", "b", ts(1), ts(4), "leave"),  # second tab kept b present until t=4
        ("room", "b", ts(5), ts(6), "disconnect"),
        ("room", "a", ts(8), None, "open"),
    ]
    assert got.loc[got["key"] == "b", "duration"].tolist() == [
        pd.Timedelta(seconds=3),
        pd.Timedelta(seconds=1),
    ]


def test_status_durations(tmp_path):
    evs = [
        ev("status", 0, status="connecting"),
        ev("status", 1, status="connected"),
        ev("status", 11, status="reconnecting", attempt=1),
        ev("status", 12, status="reconnecting", attempt=2),
        ev("status", 14, status="connected"),
        ev("status", 20, status="error", reason="CHANNEL_ERROR"),
        ev("status", 25, status="disconnected"),
        ev("status", 2, channel="quiet", status="connected"),
        ev("broadcast", 30, channel="quiet"),  # last event of the session: statuses last until t=30
    ]
    d = analysis.status_durations(recorded(tmp_path, evs))
    room = d.loc["room"]
    assert room["connecting"] == pytest.approx(1)
    assert room["connected"] == pytest.approx((11 - 1) + (20 - 14))
    assert room["reconnecting"] == pytest.approx(14 - 11)
    assert room["error"] == pytest.approx(5)
    assert room["disconnected"] == pytest.approx(5)
    assert room["total_s"] == pytest.approx(30)
    assert (room["reconnects"], room["reconnect_attempts"], room["errors"]) == (1, 2, 1)
    quiet = d.loc["quiet"]
    assert quiet["connected"] == pytest.approx(28)
    assert quiet["reconnects"] == 0
    later = analysis.status_durations(recorded(tmp_path / "b", evs), end=at(40))
    assert later.loc["room", "disconnected"] == pytest.approx(15)


def test_gaps(tmp_path):
    evs = [
        ev("gap", 5, gap_start=at(1), gap_end=at(4), reason="socket closed"),
        ev("broadcast", 6),
        ev("gap", 9, channel="b", gap_start=at(7), gap_end=at(7.5), reason="rejoin"),
    ]
    g = analysis.gaps(recorded(tmp_path, evs))
    assert g["channel"].tolist() == ["room", "b"]
    assert g["duration"].tolist() == [pd.Timedelta(seconds=3), pd.Timedelta(seconds=0.5)]
    assert g["reason"].tolist() == ["socket closed", "rejoin"]


def test_plots_are_agg_safe_figures(tmp_path):
    matplotlib.use("Agg")
    evs = [
        ev("status", 0, status="connecting"),
        ev("status", 1, status="connected"),
        ev("status", 3, status="reconnecting"),
        ev("gap", 3.5, gap_start=at(3), gap_end=at(4)),
        ev("status", 4, status="connected"),
        ev("status", 1, channel="b", status="connected"),
        ev("broadcast", 6, channel="b"),
    ]
    df = recorded(tmp_path, evs)
    fig = analysis.plot_status_timeline(df)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "room"]
    # one bar collection per (channel, status) plus the hatched gap
    assert len(ax.collections) == 1 + 3 + 1
    assert fig._repr_png_().startswith(b"\x89PNG")
    fig2 = analysis.plot_rates(df, "1s")
    assert {line.get_label() for line in fig2.axes[0].get_lines()} == {"status", "gap", "broadcast"}
    assert fig2._repr_png_().startswith(b"\x89PNG")


def test_plots_render_as_png_in_an_executed_notebook(tmp_path):
    evs = [ev("status", 0, status="connected"), ev("broadcast", 1), ev("status", 2, status="error")]
    recorded(tmp_path / "rec", evs)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from harmony_lab import read_recording, analysis\n"
            f"df = read_recording({str(tmp_path / 'rec')!r})"
        ),
        nbformat.v4.new_code_cell("analysis.plot_status_timeline(df)"),
        nbformat.v4.new_code_cell("analysis.plot_rates(df)"),
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    for cell in nb.cells[1:]:
        (out,) = [o for o in cell.outputs if o.output_type == "execute_result"]
        assert "image/png" in out.data
