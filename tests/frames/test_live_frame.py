"""LiveFrame on hand-built event sequences: every case of the upsert/append semantics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pandas as pd
import pyarrow as pa
import pytest

from harmony_lab.events import RealtimeEvent
from harmony_lab.frames import LiveFrame
from harmony_lab.frames._live import FrameChange
from tests.frames.frame_events import make_change, message
from tests.polling import stays


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def fed(*events: RealtimeEvent, **kw) -> LiveFrame:
    lf = LiveFrame(None, "messages", **kw)
    for e in events:
        lf.apply(e)
    return lf


def test_inserts_make_typed_rows():
    lf = fed(*(make_change("INSERT", message(i)) for i in range(3)))
    df = lf.df
    assert len(lf) == 3
    assert list(df["id"]) == [0, 1, 2]
    assert str(df["id"].dtype) == "Int64"
    assert str(df["channel_id"].dtype) == "Int64"
    assert str(df["body"].dtype) == "string"
    assert str(df["created_at"].dtype) == "datetime64[us, UTC]"
    assert str(df["edited"].dtype) == "boolean"
    assert df["tags"].dtype == object
    assert df["tags"][1] == ["a", "t1"]
    assert df["payload"][2] == {"n": 2, "nested": {"ok": True}}
    assert df["created_at"][1] == pd.Timestamp("2024-05-01T12:00:01.000001Z")
    assert lf.key == ("id",)
    assert lf.counters["inserts"] == 3
    assert lf.inserts == 3
    assert df.attrs["pg_types"]["created_at"] == "timestamptz"


def test_update_merges_values_and_counts():
    lf = fed(
        make_change("INSERT", message(1)),
        make_change("UPDATE", {"id": 1, "body": "edited", "edited": True}, old={"id": 1}),
    )
    row = lf.get(1)
    assert row["body"] == "edited"
    assert row["edited"] is True
    assert row["channel_id"] == 1  # untouched columns keep their values
    assert (lf.inserts, lf.updates, lf.deletes) == (1, 1, 0)


def test_update_of_an_unseen_key_adds_the_row():
    lf = fed(make_change("UPDATE", message(7, body="late")))
    assert lf.get(7)["body"] == "late"
    assert lf.updates == 1
    assert lf.inserts == 0


def test_delete_removes_and_unknown_delete_is_counted_not_raised():
    lf = fed(
        make_change("INSERT", message(1)),
        make_change("INSERT", message(2)),
        make_change("DELETE", None, old={"id": 1}),
        make_change("DELETE", None, old={"id": 42}),
    )
    assert list(lf.df["id"]) == [2]
    assert 1 not in lf
    assert lf.deletes == 1
    assert lf.counters["unknown_deletes"] == 1


def test_delete_with_only_pk_information():
    lf = fed(make_change("INSERT", message(5)), make_change("DELETE", None, old=None, pk={"id": 5}))
    assert len(lf) == 0
    assert lf.deletes == 1


def test_key_changing_update_moves_the_row_in_place():
    seen: list[FrameChange] = []
    lf = fed(*(make_change("INSERT", message(i)) for i in range(3)))
    lf.on_change(seen.append)
    lf.apply(make_change("UPDATE", message(100, body="renumbered"), old={"id": 1}))
    assert list(lf.df["id"]) == [0, 100, 2]  # same position
    assert 1 not in lf
    assert lf.get(100)["body"] == "renumbered"
    assert lf.counters["key_changes"] == 1
    assert lf.updates == 1
    assert [(c.op, c.key, c.old_key) for c in seen] == [("update", (100,), (1,))]
    # the row id survives the move: widgets flash it as an update, not delete + insert
    assert seen[0].rid == 1


def test_key_change_onto_a_held_key_replaces_that_row():
    lf = fed(*(make_change("INSERT", message(i)) for i in range(3)))
    lf.apply(make_change("UPDATE", message(2, body="was 0"), old={"id": 0}))
    assert list(lf.df["id"]) == [2, 1]
    assert lf.get(2)["body"] == "was 0"


def test_max_rows_evicts_oldest_first():
    changes: list[str] = []
    lf = LiveFrame(None, "messages", max_rows=3)
    lf.on_change(lambda c: changes.append(f"{c.op}:{c.key}"))
    for i in range(5):
        lf.apply(make_change("INSERT", message(i)))
    assert list(lf.df["id"]) == [2, 3, 4]
    assert lf.counters["evicted"] == 2
    assert "evict:(0,)" in changes
    assert "evict:(1,)" in changes
    # an update does not refresh the age: the oldest insert still goes first
    lf.apply(make_change("UPDATE", message(2, body="x")))
    lf.apply(make_change("INSERT", message(5)))
    assert list(lf.df["id"]) == [3, 4, 5]
    # evicted keys can come back as new rows
    lf.apply(make_change("INSERT", message(0)))
    assert list(lf.df["id"]) == [4, 5, 0]


def test_append_mode_is_a_rolling_log():
    events = [make_change("INSERT", message(i)) for i in range(4)]
    events.append(make_change("UPDATE", message(1, body="e")))
    events.append(make_change("DELETE", None, old={"id": 2}))
    lf = fed(*events, mode="append", max_rows=4)
    df = lf.df
    assert list(df.columns[:2]) == ["_op", "_commit_ts"]
    assert list(df["_op"]) == ["INSERT", "INSERT", "UPDATE", "DELETE"]
    assert list(df["id"]) == [2, 3, 1, 2]
    assert str(df["_commit_ts"].dtype) == "datetime64[us, UTC]"
    assert (lf.inserts, lf.updates, lf.deletes) == (4, 1, 1)
    assert lf.counters["evicted"] == 2


def test_new_columns_appear_and_earlier_rows_read_missing():
    lf = fed(make_change("INSERT", message(1)))
    wider = (*make_change("INSERT", message(1)).columns, ("reactions", "int4"))
    lf.apply(make_change("INSERT", message(2, reactions=7), columns=wider))
    # a column only seen in values (no type reported) still appears
    lf.apply(make_change("INSERT", message(3, mood="ok"), columns=wider))
    df = lf.df
    assert list(df.columns[-2:]) == ["reactions", "mood"]
    assert str(df["reactions"].dtype) == "Int64"
    assert df["reactions"].isna().tolist() == [True, False, True]
    assert df["mood"].tolist()[:2] == [pd.NA, pd.NA]
    assert df["mood"].tolist()[2] == "ok"


def test_schema_change_is_announced():
    seen: list[FrameChange] = []
    lf = fed(make_change("INSERT", message(1)))
    lf.on_change(seen.append)
    cols = (*make_change("INSERT", message(1)).columns, ("extra", "text"))
    lf.apply(make_change("INSERT", message(2, extra="x"), columns=cols))
    assert [c.op for c in seen] == ["schema", "insert"]
    assert seen[0].columns == ("extra",)


def test_backfilled_events_are_not_double_counted():
    lf = fed(
        make_change("INSERT", message(1)),
        make_change("INSERT", message(2)),
    )
    v = lf.version
    # the backfill re-delivers a row already held, identical: nothing changes
    assert lf.apply(make_change("INSERT", message(1), backfilled=True)) is False
    assert lf.version == v
    # rows missed during a gap arrive backfilled: they land, counted only as backfilled
    lf.apply(make_change("INSERT", message(3), backfilled=True))
    lf.apply(make_change("UPDATE", message(2, body="changed in gap"), backfilled=True))
    assert len(lf) == 3
    assert lf.get(2)["body"] == "changed in gap"
    assert (lf.inserts, lf.updates) == (2, 0)
    assert lf.counters["backfilled"] == 3
    assert lf.counters["events"] == 5
    # a live event for a row that arrived by backfill is a normal update
    lf.apply(make_change("UPDATE", message(3, body="live")))
    assert lf.updates == 1


def test_live_insert_of_a_held_key_is_a_counted_overwrite():
    lf = fed(make_change("INSERT", message(1)), make_change("INSERT", message(1, body="again")))
    assert len(lf) == 1
    assert lf.inserts == 1
    assert lf.counters["duplicates"] == 1
    assert lf.get(1)["body"] == "again"


def test_suppressed_events_are_applied_and_counted():
    lf = fed(make_change("INSERT", message(1), suppressed=True))
    assert len(lf) == 1
    assert lf.counters["suppressed"] == 1


def test_other_tables_kinds_ops_are_ignored():
    lf = LiveFrame(None, "messages", event="insert")
    assert not lf.apply(make_change("INSERT", message(1), table="reactions"))
    assert not lf.apply(make_change("INSERT", message(1), schema="private"))
    assert not lf.apply(RealtimeEvent(kind="status", channel="x", status="connected"))
    assert not lf.apply(make_change("UPDATE", message(1)))
    assert lf.apply(make_change("INSERT", message(1)))
    assert lf.counters["ignored"] == 4
    assert lf.counters["events"] == 1


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ("channel_id=eq.1", [1, 4]),
        ("channel_id=neq.1", [0, 2, 3, 5]),
        ("id=gt.3", [4, 5]),
        ("id=lte.1", [0, 1]),
        ("channel_id=in.(0,2)", [0, 2, 3, 5]),
        ("body=eq.hello 5", [5]),
        ("edited=eq.true", []),
    ],
)
def test_filter_is_evaluated_for_non_manager_sources(flt, expected):
    lf = fed(*(make_change("INSERT", message(i)) for i in range(6)), filter=flt)
    assert list(lf.df["id"]) == expected


def test_filter_lets_deletes_through():
    lf = fed(
        make_change("INSERT", message(1)),
        make_change("DELETE", None, old={"id": 1}),
        filter="channel_id=eq.1",
    )
    assert len(lf) == 0


def test_explicit_composite_key():
    cols = (("room", "text"), ("user_id", "uuid"), ("typing", "bool"))
    ev = lambda op, new, old=None: make_change(  # noqa: E731
        op, new, old, table="typing_indicators", columns=cols, pk=None
    )
    lf = LiveFrame(None, "typing_indicators", key=["room", "user_id"])
    lf.apply(ev("INSERT", {"room": "a", "user_id": "u1", "typing": True}))
    lf.apply(ev("INSERT", {"room": "b", "user_id": "u1", "typing": True}))
    lf.apply(ev("UPDATE", {"room": "a", "user_id": "u1", "typing": False}))
    lf.apply(ev("DELETE", None, {"room": "b", "user_id": "u1"}))
    assert lf.key == ("room", "user_id")
    assert lf.df.to_dict("records") == [{"room": "a", "user_id": "u1", "typing": False}]
    assert ("a", "u1") in lf


def test_without_pk_information_rows_key_by_id():
    lf = fed(
        make_change("INSERT", message(1), pk=False), make_change("UPDATE", message(1, body="x"), pk=False)
    )
    assert lf.key == ("id",)
    assert len(lf) == 1


def test_unkeyed_rows_are_kept_and_warned_once(caplog):
    cols = (("body", "text"),)
    caplog.set_level(logging.WARNING, logger="harmony_lab.frames._live")
    lf = LiveFrame(None, "notes")
    for b in ("x", "y"):
        lf.apply(make_change("INSERT", {"body": b}, table="notes", columns=cols, pk=False))
    assert list(lf.df["body"]) == ["x", "y"]
    assert lf.counters["unkeyed"] == 2
    assert sum("without primary-key" in r.message for r in caplog.records) == 1


def test_unhashable_key_values_work():
    cols = (("doc", "jsonb"), ("n", "int4"))
    lf = LiveFrame(None, "docs", key="doc")
    lf.apply(make_change("INSERT", {"doc": {"a": 1}, "n": 1}, table="docs", columns=cols, pk=False))
    lf.apply(make_change("UPDATE", {"doc": {"a": 1}, "n": 2}, table="docs", columns=cols, pk=False))
    assert len(lf) == 1
    assert lf.get({"a": 1})["n"] == 2


def test_df_is_cached_until_the_next_change_and_safe_to_mutate():
    lf = fed(make_change("INSERT", message(1)))
    a = lf.df
    cached = lf._df
    b = lf.df
    assert lf._df is cached  # no rebuild without a change
    a["body"] = "mutated by the user"
    assert b["body"][0] == "hello 1"
    assert lf.df["body"][0] == "hello 1"
    lf.apply(make_change("INSERT", message(2)))
    assert lf._df is cached  # rebuilt lazily, not on apply
    assert len(lf.df) == 2
    assert lf._df is not cached


def test_empty_frame_has_typed_columns_once_known():
    lf = fed(make_change("INSERT", message(1)), make_change("DELETE", None, old={"id": 1}))
    df = lf.df
    assert df.empty
    assert str(df["created_at"].dtype) == "datetime64[us, UTC]"
    assert LiveFrame(None, "messages").df.empty


def test_to_arrow_types():
    lf = fed(*(make_change("INSERT", message(i)) for i in range(2)))
    t = lf.to_arrow()
    assert t.num_rows == 2
    assert t.schema.field("id").type == pa.int64()
    assert t.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert t.schema.field("tags").type == pa.list_(pa.string())
    assert t.schema.field("payload").type == pa.string()
    assert t.column("payload")[0].as_py() == '{"n":0,"nested":{"ok":true}}'
    assert b"pg_types" in t.schema.metadata


def test_callbacks_get_each_change_and_a_raising_one_is_logged(caplog):
    got: list[str] = []

    def bad(_c):
        raise RuntimeError("boom")

    lf = LiveFrame(None, "messages", max_rows=1)
    lf.on_change(bad)
    remove = lf.on_change(lambda c: got.append(c.op))
    lf.apply(make_change("INSERT", message(1)))
    lf.apply(make_change("INSERT", message(2)))
    lf.apply(make_change("UPDATE", message(2, body="b")))
    lf.apply(make_change("DELETE", None, old={"id": 2}))
    remove()
    lf.apply(make_change("INSERT", message(3)))
    assert got == ["schema", "insert", "insert", "evict", "update", "delete"]
    assert lf.counters["callback_errors"] == 7
    assert "boom" in caplog.text


def test_events_per_second_over_a_sliding_window():
    clock = FakeClock()
    lf = LiveFrame(None, "messages", clock=clock, rate_window_s=5.0, max_rows=None)
    for i in range(50):  # 50 events in one second
        clock.t += 0.02
        lf.apply(make_change("INSERT", message(i)))
    assert lf.events_per_s == pytest.approx(50, rel=0.05)
    clock.t += 2.0
    assert lf.events_per_s == pytest.approx(50 / 3, rel=0.1)
    clock.t += 10.0
    assert lf.events_per_s == 0
    lf.apply(make_change("INSERT", message(1), backfilled=True))
    assert lf.events_per_s == 0  # backfill is not traffic
    assert sum(lf.rate_history(30)) == 50


def test_repr_and_static_html():
    lf = fed(*(make_change("INSERT", message(i, body="<b>x</b>")) for i in range(25)))
    r = repr(lf)
    assert "public.messages" in r
    assert "rows=25/10000" in r
    h = lf._repr_html_()
    assert "last 20 of 25" in h
    assert "&lt;b&gt;x&lt;/b&gt;" in h
    assert "<b>x</b>" not in h
    bundle, _meta = lf._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}  # no kernel here: no widget view
    only_html, _ = lf._repr_mimebundle_(include={"text/html"})
    assert set(only_html) == {"text/html"}


def test_constructor_validation_names_the_valid_forms():
    with pytest.raises(TypeError, match=r"valid: source, table, key, mode, max_rows"):
        LiveFrame(None, "messages", maxrows=5)
    with pytest.raises(TypeError, match="did you mean 'max_rows'"):
        LiveFrame(None, "messages", max_row=5)
    with pytest.raises(ValueError, match="'upsert', 'append'"):
        LiveFrame(None, "messages", mode="replace")
    with pytest.raises(ValueError, match="positive int or None"):
        LiveFrame(None, "messages", max_rows=0)
    with pytest.raises(ValueError, match="INSERT"):
        LiveFrame(None, "messages", event="TRUNCATE")
    with pytest.raises(ValueError, match="valid forms"):
        LiveFrame(None, "messages", filter="channel_id==1")
    with pytest.raises(ValueError, match="unknown operator 'like1'"):
        LiveFrame(None, "messages", filter="channel_id=like1.1")
    with pytest.raises(ValueError, match="append"):
        LiveFrame(None, "messages", mode="append", key="id")
    with pytest.raises(TypeError, match="source must be"):
        LiveFrame("messages", "messages")
    with pytest.raises(TypeError, match="source must be"):
        LiveFrame(42, "messages")


def test_iterable_source_is_applied_at_once():
    lf = LiveFrame([make_change("INSERT", message(i)) for i in range(3)], "messages")
    assert len(lf) == 3
    assert lf.status == "finished"


async def _stream(
    events, *, delay: float = 0.0, fail: Exception | None = None
) -> AsyncIterator[RealtimeEvent]:
    for e in events:
        if delay:
            await asyncio.sleep(delay)
        yield e
    if fail is not None:
        raise fail


async def test_async_iterable_source_is_consumed_on_the_running_loop():
    lf = LiveFrame(_stream([make_change("INSERT", message(i)) for i in range(300)]), "messages")
    assert lf.status == "pending"
    await lf.ready()
    await lf.wait_until(lambda f: f.status == "finished", within_s=5)
    assert len(lf) == 300


async def test_source_failure_surfaces_in_ready_and_status(caplog):
    lf = LiveFrame(
        _stream([make_change("INSERT", message(1))], delay=0.05, fail=ValueError("broken replay")), "messages"
    )
    await lf.ready()
    with pytest.raises(RuntimeError, match="broken replay"):
        await lf.wait_until(lambda f: f.status == "finished", within_s=5)
    assert lf.status == "error"
    with pytest.raises(RuntimeError, match="broken replay"):
        await lf.ready()
    assert "the source failed" in caplog.text


async def test_close_stops_an_endless_source():
    async def endless():
        i = 0
        while True:
            await asyncio.sleep(0.001)
            yield make_change("INSERT", message(i))
            i += 1

    async with LiveFrame(endless(), "messages", max_rows=50) as lf:
        await lf.wait_until(lambda f: len(f) >= 10)
    n = lf.counters["events"]
    await stays(lambda: lf.counters["events"], n, for_s=0.1, what="events read after aclose()")
    assert lf.status == "closed"


async def test_wait_until_times_out_with_the_frame_in_the_message():
    lf = LiveFrame(None, "messages")
    with pytest.raises(TimeoutError, match=r"public\.messages"):
        await lf.wait_until(lambda f: len(f) > 0, within_s=0.05)


def test_without_a_running_loop_nothing_starts_until_ready():
    lf = LiveFrame(_stream([make_change("INSERT", message(1))]), "messages")
    assert lf.status == "pending"

    async def go():
        await lf.ready()
        await lf.wait_until(lambda f: f.status == "finished")

    asyncio.run(go())
    assert len(lf) == 1


def test_a_key_column_missing_from_the_rows_is_named_in_the_warning(caplog):
    caplog.set_level(logging.WARNING, logger="harmony_lab.frames._live")
    lf = LiveFrame(None, "messages", key="msg_id")
    lf.apply(make_change("INSERT", message(1)))
    assert len(lf) == 1  # kept, not lost
    assert lf.counters["unkeyed"] == 1
    (record,) = [r for r in caplog.records if "key column" in r.getMessage()]
    text = record.getMessage()
    assert "key column(s) msg_id missing from an INSERT row" in text
    assert "its columns: id, channel_id" in text
    assert "key=None for the table's primary key" in text


def test_exact_numerics_are_plain_floats_in_frames_and_arrow():
    from harmony_lab.capture._convert import ExactNumeric, to_json_value

    cols = (("id", "int8"), ("amount", "numeric"))
    big = to_json_value("numeric", "12345678901234567.1")
    assert isinstance(big, ExactNumeric)
    frames = []
    for first in (big, float(big)):  # an exact numeric, and the plain float it stands for
        lf = LiveFrame(None, "ledger")
        for i, amount in enumerate([first, 1.5]):
            lf.apply(make_change("INSERT", {"id": i, "amount": amount}, table="ledger", columns=cols))
        frames.append(lf)
    exact, plain = frames
    assert str(exact.df["amount"].dtype) == str(plain.df["amount"].dtype) == "Float64"
    pd.testing.assert_frame_equal(exact.df, plain.df)
    assert exact.to_arrow().equals(plain.to_arrow())
    assert exact.to_arrow().schema.field("amount").type == pa.float64()
