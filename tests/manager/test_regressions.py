"""Regressions of the manager under overlap, loop changes and ordinary misuse, against a real LocalRealtime.

Each test reproduces one finding (the old behaviour is described in its docstring) and checks the fixed
behaviour, asserting on the server's own view (connections, postgres_changes hub subscribers) where
"nothing is left behind" matters.
"""

from __future__ import annotations

import pytest

from harmony_lab.events import ChannelStatus, EventKind
from harmony_lab.local.schema import ALICE, GENERAL
from tests.manager.manager_helpers import REALTIME_PY_DEPRECATIONS
from tests.polling import eventually

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
