"""LiveTableWidget on the Python side: what is sent, when, and how much (captured at the comm)."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from harmony_lab.frames import LiveFrame
from harmony_lab.widgets import LiveTableWidget
from tests.frames.frame_events import make_change, message
from tests.widgets.recording_comm import RecordingComm, rows_of

TICK = 0.1


def comm_of(w) -> RecordingComm:
    assert isinstance(w.comm, RecordingComm)
    return w.comm


def frame_with(n: int, **kw) -> LiveFrame:
    lf = LiveFrame(None, "messages", **kw)
    for i in range(n):
        lf.apply(make_change("INSERT", message(i)))
    return lf


def ready_table(lf: LiveFrame, **kw) -> tuple[LiveTableWidget, RecordingComm]:
    """A table widget whose front end said ready, with the snapshot already cleared from its comm."""
    w = LiveTableWidget(lf, **kw)
    c = comm_of(w)
    c.front({"type": "ready"})
    c.clear()
    return w, c


async def settle(seconds: float = TICK * 2.5) -> None:
    await asyncio.sleep(seconds)


async def test_nothing_streams_before_the_front_end_is_ready():
    lf = frame_with(3)
    w = LiveTableWidget(lf)
    c = comm_of(w)
    for i in range(3, 10):
        lf.apply(make_change("INSERT", message(i)))
    await settle()
    assert c.customs() == []
    assert w.status == "waiting"


async def test_ready_gets_a_snapshot_of_every_row():
    lf = frame_with(5)
    w = LiveTableWidget(lf)
    c = comm_of(w)
    c.front({"type": "ready"})
    snaps = c.customs("snapshot")
    assert len(snaps) == 1
    s = snaps[0]
    assert (s["part"], s["parts"], s["nrows"]) == (0, 1, 5)
    rows = rows_of(s["_buffers"][0])
    assert [r["id"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0]["__rid"] == 0
    assert rows[2]["body"] == "hello 2"
    assert rows[1]["payload"] == '{"n":1,"nested":{"ok":true}}'
    assert w.status == "live"
    assert w.views == 1
    assert [col[0] for col in w.columns] == [name for name, _ in lf.columns]
    assert w.key_columns == ["id"]


async def test_changes_within_a_tick_become_one_delta():
    lf = frame_with(2)
    _w, c = ready_table(lf)
    lf.apply(make_change("INSERT", message(2)))
    lf.apply(make_change("INSERT", message(3)))
    lf.apply(make_change("UPDATE", message(0, body="edited")))
    await settle()
    deltas = c.customs("delta")
    assert len(deltas) == 1
    d = deltas[0]
    rows = {r["id"]: r for r in rows_of(d["_buffers"][0])}
    assert set(rows) == {0, 2, 3}
    assert rows[0]["body"] == "edited"
    assert d["deletes"] == []
    assert d["nrows"] == 4
    assert d["events"] == 3


async def test_repeated_updates_coalesce_by_row():
    lf = frame_with(10)
    _w, c = ready_table(lf)
    for k in range(1000):
        lf.apply(make_change("UPDATE", message(k % 10, body=f"v{k}")))
    await settle()
    (d,) = c.customs("delta")
    rows = rows_of(d["_buffers"][0])
    assert len(rows) == 10
    assert {r["body"] for r in rows} == {f"v{990 + i}" for i in range(10)}
    assert d["events"] == 1000


async def test_rows_born_and_gone_within_a_tick_are_never_sent():
    lf = frame_with(1)
    _w, c = ready_table(lf)
    lf.apply(make_change("INSERT", message(5)))
    lf.apply(make_change("DELETE", None, old={"id": 5}))
    lf.apply(make_change("DELETE", None, old={"id": 0}))  # known to the view: must be sent
    await settle()
    (d,) = c.customs("delta")
    assert d["deletes"] == [0]
    assert d["_buffers"] == []
    assert d["nrows"] == 0


async def test_evictions_are_sent_as_deletes():
    lf = frame_with(3, max_rows=3)
    _w, c = ready_table(lf)
    lf.apply(make_change("INSERT", message(3)))
    await settle()
    (d,) = c.customs("delta")
    assert d["deletes"] == [0]
    assert [r["id"] for r in rows_of(d["_buffers"][0])] == [3]
    assert d["nrows"] == 3


async def test_a_10k_events_per_second_stream_stays_within_10_messages_per_second():
    lf = LiveFrame(None, "messages", max_rows=5_000)
    w, c = ready_table(lf)
    start = time.monotonic()
    # 200 batches of 100 events, one every 10 ms or slower: at most 10 000 events/s, and a
    # fixed 20 000 events whatever the machine's speed (a slow machine stretches the time,
    # never shrinks the stream)
    for batch in range(200):
        for j in range(100):
            i = batch * 100 + j
            lf.apply(make_change("INSERT" if i % 3 else "UPDATE", message(i // 2)))
        await asyncio.sleep(0.01)
    await settle()
    elapsed = time.monotonic() - start
    deltas = c.customs("delta")
    msgs = [m for m in c.sent if m["msg_type"] == "comm_msg"]
    assert elapsed >= 2.0
    gaps = [b["_t"] - a["_t"] for a, b in itertools.pairwise(deltas)]
    assert min(gaps) >= TICK - 0.005  # never two deltas within one tick
    assert len(deltas) <= elapsed / TICK + 1
    # all messages (deltas + 1 Hz statistics) stay far below Jupyter's 1000 msg/s iopub limit
    assert len(msgs) / elapsed < 15
    total = sum(len(b) for m in msgs for b in m["buffers"])
    assert total / elapsed <= w._budget * 1.5
    # the view ends with exactly the frame's rows
    assert deltas[-1]["nrows"] == len(lf)


async def test_the_byte_budget_defers_and_coalesces():
    lf = LiveFrame(None, "messages", max_rows=200)
    _w, c = ready_table(lf, max_bytes_per_s=20_000)
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < 1.5:
        for _ in range(50):
            lf.apply(make_change("INSERT", message(i)))
            i += 1
        await asyncio.sleep(0.01)
    elapsed = time.monotonic() - start
    deltas = c.customs("delta")
    sent = sum(len(b) for d in deltas for b in d["_buffers"])
    biggest = max(len(b) for d in deltas for b in d["_buffers"])
    # average within the budget, give or take the one message that overdraws it
    assert sent <= 20_000 * (elapsed + 1) + biggest
    assert len(deltas) < elapsed / TICK  # it skipped ticks to stay in budget


async def test_pause_holds_rows_and_counts_pending_then_resume_sends_them():
    lf = frame_with(2)
    w = LiveTableWidget(lf)
    c = comm_of(w)
    c.front({"type": "ready"})
    c.front_state(paused=True)
    assert w.paused
    c.clear()
    for i in range(2, 7):
        lf.apply(make_change("INSERT", message(i)))
    await settle()
    assert c.customs("delta") == []
    assert w.pending == 5
    assert w.status == "paused"
    assert any(u.get("pending") == 5 for u in c.updates())
    c.front_state(paused=False)
    await settle()
    (d,) = c.customs("delta")
    assert sorted(r["id"] for r in rows_of(d["_buffers"][0])) == [2, 3, 4, 5, 6]
    assert w.pending == 0
    assert w.status == "live"


async def test_each_new_view_gets_a_snapshot_and_bye_stops_streaming():
    lf = frame_with(2)
    w = LiveTableWidget(lf)
    c = comm_of(w)
    c.front({"type": "ready"})
    c.front({"type": "ready"})
    assert len(c.customs("snapshot")) == 2
    assert w.views == 2
    c.front({"type": "bye"})
    c.front({"type": "bye"})
    c.clear()
    lf.apply(make_change("INSERT", message(9)))
    await settle()
    assert c.customs() == []
    c.front({"type": "ready"})
    (s,) = c.customs("snapshot")
    assert s["nrows"] == 3


async def test_resync_resends_a_snapshot():
    lf = frame_with(2)
    _w, c = ready_table(lf)
    c.front({"type": "resync", "reason": "test"})
    assert len(c.customs("snapshot")) == 1


async def test_big_snapshots_and_deltas_are_split():
    lf = frame_with(25, max_rows=None)
    w = LiveTableWidget(lf, rows_per_message=10)
    c = comm_of(w)
    c.front({"type": "ready"})
    snaps = c.customs("snapshot")
    assert [(s["part"], s["parts"]) for s in snaps] == [(0, 3), (1, 3), (2, 3)]
    assert sum(len(rows_of(s["_buffers"][0])) for s in snaps) == 25
    c.clear()
    for i in range(25, 50):
        lf.apply(make_change("INSERT", message(i)))
    await settle(TICK * 4.5)
    deltas = c.customs("delta")
    assert [len(rows_of(d["_buffers"][0])) for d in deltas] == [10, 10, 5]
    assert [d["nrows"] for d in deltas] == [35, 45, 50]


async def test_new_columns_reach_the_columns_trait():
    lf = frame_with(1)
    w = LiveTableWidget(lf)
    c = comm_of(w)
    c.front({"type": "ready"})
    cols = (*make_change("INSERT", message(1)).columns, ("reactions", "int4"))
    lf.apply(make_change("INSERT", message(2, reactions=3), columns=cols))
    await settle()
    assert w.columns[-1] == ["reactions", "int4", "int"]
    (d,) = c.customs("delta")
    assert rows_of(d["_buffers"][0])[0]["reactions"] == 3


async def test_statistics_arrive_once_a_second():
    lf = frame_with(1)
    w, c = ready_table(lf)
    for i in range(1, 40):
        lf.apply(make_change("INSERT", message(i)))
        await asyncio.sleep(0.03)
    stats = [u for u in c.updates() if "counters" in u]
    assert 1 <= len(stats) <= 2
    assert 20 <= w.counters["inserts"] <= 40  # as of the last statistics tick
    assert w.rate > 0
    assert sum(w.rate_history) >= 20


def test_flush_without_a_running_loop():
    lf = frame_with(1)
    w, c = ready_table(lf)
    lf.apply(make_change("INSERT", message(1)))
    assert c.customs() == []  # no loop: nothing is scheduled
    w.flush()
    (d,) = c.customs("delta")
    assert [r["id"] for r in rows_of(d["_buffers"][0])] == [1]


def test_constructor_rejects_bad_arguments():
    with pytest.raises(TypeError, match="LiveFrame"):
        LiveTableWidget("messages")
    with pytest.raises(TypeError, match="valid: frame, title, height"):
        LiveTableWidget(frame_with(0), heigth=3)
    with pytest.raises(ValueError, match=r"max_hz must be in \(0, 10\]"):
        LiveTableWidget(frame_with(0), max_hz=30)


def test_close_detaches_from_the_frame():
    lf = frame_with(1)
    w = LiveTableWidget(lf)
    assert len(lf._listeners) == 1
    w.close()
    assert lf._listeners == []


def test_frame_widget_is_created_once():
    lf = frame_with(1)
    w = lf.widget()
    assert lf.widget() is w
    assert isinstance(w, LiveTableWidget)
    w.close()
    assert lf.widget() is not w  # a closed widget is replaced
