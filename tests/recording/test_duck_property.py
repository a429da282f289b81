"""The DuckDB path of every analysis function gives the in-memory answer, on random recordings.

Each example writes a random recording (several recording sessions, several channels, every kind
the analysis looks at, awkward timings) with the real Recorder, then compares the function on the
DataFrame from read_recording with the same function on the recording path and on a DuckDB
relation over it.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harmony_lab import analysis
from harmony_lab.events import RealtimeEvent
from harmony_lab.recording import Recorder, connect_recording, read_recording

T0 = datetime(2025, 11, 3, 23, 59, 58, tzinfo=UTC)  # crosses a date boundary: two date= directories
CHANNELS = ["room:a", "room:b", "it's"]
STATUSES = ["connecting", "connected", "reconnecting", "error", "disconnected"]


def meta(ref: int) -> dict:
    return {"presence_ref": f"r{ref}", "status": "online"}


@st.composite
def event(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(["change", "change", "status", "presence", "gap", "broadcast"]))
    t = T0 + timedelta(microseconds=draw(st.integers(0, 4_000_000)))
    kw: dict = {"kind": kind, "channel": draw(st.sampled_from(CHANNELS)), "received_at": t}
    if kind == "change":
        kw |= {
            "schema": draw(st.sampled_from(["public", "audit"])),
            "table": draw(st.sampled_from(["messages", "reactions"])),
            "op": draw(st.sampled_from(["INSERT", "UPDATE", "DELETE"])),
            "commit_ts": draw(
                st.one_of(st.none(), st.integers(0, 900_000).map(lambda us: t - timedelta(microseconds=us)))
            ),
            "backfilled": draw(st.booleans()),
        }
    elif kind == "status":
        kw |= {"status": draw(st.sampled_from(STATUSES)), "attempt": draw(st.none() | st.integers(0, 5))}
    elif kind == "presence":
        op = draw(st.sampled_from(["join", "leave", "sync"]))
        key = draw(st.sampled_from(["u1", "u2"]))
        refs = draw(st.lists(st.integers(0, 3), max_size=2))
        if op == "sync":
            payload: dict = {key: [meta(r) for r in refs]}
        else:
            side = "new" if op == "join" else "left"
            payload = {"key": key, "current": [meta(r) for r in refs[:1]], side: [meta(r) for r in refs]}
        kw |= {"op": op, "payload": payload}
    elif kind == "gap":
        a = t - timedelta(milliseconds=draw(st.integers(0, 2000)))
        kw |= {"gap_start": a, "gap_end": t, "reason": draw(st.sampled_from(["reconnect", "overflow"]))}
    return kw


recordings = st.lists(st.lists(event(), max_size=25), min_size=1, max_size=3)


def write(root: Path, sessions: list[list[dict]]) -> None:
    for events in sessions:
        with Recorder(None, root) as rec:
            for seq, kw in enumerate(events):
                rec.write(RealtimeEvent(seq=seq, received_mono_ns=seq, **kw))


def same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-9)


FUNCTIONS = {
    "lag_summary": analysis.lag_summary,
    "event_rates": lambda s: analysis.event_rates(s, "250ms"),
    "event_rates_by_table": lambda s: analysis.event_rates(s, "1s", by="table"),
    "event_rates_total": lambda s: analysis.event_rates(s, "700ms", by=None),
    "status_durations": analysis.status_durations,
    "status_durations_end": lambda s: analysis.status_durations(s, end=T0 + timedelta(seconds=9)),
    "gaps": analysis.gaps,
    "presence_sessions": analysis.presence_sessions,
}


@pytest.mark.slow
@pytest.mark.timeout(300)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sessions=recordings)
def test_duckdb_and_pandas_paths_agree(sessions):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root, sessions)
        df = read_recording(root)
        con = connect_recording(root)
        try:
            rel = con.table("events")
            for i, (name, fn) in enumerate(FUNCTIONS.items()):
                want = fn(df)
                for got in (fn(root if i % 2 else str(root)), fn(rel)):
                    try:
                        same(got, want)
                    except AssertionError as exc:
                        raise AssertionError(f"{name}: {exc}") from None
        finally:
            con.close()


def test_a_narrowed_relation_is_the_narrowed_frame(tmp_path):
    """A relation narrowed with .filter() answers like the same rows selected in pandas."""
    sessions = [
        [
            {
                "kind": "change",
                "channel": c,
                "received_at": T0 + timedelta(seconds=i / 10),
                "schema": "public",
                "table": "messages",
                "op": "INSERT",
                "commit_ts": T0 + timedelta(seconds=i / 10 - 0.01 * (i % 7)),
            }
            for i, c in enumerate(CHANNELS * 20)
        ]
    ]
    write(tmp_path, sessions)
    df = read_recording(tmp_path)
    with connect_recording(tmp_path) as con:
        rel = con.table("events").filter("channel = 'room:a'")
        same(analysis.lag_summary(rel), analysis.lag_summary(df[df["channel"] == "room:a"]))
        assert analysis.lag_summary(rel)["count"].sum() == 20
