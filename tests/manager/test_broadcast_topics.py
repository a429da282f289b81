"""subscribe_to_broadcast: a named channel on a Realtime topic, public or private, against a real server."""

from __future__ import annotations

import types
from typing import Any

import pytest

from harmony_lab.events import ChannelStatus, EventKind
from harmony_lab.local.schema import ALICE
from tests.manager.manager_helpers import REALTIME_PY_DEPRECATIONS
from tests.polling import eventually, stays

pytestmark = REALTIME_PY_DEPRECATIONS

OPEN_POLICIES = """
CREATE POLICY lab_read_all ON realtime.messages FOR SELECT TO anon, authenticated USING (true);
CREATE POLICY lab_write_all ON realtime.messages FOR INSERT TO anon, authenticated WITH CHECK (true);
"""


async def has_authorization(rt) -> bool:
    rows = await rt.execute("SELECT to_regclass('realtime.messages') IS NOT NULL")
    return bool(rows[0][0])


async def test_broadcast_on_a_topic_selects_events_for_the_callback(rt, make_manager):
    mgr = make_manager(rt.url, rt.anon_key)
    sender = make_manager(rt.url, rt.anon_key)
    pings, everything = [], []
    mgr.add_listener(lambda ev: everything.append(ev) if ev.kind is EventKind.BROADCAST else None)
    state = await mgr.subscribe_to_broadcast("room", "room:1", event="ping", callback=pings.append)
    assert state.status is ChannelStatus.CONNECTED
    assert rt.server.registry.topics() == ["realtime:room:1"]
    assert [ch.scope for ch in rt.server.registry.members("realtime:room:1")] == [("realtime:room:1", False)]
    await sender.subscribe_to_broadcast("out", "room:1")
    await sender.broadcast("out", "ping", {"n": 1})
    await sender.broadcast("out", "pong", {"n": 2})
    await eventually(lambda: len(everything) == 2, what="both broadcasts on the listeners")
    assert [(e.op, e.payload, e.topic, e.channel) for e in pings] == [
        ("ping", {"n": 1}, "realtime:room:1", "room")
    ]
    # the same topic again with another callback: the last call wins, no rejoin
    joins = rt.server.stats["joins"]
    later = []
    await mgr.subscribe_to_broadcast("room", "room:1", callback=later.append)
    assert rt.server.stats["joins"] == joins
    await sender.broadcast("out", "pong", {"n": 3})
    await eventually(lambda: len(later) == 1, what="the new callback")
    await stays(lambda: len(pings), 1, for_s=0.2)
    with pytest.raises(ValueError, match="without the 'realtime:' prefix"):
        await mgr.subscribe_to_broadcast("bad", "realtime:room:1")


async def test_private_broadcast_and_presence_join_as_private(rt, make_manager):
    if await has_authorization(rt):
        await rt.execute(OPEN_POLICIES)
    alice = make_manager(rt.url, rt.anon_key, access_token=rt.token_for(str(ALICE)))
    other = make_manager(rt.url, rt.anon_key, access_token=rt.token_for(str(ALICE)))
    got = []
    await alice.subscribe_to_broadcast("dm", "dm:alice-bob", private=True, callback=got.append)
    handle = await other.join_presence("dm-presence", "bob", topic="dm:alice-bob", private=True)
    await other.wait_for_status("dm-presence", "connected", timeout=10)
    scopes = {ch.scope for ch in rt.server.registry.members("realtime:dm:alice-bob", private=True)}
    assert scopes == {("realtime:dm:alice-bob", True)}
    assert len(rt.server.registry.members("realtime:dm:alice-bob", private=True)) == 2
    assert rt.server.registry.members("realtime:dm:alice-bob", private=False) == []
    await other.broadcast("dm-presence", "hello", {"from": "bob"})  # broadcasting into a private channel
    await eventually(lambda: [e.payload for e in got] == [{"from": "bob"}], what="the private broadcast")
    assert "private" in alice.get_debug_info()["channels"]["dm"]["bindings"]
    await eventually(lambda: "bob" in handle.roster, what="presence tracked on the private channel")


