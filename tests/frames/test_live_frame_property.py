"""Property: LiveFrame (upsert mode) equals a plain reference model on any event sequence."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harmony_lab.frames import LiveFrame
from tests.frames.frame_events import make_change, message

op = st.one_of(
    st.tuples(st.just("INSERT"), st.integers(0, 20)),
    st.tuples(st.just("UPDATE"), st.integers(0, 20)),
    st.tuples(st.just("MOVE"), st.integers(0, 20), st.integers(0, 20)),
    st.tuples(st.just("DELETE"), st.integers(0, 20)),
)


class Reference:
    """Rows in insertion order; a move keeps the position; the oldest insert is evicted first."""

    def __init__(self, max_rows: int | None) -> None:
        self.rows: list[list[Any]] = []  # [key, values]
        self.max_rows = max_rows
        self.counts = {"inserts": 0, "updates": 0, "deletes": 0, "unknown_deletes": 0, "duplicates": 0}

    def find(self, key: int) -> list[Any] | None:
        return next((r for r in self.rows if r[0] == key), None)

    def add(self, key: int, values: dict[str, Any]) -> None:
        self.rows.append([key, values])
        if self.max_rows is not None and len(self.rows) > self.max_rows:
            self.rows.pop(0)

    def apply(self, item: tuple[Any, ...], n: int) -> None:
        kind = item[0]
        if kind == "INSERT":
            row = self.find(item[1])
            if row is None:
                self.counts["inserts"] += 1
                self.add(item[1], message(item[1], body=f"i{n}"))
            else:
                self.counts["duplicates"] += 1
                row[1] = message(item[1], body=f"i{n}")
        elif kind == "UPDATE":
            self.counts["updates"] += 1
            row = self.find(item[1])
            if row is None:
                self.add(item[1], message(item[1], body=f"u{n}"))
            else:
                row[1] = {**row[1], **message(item[1], body=f"u{n}")}
        elif kind == "MOVE":
            old, new = item[1], item[2]
            self.counts["updates"] += 1
            row = self.find(old)
            values = message(new, body=f"m{n}")
            if row is None or old == new:
                target = self.find(new)
                if target is None:
                    self.add(new, values)
                else:
                    target[1] = {**target[1], **values}
                return
            clash = self.find(new)
            if clash is not None:
                self.rows.remove(clash)
            row[0] = new
            row[1] = {**row[1], **values}
        else:
            row = self.find(item[1])
            if row is None:
                self.counts["unknown_deletes"] += 1
            else:
                self.counts["deletes"] += 1
                self.rows.remove(row)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(op, max_size=80), max_rows=st.sampled_from([None, 1, 4, 15]))
def test_live_frame_matches_the_reference(ops, max_rows):
    lf = LiveFrame(None, "messages", max_rows=max_rows)
    ref = Reference(max_rows)
    for n, item in enumerate(ops):
        kind = item[0]
        if kind == "INSERT":
            lf.apply(make_change("INSERT", message(item[1], body=f"i{n}")))
        elif kind == "UPDATE":
            lf.apply(make_change("UPDATE", message(item[1], body=f"u{n}")))
        elif kind == "MOVE":
            lf.apply(make_change("UPDATE", message(item[2], body=f"m{n}"), old={"id": item[1]}))
        else:
            lf.apply(make_change("DELETE", None, old={"id": item[1]}))
        ref.apply(item, n)
    records = lf.df.to_dict("records")
    assert [r["id"] for r in records] == [r[0] for r in ref.rows]
    assert [r["body"] for r in records] == [r[1]["body"] for r in ref.rows]
    for name, value in ref.counts.items():
        assert lf.counters[name] == value, name
