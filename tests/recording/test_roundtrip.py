"""Write → read_recording and → replay give back the recorded events, field for field."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from harmony_lab import analysis
from harmony_lab.events import EventKind, RealtimeEvent
from harmony_lab.recording import Recorder, read_recording, replay
from harmony_lab.recording._layout import iter_parts
from tests.recording.recording_events import T0, every_kind


def _fields(ev: RealtimeEvent) -> dict[str, object]:
    return {f.name: getattr(ev, f.name) for f in dataclasses.fields(ev)}


def assert_same_events(got: list[RealtimeEvent], want: list[RealtimeEvent]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g == w, f"\n got {_fields(g)}\nwant {_fields(w)}"
        for name, value in _fields(w).items():
            # same types too (not just equal values): tuple stays tuple, Decimal stays Decimal …
            assert type(getattr(g, name)) is type(value), name


def record(path: Path, events: list[RealtimeEvent], **kw: object) -> Recorder:
    with Recorder(None, path, **kw) as rec:  # type: ignore[arg-type]
        for ev in events:
            rec.write(ev)
    return rec


async def replay_all(path: Path, **kw: object) -> list[RealtimeEvent]:
    return [ev async for ev in replay(path, speed=None, **kw)]  # type: ignore[arg-type]


async def test_every_kind_round_trips_through_replay(tmp_path, events):
    assert {ev.kind for ev in events} == set(EventKind)
    record(tmp_path, events)
    assert_same_events(await replay_all(tmp_path), events)


def test_every_kind_round_trips_through_read_recording(tmp_path, events):
    record(tmp_path, events)
    df = read_recording(tmp_path)
    assert list(df["seq"]) == [ev.seq for ev in events]
    assert set(df["kind"]) == {str(k) for k in EventKind}
    assert str(df["received_at"].dtype) == "datetime64[us, UTC]"
    assert str(df["attempt"].dtype) == "Int64"
    for ev, row in zip(events, df.itertuples(index=False), strict=True):
        assert row.received_at.to_pydatetime() == ev.received_at
        assert row.received_mono_ns == ev.received_mono_ns
        assert row.channel == ev.channel
        assert row.topic == ev.topic
        assert (None if pd.isna(row.commit_ts) else row.commit_ts.to_pydatetime()) == ev.commit_ts
        assert (None if pd.isna(row.status) else row.status) == ev.status
        assert (None if pd.isna(row.attempt) else row.attempt) == ev.attempt
        assert row.backfilled == ev.backfilled
        assert row.suppressed == ev.suppressed
        assert [(c["name"], c["type"]) for c in row.columns] == list(ev.columns)
    # JSON columns stay text; parse_json gives back the exact values
    plain = df.loc[df["op"] == "INSERT", "new"].iloc[0]
    assert isinstance(plain, str)
    assert json.loads(plain)["body"] == events[3].new["body"]
    parsed = analysis.parse_json(df)
    for ev, row in zip(events, parsed.itertuples(index=False), strict=True):
        assert row.payload == ev.payload
        assert row.new == ev.new
        assert row.old == ev.old
        assert row.pk == ev.pk


async def test_exotic_values_keep_their_types(tmp_path, events):
    record(tmp_path, events)
    got = {ev.seq: ev for ev in await replay_all(tmp_path)}
    exotic = next(ev for ev in events if ev.op == "exotic")
    p = got[exotic.seq].payload
    assert p["t"] == (1, (2, 3), [4, (5,)])
    assert type(p["t"][2][1]) is tuple
    assert type(p["money"]) is type(exotic.payload["money"])
    assert str(p["money"]) == "12.3400"  # Decimal precision kept
    assert p["naive"].tzinfo is None
    assert p["when"].tzinfo is not None
    assert p["ints"] == {1: "one", 2: ("two",)}
    assert p["tags"] == frozenset({"a", "b"})
    assert p["raw"] == b"\x00\xffbytes"
    assert p["inf"] == float("inf")


@pytest.mark.parametrize(
    "channel",
    ["realtime:public:messages", "a/b=c d%~x", "", "ünï 🎉", ".", "..", "_x", "x" * 300, "x" * 301],
)
async def test_awkward_channel_names(tmp_path, channel):
    evs = every_kind(channel=channel)[:4]
    record(tmp_path, evs)
    assert_same_events(await replay_all(tmp_path), evs)
    df = read_recording(tmp_path, channels=[channel])
    assert list(df["channel"]) == [channel] * len(evs)
    assert read_recording(tmp_path, channels=["other"]).empty
    for part in iter_parts(tmp_path):
        assert part.path.parent.parent.parent == tmp_path
        assert len(part.path.parent.name.encode()) <= 255


async def test_async_iterable_source_and_kind_filter(tmp_path, events):
    async def source():
        for ev in events:
            yield ev
            await asyncio.sleep(0)

    async with Recorder(source(), tmp_path, kinds=["change", "gap"]) as rec:
        await rec.wait()
    want = [ev for ev in events if ev.kind in (EventKind.CHANGE, EventKind.GAP)]
    assert_same_events(await replay_all(tmp_path), want)
    assert rec.stats["events"] == len(want)
    with pytest.raises(ValueError, match="valid kinds"):
        Recorder(None, tmp_path, kinds=["changes"])


async def test_replay_and_read_filters(tmp_path, events):
    other = every_kind(t0=T0 + timedelta(milliseconds=5), seq0=1000, channel="room:b")
    record(tmp_path, events + other)
    merged = sorted(events + other, key=lambda e: (e.received_at, e.received_mono_ns))
    assert_same_events(await replay_all(tmp_path), merged)
    assert_same_events(await replay_all(tmp_path, channels="room:b"), other)
    assert_same_events(
        await replay_all(tmp_path, kinds=["presence"], channels=["room:lobby"]),
        [e for e in events if e.kind == "presence"],
    )
    df = read_recording(tmp_path, kinds="status", channels="room:b")
    assert list(df["seq"]) == [e.seq for e in other if e.kind == "status"]
    start, end = events[3].received_at, events[6].received_at
    df = read_recording(tmp_path, channels="room:lobby", start=start, end=end.isoformat())
    assert list(df["seq"]) == [e.seq for e in events if start <= e.received_at < end]
    with pytest.raises(ValueError, match="timezone-aware"):
        read_recording(tmp_path, start=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="valid kinds"):
        read_recording(tmp_path, kinds=["nope"])
    with pytest.raises(FileNotFoundError, match="no recording"):
        read_recording(tmp_path / "missing")
    with pytest.raises(ValueError, match="speed"):
        replay(tmp_path, speed=0)


def test_date_boundary_splits_partitions(tmp_path):
    t = datetime(2025, 12, 31, 23, 59, 59, 900_000, tzinfo=UTC)
    evs = [
        RealtimeEvent(kind="broadcast", channel="c", seq=i, received_at=t + timedelta(milliseconds=50 * i))
        for i in range(6)
    ]
    record(tmp_path, evs)
    parts = sorted(iter_parts(tmp_path), key=lambda p: p.sort_key)
    assert [p.day for p in parts] == [date(2025, 12, 31), date(2026, 1, 1)]
    assert [pq.read_table(p.path).num_rows for p in parts] == [2, 4]
    df = read_recording(tmp_path, start="2026-01-01T00:00:00+00:00")
    assert list(df["seq"]) == [2, 3, 4, 5]


def test_empty_and_constructor_errors(tmp_path):
    rec = record(tmp_path, [])
    assert rec.stats["files"] == 0
    df = read_recording(tmp_path)
    assert df.empty
    assert "received_at" in df.columns
    with pytest.raises(TypeError, match="add_listener"):
        Recorder(42, tmp_path)
    with pytest.raises(ValueError, match="rotate_rows"):
        Recorder(None, tmp_path, rotate_rows=0)
    with pytest.raises(ValueError, match="compression must be one of"):
        Recorder(None, tmp_path, compression="zip")
    with pytest.raises(TypeError, match=r"did you mean 'flush_seconds'.*valid: source, path, kinds"):
        Recorder(None, tmp_path, flush_second=1)
    r = Recorder(None, tmp_path)
    with pytest.raises(RuntimeError, match="start"):
        r.write(RealtimeEvent(kind="gap", channel="c"))
    with r, pytest.raises(TypeError, match="RealtimeEvent"):
        r.write({"kind": "gap"})  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="records once"):
        r.start()
    assert "stopped" in repr(r)


async def test_async_source_needs_running_loop_when_started_sync(tmp_path):
    async def source():
        yield RealtimeEvent(kind="gap", channel="c")

    gen = source()
    rec = Recorder(gen, tmp_path)

    def start_without_loop():
        try:
            rec.start()
        except RuntimeError as exc:
            return str(exc)
        return "started"

    msg = await asyncio.to_thread(start_without_loop)
    assert "async with" in msg
    await gen.aclose()


async def test_source_failure_is_raised_after_writing_what_came_before(tmp_path, events):
    async def source():
        for ev in events[:5]:
            yield ev
        raise ConnectionError("stream broke")

    rec = Recorder(source(), tmp_path)
    await rec.__aenter__()
    with pytest.raises(ConnectionError):
        await rec.wait()
    with pytest.raises(RuntimeError, match="source raised") as info:
        await rec.aclose()
    assert isinstance(info.value.__cause__, ConnectionError)
    assert_same_events(await replay_all(tmp_path), events[:5])


def test_utc_normalisation_of_other_offsets(tmp_path):
    india = timezone(timedelta(hours=5, minutes=30))  # a fixed +05:30 offset, whatever the machine zone
    ev = RealtimeEvent(kind="gap", channel="c", received_at=datetime(2025, 6, 1, 12, tzinfo=india))
    record(tmp_path, [ev])
    df = read_recording(tmp_path)
    assert str(df["received_at"].dt.tz) == "UTC"
    assert df["received_at"].iloc[0] == pd.Timestamp("2025-06-01 06:30", tz="UTC")
