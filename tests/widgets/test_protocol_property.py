"""Property: a view that applies the snapshot and every delta always ends equal to the frame.

Random INSERT/UPDATE (incl. key changes)/DELETE sequences, random max_rows, random flush points,
pauses and small rows_per_message; the view is rebuilt from the captured messages exactly as the
front end does it (upsert by __rid, then deletes first), and its row count must match ``nrows``.
"""

from __future__ import annotations

from typing import Any

import comm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harmony_lab.frames import LiveFrame
from harmony_lab.widgets import LiveTableWidget
from tests.frames.frame_events import make_change, message
from tests.widgets.recording_comm import RecordingComm, rows_of

op = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 30)),
    st.tuples(st.just("update"), st.integers(0, 30)),
    st.tuples(st.just("move"), st.integers(0, 30), st.integers(31, 60)),
    st.tuples(st.just("delete"), st.integers(0, 60)),
    st.tuples(st.just("flush")),
    st.tuples(st.just("pause"), st.booleans()),
)


class View:
    """The JS store's semantics, in Python."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}

    def apply(self, content: dict[str, Any]) -> None:
        if content["type"] == "snapshot":
            if content["part"] == 0:
                self.rows = {}
            for r in rows_of(content["_buffers"][0]):
                self.rows[r["__rid"]] = r
            if content["part"] + 1 == content["parts"]:
                assert len(self.rows) == content["nrows"]
        elif content["type"] == "delta":
            for rid in content["deletes"]:
                self.rows.pop(rid, None)
            for b in content["_buffers"]:
                for r in rows_of(b):
                    self.rows.setdefault(r["__rid"], {}).update(r)
            assert len(self.rows) == content["nrows"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.lists(op, max_size=60),
    max_rows=st.sampled_from([None, 3, 10]),
    per_msg=st.sampled_from([2, 5, 1000]),
)
def test_view_rebuilt_from_messages_equals_the_frame(monkeypatch, ops, max_rows, per_msg):
    made: list[RecordingComm] = []
    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: made.append(RecordingComm(*a, **k)) or made[-1])
    lf = LiveFrame(None, "messages", max_rows=max_rows)
    w = LiveTableWidget(lf, rows_per_message=per_msg)
    c = made[-1]
    lf.apply(make_change("INSERT", message(0)))
    c.front({"type": "ready"})
    view = View()
    seen = 0

    def drain() -> None:
        nonlocal seen
        for content in c.customs()[seen:]:
            view.apply(content)
        seen = len(c.customs())

    for item in ops:
        kind = item[0]
        if kind == "insert":
            lf.apply(make_change("INSERT", message(item[1], body=f"i{item[1]}")))
        elif kind == "update":
            lf.apply(make_change("UPDATE", message(item[1], body="u")))
        elif kind == "move":
            lf.apply(make_change("UPDATE", message(item[2], body="m"), old={"id": item[1]}))
        elif kind == "delete":
            lf.apply(make_change("DELETE", None, old={"id": item[1]}))
        elif kind == "pause":
            c.front_state(paused=item[1])
        else:
            w.flush()
            drain()
    c.front_state(paused=False)
    for _ in range(100):  # large deltas go out rows_per_message at a time
        if not w._dirty:
            break
        w.flush()
    drain()
    frame_rows = {rid: {"id": row.values["id"], "body": row.values["body"]} for rid, row in lf._rows.items()}
    view_rows = {rid: {"id": r["id"], "body": r["body"]} for rid, r in view.rows.items()}
    assert view_rows == frame_rows
    w.close()
