"""Regressions of the manager under overlap, loop changes and ordinary misuse, against a real LocalRealtime.

Each test reproduces one finding (the old behaviour is described in its docstring) and checks the fixed
behaviour, asserting on the server's own view (connections, postgres_changes hub subscribers) where
"nothing is left behind" matters.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from harmony_lab.events import ChannelStatus, EventKind
from harmony_lab.local.schema import ALICE, GENERAL, RANDOM
from harmony_lab.manager import BackoffPolicy, RealtimeConnectionManager
from tests.conftest import FAST_MANAGER
from tests.manager.manager_helpers import REALTIME_PY_DEPRECATIONS
from tests.polling import eventually, eventually_sync, stays

pytestmark = REALTIME_PY_DEPRECATIONS

INSERT_MSG = "insert into messages (channel_id, user_id, content) values (%s, %s, %s) returning id"


async def insert_message(rt, content: str, channel: int = GENERAL) -> int:
    rows = await rt.execute(INSERT_MSG, channel, ALICE, content)
    return rows[0][0]


def server_view(rt) -> tuple[int, int]:
    """(open sockets, postgres_changes subscribers) as the server sees them."""
    return rt.server.stats["connections"], rt.hub.stats["subscribers"]


async def test_get_status_of_an_unknown_name_is_disconnected(rt, make_manager):
    """Was: KeyError. ``disconnected`` means "not subscribed"."""
    mgr = make_manager(rt.url, rt.anon_key)
    state = mgr.get_status("never")
    assert (state.name, state.status, state.reason, state.attempt) == (
        "never",
        ChannelStatus.DISCONNECTED,
        "not subscribed",
        0,
    )
    await mgr.subscribe("room", "*", lambda ev: None)
    assert mgr.get_status("room").status is ChannelStatus.CONNECTED
    await mgr.unsubscribe("room")
    assert mgr.get_status("room").status is ChannelStatus.DISCONNECTED
    assert mgr.get_status("room").reason == "not subscribed"


async def test_on_status_change_fires_on_changes_and_reasons_on_request(rt, make_manager):
    """Was: called for reason-only updates (connecting → connecting, connected → connected "attempts
    reset"). Now only for changes; ``reasons=True`` gets every status event."""
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn)
    changes, everything, events = [], [], []
    mgr.on_status_change("general", changes.append)
    mgr.on_status_change("general", everything.append, reasons=True)
    mgr.add_listener(events.append)
    await mgr.subscribe_to_table("general", "messages", filter="channel_id=eq.1")
    rt.faults.drop_all(code=1001)
    await mgr.wait_for_status("general", "reconnecting", timeout=5)
    await mgr.wait_for_status("general", "connected", timeout=10)
    await eventually(lambda: mgr.get_status("general").attempt == 0, what="attempts reset", within=5)
    status_events = [e for e in events if e.kind is EventKind.STATUS]
    assert [s.status for s in everything] == [e.status for e in status_events]
    assert everything[-1].reason.endswith("attempts reset")
    assert [s.status for s in changes] == [
        ChannelStatus.CONNECTING,
        ChannelStatus.CONNECTED,
        ChannelStatus.RECONNECTING,
        ChannelStatus.CONNECTED,
    ]
    assert len(everything) > len(changes)
    with pytest.raises(TypeError, match="reasons must be True or False"):
        mgr.on_status_change("general", print, reasons="yes")  # type: ignore[arg-type]


async def test_legacy_subscribe_refuses_table_operations(rt, make_manager):
    """Was: ``subscribe("messages", "INSERT", cb)`` reported connected and never delivered a row."""
    mgr = make_manager(rt.url, rt.anon_key)
    for op in ("INSERT", "update", "Delete"):
        with pytest.raises(ValueError, match="subscribe_to_table") as info:
            await mgr.subscribe("messages", op, print)
        assert "table operation" in str(info.value)
    assert mgr.channels == {}
    assert rt.server.stats["connections_total"] == 0  # refused before anything was sent


async def test_legacy_subscribe_never_replaces_a_table_subscription(rt, make_manager):
    """Was: ``subscribe(name, event, cb)`` on a table subscription's name silently dropped it."""
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn, access_token=rt.token_for(str(ALICE)))
    rows = []
    await mgr.subscribe_to_table("general", "messages", filter="channel_id=eq.1", callback=rows.append)
    with pytest.raises(ValueError, match="is a table subscription") as info:
        await mgr.subscribe("general", "typing", print)
    assert "unsubscribe('general')" in str(info.value)
    assert mgr.get_status("general").status is ChannelStatus.CONNECTED
    new_id = await insert_message(rt, "still here")
    await eventually(lambda: any(e.pk == {"id": new_id} for e in rows), what="the table subscription")
    assert server_view(rt) == (1, 1)
    assert rt.server.stats["joins"] == 1


