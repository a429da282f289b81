"""The Inspector's traffic to its front end (captured at the comm): nothing before ready, one message
per tick at most, Arrow rows without details, pause with a pending count, details on request."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest

from harmony_lab.events import EventKind, RealtimeEvent
from harmony_lab.inspector import Inspector
from tests.polling import eventually, stays
from tests.widgets.recording_comm import RecordingComm, rows_of

_seq = itertools.count(1)


def bcast(i: int, channel: str = "room", event: str = "tick") -> RealtimeEvent:
    return RealtimeEvent(
        kind=EventKind.BROADCAST, channel=channel, op=event, payload={"i": i}, seq=next(_seq)
    )


def inspector(**kw) -> tuple[Inspector, RecordingComm]:
    insp = Inspector(url="http://127.0.0.1:9", key="anon-key", **kw)
    assert isinstance(insp.comm, RecordingComm)
    return insp, insp.comm


def data_rows(c: RecordingComm, kind: str = "delta") -> list[dict]:
    out = []
    for m in c.customs(kind):
        for buf in m["_buffers"]:
            out.extend(rows_of(buf))
    return out


async def test_nothing_is_sent_before_the_front_end_is_ready_then_a_snapshot():
    insp, c = inspector()
    for i in range(5):
        insp._on_event(bcast(i))
    await stays(c.customs, [], for_s=0.3, what="messages sent before the view is ready")
    c.front({"type": "ready"})
    snap = c.customs("snapshot")
    assert len(snap) == 1
    assert snap[0]["parts"] == 1
    assert snap[0]["stats"]["held"] == 5
    rows = data_rows(c, "snapshot")
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]
    assert set(rows[0]) == {"id", "t", "channel", "kind", "event", "summary"}  # no detail on the wire
    assert rows[0]["summary"] == '{"i":0}'
    assert rows[0]["kind"] == "broadcast"
    insp.close()


async def test_a_burst_goes_out_in_at_most_ten_messages_a_second_and_nothing_is_lost():
    insp, c = inspector()
    c.front({"type": "ready"})
    c.clear()
    start = asyncio.get_running_loop().time()
    for i in range(3000):
        insp._on_event(bcast(i))
        if i % 100 == 0:
            await asyncio.sleep(0.01)
    await eventually(lambda: data_rows(c) and data_rows(c)[-1]["id"] == 3000, within=10)
    elapsed = asyncio.get_running_loop().time() - start
    deltas = c.customs("delta")
    assert [r["id"] for r in data_rows(c)] == list(range(1, 3001))
    assert len(c.customs()) == len(deltas)  # channel states and counters ride in the same message
    assert len(deltas) <= 10 * elapsed + 2
    gaps = [b["_t"] - a["_t"] for a, b in itertools.pairwise(deltas)]
    assert min(gaps) >= 0.095
    insp.close()


async def test_the_ring_bound_reaches_the_front_end_as_first_id():
    insp, c = inspector(capacity=50)
    c.front({"type": "ready"})
    c.clear()
    for i in range(120):
        insp._on_event(bcast(i))
    insp.flush()
    delta = c.customs("delta")[-1]
    assert delta["first_id"] == 71
    assert [r["id"] for r in data_rows(c)] == list(range(71, 121))
    assert len(insp.log) == 50
    insp.close()


async def test_pause_holds_rows_counts_them_and_resume_sends_them():
    insp, c = inspector()
    c.front({"type": "ready"})
    insp._on_event(bcast(0))
    insp.flush()
    c.clear()
    c.front_state(paused=True)
    assert insp.status == "paused"
    for i in range(1, 8):
        insp._on_event(bcast(i))
    await eventually(lambda: c.customs("pending") and c.customs("pending")[-1]["pending"] == 7, within=5)
    assert c.customs("delta") == []
    assert insp.visible["id"].tolist() == list(range(1, 9))  # the log itself keeps everything
    c.front_state(paused=False)
    await eventually(lambda: [r["id"] for r in data_rows(c)] == list(range(2, 9)), within=5)
    assert insp.status == "live"
    # a view that renders while paused gets the rows up to the pause point only
    insp.pause()
    insp._on_event(bcast(9))
    c.clear()
    c.front({"type": "ready"})
    snap = c.customs("snapshot")[0]
    assert snap["pending"] == 1
    assert [r["id"] for r in data_rows(c, "snapshot")][-1] == 8
    assert insp.resume() == 1
    insp.close()


async def test_details_travel_on_request_only():
    insp, c = inspector(capacity=3)
    c.front({"type": "ready"})
    for i in range(5):
        insp._on_event(bcast(i, event="cursor"))
    c.clear()
    c.front({"type": "detail", "id": 5})
    reply = c.customs("detail")[0]
    assert json.loads(reply["detail"]) == {"event": "cursor", "payload": {"i": 4}}
    c.front({"type": "detail", "id": 1})  # evicted
    assert c.customs("detail")[-1]["detail"] is None
    c.front({"type": "detail", "id": "x"})
    assert c.customs("detail")[-1]["detail"] is None
    insp.close()


async def test_filters_from_the_view_drive_visible_and_bad_ones_say_why():
    insp, c = inspector()
    insp._on_event(bcast(1, channel="a", event="typing"))
    insp._on_event(bcast(2, channel="b", event="message"))
    c.front_state(filters={"kind": ["broadcast"], "channel": ["b"], "event": [], "text": ""})
    assert insp.visible["channel"].tolist() == ["b"]
    c.front_state(filters={"kind": ["nope"], "channel": [], "event": [], "text": ""})
    assert insp.error.startswith("filter not applied (the previous one still is): unknown kind(s) 'nope'")
    assert insp.visible["channel"].tolist() == ["b"]
    c.front_state(filters={"kind": [], "channel": [], "event": [], "text": "x" * 500})
    assert "at most 200" in insp.error
    c.front_state(filters={"kind": [], "channel": [], "event": [], "text": ""})
    assert insp.error == ""
    assert insp.visible["channel"].tolist() == ["a", "b"]
    insp.filter(text="typing")
    assert insp.filters["text"] == "typing"
    assert insp.visible["event"].tolist() == ["typing"]
    with pytest.raises(ValueError, match="kinds are"):
        insp.filter(kind="nope")
    insp.close()


def test_constructor_errors_name_what_to_do():
    with pytest.raises(ValueError, match="Inspector needs a project"):
        Inspector()
    with pytest.raises(TypeError, match="takes a LocalRealtime or a supabase AsyncClient"):
        Inspector(42)
    with pytest.raises(ValueError, match="max_hz must be in"):
        Inspector(url="http://x", key="k", max_hz=50)
    with pytest.raises(ValueError, match="cannot set 'access_token'"):
        Inspector(url="http://x", key="k", manager_options={"access_token": "t"})
    with pytest.raises(ValueError, match="url must start with"):
        Inspector(url="ftp://x", key="k")
