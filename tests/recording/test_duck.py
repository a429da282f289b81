"""read_recording's projections and structured filters, and connect_recording's events view."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pyarrow.dataset as ds
import pytest

from harmony_lab import connect_recording, read_recording
from harmony_lab.recording import Recorder
from tests.recording.recording_events import T0, every_kind

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def rec(tmp_path):
    """Two channels' events (one with a quote in its name) in one recording."""
    events = every_kind() + every_kind(seq0=1000, channel="it's; DROP VIEW events; --")
    root = tmp_path / "rec'; SELECT 1; --"
    with Recorder(None, root) as r:
        for ev in sorted(events, key=lambda e: e.received_at):
            r.write(ev)
    return root, events


def test_columns_are_projected_in_arrival_order(rec):
    root, events = rec
    df = read_recording(root, columns=["received_at", "kind"])
    assert list(df.columns) == ["received_at", "kind"]
    full = read_recording(root)
    assert df["kind"].tolist() == full["kind"].tolist()
    assert len(df) == len(events)
    with pytest.raises(ValueError, match="unknown column"):
        read_recording(root, columns=["kind", "colour"])


def test_where_conditions(rec):
    root, _events = rec
    full = read_recording(root)
    changes = read_recording(root, where=[("kind", "==", "change"), ("op", "in", ["INSERT", "DELETE"])])
    want = full[(full["kind"] == "change") & full["op"].isin(["INSERT", "DELETE"])]
    assert changes["seq"].tolist() == want["seq"].tolist()
    assert len(want) > 0
    # a list of lists is OR of ANDs
    either = read_recording(root, where=[[("kind", "==", "gap")], [("attempt", ">=", 1)]])
    want = full[(full["kind"] == "gap") | (full["attempt"] >= 1).fillna(False)]
    assert either["seq"].tolist() == want["seq"].tolist()
    assert len(want) > 0
    nulls = read_recording(root, where=[("commit_ts", "is null"), ("kind", "==", "change")])
    assert (
        nulls["seq"].tolist() == full[(full["kind"] == "change") & full["commit_ts"].isna()]["seq"].tolist()
    )
    later = read_recording(root, where=[("received_at", ">", (T0 + timedelta(seconds=0.3)).isoformat())])
    assert (later["received_at"] > T0 + timedelta(seconds=0.3)).all()
    assert len(later) < len(full)
    assert len(read_recording(root, where=ds.field("kind") == "status")) == (full["kind"] == "status").sum()


@pytest.mark.parametrize(
    ("where", "error", "match"),
    [
        ("kind = 'change' OR 1=1", TypeError, "not SQL text"),
        ([("kind; DROP", "==", "x")], ValueError, "not a scalar column"),
        ([("kind", "LIKE", "%")], ValueError, "unknown operator"),
        ([("kind", "==")], TypeError, "needs a value"),
        ([("kind", "is null", 1)], TypeError, "takes no value"),
        ([("kind", "in", "change")], TypeError, "needs a list"),
        ([("seq", "==", "1 OR 1=1")], TypeError, "not a valid int64"),
        ([("received_at", "<", "2025-11-03T09:30:00")], ValueError, "timezone-aware"),
        ([("columns", "is null")], ValueError, "not a scalar column"),
        (["kind"], TypeError, "a where condition is a tuple"),
    ],
)
def test_where_refuses_text_and_bad_conditions_with_a_clear_error(rec, where, error, match):
    with pytest.raises(error, match=match):
        read_recording(rec[0], where=where)


def test_connect_recording_events_view(rec):
    root, events = rec
    full = read_recording(root)
    with connect_recording(root) as con:
        rows = con.sql("SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind").fetchall()
        assert rows == sorted(full.groupby("kind").size().items())
        assert con.execute("SELECT current_setting('TimeZone')").fetchone() == ("UTC",)
        cols = [d[0] for d in con.sql("SELECT * FROM events LIMIT 0").description]
        assert cols == list(full.columns)
    # selection arguments narrow the view; a hostile channel name is a value, never SQL
    hostile = "it's; DROP VIEW events; --"
    with connect_recording(root, channels=[hostile], kinds=["change"]) as con:
        got = con.sql("SELECT seq FROM events ORDER BY seq").fetchall()
        want = sorted(e.seq for e in events if e.channel == hostile and e.kind == "change")
        assert [s for (s,) in got] == want
        assert want
    with connect_recording(root, start=T0 + timedelta(seconds=0.1), end=T0 + timedelta(seconds=0.3)) as con:
        (n,) = con.execute("SELECT count(*) FROM events").fetchone()
        at = full["received_at"]
        assert n == ((at >= T0 + timedelta(seconds=0.1)) & (at < T0 + timedelta(seconds=0.3))).sum() > 0
    with connect_recording(root, channels=[]) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone() == (0,)


def test_connect_recording_settings_and_errors(rec, tmp_path):
    with connect_recording(rec[0], threads=1, memory_limit="256MB") as con:
        assert con.execute("SELECT current_setting('threads')").fetchone() == (1,)
    for bad in (0, True, "2"):
        with pytest.raises(ValueError, match="threads must be a positive int"):
            connect_recording(rec[0], threads=bad)
    with pytest.raises(duckdb.Error):
        connect_recording(rec[0], memory_limit="1GB'; DROP VIEW events; --")
    with pytest.raises(FileNotFoundError, match="no recording"):
        connect_recording(tmp_path / "nothing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with connect_recording(empty) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone() == (0,)
