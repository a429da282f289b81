"""Files on disk: rotation by rows and by time, republished open parts, the manifest, overflow."""

from __future__ import annotations

import fcntl
import json
import logging
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from harmony_lab.events import RealtimeEvent
from harmony_lab.recording import Recorder, read_recording
from harmony_lab.recording._layout import LOCK_NAME, MANIFEST_NAME, iter_parts
from tests.recording.recording_events import T0, every_kind


def ticks(n: int, channel: str = "c", seq0: int = 0, step_ms: float = 1.0) -> list[RealtimeEvent]:
    return [
        RealtimeEvent(
            kind="broadcast",
            channel=channel,
            seq=seq0 + i,
            op="tick",
            payload={"i": seq0 + i},
            received_at=T0 + timedelta(milliseconds=step_ms * i),
            received_mono_ns=1_000_000 * (seq0 + i),
        )
        for i in range(n)
    ]


def visible_files(root: Path) -> list[Path]:
    return sorted(p.path for p in iter_parts(root))


def manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST_NAME).read_text())


def test_rotation_by_rows(tmp_path):
    evs = ticks(350)
    with Recorder(None, tmp_path, rotate_rows=100) as rec:
        for ev in evs:
            rec.write(ev)
    files = visible_files(tmp_path)
    tables = {f.name: pq.read_table(f) for f in files}
    sid = rec.session_id
    assert sorted(tables) == sorted(f"part-{sid}-{s}.parquet" for s in (0, 100, 200, 300))
    assert sorted(t.num_rows for t in tables.values()) == [50, 100, 100, 100]
    for f in files:
        meta = pq.read_metadata(f)
        assert meta.num_row_groups == 1  # batched: never a row group per event
        assert meta.row_group(0).column(0).compression == "ZSTD"
        seqs = pq.read_table(f).column("seq").to_pylist()
        first = int(f.name.rsplit("-", 1)[1].removesuffix(".parquet"))
        assert seqs == list(range(first, first + len(seqs)))


def test_rotation_by_time(tmp_path):
    batches = [ticks(5, seq0=0), ticks(5, seq0=100), ticks(5, seq0=200)]
    with Recorder(None, tmp_path, rotate_seconds=0.3, flush_seconds=0.05) as rec:
        for i, batch in enumerate(batches):
            for ev in batch:
                rec.write(ev)
            if i < len(batches) - 1:
                time.sleep(0.9)  # > rotate_seconds + a flush: the part is closed meanwhile
    files = visible_files(tmp_path)
    assert [pq.read_table(f).column("seq").to_pylist() for f in files] == [
        [e.seq for e in b] for b in batches
    ]
    assert rec.stats["files"] == 3


def test_open_part_is_republished_complete_at_each_flush(tmp_path):
    rec = Recorder(None, tmp_path, flush_seconds=30)
    rec.start()
    try:
        for ev in ticks(10):
            rec.write(ev)
        assert visible_files(tmp_path) == []  # nothing flushed yet (flush_seconds=30)
        rec.flush()
        (first,) = visible_files(tmp_path)
        assert pq.read_table(first).num_rows == 10
        for ev in ticks(15, seq0=10):
            rec.write(ev)
        rec.flush()
        assert visible_files(tmp_path) == [first]  # same part, replaced atomically, now longer
        assert pq.read_table(first).column("seq").to_pylist() == list(range(25))
        m = manifest(tmp_path)["sessions"][rec.session_id]
        assert m["status"] == "recording"
        assert m["ended_at"] is None
        assert m["events"] == 25
        assert not [p for p in first.parent.iterdir() if p.name.endswith(".tmp")]
    finally:
        rec.stop()


