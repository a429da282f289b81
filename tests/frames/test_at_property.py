"""LiveFrame.at equals a LiveFrame fed the same recorded events up to the instant (property test)."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas.testing as pdt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harmony_lab.events import RealtimeEvent
from harmony_lab.frames import LiveFrame
from harmony_lab.frames._at import SeekIndex
from harmony_lab.recording import Recorder

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
BASE_COLS = (("id", "int8"), ("body", "text"))

ids = st.integers(0, 5)
body = st.text(alphabet="ab é'\"", max_size=4)
extra = st.one_of(st.none(), st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False, width=32))
x_type = st.just("")

insert = st.tuples(st.just("INSERT"), ids, body, extra, x_type)
update = st.tuples(st.just("UPDATE"), ids, body, extra, x_type)
partial = st.tuples(st.just("PARTIAL"), ids, body, extra, x_type)  # an UPDATE without body
delete = st.tuples(st.just("DELETE"), ids, body, extra, x_type)
rekey = st.tuples(st.just("REKEY"), ids, body, extra, st.integers(0, 5))
unkeyed = st.tuples(st.just("UNKEYED"), ids, body, extra, x_type)
other = st.tuples(st.just("OTHER"), ids, body, extra, x_type)  # another table
step = st.one_of(insert, insert, update, update, partial, delete, delete, unkeyed, other)
steps_with_rekey = st.one_of(step, rekey)


def _events(steps: list[tuple[Any, ...]], ties: list[bool]) -> list[RealtimeEvent]:
    out: list[RealtimeEvent] = []
    t = T0
    for i, (kind, key, text, x, typ) in enumerate(steps):
        if i and not ties[i % len(ties)]:
            t += timedelta(milliseconds=7)
        # a column that some events report and others do not (its type stays: a row keeps its value)
        cols = BASE_COLS if x is None else (*BASE_COLS, ("x", "float8"))
        row: dict[str, Any] = {"id": key, "body": text}
        if x is not None:
            row["x"] = float(x)
        table, op, new, old, pk = "messages", kind, row, None, {"id": key}
        if kind == "PARTIAL":
            op, new = "UPDATE", {k: v for k, v in row.items() if k != "body"}
        elif kind == "DELETE":
            new, old = None, {"id": key}
        elif kind == "REKEY":
            op, old, new, pk = "UPDATE", {"id": key}, {**row, "id": typ}, {"id": typ}
        elif kind == "UNKEYED":
            op, new, pk = "INSERT", {"body": text}, None
        elif kind == "OTHER":
            table, op = "reactions", "INSERT"
        out.append(
            RealtimeEvent(
                kind="change",
                channel=f"room-{i % 2}",
                seq=i + 1,
                received_at=t,
                received_mono_ns=1_000 + i,
                schema="public",
                table=table,
                op=op,
                new=new,
                old=old,
                pk=pk,
                columns=cols,
                commit_ts=t,
            )
        )
    return out


def _check(evs: list[RealtimeEvent], cuts: list[int], key: str | None) -> None:
    with tempfile.TemporaryDirectory() as root:
        rec = Recorder(None, root, rotate_rows=7).start()
        for ev in evs:
            rec.write(ev)
        rec.stop()
        index = SeekIndex(LiveFrame, root, "messages", key=key)
        instants = [T0 - timedelta(seconds=1)] + [evs[c % len(evs)].received_at for c in cuts]
        for instant in instants:
            fed = LiveFrame(None, "messages", key=key, max_rows=None)
            for ev in evs:
                if ev.received_at <= instant:
                    fed.apply(ev)
            at = LiveFrame.at(root, "messages", instant, key=key)
            assert at.columns == fed.columns
            pdt.assert_frame_equal(at.df, fed.df)
            assert len(at) == len(fed)
            indexed = index.at(instant)  # what the Player seeks with: the same frame
            assert indexed.columns == fed.columns
            pdt.assert_frame_equal(indexed.df, fed.df)
        index.close()


_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


@_SETTINGS
@given(
    steps=st.lists(step, min_size=1, max_size=40),
    ties=st.lists(st.booleans(), min_size=1, max_size=5),
    cuts=st.lists(st.integers(0, 60), min_size=1, max_size=3),
    key=st.sampled_from([None, "id"]),
)
def test_at_equals_a_frame_fed_the_same_events(
    steps: list[tuple[Any, ...]], ties: list[bool], cuts: list[int], key: str | None
) -> None:
    _check(_events(steps, ties), cuts, key)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(
    steps=st.lists(steps_with_rekey, min_size=1, max_size=30),
    cuts=st.lists(st.integers(0, 40), min_size=1, max_size=2),
)
def test_at_follows_key_changing_updates(steps: list[tuple[Any, ...]], cuts: list[int]) -> None:
    _check(_events(steps, [False]), cuts, "id")