async def test_an_authorization_refusal_is_error_without_a_retry_storm(rt, make_manager):
    await rt.execute(
        "CREATE POLICY lab_alice_reads ON realtime.messages FOR SELECT TO authenticated "
        f"USING (realtime.topic() = 'dm:alice-bob' AND auth.uid() = '{ALICE}')"
    )
    mgr = make_manager(rt.url, rt.anon_key, health_interval=60.0)
    state = await mgr.subscribe_to_broadcast("dm", "dm:alice-bob", private=True)
    if state.status is not ChannelStatus.ERROR:
        state = await mgr.wait_for_status("dm", "error", timeout=15)
    assert "Unauthorized" in state.reason
    assert "dm:alice-bob" in state.reason
    connects = mgr.get_debug_info()["channels"]["dm"]["connects"]
    await stays(lambda: mgr.get_debug_info()["channels"]["dm"]["connects"], connects, for_s=1.5)
    # a new token for a member: the manager tries again, and the member is admitted
    session = types.SimpleNamespace(access_token=rt.token_for(str(ALICE)))
    await mgr.handle_auth_event("TOKEN_REFRESHED", session)
    await mgr.wait_for_status("dm", "connected", timeout=15)


async def test_a_refused_channel_is_retried_by_the_health_check_with_the_same_token(rt, make_manager):
    topic = "dm:health-check-retry"
    mgr = make_manager(
        rt.url,
        rt.anon_key,
        access_token=rt.token_for(str(ALICE)),
        health_interval=0.25,
        error_reset_after=1.5,
    )
    events = []
    mgr.add_listener(events.append)
    state = await mgr.subscribe_to_broadcast("dm", topic, private=True)
    if state.status is not ChannelStatus.ERROR:
        state = await mgr.wait_for_status("dm", "error", timeout=15)
    refused = f"Unauthorized: You do not have permissions to read from this Channel topic: {topic}"
    assert refused in state.reason
    # a policy admitting Alice appears while the channel is in error; no token changes
    await rt.execute(
        "CREATE POLICY lab_health_retry ON realtime.messages FOR SELECT TO authenticated "
        f"USING (realtime.topic() = '{topic}' AND auth.uid() = '{ALICE}')"
    )
    try:
        await mgr.wait_for_status("dm", "connected", timeout=15)
        reasons = [e.reason or "" for e in events if e.kind is EventKind.STATUS]
        resets = [r for r in reasons if r.startswith("health check")]
        refusals = [r for r in reasons if r.startswith("refused")]
        assert resets, "the retry came from the health check"
        # every attempt after a refusal came from the health check, none from the backoff
        assert len(refusals) == len(resets), reasons
    finally:
        await rt.execute("DROP POLICY lab_health_retry ON realtime.messages")


READER = "00000000-0000-4000-8000-00000000abcd"  # may read broadcast of the topic, not presence


REVOKED = {
    "broadcast": "You do not have permissions to read from this Channel topic",
    "presence": "You no longer have permission to read from this Channel topic",
}


async def test_a_refresh_that_revokes_reading_is_a_refusal_not_a_reconnect(rt, make_manager):
    for joined_with, text in REVOKED.items():
        await _refresh_revokes(rt, make_manager, joined_with, text)


async def _refresh_revokes(rt: Any, make_manager: Any, joined_with: str, text: str) -> None:
    topic = f"dm:revoked-on-refresh-{joined_with}"
    await rt.execute(
        "CREATE POLICY lab_revoke ON realtime.messages FOR SELECT TO authenticated "
        f"USING (realtime.topic() = '{topic}' AND (auth.uid() = '{ALICE}' "
        f"OR (auth.uid() = '{READER}' AND realtime.messages.extension = 'broadcast')))"
    )
    try:
        mgr = make_manager(rt.url, rt.anon_key, access_token=rt.token_for(str(ALICE)), health_interval=60.0)
        if joined_with == "broadcast":
            await mgr.subscribe_to_broadcast("dm", topic, private=True)
        else:
            await mgr.join_presence("dm", "alice", topic=topic, private=True)
        await mgr.wait_for_status("dm", "connected", timeout=15)
        connects = mgr.get_debug_info()["channels"]["dm"]["connects"]
        # on a broadcast-only channel the reader's token may read nothing; on a presence channel it
        # loses the presence read it had: either way the server closes the channel
        token = rt.token_for(READER if joined_with == "presence" else "00000000-0000-4000-8000-0000000000ef")
        await mgr.handle_auth_event("TOKEN_REFRESHED", types.SimpleNamespace(access_token=token))
        state = await mgr.wait_for_status("dm", "error", timeout=15)
        assert state.reason == f"refused: {text}: {topic}"
        await stays(lambda: mgr.get_debug_info()["channels"]["dm"]["connects"], connects, for_s=1.0)
        # Alice's token again: the manager rejoins and is admitted
        alice = types.SimpleNamespace(access_token=rt.token_for(str(ALICE)))
        await mgr.handle_auth_event("TOKEN_REFRESHED", alice)
        await mgr.wait_for_status("dm", "connected", timeout=15)
    finally:
        await rt.execute("DROP POLICY lab_revoke ON realtime.messages")
