"""LiveFrame fed by a real recording: Recorder writes Parquet, replay() yields the events again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from harmony_lab.events import RealtimeEvent
from harmony_lab.frames import LiveFrame
from harmony_lab.recording import Recorder, replay
from tests.frames.frame_events import make_change, message


def recorded(tmp_path, events):
    rec = Recorder(None, tmp_path / "rec")
    rec.start()
    for ev in events:
        rec.write(ev)
    rec.stop()
    return tmp_path / "rec"


def stream() -> list[RealtimeEvent]:
    t0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
    evs = [make_change("INSERT", message(i)) for i in range(5)]
    evs.append(make_change("UPDATE", message(100, body="moved"), old={"id": 1}))
    evs.append(make_change("DELETE", None, old={"id": 2}))
    evs.append(make_change("DELETE", None, old={"id": 77}))
    evs.append(make_change("INSERT", message(9), backfilled=True))
    evs.append(RealtimeEvent(kind="status", channel="messages-feed", status="reconnecting", attempt=1))
    out = []
    for k, ev in enumerate(evs):
        out.append(ev.replace(seq=k + 1, received_at=t0 + timedelta(milliseconds=10 * k)))
    return out


async def test_a_replay_rebuilds_the_same_frame(tmp_path):
    events = stream()
    path = recorded(tmp_path, events)
    direct = LiveFrame(events, "messages")
    replayed = LiveFrame(replay(path, speed=None), "messages")
    await replayed.ready()
    await replayed.wait_until(lambda f: f.status == "finished")
    assert replayed.df.equals(direct.df)
    assert list(replayed.df["id"]) == [0, 100, 3, 4, 9]
    for name in ("inserts", "updates", "deletes", "key_changes", "unknown_deletes", "backfilled", "ignored"):
        assert replayed.counters[name] == direct.counters[name], name
    assert str(replayed.df["created_at"].dtype) == "datetime64[us, UTC]"


async def test_replay_at_speed_keeps_timing_roughly(tmp_path):
    path = recorded(tmp_path, stream())
    lf = LiveFrame(replay(path, speed=1.0), "messages")
    await lf.ready()
    assert len(lf) < 5  # 100 ms of recorded time has not passed yet
    await lf.wait_until(lambda f: f.status == "finished", within_s=5)
    assert len(lf) == 5