async def test_jittered_delays_on_the_wire_never_exceed_max_delay(rt, make_manager):
    """Was: jitter applied after the cap (36 s against max_delay=30). The delays the manager actually
    schedules, read from its status events, stay within ``max_delay``."""
    from harmony_lab.manager import BackoffPolicy

    policy = BackoffPolicy(base=0.05, max_delay=0.1, factor=4.0, max_retries=40, jitter=0.5)
    mgr = make_manager(rt.url, rt.anon_key, backoff=policy)
    events = []
    mgr.add_listener(events.append)
    await mgr.subscribe("room", "*", lambda ev: None)
    rt.faults.refuse(1.0)
    rt.faults.drop_all(code=1001)
    await eventually(
        lambda: (
            sum(1 for e in events if e.status is ChannelStatus.RECONNECTING and "delay" in e.payload) >= 4
        ),
        what="four scheduled retries",
    )
    delays = [e.payload["delay"] for e in events if e.kind is EventKind.STATUS and "delay" in e.payload]
    assert delays
    assert max(delays) <= policy.max_delay
    await mgr.wait_for_status("room", "connected", timeout=10)


async def test_overlapping_table_subscriptions_leave_nothing_behind(rt, make_manager):
    """Was: two overlapping ``subscribe_to_table`` calls on one name (with ``dsn=``) left a hidden
    subscription that survived ``cleanup()`` (server: 1 connection, 1 hub subscriber) and kept calling
    the first callback. Now the last call wins and the first returns a superseded state."""
    mgr = make_manager(rt.url, rt.service_role_key, dsn=rt.dsn)
    a, b = [], []
    first, second = await asyncio.gather(
        mgr.subscribe_to_table("x", "messages", filter="channel_id=eq.1", callback=a.append),
        mgr.subscribe_to_table("x", "messages", filter="channel_id=eq.2", callback=b.append),
    )
    assert first.superseded
    assert first.status is ChannelStatus.DISCONNECTED
    assert "superseded" in first.reason
    assert not second.superseded
    assert second.status is ChannelStatus.CONNECTED
    assert mgr.get_debug_info()["channels"]["x"]["bindings"] == [
        "* public.messages filter=channel_id=eq.2",
        "broadcast *",
    ]
    await eventually(lambda: server_view(rt) == (1, 1), what="one socket, one hub subscriber")
    await insert_message(rt, "general", channel=GENERAL)
    random_id = await insert_message(rt, "random", channel=RANDOM)
    await eventually(lambda: [e.pk for e in b] == [{"id": random_id}], what="the winner's event")
    await stays(lambda: len(a), 0, for_s=0.3, what="the superseded callback")
    await mgr.cleanup()
    assert mgr.channels == {}
    await eventually(lambda: server_view(rt) == (0, 0), what="nothing left on the server")
    await insert_message(rt, "after cleanup", channel=GENERAL)
    await stays(lambda: (len(a), len(b)), (0, 1), for_s=0.3, what="callbacks after cleanup")


async def test_overlap_without_dsn_returns_promptly(rt, make_manager):
    """Was: without ``dsn`` the first of two overlapping calls hung 25 s and returned
    ``disconnected``. Now it returns as soon as the second call arrives."""
    mgr = make_manager(rt.url, rt.anon_key)
    t0 = time.monotonic()
    first_task = asyncio.ensure_future(mgr.subscribe("room", "*", print))
    await asyncio.sleep(0)  # the first call owns the name and is connecting
    second = await mgr.subscribe_to_broadcast("room", "room", event="ping", callback=print)
    first = await asyncio.wait_for(first_task, 2.0)
    assert time.monotonic() - t0 < 5.0
    assert first.superseded
    assert second.status is ChannelStatus.CONNECTED
    await eventually(lambda: server_view(rt) == (1, 0), what="one socket")


