"""Pure pieces of the manager: specs, conversion, liveness, call budget, the event bus, API edges."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest

import harmony_lab
from harmony_lab import manager as manager_pkg
from harmony_lab.events import EventKind, RealtimeEvent
from harmony_lab.filters import F, FilterError
from harmony_lab.manager import (
    Backfill,
    BackoffPolicy,
    RealtimeConnectionManager,
    TableSubscription,
    realtime_url,
)
from harmony_lab.manager._bus import CallbackGuard, EventBus
from harmony_lab.manager._clock import FakeClock
from harmony_lab.manager._convert import (
    SeenRows,
    change_fields,
    guess_primary_key,
    jwt_claims,
    parse_commit_ts,
    pk_of,
    row_version,
)
from harmony_lab.manager._liveness import ClockWatch, HeartbeatTracker
from harmony_lab.manager._ratelimit import CallWindow

# ------------------------------------------------------------------------------------- public surface


def test_public_surface_is_curated():
    assert set(manager_pkg.__all__) == {
        "Backfill",
        "BackoffPolicy",
        "BroadcastReplay",
        "ChannelStatus",
        "PresenceStatus",
        "RealtimeConnectionManager",
        "RealtimeEvent",
        "TableSubscription",
        "realtime_url",
    }
    for name in (
        "RealtimeConnectionManager",
        "BackoffPolicy",
        "TableSubscription",
        "Backfill",
        "BroadcastReplay",
    ):
        assert getattr(harmony_lab, name) is getattr(manager_pkg, name)
    assert manager_pkg.RealtimeEvent is harmony_lab.RealtimeEvent


# ---------------------------------------------------------------------------------------------- specs


def test_table_subscription_normalises_and_validates():
    sub = TableSubscription(
        "messages", filter=F.eq("channel_id", 42) & F.in_("kind", ["a", "b"]), event="insert"
    )
    assert sub.event == "INSERT"
    assert sub.filter == "channel_id=eq.42,kind=in.(a,b)"
    assert [c.column for c in sub.conditions] == ["channel_id", "kind"]
    assert sub.binding() == {
        "event": "INSERT",
        "schema": "public",
        "table": "messages",
        "filter": "channel_id=eq.42,kind=in.(a,b)",
    }
    assert TableSubscription("t", filter="  ").filter is None
    assert TableSubscription("t", primary_key="uid").primary_key == ("uid",)
    # the callback does not take part in equality (same subscription, new callback)
    assert TableSubscription("t", callback=print) == TableSubscription("t")


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"table": "t", "filter": "id=foo.1"}, FilterError, "valid forms"),
        ({"table": "t", "filter": 42}, FilterError, "filter must be a string"),
        ({"table": "t", "event": "UPSERT"}, ValueError, r"event must be one of \*, INSERT, UPDATE, DELETE"),
        ({"table": ""}, ValueError, "table must be a non-empty string"),
        ({"table": "t", "primary_key": ()}, ValueError, "primary_key"),
        ({"table": "t", "backfill": "created_at"}, TypeError, r"Backfill\(\.\.\.\)"),
        ({"table": "t", "callback": 3}, TypeError, "callable"),
        ({"table": "t", "tabel": "x"}, TypeError, r"'tabel' \(did you mean 'table'\?\); valid: table,"),
    ],
)
def test_table_subscription_rejects_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        TableSubscription(**kwargs)


def test_backfill_validation():
    assert Backfill().column == "created_at"
    with pytest.raises(ValueError, match="lookback"):
        Backfill(lookback=-1)
    with pytest.raises(ValueError, match="limit"):
        Backfill(limit=0)
    with pytest.raises(TypeError, match="did you mean 'column'"):
        Backfill(colum="x")  # type: ignore[call-arg]


# ------------------------------------------------------------------------------------- construction


def test_manager_rejects_unknown_options_naming_valid_ones():
    with pytest.raises(TypeError) as err:
        RealtimeConnectionManager("http://localhost:1", "key", heartbeat=5)  # type: ignore[call-arg]
    text = str(err.value)
    assert "'heartbeat' (did you mean 'heartbeat_interval'?)" in text
    assert "valid: url, key, backoff, heartbeat_interval" in text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"heartbeat_interval": 0}, "heartbeat_interval"),
        ({"health_interval": -1}, "health_interval"),
        ({"backoff": {"base": 1}}, "BackoffPolicy"),
        ({"rapid_close_window": -1}, "rapid_close_window"),
        ({"presence_limit": (0, 30.0)}, "presence_limit"),
    ],
)
def test_manager_validates_options(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        RealtimeConnectionManager("http://localhost:1", "key", **kwargs)


def test_manager_rejects_bad_url_and_key():
    with pytest.raises(ValueError, match="url must start with"):
        RealtimeConnectionManager("localhost:4000", "key")
    with pytest.raises(ValueError, match="API key"):
        RealtimeConnectionManager("http://localhost", "")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:54321", "http://127.0.0.1:54321/realtime/v1"),
        ("https://abc.supabase.co/", "https://abc.supabase.co/realtime/v1"),
        ("http://h/realtime/v1", "http://h/realtime/v1"),
        ("ws://h/realtime/v1/websocket", "ws://h/realtime/v1"),
        ("ws://h/socket", "ws://h/socket"),
    ],
)
def test_realtime_url(url, expected):
    assert realtime_url(url) == expected


async def test_singleton():
    RealtimeConnectionManager.reset_instance()
    with pytest.raises(RuntimeError, match="needs url and key"):
        RealtimeConnectionManager.get_instance()
    a = RealtimeConnectionManager.get_instance("http://h:1", "k", heartbeat_interval=5)
    assert RealtimeConnectionManager.get_instance() is a
    assert RealtimeConnectionManager.get_instance("http://h:1", "k") is a
    with pytest.raises(ValueError, match="reset_instance"):
        RealtimeConnectionManager.get_instance("http://other:1", "k")
    RealtimeConnectionManager.reset_instance()
    assert RealtimeConnectionManager.get_instance("http://other:1", "k") is not a
    RealtimeConnectionManager.reset_instance()


async def test_unknown_channel_errors_name_the_known_ones():
    mgr = RealtimeConnectionManager("http://h:1", "k")
    assert mgr.get_status("x").reason == "not subscribed"  # unknown = disconnected, not an error
    with pytest.raises(KeyError, match="no channel named 'x'; channels: none"):
        await mgr.wait_for_status("x", timeout=0.01)
    with pytest.raises(KeyError, match="no channel named 'x'; channels: none"):
        await mgr.broadcast("x", "e", {})
    await mgr.cleanup()
    assert "no channels" in repr(mgr)


# ---------------------------------------------------------------------------------------- conversion


def test_change_fields_from_a_realtime_py_payload():
    payload = {
        "ids": [7],
        "data": {
            "schema": "public",
            "table": "messages",
            "type": "UPDATE",
            "commit_timestamp": "2025-11-19T00:22:40.877Z",
            "columns": [{"name": "id", "type": "int8"}, {"name": "content", "type": "text"}],
            "record": {"id": 46, "content": "new"},
            "old_record": {"id": 46},
            "errors": None,
        },
    }
    f = change_fields(payload)
    assert f["op"] == "UPDATE"
    assert f["commit_ts"] == datetime(2025, 11, 19, 0, 22, 40, 877000, tzinfo=UTC)
    assert f["columns"] == (("id", "int8"), ("content", "text"))
    assert f["new"] == {"id": 46, "content": "new"}
    assert f["old"] == {"id": 46}
    assert f["errors"] is None
    ev = RealtimeEvent(kind=EventKind.CHANGE, channel="c", pk={"id": 46}, **f)
    assert ev.key == (46,)
    errs = change_fields({"data": {"type": "INSERT", "errors": ["Error 401: Unauthorized"]}})
    assert errs["errors"] == ("Error 401: Unauthorized",)
    assert errs["new"] is None


def test_commit_ts_parsing():
    assert parse_commit_ts("2025-01-02 03:04:05+00") == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_commit_ts("2025-01-02T03:04:05").tzinfo is UTC
    assert parse_commit_ts(None) is None
    assert parse_commit_ts("yesterday") is None


def test_primary_key_helpers():
    cols = (("id", "int8"), ("a", "text"), ("b", "text"))
    assert guess_primary_key(cols, "DELETE", {"a": 1, "b": 2}) == ("a", "b")
    assert guess_primary_key(cols, "INSERT", None) == ("id",)
    assert guess_primary_key((("x", "int4"),), "INSERT", None) is None
    assert pk_of(("a", "b"), None, {"a": 1, "b": 2, "c": 3}) == {"a": 1, "b": 2}
    assert pk_of(("a",), {"b": 1}) is None
    assert pk_of(None, {"a": 1}) is None


def test_row_versions_compare_at_millisecond_precision():
    assert row_version("2025-01-02T03:04:05.123456+00:00") == row_version("2025-01-02T03:04:05.123Z")
    assert row_version("2025-01-02T03:04:05.123+01:00") == row_version(
        datetime(2025, 1, 2, 2, 4, 5, 123999, tzinfo=UTC)
    )
    assert row_version(5) == 5
    assert row_version("hello") == "hello"


def test_seen_rows_is_bounded():
    seen = SeenRows(capacity=3)
    keys = [SeenRows.key("public", "t", {"id": i}) for i in range(5)]
    for k in keys:
        seen.add(k, 1, "live")
    assert len(seen) == 3
    assert seen.get(keys[0]) is None
    assert seen.get(keys[4]) == (1, "live", None)


def test_jwt_claims():
    token = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiIsImV4cCI6MTB9.sig"
    assert jwt_claims(token) == {"role": "anon", "exp": 10}
    assert jwt_claims("sb_publishable_abc") is None
    assert jwt_claims("a.!!!.c") is None
    assert jwt_claims(None) is None


# ------------------------------------------------------------------------------------------ liveness


def test_heartbeat_tracker_matches_refs_and_detects_stall():
    hb = HeartbeatTracker()
    t1 = hb.tick(0.0)
    assert t1.ref == "hl-1"
    assert not t1.stalled
    assert hb.reply(None, 0.1) is None  # realtime-py's own null-ref heartbeat
    assert hb.reply("other", 0.1) is None
    assert hb.reply("hl-1", 0.25) == pytest.approx(0.25)
    t2 = hb.tick(1.0)
    assert t2.ref == "hl-2"
    stalled = hb.tick(2.0)  # hl-2 unanswered at the next tick
    assert stalled.stalled
    assert stalled.waited == pytest.approx(1.0)
    summary = hb.summary()
    assert summary["samples"] == 1
    assert summary["last_ms"] == pytest.approx(250)
    assert summary["pending"] == 1
    hb.reset()
    assert not hb.tick(3.0).stalled


def test_clock_watch_notices_wall_jumps_only():
    clock = FakeClock()
    watch = ClockWatch(threshold=5)
    assert watch.observe(clock.monotonic(), clock.now().timestamp()) is None
    clock.advance(60)
    assert watch.observe(clock.monotonic(), clock.now().timestamp()) is None
    clock.advance(1)
    clock.jump_wall(3600)
    assert watch.observe(clock.monotonic(), clock.now().timestamp()) == pytest.approx(3600)
    clock.jump_wall(-30)
    assert watch.observe(clock.monotonic(), clock.now().timestamp()) == pytest.approx(-30)
    with pytest.raises(ValueError, match="threshold"):
        ClockWatch(0)


def test_call_window():
    w = CallWindow(5, 30.0)
    for t in range(5):
        assert w.wait_time(float(t)) == 0.0
        w.record(float(t))
    assert w.wait_time(5.0) == pytest.approx(25.0)
    assert w.wait_time(30.0) == 0.0
    assert w.used(30.0) == 4
    with pytest.raises(ValueError, match="max_calls"):
        CallWindow(0)


def test_backoff_schedule_in_a_machine_matches_policy():
    p = BackoffPolicy(jitter=0.0)
    assert p.schedule(random.Random(0)) == [1, 2, 4, 8, 16, 30, 30, 30, 30, 30]


# -------------------------------------------------------------------------------------------- the bus


def _bus():
    counter = iter(range(1, 10_000))
    guard = CallbackGuard()

    def make(**fields):
        return RealtimeEvent(seq=next(counter), **fields)

    return EventBus(make, guard), guard


async def test_event_stream_overflow_is_counted_and_announced():
    bus, _ = _bus()
    from harmony_lab.manager._bus import EventStream

    s = EventStream(bus, maxsize=3)
    for i in range(5):
        bus.publish(bus.make(kind=EventKind.BROADCAST, channel="c", op=str(i)))
    assert s.dropped == 2
    first = await s.__anext__()
    assert first.kind is EventKind.SYSTEM
    assert first.reason == "overflow"
    assert first.payload == {"dropped": 2, "total_dropped": 2, "maxsize": 3}
    rest = [await s.__anext__() for _ in range(3)]
    assert [e.op for e in rest] == ["2", "3", "4"]
    s.close()
    with pytest.raises(StopAsyncIteration):
        await s.__anext__()
    assert bus.streams == 0


async def test_event_stream_filters_and_ends_on_close():
    bus, _ = _bus()
    from harmony_lab.manager._bus import EventStream

    received = []

    async def consume():
        async with EventStream(bus, kinds=["change"], channels=["a"]) as s:
            async for ev in s:
                received.append(ev)

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0)
    bus.publish(bus.make(kind=EventKind.CHANGE, channel="a"))
    bus.publish(bus.make(kind=EventKind.CHANGE, channel="b"))
    bus.publish(bus.make(kind=EventKind.STATUS, channel="a"))
    await asyncio.sleep(0.01)
    bus.close()
    await asyncio.wait_for(task, 1)
    assert [(e.kind, e.channel) for e in received] == [(EventKind.CHANGE, "a")]


async def test_guard_counts_sync_and_async_failures():
    guard = CallbackGuard()

    def bad(x):
        raise KeyError(x)

    async def bad_async(x):
        raise ValueError(x)

    ok = []
    guard.call("cb", bad, 1)
    guard.call("cb", bad_async, 2)
    guard.call("cb", ok.append, 3)
    await guard.drain()
    assert guard.errors["cb"] == 2
    assert ok == [3]
    assert guard.last_error["cb"].startswith("ValueError")


def test_listener_remove():
    bus, _ = _bus()
    got = []
    remove = bus.add_listener(got.append)
    bus.publish(bus.make(kind=EventKind.SYSTEM, channel="x"))
    remove()
    remove()  # idempotent
    bus.publish(bus.make(kind=EventKind.SYSTEM, channel="x"))
    assert len(got) == 1
    with pytest.raises(TypeError):
        bus.add_listener(42)  # type: ignore[arg-type]


# supabase-py 2.34.1 itself passes postgrest's deprecated ``timeout`` argument
@pytest.mark.filterwarnings("ignore:The '(timeout|verify|proxy)' parameter is deprecated:DeprecationWarning")
async def test_postgrest_backfill_query_mirrors_the_subscription():
    from datetime import timedelta

    from supabase import acreate_client

    from harmony_lab.manager._db import postgrest_backfill_query

    client = await acreate_client("http://127.0.0.1:9", "anon-key")
    sub = TableSubscription(
        "messages",
        filter=F.eq("channel_id", 1) & ~F.in_("kind", ["a", "b"]) & F.is_("deleted_at", None),
        backfill=Backfill(column="created_at", lookback=2.0, limit=50),
    )
    since = datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
    query = postgrest_backfill_query(client, sub, since)
    params = dict(query.request.params.multi_items())
    assert params["created_at"] == "gte." + (since - timedelta(seconds=2)).isoformat()
    assert params["channel_id"] == "eq.1"
    assert params["kind"] == "not.in.(a,b)"
    assert params["deleted_at"] == "is.null"
    assert params["order"] == "created_at.asc"
    assert params["limit"] == "50"
    assert str(query.request.path).endswith("/messages")


async def test_realtime_py_connection_loss_lines_of_owned_tasks_are_dropped_and_reemitted(caplog):
    """The filter on realtime-py's client logger (``_logs.py``): only connection-loss lines, only from
    tasks of connections the manager owns; everything else passes at its own level."""
    import logging

    from harmony_lab.manager import _logs

    RealtimeConnectionManager("http://h:1", "k")  # installs the filter
    realtime_logger = logging.getLogger("realtime._async.client")
    assert sum(isinstance(f, _logs.RealtimePyConnectionLogs) for f in realtime_logger.filters) == 1
    RealtimeConnectionManager("http://h:1", "k")
    assert sum(isinstance(f, _logs.RealtimePyConnectionLogs) for f in realtime_logger.filters) == 1

    async def owned() -> None:
        _logs.own(asyncio.current_task(), "general")
        realtime_logger.error("Auto-reconnect disabled, terminating connection")
        realtime_logger.error("Unrecognized message format 'x'")  # not a connection loss: kept

    caplog.set_level(logging.DEBUG)
    await asyncio.ensure_future(owned())
    realtime_logger.error("Connection attempt failed: refused")  # not a manager task: kept
    got = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert ("realtime._async.client", "ERROR", "Unrecognized message format 'x'") in got
    assert ("realtime._async.client", "ERROR", "Connection attempt failed: refused") in got
    assert not [g for g in got if g[0].startswith("realtime") and g[2].startswith("Auto-reconnect")]
    (moved,) = [r for r in caplog.records if r.name == "harmony_lab.manager"]
    assert moved.levelno == logging.DEBUG
    assert "Auto-reconnect disabled, terminating connection" in moved.getMessage()
    assert "'general'" in moved.getMessage()
    assert (moved.channel, moved.realtime_level) == ("general", "ERROR")


@pytest.mark.filterwarnings("ignore:The '(timeout|verify|proxy)' parameter is deprecated:DeprecationWarning")
async def test_postgrest_key_lookups_are_chunked_and_filtered():
    from supabase import acreate_client

    from harmony_lab.manager._db import postgrest_key_queries

    client = await acreate_client("http://127.0.0.1:9", "anon-key")
    sub = TableSubscription("messages", filter="channel_id=eq.1", backfill=Backfill())
    single = postgrest_key_queries(client, sub, ("id",), [{"id": i} for i in range(5)], per_request=2)
    assert len(single) == 3
    params = [dict(q.request.params.multi_items()) for q in single]
    assert [p["id"] for p in params] == ["in.(0,1)", "in.(2,3)", "in.(4)"]
    assert all(p["select"] == "id" and p["channel_id"] == "eq.1" for p in params)
    keys = [{"message_id": 7, "user_id": "u-1", "emoji": "a,b"}]
    (composite,) = postgrest_key_queries(client, sub, ("message_id", "user_id", "emoji"), keys)
    params = dict(composite.request.params.multi_items())
    assert params["select"] == "message_id,user_id,emoji"
    assert params["or"] == '(and(message_id.eq.7,user_id.eq.u-1,emoji.eq."a,b"))'
