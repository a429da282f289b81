"""Player on the Python side: seek, play, pause, speed, the end of the recording, front-end messages."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas.testing as pdt
import pytest

from harmony_lab import LiveFrame, Player, Recorder
from harmony_lab.events import RealtimeEvent
from tests.polling import eventually, stays

pytestmark = pytest.mark.timeout(60)

T0 = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
COLS = (("id", "int8"), ("body", "text"))
SPAN_S = 3.0


def _session() -> list[RealtimeEvent]:
    """~3 s of a channel: connecting, connected, inserts/updates/deletes, presence, a reconnect."""
    evs: list[RealtimeEvent] = []

    def add(dt: float, **kw: Any) -> None:
        evs.append(
            RealtimeEvent(
                channel="room:1",
                seq=len(evs) + 1,
                received_at=T0 + timedelta(seconds=dt),
                received_mono_ns=len(evs) + 1,
                **kw,
            )
        )

    add(0.0, kind="status", status="connecting", attempt=0)
    add(0.05, kind="status", status="connected", attempt=0)
    add(
        0.1, kind="presence", op="join", payload={"key": "u1", "new": [{"user_id": "u1", "status": "online"}]}
    )
    for i in range(30):
        t = 0.1 + i * 0.09
        add(
            t,
            kind="change",
            schema="public",
            table="messages",
            op="INSERT",
            new={"id": i, "body": f"m{i}"},
            pk={"id": i},
            columns=COLS,
        )
        if i % 3 == 2:
            add(
                t + 0.01,
                kind="change",
                schema="public",
                table="messages",
                op="UPDATE",
                new={"id": i - 1, "body": f"edited {i - 1}"},
                pk={"id": i - 1},
                columns=COLS,
            )
        if i % 5 == 4:
            add(
                t + 0.02,
                kind="change",
                schema="public",
                table="messages",
                op="DELETE",
                old={"id": i - 4},
                pk={"id": i - 4},
                columns=COLS,
            )
        if i == 15:
            add(t + 0.03, kind="status", status="reconnecting", attempt=1, reason="socket closed")
            add(t + 0.06, kind="status", status="connected", attempt=0)
    add(SPAN_S, kind="presence", op="leave", payload={"key": "u1", "left": [{"user_id": "u1"}]})
    return evs


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("player")
    rec = Recorder(None, root, rotate_rows=25).start()
    for ev in _session():
        rec.write(ev)
    rec.stop()
    return root


def _fed(instant: datetime) -> LiveFrame:
    lf = LiveFrame(None, "messages", max_rows=None)
    for ev in _session():
        if ev.received_at <= instant:
            lf.apply(ev)
    return lf


async def test_opens_at_the_start_with_the_session_range(recording: Path) -> None:
    p = Player(recording)
    try:
        assert p.start == T0
        assert p.end == T0 + timedelta(seconds=SPAN_S)
        assert p.tables == ["messages"]
        assert p.position == T0
        assert len(p.frame("messages")) == 0
        assert {s[2] for s in p.track} >= {"connecting", "connected", "reconnecting"}
        assert p.status == "paused"
        assert not p.playing
        with pytest.raises(KeyError, match="its tables: messages"):
            p.frame("nope")
    finally:
        p.close()


async def test_state_after_seek_equals_live_frame_at(recording: Path) -> None:
    p = Player(recording)
    try:
        for dt in (1.0, 2.2, 0.5, SPAN_S):
            when = T0 + timedelta(seconds=dt)
            await p.seek(when)
            assert p.position == when
            at = LiveFrame.at(recording, "messages", when)
            pdt.assert_frame_equal(p.frame("messages").df, at.df)
            pdt.assert_frame_equal(p.frame("messages").df, _fed(when).df)
        await p.seek(1.6)  # seconds from the start
        lane = p.timeline.state()[0]
        assert lane["status"] == "connected"
        assert any(s[2] == "reconnecting" for s in lane["spans"])
        await p.seek(1.0)
        assert [s[2] for s in p.timeline.state()[0]["spans"]] == ["connecting", "connected"]
        assert p.roster.users[0]["status"] == "online" if p.roster.users else True
    finally:
        p.close()


async def test_play_reaches_the_end_and_stops(recording: Path) -> None:
    p = Player(recording, speed=100)
    try:
        p.play()
        assert p.playing
        await eventually(lambda: p.finished, within=20, what="the player finished")
        assert not p.playing
        assert p.status == "finished"
        assert p.position == p.end
        pdt.assert_frame_equal(p.frame("messages").df, _fed(p.end).df)
        # playing a finished recording starts it over
        p.play()
        await eventually(lambda: p.finished, within=20, what="the second run finished")
        pdt.assert_frame_equal(p.frame("messages").df, _fed(p.end).df)
    finally:
        p.close()


async def test_pause_stops_the_position_and_the_frames(recording: Path) -> None:
    p = Player(recording, speed=1)
    try:
        p.play()
        await eventually(lambda: len(p.frame("messages")) >= 3, within=20, what="rows arriving")
        p.pause()
        held, rows = p.position, p.frame("messages").version
        # nothing may move while paused
        await stays(
            lambda: (p.position, p.frame("messages").version, p.playing),
            (held, rows, False),
            for_s=0.3,
            what="position, rows and playing while paused",
        )
        pdt.assert_frame_equal(p.frame("messages").df, _fed(held).df)
    finally:
        p.close()


async def test_seek_while_playing_goes_on_from_the_new_position(recording: Path) -> None:
    p = Player(recording, speed=0.5)  # slow: it is still playing when the seek comes, even on a busy machine
    try:
        await p.seek(1.0)  # two seconds before the end: time enough to seek while it plays
        p.play()
        await eventually(lambda: p.position > T0 + timedelta(seconds=1.05), within=20, what="playing")
        target = T0 + timedelta(seconds=0.3)
        await p.seek(target)
        assert p.playing, "a seek while playing keeps playing"
        assert p.position < T0 + timedelta(seconds=0.9)
        await eventually(lambda: p.position > target + timedelta(seconds=0.1), within=20, what="moving on")
        p.pause()
        pdt.assert_frame_equal(p.frame("messages").df, _fed(p.position).df)
    finally:
        p.close()


async def test_speed_change_changes_the_pace(recording: Path) -> None:
    p = Player(recording, speed=0.1)
    try:
        p.play()
        await asyncio.sleep(0.5)
        slow = p.position - p.start
        assert slow < timedelta(seconds=0.5), slow  # 0.1x: about 0.05 s of recording in 0.5 s
        p.set_speed(100)
        await eventually(lambda: p.finished, within=20, what="finishing at 100x")
        with pytest.raises(ValueError, match=r"speed must be a number from 0\.1 to 100"):
            p.set_speed(500)
        with pytest.raises(ValueError, match="speed must be"):
            Player(recording, speed=0)
    finally:
        p.close()


async def test_front_end_messages_drive_it(recording: Path) -> None:
    p = Player(recording, speed=100)
    try:
        target = p.start_ms + 1500
        p._on_front_msg(p, {"type": "seek", "ms": target}, [])
        p._on_front_msg(p, {"type": "seek", "ms": target + 500}, [])  # coalesces: the latest wins
        latest = p.start + timedelta(milliseconds=2000)
        await eventually(lambda: not p.seeking and p.position == latest, within=20, what="the seek")
        assert p.position == p.start + timedelta(milliseconds=2000)
        pdt.assert_frame_equal(p.frame("messages").df, _fed(p.position).df)
        p._on_front_msg(p, {"type": "speed", "value": 50}, [])
        assert p.speed == 50
        p._on_front_msg(p, {"type": "speed", "value": "fast"}, [])  # ignored, logged
        assert p.speed == 50
        p._on_front_msg(p, {"type": "play"}, [])
        await eventually(lambda: p.finished, within=20, what="finished")
    finally:
        p.close()


def test_rejects_unknown_arguments(recording: Path) -> None:
    with pytest.raises(TypeError, match="tables"):
        Player(recording, tabels=["messages"])  # type: ignore[call-arg]
    with pytest.raises(FileNotFoundError, match="no recording"):
        Player(recording / "missing")


def test_indexed_seek_reads_the_same_side_events_as_a_scan(recording: Path) -> None:
    """The side-event index (binary search, rows read by row group) gives what a DuckDB scan gives."""
    p = Player(recording)
    try:
        p._indexing.join(timeout=30)
        assert not p._indexing.is_alive()
        assert p._live_reason() == ""
        checked = 0
        for dt in (-1.0, 0.0, 0.05, 0.7, 1.55, 1.6, 2.9, SPAN_S, SPAN_S + 1):
            when = T0 + timedelta(seconds=dt)
            frames, side = p._states_at(when)
            scanned_frames, scanned = p._states_at(when, indexed=False)
            assert side == scanned
            assert all(ev.received_at <= when for ev in side)
            for t, lf in frames.items():
                pdt.assert_frame_equal(lf.df, scanned_frames[t].df)
            checked += len(side)
        assert checked > 20
    finally:
        p.close()
