"""Conformance with the unmodified official clients: realtime-py 2.34.1, supabase-py 2.34.1, realtime-js
2.119.1 / supabase-js 2.119.1 (under node) — all against the real server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates
from supabase import acreate_client

from tests.polling import eventually, stays
from tests.server.rt_helpers import ANON, token


@pytest.fixture
async def client(server) -> AsyncIterator[AsyncRealtimeClient]:
    """An unmodified realtime-py client connected to ``server`` with the anon key (closed afterwards)."""
    client = AsyncRealtimeClient(server.ws_url, token=ANON, auto_reconnect=False)
    await client.connect()
    yield client
    await client.close()


async def subscribed(channel) -> list[tuple[Any, Any]]:
    states: list[tuple[Any, Any]] = []
    await channel.subscribe(lambda s, e: states.append((s, e)))
    await eventually(lambda: states)
    assert states[0][0] == RealtimeSubscribeStates.SUBSCRIBED, states
    return states


def server_channels(server, topic: str) -> list[Any]:
    return server.registry.members(f"realtime:{topic}")


async def test_realtime_py_join_and_leave(server, client):
    ch = client.channel("room")
    states = await subscribed(ch)
    assert len(server_channels(server, "room")) == 1
    await ch.unsubscribe()
    await eventually(lambda: not server_channels(server, "room"))
    await eventually(lambda: states[-1][0] == RealtimeSubscribeStates.CLOSED)


async def test_supabase_py_acreate_client_broadcast_and_http_send(server):
    sb = await acreate_client(server.url, ANON)
    got: list[dict[str, Any]] = []
    try:
        ch = sb.realtime.channel("room", {"config": {"broadcast": {"self": True}}})
        ch.on_broadcast("*", got.append)
        await subscribed(ch)
        await ch.send_broadcast("ws", {"via": "socket"})
        await ch.http_send("rest", {"via": "http"})
        await eventually(lambda: len(got) == 2)
        assert sorted((g["event"], g["payload"]["via"]) for g in got) == [("rest", "http"), ("ws", "socket")]
    finally:
        await sb.realtime.close()


@pytest.mark.js
async def test_broadcast_both_ways_python_v1_js_v2_with_ack_and_self(server, client, js):
    py_got: list[dict[str, Any]] = []
    ch = client.channel("room", {"config": {"broadcast": {"self": True, "ack": True}}})
    ch.on_broadcast("*", py_got.append)
    await subscribed(ch)
    await js.call("connect", client="js", url=server.ws_url, apikey=ANON)
    config = {"broadcast": {"self": True, "ack": True}}
    await js.subscribe("js", "room", config=config, listen={"broadcast": ["*"]})

    # JS → Python (kind-3 binary push, ack resolves "ok", self echo as kind 4)
    reply = await js.call("send", client="js", topic="room", event="from-js", payload={"n": 1, "s": "é"})
    assert reply["result"] == "ok"
    await eventually(lambda: [g for g in py_got if g["event"] == "from-js"])
    assert next(g for g in py_got if g["event"] == "from-js")["payload"] == {"n": 1, "s": "é"}
    own = await js.expect(ev="broadcast", event="from-js")
    assert own["payload"] == {"n": 1, "s": "é"}

    # Python → JS (V1 text), Python's own copy too (self)
    await ch.send_broadcast("from-py", {"list": [1, 2, 3]})
    got = await js.expect(ev="broadcast", event="from-py")
    assert got["payload"] == {"list": [1, 2, 3]}
    await eventually(lambda: [g for g in py_got if g["event"] == "from-py"])

    # binary payload from JS: delivered to V2 (JS self), never to V1
    blob = {"__binary__": "AAECAw=="}
    assert (await js.call("send", client="js", topic="room", event="blob", payload=blob))["result"] == "ok"
    echoed = await js.expect(ev="broadcast", event="blob")
    assert echoed["payload"] == blob
    await stays(
        lambda: [g for g in py_got if g["event"] == "blob"], [], what="realtime-py hearing its own blob"
    )


@pytest.mark.js
async def test_js_without_self_does_not_hear_itself_and_ack_off_resolves(server, js):
    await js.call("connect", client="a", url=server.ws_url, apikey=ANON)
    await js.call("connect", client="b", url=server.ws_url, apikey=ANON)
    await js.subscribe("a", "quiet", listen={"broadcast": ["*"]})
    await js.subscribe("b", "quiet", listen={"broadcast": ["*"]})
    await js.call("send", client="a", topic="quiet", event="e", payload={"k": 1})
    await js.expect(ev="broadcast", client="b", event="e")
    await stays(lambda: js.find(ev="broadcast", client="a"), [], what="the sender hearing itself")


@pytest.mark.js
async def test_supabase_js_joins_without_access_token_and_talks_to_python(server, client, js):
    py_got: list[dict[str, Any]] = []
    ch = client.channel("mixed")
    ch.on_broadcast("hello", py_got.append)
    await subscribed(ch)
    await js.call("connect", client="sb", url=server.url, apikey=ANON, supabase=True)
    await js.subscribe("sb", "mixed", listen={"broadcast": ["*"]})
    await js.call("send", client="sb", topic="mixed", event="hello", payload={"from": "supabase-js"})
    await eventually(lambda: py_got)
    assert py_got[0]["payload"] == {"from": "supabase-js"}
    [js_channel] = [c for c in server_channels(server, "mixed") if c.session.vsn == "2.0.0"]
    assert js_channel.claims["role"] == "anon"


@pytest.mark.js
async def test_presence_sync_join_leave_between_python_and_js(server, client, js):
    joins: list[tuple[str, Any]] = []
    leaves: list[tuple[str, Any]] = []
    syncs: list[int] = []
    ch = client.channel("lobby", {"config": {"presence": {"key": "py-user"}}})
    ch.on_presence_join(lambda key, cur, new: joins.append((key, new)))
    ch.on_presence_leave(lambda key, cur, left: leaves.append((key, left)))
    ch.on_presence_sync(lambda: syncs.append(1))
    await subscribed(ch)
    await eventually(lambda: syncs)  # presence_state after the join (empty)

    await js.call("connect", client="js", url=server.ws_url, apikey=ANON)
    await js.subscribe("js", "lobby", config={"presence": {"key": "js-user"}}, listen={"presence": True})
    await js.expect(ev="presence", kind="sync")  # JS needs presence_state to apply diffs

    await ch.track({"who": "python"})
    joined = await js.expect(ev="presence", kind="join", key="py-user")
    assert joined["presences"][0]["who"] == "python"
    assert joined["presences"][0]["presence_ref"]

    assert (await js.call("track", client="js", topic="lobby", payload={"who": "js"}))["result"] == "ok"
    await eventually(lambda: [j for j in joins if j[0] == "js-user"])
    state = ch.presence_state()
    assert {k: [p["who"] for p in v] for k, v in state.items()} == {
        "py-user": ["python"],
        "js-user": ["js"],
    }

    # the JS client goes away: Python sees the leave
    await js.call("disconnect", client="js")
    await eventually(lambda: [lv for lv in leaves if lv[0] == "js-user"])
    assert "js-user" not in ch.presence_state()

    # a second JS client joins late and gets the full state; Python untracks → JS sees the leave
    await js.call("connect", client="js2", url=server.ws_url, apikey=ANON)
    await js.subscribe("js2", "lobby", listen={"presence": True})
    sync = await js.expect(ev="presence", kind="sync", client="js2")
    assert list(sync["state"]) == ["py-user"]
    await ch.untrack()
    left = await js.expect(ev="presence", kind="leave", client="js2")
    assert left["key"] == "py-user"


@pytest.mark.js
async def test_access_token_refresh_updates_claims_py_and_js(server, client, js):
    ch = client.channel("secure")
    await subscribed(ch)
    [py_ch] = server_channels(server, "secure")
    assert py_ch.claims["role"] == "anon"
    await client.set_auth(token("authenticated", sub="user-1"))
    await eventually(lambda: py_ch.claims.get("sub") == "user-1")
    assert py_ch.open  # no reply, no close

    await js.call("connect", client="js", url=server.ws_url, apikey=ANON)
    await js.subscribe("js", "secure", listen={"broadcast": ["*"]})
    [js_ch] = [c for c in server_channels(server, "secure") if c is not py_ch]
    await js.call("setAuth", client="js", token=token("authenticated", sub="user-2"))
    await eventually(lambda: js_ch.claims.get("sub") == "user-2")

    # an invalid token closes the channel: system error, then phx_close
    await client.set_auth("not-a-jwt")
    await eventually(lambda: not py_ch.open)


@pytest.mark.js
async def test_token_expiry_closes_channels_py_and_js(server, js):
    client = AsyncRealtimeClient(
        server.ws_url, token=token("authenticated", expires_in=2), auto_reconnect=False
    )
    # the socket-level apikey must stay valid; the channel token is what expires
    client.apikey = ANON
    await client.connect()
    try:
        ch = client.channel("expiring")
        states = await subscribed(ch)
        await js.call("connect", client="js", url=server.ws_url, apikey=ANON)
        await js.call("setAuth", client="js", token=token("authenticated", expires_in=2))
        await js.subscribe("js", "expiring")
        await eventually(lambda: [s for s, _ in states if s == RealtimeSubscribeStates.CLOSED], within=6)
        S = RealtimeSubscribeStates
        assert [s for s, _ in states] == [S.SUBSCRIBED, S.CHANNEL_ERROR, S.CLOSED]
        assert "Token has expired" in str(states[1][1])
        system = await js.expect(ev="system", client="js", within=6)
        assert system["payload"]["message"].startswith("Token has expired")
        closed = await js.expect(ev="status", client="js", status="CLOSED", within=6)
        assert closed["topic"] == "expiring"
    finally:
        await client.close()


@pytest.mark.js
async def test_realtime_js_heartbeat_reply_carries_the_ref(server, js):
    await js.call("connect", client="hb", url=server.ws_url, apikey=ANON, heartbeatIntervalMs=150)
    ok = await js.expect(ev="heartbeat", client="hb", status="ok", within=5)
    assert ok["latency"] is not None
    await eventually(lambda: len(js.find(ev="heartbeat", client="hb", status="ok")) >= 3)
    assert not js.find(ev="heartbeat", client="hb", status="timeout")


async def test_realtime_py_survives_system_error_rejoin_without_closing(server, client):
    """Gotcha 8: after a ``system`` error realtime-py rejoins the same topic; the V1 duplicate join must
    not send phx_close, or realtime-py would close its new subscription."""
    ch = client.channel("pg")
    ch.on_postgres_changes("INSERT", lambda p: None, table="messages")
    states: list[Any] = []
    await ch.subscribe(lambda s, e: states.append(s))
    # no hub on this server → system error → CHANNEL_ERROR → rejoin after 1 s
    await eventually(lambda: states.count(RealtimeSubscribeStates.SUBSCRIBED) >= 2, within=5)
    assert RealtimeSubscribeStates.CLOSED not in states
    assert "realtime:pg" in client.channels
    assert len(server_channels(server, "pg")) == 1


@pytest.mark.js
async def test_join_error_reason_reaches_both_clients(server, client, js):
    ch = client.channel("", {})  # topic "realtime:" → TopicNameRequired
    states: list[tuple[Any, Any]] = []
    await ch.subscribe(lambda s, e: states.append((s, e)))
    await eventually(lambda: states)
    assert states[0][0] == RealtimeSubscribeStates.CHANNEL_ERROR
    assert "TopicNameRequired: You must provide a topic name" in str(states[0][1])
    await js.call("connect", client="js", url=server.ws_url, apikey=ANON)
    await js.call("setAuth", client="js", token=token("authenticated", expires_in=-30))
    await js.call("channel", client="js", topic="room")
    status = await js.expect(ev="status", client="js")
    assert status["status"] == "CHANNEL_ERROR"
    assert "Token has expired" in status["error"]


@pytest.mark.js
async def test_realtime_js_rest_fallbacks_reach_python(server, client, js):
    got: list[dict[str, Any]] = []
    ch = client.channel("rest")
    ch.on_broadcast("*", got.append)
    await subscribed(ch)
    await js.call("connect", client="js", url=server.ws_url, apikey=ANON)
    # send() before subscribing → POST /realtime/v1/api/broadcast {messages: [...]}
    r = await js.call("sendUnjoined", client="js", topic="rest", event="fallback", payload={"n": 1})
    assert r["result"] == "ok"
    # httpSend() → POST /realtime/v1/api/broadcast/rest/events/direct
    await js.subscribe("js", "rest")
    r = await js.call("httpSend", client="js", topic="rest", event="direct", payload={"n": 2})
    assert r["result"] == {"success": True}
    await eventually(lambda: len(got) == 2)
    assert [(g["event"], g["payload"]) for g in got] == [("fallback", {"n": 1}), ("direct", {"n": 2})]