async def test_a_burst_of_calls_on_one_name_ends_in_the_last_one(rt, make_manager):
    """Subscribe, re-subscribe with another spec and unsubscribe all at once: the unsubscribe (the last
    call) wins, every call returns, and nothing is left on the server."""
    mgr = make_manager(rt.url, rt.service_role_key, dsn=rt.dsn)
    got = []
    t0 = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(
            mgr.subscribe_to_table("x", "messages", callback=got.append),
            mgr.subscribe("x", "ping", got.append),
            mgr.subscribe_to_table("x", "messages", filter="channel_id=eq.2", callback=got.append),
            mgr.unsubscribe("x"),
        ),
        10.0,
    )
    assert time.monotonic() - t0 < 10.0
    assert [r.superseded for r in results[:3]] == [True, True, True]
    assert mgr.channels == {}
    assert mgr.get_status("x").status is ChannelStatus.DISCONNECTED
    await eventually(lambda: server_view(rt) == (0, 0), what="nothing left on the server")
    await insert_message(rt, "nobody listens", channel=RANDOM)
    await stays(lambda: len(got), 0, for_s=0.3)


@pytest.mark.timeout(120)
def test_a_manager_used_from_two_asyncio_runs():
    """Was: used from two ``asyncio.run()`` calls, the manager reported the dead channel as
    ``connected``, delivered nothing, warned nothing, and left a socket open after ``cleanup()``.

    Now the end of the first loop releases the socket and marks the channel ``error``; the second
    loop gets a RuntimeError saying what to do; ``cleanup()`` there releases everything and the
    manager works on the new loop."""
    from harmony_lab.local import LocalRealtime

    fast = {**FAST_MANAGER, "backoff": BackoffPolicy(base=0.1, max_delay=0.5, max_retries=10)}
    with LocalRealtime() as rt:
        mgr = RealtimeConnectionManager(rt.url, rt.anon_key, **fast)
        got: list = []

        async def first() -> None:
            state = await mgr.subscribe("room", "*", got.append)
            assert state.status is ChannelStatus.CONNECTED

        asyncio.run(first())
        state = mgr.get_status("room")
        assert state.status is ChannelStatus.ERROR
        assert "event loop" in state.reason
        assert "cleanup()" in state.reason
        eventually_sync(lambda: rt.server.stats["connections"] == 0, what="the first loop's socket closed")

        async def second() -> None:
            with pytest.raises(RuntimeError, match="another event loop") as info:
                await mgr.subscribe("room", "*", got.append)
            assert "cleanup()" in str(info.value)
            with pytest.raises(RuntimeError, match="another event loop"):
                await mgr.broadcast("room", "ping", {})
            await mgr.cleanup()
            assert mgr.channels == {}
            state = await mgr.subscribe("room", "*", got.append)  # bound to this loop now
            assert state.status is ChannelStatus.CONNECTED
            sender = RealtimeConnectionManager(rt.url, rt.anon_key, **fast)
            await sender.subscribe("room", "*", lambda ev: None)
            await sender.broadcast("room", "ping", {"n": 1})
            await eventually(lambda: [e.payload for e in got] == [{"n": 1}], what="delivery on the new loop")
            await sender.cleanup()
            await mgr.cleanup()

        asyncio.run(second())
        eventually_sync(lambda: rt.server.stats["connections"] == 0, what="every socket closed")


async def test_overlapping_presence_joins_and_a_cleanup_mid_subscribe(rt, make_manager):
    """The same ownership rules for presence and for ``cleanup()``: a superseded ``join_presence``
    returns a closed handle, the later join is the one the server sees, and a ``cleanup()`` that
    arrives while a subscribe is in flight supersedes it and leaves nothing behind."""
    mgr = make_manager(rt.url, rt.service_role_key, dsn=rt.dsn)
    first, second = await asyncio.gather(
        mgr.join_presence("lobby", "alice"), mgr.join_presence("lobby", "bob", status="away")
    )
    assert first.superseded
    assert first.closed
    assert not second.superseded
    await mgr.wait_for_status("lobby", "connected", timeout=10)
    await eventually(lambda: second.roster.get("bob", {}).get("status") == "away", what="bob tracked")
    assert "alice" not in second.roster
    with pytest.raises(RuntimeError, match="join_presence again"):
        await first.set_status("dnd")
    pending = asyncio.ensure_future(mgr.subscribe_to_table("x", "messages", callback=print))
    await asyncio.sleep(0)  # the subscribe owns "x" and is on its way
    await asyncio.wait_for(mgr.cleanup(), 10)
    state = await asyncio.wait_for(pending, 2)
    assert state.superseded
    assert mgr.channels == {}
    await eventually(lambda: server_view(rt) == (0, 0), what="nothing left on the server")
