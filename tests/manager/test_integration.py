"""The manager against a real LocalRealtime (Postgres + the Realtime-compatible server), driving faults."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from harmony_lab.events import ChannelStatus, EventKind
from harmony_lab.filters import F, FilterError
from harmony_lab.local.schema import ALICE, GENERAL, RANDOM
from harmony_lab.manager import Backfill, BackoffPolicy, TableSubscription
from harmony_lab.manager._clock import SystemClock
from tests.manager.manager_helpers import REALTIME_PY_DEPRECATIONS
from tests.polling import eventually, stays

pytestmark = REALTIME_PY_DEPRECATIONS

INSERT_MSG = "insert into messages (channel_id, user_id, content) values (%s, %s, %s) returning id"


async def insert_message(rt, content: str, channel: int = GENERAL) -> int:
    rows = await rt.execute(INSERT_MSG, channel, ALICE, content)
    return rows[0][0]


def statuses(events, name):
    return [e.status for e in events if e.kind is EventKind.STATUS and e.channel == name]


async def test_table_subscription_delivers_change_envelopes(rt, make_manager):
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn, access_token=rt.token_for(str(ALICE)))
    got = []
    state = await mgr.subscribe_to_table(
        "general", "messages", filter=F.eq("channel_id", GENERAL), callback=got.append
    )
    assert state.status is ChannelStatus.CONNECTED
    assert state.reason == "subscribed to PostgreSQL"
    first = await insert_message(rt, "hello")
    await insert_message(rt, "elsewhere", channel=RANDOM)  # filtered out by the server
    second = await insert_message(rt, "again")
    await rt.execute("update messages set content = 'edited' where id = %s", first)
    await rt.execute("delete from messages where id = %s", second)
    await eventually(lambda: len(got) >= 4, what="four change events")
    await stays(lambda: len(got), 4, for_s=0.3, what="change events (no fifth)")
    assert [(e.op, e.pk) for e in got] == [
        ("INSERT", {"id": first}),
        ("INSERT", {"id": second}),
        ("UPDATE", {"id": first}),
        ("DELETE", {"id": second}),
    ]
    ins, _, upd, dele = got
    assert ins.kind is EventKind.CHANGE
    assert (ins.schema, ins.table, ins.channel) == ("public", "messages", "general")
    assert ins.new["content"] == "hello"
    assert ins.commit_ts is not None
    assert ins.commit_ts.tzinfo is not None
    assert abs((ins.received_at - ins.commit_ts).total_seconds()) < 30
    assert ("id", "int8") in ins.columns
    assert upd.old["content"] == "hello"  # REPLICA IDENTITY FULL on messages
    assert upd.new["content"] == "edited"
    assert dele.new is None
    assert dele.old["id"] == second
    seqs = [e.seq for e in got]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 4
    info = mgr.get_debug_info()["channels"]["general"]
    assert info["events_received"] == 4
    assert info["bindings"][0] == "* public.messages filter=channel_id=eq.1"
    assert info["heartbeat"]["sent"] >= 1


async def test_drop_reconnects_with_same_subscription_and_a_gap_event(rt, make_manager):
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn, access_token=rt.token_for(str(ALICE)))
    events = []
    mgr.add_listener(events.append)
    named, every = [], []
    mgr.on_status_change("general", named.append, reasons=True)  # every status event
    remove = mgr.on_status_change("*", every.append)  # status changes only
    got = []
    await mgr.subscribe_to_table("general", "messages", filter="channel_id=eq.1", callback=got.append)
    dropped = rt.faults.drop_all(code=1001)
    assert dropped == 1
    await mgr.wait_for_status("general", "reconnecting", timeout=5)
    state = await mgr.wait_for_status("general", "connected", timeout=10)
    assert state.attempt == 1  # not reset on reconnect; only after healthy heartbeats
    assert statuses(events, "general") == [
        ChannelStatus.CONNECTING,
        ChannelStatus.CONNECTING,  # joined, waiting for "Subscribed to PostgreSQL"
        ChannelStatus.CONNECTED,
        ChannelStatus.RECONNECTING,
        ChannelStatus.RECONNECTING,
        ChannelStatus.CONNECTED,
    ]
    assert [s.status for s in named] == statuses(events, "general")
    assert [s.status for s in every] == [
        ChannelStatus.CONNECTING,
        ChannelStatus.CONNECTED,
        ChannelStatus.RECONNECTING,
        ChannelStatus.CONNECTED,
    ]
    assert named[-1].last_connected_at is not None
    remove()
    reconnecting = next(e for e in events if e.status is ChannelStatus.RECONNECTING)
    assert "closed (1001)" in reconnecting.reason
    assert 0.08 <= reconnecting.payload["delay"] <= 0.12
    gaps = [e for e in events if e.kind is EventKind.GAP]
    assert len(gaps) == 1
    gap = gaps[0]
    assert gap.channel == "general"
    assert gap.gap_start < gap.gap_end
    assert "1001" in gap.reason
    assert gap.payload["recovered"] is True
    # the same subscription works on the new connection
    new_id = await insert_message(rt, "after the drop")
    await eventually(lambda: any(e.pk == {"id": new_id} for e in got), what="change after reconnect")
    # two heartbeat replies later the attempt counter resets
    await eventually(lambda: mgr.get_status("general").attempt == 0, what="attempt reset", within=5)
    assert named[-1].reason.endswith("attempts reset")  # a reason-only update, with reasons=True
    assert len(every) == 4  # removed (and the reset is no status change anyway)
    assert mgr.get_debug_info()["channels"]["general"]["connects"] == 2


async def test_silent_stall_detected_within_two_heartbeat_intervals(rt, make_manager):
    interval = 0.5
    mgr = make_manager(rt.url, rt.anon_key, heartbeat_interval=interval)
    await mgr.subscribe("room", "*", lambda ev: None)
    await eventually(lambda: mgr.get_debug_info()["channels"]["room"]["heartbeat"]["replies"] >= 1)
    t0 = time.monotonic()
    rt.faults.stall(3.0)
    state = await mgr.wait_for_status("room", "reconnecting", timeout=5)
    detected = time.monotonic() - t0
    assert detected <= 2 * interval + 0.3
    assert state.reason.startswith("stall: no heartbeat reply")
    # after the stall the manager is back
    await mgr.wait_for_status("room", "connected", timeout=10)
    rtts = mgr.get_debug_info()["channels"]["room"]["heartbeat"]
    assert rtts["samples"] >= 1


async def test_refused_beyond_retries_errors_then_health_check_recovers(rt, make_manager):
    mgr = make_manager(
        rt.url,
        rt.anon_key,
        backoff=BackoffPolicy(base=0.05, max_delay=0.1, max_retries=3),
        health_interval=0.25,
        error_reset_after=1.0,
    )
    events = []
    mgr.add_listener(events.append)
    await mgr.subscribe("room", "*", lambda ev: None)
    rt.faults.refuse(2.5, status=503)
    rt.faults.drop_all(code=1001)
    state = await mgr.wait_for_status("room", "error", timeout=5)
    assert state.reason.startswith("gave up after 3 retries: connect failed: HTTP 503")
    failures = [e for e in events if e.status is ChannelStatus.RECONNECTING]
    assert [e.attempt for e in failures] == [1, 2, 3]
    # the health check resets the channel once it has been in error for error_reset_after
    state = await mgr.wait_for_status("room", "connected", timeout=10)
    health = [e for e in events if e.kind is EventKind.STATUS and "health check" in (e.reason or "")]
    assert health, "the recovery came from the health check"
    assert state.attempt == 0


async def test_rapid_closes_trigger_the_cool_down(rt, make_manager):
    mgr = make_manager(rt.url, rt.anon_key, rapid_close_window=10.0, rapid_close_cooldown=1.5)
    events = []
    mgr.add_listener(events.append)
    await mgr.subscribe("room", "*", lambda ev: None)
    rt.faults.rapid_close(3, code=1011)
    rt.faults.drop_all(code=1011)

    def cooling():
        return [e for e in events if e.kind is EventKind.STATUS and (e.payload or {}).get("cooldown")]

    await eventually(lambda: bool(cooling()), what="rapid-close cool-down")
    cool = cooling()[0]
    assert cool.attempt == 3
    assert cool.payload["delay"] == 1.5
    assert cool.reason.startswith("rapid close: 3 closes within 10 s; cooling down 1.5 s")
    t_cool = time.monotonic()
    await mgr.wait_for_status("room", "connected", timeout=10)
    assert time.monotonic() - t_cool >= 1.3


async def test_raising_callbacks_never_stop_delivery(rt, make_manager):
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn, access_token=rt.token_for(str(ALICE)))
    seen = []

    def boom(ev):
        seen.append(ev)
        raise RuntimeError("user bug")

    async def async_boom(ev):
        raise ValueError("async user bug")

    listened = []
    mgr.add_listener(lambda ev: listened.append(ev) if ev.kind is EventKind.CHANGE else None)
    mgr.add_listener(async_boom)
    await mgr.subscribe_to_table("general", "messages", filter="channel_id=eq.1", callback=boom)
    for i in range(3):
        await insert_message(rt, f"m{i}")
    await eventually(lambda: len(listened) == 3, what="three deliveries despite raising callbacks")
    await stays(lambda: len(seen), 3, for_s=0.2, what="deliveries to the healthy callback")
    errors = mgr.get_debug_info()["callback_errors"]
    assert errors["channel 'general'"] == 3
    assert errors["listener"] >= 3
    assert "RuntimeError: user bug" in mgr.get_debug_info()["last_callback_error"]["channel 'general'"]
    assert mgr.get_status("general").status is ChannelStatus.CONNECTED


async def test_bad_filter_is_rejected_before_any_join(rt, make_manager):
    mgr = make_manager(rt.url, rt.anon_key)
    before = rt.server.stats["joins"]
    with pytest.raises(FilterError, match="valid forms"):
        await mgr.subscribe_to_table("bad", "messages", filter="channel_id=equals.1")
    with pytest.raises(FilterError):
        await mgr.subscribe_to_multiple_tables("bad", [TableSubscription("messages", filter="id=in.1,2")])
    with pytest.raises(ValueError, match="event must be one of"):
        await mgr.subscribe_to_table("bad", "messages", event="upsert")
    assert rt.server.stats["joins"] == before
    assert rt.server.stats["connections_total"] == 0
    assert "bad" not in mgr.channels


async def test_backfill_delivers_every_row_written_during_a_drop_exactly_once(rt, make_manager):
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn, access_token=rt.token_for(str(ALICE)))
    got = []
    events = []
    mgr.add_listener(events.append)
    await mgr.subscribe_to_table(
        "general",
        "messages",
        filter="channel_id=eq.1",
        callback=got.append,
        backfill=Backfill(column="created_at", lookback=2.0),
    )
    live = [await insert_message(rt, f"live {i}") for i in range(5)]
    await eventually(lambda: len(got) == 5, what="live rows")
    rt.faults.refuse(1.5)
    rt.faults.drop_all(code=1001)
    await mgr.wait_for_status("general", "reconnecting", timeout=5)
    during = [await insert_message(rt, f"during {i}") for i in range(20)]
    elsewhere = await insert_message(rt, "not this channel", channel=RANDOM)
    await mgr.wait_for_status("general", "connected", timeout=10)
    await eventually(
        lambda: any(e.kind is EventKind.SYSTEM and e.reason == "backfill" for e in events), what="backfill"
    )
    after = [await insert_message(rt, f"after {i}") for i in range(3)]
    await eventually(lambda: len(got) >= 28, what="all rows")
    await stays(lambda: len(got), 28, for_s=0.3, what="rows delivered (no duplicate arrives late)")
    ids = [e.pk["id"] for e in got]
    assert sorted(ids) == sorted(live + during + after)  # 100 %, no duplicates, filter respected
    assert elsewhere not in ids
    backfilled = [e for e in got if e.backfilled]
    assert {e.pk["id"] for e in backfilled} == set(during)
    assert all(e.op == "INSERT" for e in backfilled)
    assert all(e.new["channel_id"] == GENERAL for e in backfilled)
    report = next(e for e in events if e.kind is EventKind.SYSTEM and e.reason == "backfill")
    assert report.payload["delivered"] == 20


async def test_resubscribe_is_idempotent_and_a_new_spec_replaces(rt, make_manager):
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn, access_token=rt.token_for(str(ALICE)))
    a, b = [], []
    await mgr.subscribe_to_table("ch", "messages", filter="channel_id=eq.1", callback=a.append)
    await mgr.subscribe_to_table("ch", "messages", filter="channel_id=eq.1", callback=a.append)
    assert rt.server.stats["joins"] == 1  # same spec: nothing re-sent
    await mgr.subscribe_to_table("ch", "messages", filter="channel_id=eq.2", callback=b.append)
    assert rt.server.stats["joins"] == 2
    await insert_message(rt, "general")
    await insert_message(rt, "random", channel=RANDOM)
    await eventually(lambda: len(b) == 1, what="the replacement subscription's event")
    await stays(lambda: (len(a), len(b)), (0, 1), for_s=0.3, what="events of the old and new subscription")
    assert b[0].new["channel_id"] == RANDOM
    await eventually(lambda: rt.server.stats["connections"] == 1, what="the old socket closed")
    await mgr.unsubscribe("ch")
    assert "ch" not in mgr.channels
    await eventually(lambda: rt.server.stats["connections"] == 0, what="all sockets closed")


async def test_legacy_subscribe_and_broadcast_between_managers(rt, make_manager):
    a = make_manager(rt.url, rt.anon_key)
    b = make_manager(rt.url, rt.anon_key)
    pings, everything = [], []
    await b.subscribe("room", "ping", pings.append)
    await b.subscribe("room", "*", everything.append)  # same channel, another event: no rejoin
    await a.subscribe("room", "pong", lambda ev: None)
    await a.broadcast("room", "ping", {"n": 1})
    await a.broadcast("room", "other", {"n": 2})
    await eventually(lambda: len(everything) == 2, what="two broadcasts")
    assert [(e.op, e.payload) for e in pings] == [("ping", {"n": 1})]
    assert [e.op for e in everything] == ["ping", "other"]
    with pytest.raises(KeyError, match="no channel named 'nope'"):
        await a.broadcast("nope", "x", {})
    with pytest.raises(TypeError, match="mapping"):
        await a.broadcast("room", "x", [1, 2])  # type: ignore[arg-type]
    # after SIGNED_OUT the channel is down; subscribing the same name again brings it back
    await a.handle_auth_event("SIGNED_OUT", None)
    assert a.get_status("room").reason == "signed_out"
    with pytest.raises(RuntimeError, match="broadcast not sent"):
        await a.broadcast("room", "ping", {"n": 3})
    pongs = []
    state = await a.subscribe("room", "pong", pongs.append)
    assert state.status is ChannelStatus.CONNECTED
    await b.broadcast("room", "pong", {"n": 4})
    await eventually(lambda: len(pongs) == 1, what="pong on the revived channel")


class JumpClock(SystemClock):
    def __init__(self) -> None:
        self.offset = 0.0

    def now(self):
        return super().now() + timedelta(seconds=self.offset)


async def test_wall_clock_jump_forces_a_reconnect(rt, make_manager):
    clock = JumpClock()
    mgr = make_manager(rt.url, rt.anon_key, clock=clock)
    events = []
    mgr.add_listener(events.append)
    await mgr.subscribe("room", "*", lambda ev: None)
    before_jump = clock.now()
    clock.offset = 3600.0  # as if the laptop slept for an hour
    state = await mgr.wait_for_status("room", "reconnecting", timeout=5)
    assert "wall clock jumped +3600" in state.reason
    await mgr.wait_for_status("room", "connected", timeout=5)
    assert mgr.get_status("room").attempt == 0
    (gap,) = [e for e in events if e.kind is EventKind.GAP]
    # the gap starts when data last arrived (before the "sleep"), not an hour later when it was noticed
    assert gap.gap_start <= before_jump
    assert gap.payload["undetected_s"] >= 3600


async def test_multiple_tables_on_one_channel_with_events_stream(rt, make_manager):
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn, access_token=rt.token_for(str(ALICE)))
    per_msg, per_reaction, everything = [], [], []
    stream = mgr.events(kinds=["change", "gap"])
    state = await mgr.subscribe_to_multiple_tables(
        "chat",
        [
            TableSubscription("messages", event="INSERT", filter="channel_id=eq.1", callback=per_msg.append),
            TableSubscription("message_reactions", callback=per_reaction.append),
        ],
        callback=everything.append,
    )
    assert state.status is ChannelStatus.CONNECTED
    mid = await insert_message(rt, "react to me")
    await rt.execute(
        "insert into message_reactions (message_id, user_id, emoji) values (%s, %s, '👍')", mid, ALICE
    )
    await rt.execute("update messages set content = 'x' where id = %s", mid)  # not subscribed (INSERT only)
    await eventually(lambda: len(everything) == 2, what="two changes")
    await stays(lambda: len(everything), 2, for_s=0.3, what="changes (the unsubscribed UPDATE never comes)")
    assert [e.table for e in per_msg] == ["messages"]
    assert [e.table for e in per_reaction] == ["message_reactions"]
    # the composite primary key comes from pg_index via the DSN
    assert per_reaction[0].pk == {"message_id": mid, "user_id": str(ALICE), "emoji": "👍"}
    got = [await asyncio.wait_for(stream.__anext__(), 2) for _ in range(2)]
    assert [e.table for e in got] == ["messages", "message_reactions"]
    assert got[0].seq < got[1].seq
    await mgr.cleanup()
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_table_outside_the_publication_is_an_error_not_a_retry_loop(rt, make_manager):
    await rt.execute("create table public.private_notes (id bigint primary key, body text)")
    await rt.execute("grant select on public.private_notes to anon, authenticated")
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn)
    state = await mgr.subscribe_to_table("notes", "private_notes")
    assert state.status is ChannelStatus.ERROR
    assert "postgres_changes" in state.reason
    # the reason says what to do next
    assert "public.private_notes exists, is in the supabase_realtime publication" in state.reason
    assert "`await manager.doctor('private_notes')`" in state.reason
    report = await mgr.doctor("private_notes", role="anon")
    assert not report["publication"].ok
    await rt.execute(report["publication"].fix)
    await mgr.subscribe_to_table("notes", "private_notes")  # a new subscribe restarts it
    state = await mgr.wait_for_status("notes", "connected", timeout=5)
    assert state.attempt == 0


async def test_rows_committed_early_in_a_stall_are_backfilled(rt, make_manager):
    """A stall is noticed up to two heartbeat intervals late; the gap (and the backfill window) must
    start when data last arrived, so a row committed right after the stall began is not lost."""
    mgr = make_manager(
        rt.url, rt.anon_key, dsn=rt.dsn, access_token=rt.token_for(str(ALICE)), heartbeat_interval=1.0
    )
    got, events = [], []
    mgr.add_listener(events.append)
    await mgr.subscribe_to_table(
        "general",
        "messages",
        filter="channel_id=eq.1",
        callback=got.append,
        backfill=Backfill(column="created_at", lookback=0.3),
    )
    await mgr.wait_for_status("general", "connected", timeout=10)
    first = await insert_message(rt, "before the stall")
    await eventually(lambda: len(got) == 1, what="the live row")
    stalled_at = SystemClock().now()
    rt.faults.stall(4.0)
    early = await insert_message(rt, "right after the stall began")
    await mgr.wait_for_status("general", "reconnecting", timeout=10)
    await mgr.wait_for_status("general", "connected", timeout=15)
    await eventually(
        lambda: any(e.kind is EventKind.SYSTEM and e.reason == "backfill" for e in events), what="backfill"
    )
    (gap,) = [e for e in events if e.kind is EventKind.GAP]
    assert gap.reason.startswith("stall")
    assert gap.gap_start <= stalled_at, "the gap must start at the last data received, not at detection"
    assert gap.payload["undetected_s"] > 0.5
    assert [e.pk["id"] for e in got] == [first, early]
    assert got[1].backfilled


async def test_subscribe_returns_after_the_first_attempt_and_live_frame_ready_waits_for_connected(
    rt, make_manager
):
    """The contract: subscribe_to_table returns once the first attempt settled (here: refused, so
    'reconnecting' with retries running); wait_for_status / LiveFrame.ready() wait until events flow."""
    from harmony_lab.frames import LiveFrame

    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn, access_token=rt.token_for(str(ALICE)))
    rt.faults.refuse(1.0)
    state = await mgr.subscribe_to_table("general", "messages", filter="channel_id=eq.1")
    assert state.status is ChannelStatus.RECONNECTING
    assert state.attempt == 1
    assert "503" in state.reason
    state = await mgr.wait_for_status("general", "connected", timeout=10)
    assert state.status is ChannelStatus.CONNECTED

    rt.faults.refuse(1.0)
    lf = LiveFrame(mgr, "messages", filter="channel_id=eq.1")
    await lf.ready()
    assert mgr.get_status(lf.name).status is ChannelStatus.CONNECTED
    assert mgr.get_status(lf.name).attempt >= 1  # it really had to retry
    assert lf.status == "connected"
    new_id = await insert_message(rt, "right after ready()")
    await lf.wait_until(lambda f: new_id in f, within_s=5)
    await lf.aclose()
