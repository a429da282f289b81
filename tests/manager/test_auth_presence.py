"""Auth events through real supabase-py, token refresh, presence between two managers, the doctor."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from supabase import AsyncClientOptions, acreate_client
from supabase_auth import AsyncMemoryStorage
from supabase_auth.types import Session, User

from harmony_lab.events import ChannelStatus, EventKind, PresenceStatus
from harmony_lab.local.schema import ALICE, BOB
from harmony_lab.manager import RealtimeConnectionManager
from tests.manager.manager_helpers import REALTIME_PY_DEPRECATIONS
from tests.polling import eventually, stays

pytestmark = REALTIME_PY_DEPRECATIONS

STORAGE_KEY = "supabase.auth.token"  # supabase_auth.constants.STORAGE_KEY


def session_for(rt, user, expires_in: int = 3600) -> Session:
    return Session(
        access_token=rt.token_for(str(user), expires_in=expires_in),
        refresh_token="offline-refresh-token",
        expires_in=expires_in,
        expires_at=int(time.time()) + expires_in,
        token_type="bearer",
        user=User(
            id=str(user), app_metadata={}, user_metadata={}, aud="authenticated", created_at=datetime.now(UTC)
        ),
    )


async def sign_in_offline(client, storage, session: Session) -> None:
    """A real supabase-py sign-in path that needs no auth server: a persisted session is recovered
    by ``initialize_from_storage()``, which emits SIGNED_IN."""
    await storage.set_item(STORAGE_KEY, session.model_dump_json())
    await client.auth.initialize_from_storage()


async def insert_notification(rt, user) -> int:
    rows = await rt.execute(
        "insert into notifications (user_id, kind, payload) values (%s, 'mention', '{}') returning id", user
    )
    return rows[0][0]


async def test_signed_out_through_supabase_py_tears_everything_down(rt, make_manager):
    storage = AsyncMemoryStorage()
    client = await acreate_client(rt.url, rt.anon_key, options=AsyncClientOptions(storage=storage))
    mgr = RealtimeConnectionManager.from_supabase(client, heartbeat_interval=0.5, dsn=rt.dsn)
    try:
        auth_events = []
        client.auth.on_auth_state_change(lambda event, session: auth_events.append(event))
        session = session_for(rt, ALICE)
        await sign_in_offline(client, storage, session)
        assert auth_events == ["SIGNED_IN"]
        assert mgr.get_debug_info()["auth"]["role"] == "authenticated"
        got = []
        state = await mgr.subscribe_to_table(
            "mine", "notifications", filter=f"user_id=eq.{ALICE}", callback=got.append
        )
        assert state.status is ChannelStatus.CONNECTED
        handle = await mgr.join_presence("lobby", ALICE, PresenceStatus.ONLINE)
        await insert_notification(rt, ALICE)  # visible to alice under RLS: her token is in use
        await eventually(lambda: len(got) == 1, what="alice's notification")
        assert rt.server.stats["connections"] == 2

        await client.auth.sign_out({"scope": "local"})
        assert auth_events[-1] == "SIGNED_OUT"
        # immediately, inside the auth callback: every subscription and presence is down
        for name in ("mine", "lobby"):
            state = mgr.get_status(name)
            assert state.status is ChannelStatus.DISCONNECTED
            assert state.reason == "signed_out"
        assert handle.closed
        with pytest.raises(RuntimeError, match="join_presence again"):
            await handle.set_status("away")
        await eventually(lambda: rt.server.stats["connections"] == 0, what="sockets closed")
        await insert_notification(rt, ALICE)
        await stays(lambda: len(got), 1, what="notifications after sign-out (none)")
        assert mgr.get_debug_info()["auth"]["token"] == "API key"
    finally:
        await mgr.cleanup()


async def test_a_new_token_reaches_every_joined_channel(rt, make_manager):
    storage = AsyncMemoryStorage()
    client = await acreate_client(rt.url, rt.anon_key, options=AsyncClientOptions(storage=storage))
    mgr = RealtimeConnectionManager.from_supabase(client, heartbeat_interval=0.5)
    try:
        got = []
        # joined with the anon key: RLS hides alice's notifications
        await mgr.subscribe_to_table(
            "mine", "notifications", filter=f"user_id=eq.{ALICE}", callback=got.append
        )
        await mgr.subscribe("room", "*", lambda ev: None)
        await insert_notification(rt, ALICE)
        await stays(lambda: got, [], for_s=0.6, what="notifications without a signed-in user")
        joins = rt.server.stats["joins"]
        await sign_in_offline(client, storage, session_for(rt, ALICE))
        await eventually(lambda: mgr._access_token is not None, what="token taken")
        await asyncio.sleep(0.3)  # the access_token push is fire-and-forget from the auth callback
        nid = await insert_notification(rt, ALICE)
        await eventually(lambda: len(got) == 1, what="notification visible with the new token")
        assert got[0].pk == {"id": nid}
        assert rt.server.stats["joins"] == joins  # the token was pushed, not a rejoin
        assert mgr.get_status("mine").status is ChannelStatus.CONNECTED
        assert mgr.get_status("room").status is ChannelStatus.CONNECTED
    finally:
        await mgr.cleanup()


async def test_never_joins_with_an_expired_token(rt, make_manager):
    expired = rt.token_for(str(ALICE), expires_in=-30)
    mgr = make_manager(rt.url, rt.anon_key, access_token=expired, token_wait=0.5)
    state = await mgr.subscribe("room", "*", lambda ev: None)
    assert state.status is ChannelStatus.ERROR
    assert state.reason.startswith("access token expired")
    assert "refresh the session" in state.reason
    assert rt.server.stats["connections_total"] == 0
    # a refreshed token revives the channel at once
    await mgr.handle_auth_event("TOKEN_REFRESHED", session_for(rt, ALICE))
    state = await mgr.wait_for_status("room", "connected", timeout=5)
    assert state.attempt == 0


async def test_a_refresh_arriving_while_waiting_is_used(rt, make_manager):
    expired = rt.token_for(str(ALICE), expires_in=-30)
    mgr = make_manager(rt.url, rt.anon_key, access_token=expired, token_wait=5.0)
    task = asyncio.ensure_future(mgr.subscribe("room", "*", lambda ev: None))
    await stays(
        lambda: rt.server.stats["connections_total"], 0, for_s=0.3, what="connections with an expired token"
    )
    await mgr.handle_auth_event("TOKEN_REFRESHED", session_for(rt, ALICE))
    state = await task
    assert state.status is ChannelStatus.CONNECTED


async def test_presence_between_two_managers_dnd_and_invisible(rt, make_manager):
    a = make_manager(rt.url, rt.anon_key, access_token=rt.token_for(str(ALICE)))
    b = make_manager(rt.url, rt.anon_key, access_token=rt.token_for(str(BOB)))
    ha = await a.join_presence("lobby", ALICE, PresenceStatus.ONLINE, meta={"device": "laptop"})
    hb = await b.join_presence("lobby", BOB, "dnd")
    alice, bob = str(ALICE), str(BOB)
    await eventually(lambda: ha.roster.get(bob, {}).get("status") == "dnd", what="alice sees bob dnd")
    await eventually(lambda: hb.roster.get(alice, {}).get("status") == "online", what="bob sees alice online")
    assert hb.roster[alice]["meta"] == {"device": "laptop"}
    changes = []
    ha.on_change(changes.append)

    # dnd: bob's notifications go to listeners marked suppressed, not to the subscription callback
    delivered, heard = [], []
    await b.subscribe_to_table(
        "inbox", "notifications", filter=f"user_id=eq.{BOB}", callback=delivered.append
    )
    b.add_listener(lambda ev: heard.append(ev) if ev.kind is EventKind.CHANGE else None)
    await insert_notification(rt, BOB)
    await eventually(lambda: len(heard) == 1, what="suppressed notification")
    assert heard[0].suppressed
    assert delivered == []
    await hb.set_status(PresenceStatus.ONLINE)
    await insert_notification(rt, BOB)
    await eventually(lambda: len(delivered) == 1, what="notification after leaving dnd")
    assert not delivered[0].suppressed

    # invisible: untracked, others see alice offline; alice still receives the roster
    await ha.set_status(PresenceStatus.INVISIBLE)
    await eventually(lambda: hb.roster[alice]["status"] == "offline", what="alice looks offline to bob")
    await hb.set_status("away")
    await eventually(lambda: ha.roster[bob]["status"] == "away", what="invisible alice still sees bob")
    assert changes, "on_change callbacks ran"
    assert all(ev.kind is EventKind.PRESENCE for ev in changes)
    await ha.set_status("online")
    await eventually(lambda: hb.roster[alice]["status"] == "online", what="alice visible again")


async def test_presence_status_changes_are_coalesced_to_the_call_budget(rt, make_manager):
    a = make_manager(rt.url, rt.anon_key, presence_limit=(3, 1.0))
    b = make_manager(rt.url, rt.anon_key)
    ha = await a.join_presence("lobby", "alice", "online")
    hb = await b.join_presence("lobby", "bob", "online")
    await eventually(lambda: "alice" in hb.roster, what="alice seen")
    t0 = time.monotonic()
    for status in ["away", "dnd", "online", "away", "dnd", "away"]:
        await ha.set_status(status)
    assert ha.calls_sent == 3  # the join's track + two changes fill the budget of 3 per second
    assert ha.calls_coalesced >= 1
    await eventually(lambda: hb.roster["alice"]["status"] == "away", what="the latest status", within=5)
    assert ha.calls_sent == 4  # everything after the budget ran out became one call
    assert time.monotonic() - t0 >= 0.5


async def test_doctor_reports_problems_with_fixes(rt, make_manager):
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn, access_token=rt.token_for(str(ALICE)))
    report = await mgr.doctor("messages")
    assert report.ok
    assert report.role == "authenticated"
    assert report["replica identity"].ok
    await rt.execute("create table public.gadgets (name text)")
    report = await mgr.doctor("gadgets")
    assert not report.ok
    assert {c.name for c in report.problems} >= {"publication", "primary key", "replica identity"}
    assert "ALTER PUBLICATION supabase_realtime ADD TABLE" in report.fixes
    assert "| publication | FAIL |" in report._repr_markdown_()
    assert "PROBLEMS" in repr(report)
    for statement in report.fixes.split(";\n"):
        if statement.strip():
            await rt.execute(statement.rstrip(";") + ";")
    await rt.execute("alter table public.gadgets enable row level security")
    report = await mgr.doctor("gadgets")
    assert [c.name for c in report.problems] == ["row level security"]
    # gadgets has no owner column: nothing in the fix runs by itself; opening the table to every
    # signed-in user is offered only as a commented, warned statement the user must choose to run
    assert all(line.startswith("--") for line in report.fixes.splitlines())
    (opening,) = [line for line in report.fixes.splitlines() if "USING (true)" in line]
    await rt.execute(opening.removeprefix("-- "))
    report = await mgr.doctor("gadgets")
    assert report.ok
    assert report.problems == ()
    missing = await mgr.doctor("no_such_table")
    assert not missing.ok
    assert "does not exist" in missing["table exists"].detail


async def test_join_channel_takes_tables_and_presence_in_one_join(rt, make_manager):
    from harmony_lab.manager import TableSubscription

    mgr = make_manager(rt.url, rt.service_role_key)
    events = []
    mgr.add_listener(events.append)
    state = await mgr.join_channel(
        "both",
        tables=[TableSubscription("notifications", event="INSERT")],
        presence_key="watcher",
        presence_status="invisible",
    )
    assert state.status is ChannelStatus.CONNECTED
    handle = mgr.presence_handle("both")
    assert handle is not None
    assert handle.status is PresenceStatus.INVISIBLE
    assert mgr.presence_handle("nothing-here") is None
    row_id = await insert_notification(rt, ALICE)
    await eventually(
        lambda: any(e.kind is EventKind.CHANGE and e.new and e.new.get("id") == row_id for e in events),
        what="the INSERT on the joint channel",
    )
    with pytest.raises(ValueError, match="presence_key must be a non-empty string"):
        await mgr.join_channel("bad", presence_key="")