def test_manifest(tmp_path, events):
    other = every_kind(t0=T0 + timedelta(seconds=1), seq0=100, channel="room:b")
    with Recorder(None, tmp_path, rotate_rows=7) as rec:
        for ev in events + other:
            rec.write(ev)
    with Recorder(None, tmp_path) as rec2:
        for ev in ticks(3, channel="second"):
            rec2.write(ev)
    data = manifest(tmp_path)
    assert set(data["sessions"]) == {rec.session_id, rec2.session_id}
    m = data["sessions"][rec.session_id]
    everything = events + other
    assert m["status"] == "stopped"
    assert m["started_at"] <= m["ended_at"]
    assert m["events"] == len(everything)
    assert m["counts"]["kind"] == dict(Counter(str(e.kind) for e in everything))
    assert m["counts"]["channel"] == {"room:lobby": len(events), "room:b": len(other)}
    assert m["first_seq"] == min(e.seq for e in everything)
    assert m["last_seq"] == max(e.seq for e in everything)
    assert m["first_received_at"] == min(e.received_at for e in everything).isoformat()
    assert m["last_received_at"] == max(e.received_at for e in everything).isoformat()
    session_files = [p for p in iter_parts(tmp_path) if p.session_id == rec.session_id]
    assert m["files"] == len(session_files)
    assert m["bytes"] == sum(p.path.stat().st_size for p in session_files)
    gap_events = [e for e in everything if e.kind == "gap"]
    assert m["gaps_total"] == len(gap_events) == 2
    assert {(g["channel"], g["start"], g["end"], g["reason"]) for g in m["gaps"]} == {
        (e.channel, e.gap_start.isoformat(), e.gap_end.isoformat(), e.reason) for e in gap_events
    }
    assert m["settings"]["rotate_rows"] == 7
    assert m["versions"]["pyarrow"]
    assert m["source"].startswith("manual")
    assert m["bindings"] is None
    assert m["dropped"] == 0
    assert data["sessions"][rec2.session_id]["counts"]["channel"] == {"second": 3}


class ListenerSource:
    """The documented manager contract: add_listener(fn) -> remove_fn, get_debug_info()."""

    def __init__(self) -> None:
        self.listeners: list = []

    def add_listener(self, fn):
        self.listeners.append(fn)
        return lambda: self.listeners.remove(fn)

    def get_debug_info(self):
        return {"channels": {"room:lobby": {"bindings": [{"event": "*", "table": "messages"}]}}}

    def emit(self, ev: RealtimeEvent) -> None:
        for fn in list(self.listeners):
            fn(ev)


async def test_listener_source_records_and_snapshots_bindings(tmp_path, events):
    src = ListenerSource()
    async with Recorder(src, tmp_path) as rec:
        assert len(src.listeners) == 1
        for ev in events:
            src.emit(ev)
    assert src.listeners == []  # detached at stop
    assert len(read_recording(tmp_path)) == len(events)
    m = manifest(tmp_path)["sessions"][rec.session_id]
    assert m["bindings"] == src.get_debug_info()
    assert m["source"].startswith("manager:")


def test_overflow_is_counted_logged_and_recorded_as_a_gap(tmp_path, caplog):
    evs = ticks(40)
    # stall the writer the way a hung disk would: it blocks on the manifest lock at start
    lock = open(tmp_path / LOCK_NAME, "a+")  # noqa: SIM115
    fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
    rec = Recorder(None, tmp_path, max_queue=10)
    with caplog.at_level(logging.ERROR, logger="harmony_lab.recording"):
        rec.start()
        for ev in evs:
            rec.write(ev)
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        lock.close()
        rec.stop()
    assert any("DROPPING" in r.getMessage() for r in caplog.records)
    assert rec.stats["dropped"] == 30
    df = read_recording(tmp_path)
    kept = df[df["kind"] == "broadcast"]
    assert list(kept["seq"]) == list(range(10))
    gap = df[df["kind"] == "gap"]
    assert len(gap) == 1
    assert gap["seq"].iloc[0] == 10
    assert gap["gap_start"].iloc[0].to_pydatetime() == evs[10].received_at
    assert gap["gap_end"].iloc[0].to_pydatetime() == evs[39].received_at
    assert gap["reason"].iloc[0].startswith("recorder_overflow: 30 events dropped")
    m = manifest(tmp_path)["sessions"][rec.session_id]
    assert m["dropped"] == 30
    assert m["dropped_by_channel"] == {"c": 30}
    assert m["gaps_total"] == 1


def test_writer_failure_is_raised_not_swallowed(tmp_path, caplog):
    blocker = tmp_path / "rec"
    blocker.mkdir()
    rec = Recorder(None, blocker)
    rec.start()
    rec.flush()
    # make the partition directory impossible to create: a file where the date= directory goes
    (blocker / "date=2025-11-03").write_text("not a directory")
    for ev in ticks(3):
        rec.write(ev)
    with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError, match="failed"):
        rec.flush()
    assert rec.state == "failed"
    with pytest.raises(RuntimeError, match="failed"):
        rec.write(ticks(1)[0])
    with pytest.raises(RuntimeError, match="failed") as info:
        rec.stop()
    assert isinstance(info.value.__cause__, OSError)
    assert manifest(blocker)["sessions"][rec.session_id]["status"] == "failed"


def test_a_file_as_the_recording_path_is_refused_and_left_alone(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    with pytest.raises(NotADirectoryError, match=r"is a file; a recording is a directory .*'recordings/'"):
        Recorder(None, target)
    assert target.read_text() == "keep me"
