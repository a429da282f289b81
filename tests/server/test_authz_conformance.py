"""Realtime Authorization with the unmodified official clients — realtime-js (node, ``config: { private:
true }``) and realtime-py — against LocalRealtime: private joins admitted or refused per policy, sends
and tracks refused without an INSERT policy, and a token refresh changing the outcome."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates

from tests.polling import eventually, stays
from tests.server.authz_helpers import allow, deny, fresh_topic, rules, stack, unauthorized

__all__ = ["stack"]

S = RealtimeSubscribeStates


def user() -> str:
    return str(uuid.uuid4())


async def js_client(js: Any, stack: Any, name: str, sub: str | None) -> None:
    """A realtime-js client with the anon key and (for ``sub``) that user's access token."""
    await js.call("connect", client=name, url=stack.ws_url, apikey=stack.anon_key)
    if sub is not None:
        await js.call("setAuth", client=name, token=stack.token_for(sub))


async def js_join(js: Any, name: str, topic: str, **config: Any) -> dict[str, Any]:
    """Subscribe ``name`` to the private ``topic``; returns its first status event."""
    await js.call(
        "channel", client=name, topic=topic, config={"private": True, **config},
        listen={"broadcast": ["*"], "presence": True},
    )  # fmt: skip
    return await js.expect(ev="status", client=name, topic=topic)


def private_members(stack: Any, topic: str) -> list[Any]:
    return stack.server.registry.members(f"realtime:{topic}", private=True)


@pytest.fixture
async def py_clients(stack: Any) -> AsyncIterator[Callable[..., Any]]:
    """Unmodified realtime-py clients (anon key, optional user token), all closed afterwards."""
    made: list[AsyncRealtimeClient] = []

    async def make(sub: str | None) -> AsyncRealtimeClient:
        client = AsyncRealtimeClient(stack.ws_url, token=stack.anon_key, auto_reconnect=False)
        await client.connect()
        if sub is not None:
            await client.set_auth(stack.token_for(sub))
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


async def py_join(client: AsyncRealtimeClient, topic: str, **config: Any) -> tuple[Any, list[Any], list[Any]]:
    states: list[tuple[Any, Any]] = []
    got: list[dict[str, Any]] = []
    ch = client.channel(topic, {"config": {"private": True, **config}})
    ch.on_broadcast("*", got.append)
    await ch.subscribe(lambda s, e: states.append((s, e)))
    await eventually(lambda: states, what=f"a subscribe state for {topic}")
    return ch, states, got


def refused_broadcasts(stack: Any, topic: str) -> int:
    """How many broadcasts on the private ``topic`` the server refused for role authenticated."""
    key = f"broadcast on private {topic!r} refused for role 'authenticated'"
    return sum(n for why, n in stack.server.stats["rejected"].items() if why.startswith(key))


async def rest_fence(stack: Any, topic: str) -> None:
    """A service_role REST broadcast ``fence`` into the private ``topic``: a subscriber that receives it
    has received everything queued for it before."""
    import httpx

    body = {"messages": [{"topic": topic, "event": "fence", "payload": {}, "private": True}]}
    key = stack.service_role_key
    async with httpx.AsyncClient() as http:
        r = await http.post(
            f"{stack.url}/realtime/v1/api/broadcast", json=body,
            headers={"apikey": key, "Authorization": f"Bearer {key}"},
        )  # fmt: skip
    assert r.status_code == 202, r.text


# ---------------------------------------------------------------------------------------------
# realtime-js


@pytest.mark.js
async def test_realtime_js_private_joins_are_admitted_or_refused_per_policy(stack, js):
    topic = fresh_topic()
    alice, bob, carol = user(), user(), user()
    allow(stack.dsn, rules(topic, alice, "broadcast:read"))
    allow(stack.dsn, rules(topic, bob, "broadcast:read", "broadcast:write"))
    for name, sub in (("alice", alice), ("bob", bob), ("carol", carol), ("anon", None)):
        await js_client(js, stack, name, sub)
    assert (await js_join(js, "alice", topic))["status"] == "SUBSCRIBED"
    assert (await js_join(js, "bob", topic))["status"] == "SUBSCRIBED"
    for refused in ("carol", "anon"):
        status = await js_join(js, refused, topic)
        assert status["status"] == "CHANNEL_ERROR", status
        assert unauthorized(topic) in status["error"]
    assert {ch.claims.get("sub") for ch in private_members(stack, topic)} == {alice, bob}
    # carol on the public channel of the same name hears nothing of the private one
    await js.call("connect", client="carol2", url=stack.ws_url, apikey=stack.anon_key)
    await js.call(
        "channel", client="carol2", topic=topic, config={"private": False}, listen={"broadcast": ["*"]}
    )
    assert (await js.expect(ev="status", client="carol2", topic=topic))["status"] == "SUBSCRIBED"
    assert (await js.call("send", client="bob", topic=topic, event="hi", payload={"n": 1}))["result"] == "ok"
    got = await js.expect(ev="broadcast", client="alice", topic=topic, event="hi")
    assert got["payload"] == {"n": 1}
    await stays(lambda: js.find(ev="broadcast", client="carol2"), [], for_s=0.5, what="a leak to public")
    # refused → admitted: realtime-js rejoins the refused channel with its backoff; after setAuth with
    # a token the policy admits, the rejoin is admitted
    await js.call("setAuth", client="carol", token=stack.token_for(alice))
    await js.expect(ev="status", client="carol", topic=topic, status="SUBSCRIBED", within=15)


@pytest.mark.js
async def test_realtime_js_sends_and_tracks_are_refused_without_an_insert_policy(stack, js):
    topic = fresh_topic()
    reader, writer = user(), user()
    allow(stack.dsn, rules(topic, reader, "broadcast:read", "presence:read"))
    allow(
        stack.dsn,
        rules(topic, writer, "broadcast:read", "presence:read", "broadcast:write", "presence:write"),
    )
    await js_client(js, stack, "reader", reader)
    await js_client(js, stack, "writer", writer)
    presence = {"presence": {"enabled": True}}
    assert (await js_join(js, "reader", topic, **presence))["status"] == "SUBSCRIBED"
    assert (await js_join(js, "writer", topic, **presence))["status"] == "SUBSCRIBED"
    # realtime-js resolves send() 'ok' once pushed (no ack asked); the server drops it
    forged = await js.call("send", client="reader", topic=topic, event="forged", payload={"x": 1})
    assert forged["result"] == "ok"
    assert (await js.call("track", client="reader", topic=topic, payload={"as": "writer"}))[
        "result"
    ] == "error"
    await js.call("send", client="writer", topic=topic, event="real", payload={"x": 2})
    assert (await js.call("track", client="writer", topic=topic, payload={"as": "writer"}))["result"] == "ok"
    await js.expect(ev="broadcast", client="reader", event="real")
    joined = await js.expect(ev="presence", client="reader", kind="join")
    assert [p["as"] for p in joined["presences"]] == ["writer"]
    assert js.find(ev="broadcast", client="writer", event="forged") == []
    state = (await js.call("presenceState", client="writer", topic=topic))["state"]
    assert [p["as"] for metas in state.values() for p in metas] == ["writer"]
    # with ack asked, a refused broadcast gets no reply: realtime-js gives up with 'timed out'
    await js.call("connect", client="acker", url=stack.ws_url, apikey=stack.anon_key, timeout=1500)
    await js.call("setAuth", client="acker", token=stack.token_for(reader))
    assert (await js_join(js, "acker", topic, broadcast={"ack": True}))["status"] == "SUBSCRIBED"
    result = await js.call("send", client="acker", topic=topic, event="acked", payload={})
    assert result["result"] == "timed out"
    assert js.find(ev="broadcast", client="writer", event="acked") == []
    assert stack.server.stats["rejected"].get(
        "broadcast on private " + repr(topic) + " refused for role 'authenticated'"
    )


@pytest.mark.js
async def test_realtime_js_token_refresh_changes_the_outcome(stack, js):
    topic = fresh_topic()
    member, reader_only, stranger, writer = user(), user(), user(), user()
    allow(stack.dsn, rules(topic, member, "broadcast:read", "presence:read"))
    allow(stack.dsn, rules(topic, reader_only, "broadcast:read"))
    allow(stack.dsn, rules(topic, writer, "broadcast:read", "presence:read", "broadcast:write"))
    await js_client(js, stack, "a", member)
    await js_client(js, stack, "b", member)
    await js_client(js, stack, "w", member)
    presence = {"presence": {"enabled": True}}
    for name in ("a", "b", "w"):
        assert (await js_join(js, name, topic, **presence))["status"] == "SUBSCRIBED"
    # a token that may not read at all: the channel is closed with the real server's text
    await js.call("setAuth", client="a", token=stack.token_for(stranger))
    system = await js.expect(ev="system", client="a", topic=topic)
    assert system["payload"]["status"] == "error"
    assert (
        system["payload"]["message"]
        == f"You do not have permissions to read from this Channel topic: {topic}"
    )
    await js.expect(ev="status", client="a", topic=topic, status="CLOSED")
    # a token that lost presence read but keeps broadcast read: "no longer"
    await js.call("setAuth", client="b", token=stack.token_for(reader_only))
    system = await js.expect(ev="system", client="b", topic=topic)
    assert (
        system["payload"]["message"]
        == f"You no longer have permission to read from this Channel topic: {topic}"
    )
    # a token that gains write: sends that were refused now arrive (write is evaluated again)
    await js.call("connect", client="r", url=stack.ws_url, apikey=stack.anon_key)
    await js.call("setAuth", client="r", token=stack.token_for(writer))
    assert (await js_join(js, "r", topic))["status"] == "SUBSCRIBED"
    await js.call("send", client="w", topic=topic, event="before", payload={})
    await js.call("setAuth", client="w", token=stack.token_for(writer))
    await eventually(
        lambda: [c for c in private_members(stack, topic) if c.claims.get("sub") == writer] and
        len([c for c in private_members(stack, topic) if c.claims.get("sub") == writer]) == 2,
        what="w's channel running on the writer's token",
    )  # fmt: skip
    await js.call("send", client="w", topic=topic, event="after", payload={})
    await js.expect(ev="broadcast", client="r", event="after")
    assert js.find(ev="broadcast", client="r", event="before") == []
    assert [c.claims["sub"] for c in private_members(stack, topic)].count(member) == 0
    # back to a token that may read but not write: the sends that arrived are refused again
    refused = refused_broadcasts(stack, topic)
    await js.call("setAuth", client="w", token=stack.token_for(member))
    await eventually(
        lambda: [c.claims.get("sub") for c in private_members(stack, topic)].count(member) == 1,
        what="w's channel running on the member's token again",
    )
    await js.call("send", client="w", topic=topic, event="revoked", payload={})
    # the socket handles its frames in order: the track's refusal comes after the send's
    assert (await js.call("track", client="w", topic=topic, payload={"as": "w"}))["result"] == "error"
    assert refused_broadcasts(stack, topic) == refused + 1
    await rest_fence(stack, topic)
    await js.expect(ev="broadcast", client="r", event="fence")
    assert js.find(ev="broadcast", client="r", event="revoked") == []
    deny(stack.dsn, rules(topic, writer, "broadcast:write"))


# ---------------------------------------------------------------------------------------------
# realtime-py


async def test_realtime_py_private_joins_sends_tracks_and_refresh(stack, py_clients):
    topic = fresh_topic()
    member, writer, stranger = user(), user(), user()
    allow(stack.dsn, rules(topic, member, "broadcast:read", "presence:read"))
    allow(
        stack.dsn,
        rules(topic, writer, "broadcast:read", "presence:read", "broadcast:write", "presence:write"),
    )
    m_client, w_client, s_client = (
        await py_clients(member),
        await py_clients(writer),
        await py_clients(stranger),
    )
    anon_client = await py_clients(None)

    m_ch, m_states, m_got = await py_join(m_client, topic, presence={"key": "m", "enabled": True})
    w_ch, w_states, w_got = await py_join(w_client, topic, presence={"key": "w", "enabled": True})
    assert m_states[0][0] == S.SUBSCRIBED
    assert w_states[0][0] == S.SUBSCRIBED
    for refused in (s_client, anon_client):
        _, states, _ = await py_join(refused, topic)
        assert states[0][0] == S.CHANNEL_ERROR, states
        assert unauthorized(topic) in str(states[0][1])
        await refused.close()  # realtime-py would keep rejoining
    assert len(private_members(stack, topic)) == 2
    checks = stack.server.stats["authorization"]
    assert checks["read_checks"] >= 4
    assert checks["errors"] == 0

    await m_ch.send_broadcast("forged", {"x": 1})
    await m_ch.track({"as": "w"})
    await w_ch.send_broadcast("real", {"x": 2})
    await w_ch.track({"as": "w"})
    await eventually(lambda: [g["event"] for g in m_got] == ["real"], what="the writer's broadcast")
    await eventually(lambda: list(m_ch.presence_state()) == ["w"], what="the writer's presence")
    assert w_got == []
    registry_state = stack.server.registry.presence_state((f"realtime:{topic}", True))
    assert list(registry_state) == ["w"]

    # a refresh to a token that may not read closes the channel: system error, then phx_close
    await m_client.set_auth(stack.token_for(stranger))
    await eventually(lambda: [s for s, _ in m_states if s == S.CLOSED], what="the member's channel closed")
    errors = [str(e) for s, e in m_states if s == S.CHANNEL_ERROR]
    assert errors
    assert f"You do not have permissions to read from this Channel topic: {topic}" in errors[0]
    assert len(private_members(stack, topic)) == 1
    await eventually(lambda: list(w_ch.presence_state()) == ["w"], what="presence unchanged for the writer")


async def test_realtime_py_token_refresh_grants_and_revokes_write(stack, py_clients):
    topic = fresh_topic()
    listener, reader, writer = user(), user(), user()
    allow(stack.dsn, rules(topic, listener, "broadcast:read"))
    allow(stack.dsn, rules(topic, reader, "broadcast:read"))
    allow(stack.dsn, rules(topic, writer, "broadcast:read", "broadcast:write"))
    _, l_states, heard = await py_join(await py_clients(listener), topic)
    sender = await py_clients(reader)
    s_ch, s_states, _ = await py_join(sender, topic)
    assert [s for s, _ in l_states + s_states] == [S.SUBSCRIBED, S.SUBSCRIBED]

    def sender_sub() -> list[Any]:
        return [c.claims.get("sub") for c in private_members(stack, topic) if c.claims.get("sub") != listener]

    refused = refused_broadcasts(stack, topic)
    await s_ch.send_broadcast("refused-before", {})
    await eventually(lambda: refused_broadcasts(stack, topic) == refused + 1, what="the first refusal")
    # refused → admitted: the writer's token is checked again on the next send
    await sender.set_auth(stack.token_for(writer))
    await eventually(lambda: sender_sub() == [writer], what="the sender's channel on the writer's token")
    await s_ch.send_broadcast("granted", {})
    await eventually(lambda: [g["event"] for g in heard] == ["granted"], what="the granted send")
    # admitted → refused: a token that may read but not write loses the write it had
    await sender.set_auth(stack.token_for(reader))
    await eventually(lambda: sender_sub() == [reader], what="the sender's channel on the reader's token")
    await s_ch.send_broadcast("revoked", {})
    await eventually(lambda: refused_broadcasts(stack, topic) == refused + 2, what="the second refusal")
    await rest_fence(stack, topic)
    await eventually(lambda: [g["event"] for g in heard] == ["granted", "fence"], what="the fence")
    assert [s for s, _ in s_states] == [S.SUBSCRIBED]  # the sender's channel stayed open throughout


async def test_rest_broadcast_into_a_private_topic_checks_the_callers_role(stack, py_clients):
    import httpx

    topic = fresh_topic()
    member, sender = user(), user()
    allow(stack.dsn, rules(topic, member, "broadcast:read"))
    allow(stack.dsn, rules(topic, sender, "broadcast:write"))
    client = await py_clients(member)
    _, states, got = await py_join(client, topic)
    assert states[0][0] == S.SUBSCRIBED

    async def post(bearer: str, event: str) -> int:
        body = {"messages": [{"topic": topic, "event": event, "payload": {"e": event}, "private": True}]}
        async with httpx.AsyncClient() as http:
            r = await http.post(
                f"{stack.url}/realtime/v1/api/broadcast", json=body,
                headers={"apikey": stack.anon_key, "Authorization": f"Bearer {bearer}"},
            )  # fmt: skip
        return r.status_code

    assert await post(stack.anon_key, "from-anon") == 202
    assert await post(stack.token_for(member), "from-reader") == 202
    assert await post(stack.token_for(sender), "from-writer") == 202
    assert await post(stack.service_role_key, "from-service") == 202
    await eventually(lambda: len(got) == 2, what="the allowed REST broadcasts")
    assert [g["event"] for g in got] == ["from-writer", "from-service"]
    await stays(lambda: len(got), 2, for_s=0.3, what="a refused REST broadcast arriving")


# ---------------------------------------------------------------------------------------------
# "Allow public access" off


@pytest.mark.js
async def test_private_only_refuses_public_joins_for_realtime_js_and_realtime_py(stack, js):
    from harmony_lab.local import LocalRealtime

    topic = fresh_topic()
    member = user()
    allow(stack.dsn, rules(topic, member, "broadcast:read"))
    # a second stack on the same (running) Postgres, with public access off
    async with LocalRealtime(postgres=stack.postgres, seed=False, private_only=True) as closed:
        assert closed.server.private_only is True
        await js.call("connect", client="p", url=closed.ws_url, apikey=closed.anon_key)
        await js.call("setAuth", client="p", token=closed.token_for(member))
        await js.call("channel", client="p", topic=f"{topic}-public", config={})
        status = await js.expect(ev="status", client="p", topic=f"{topic}-public")
        assert status["status"] == "CHANNEL_ERROR"
        assert "PrivateOnly: This project only allows private channels" in status["error"]
        assert (await js_join(js, "p", topic))["status"] == "SUBSCRIBED"  # private still works

        client = AsyncRealtimeClient(closed.ws_url, token=closed.anon_key, auto_reconnect=False)
        await client.connect()
        try:
            states: list[Any] = []
            await client.channel(topic).subscribe(lambda s, e: states.append((s, e)))
            await eventually(lambda: states, what="realtime-py's subscribe state")
            assert states[0][0] == S.CHANNEL_ERROR
            assert "PrivateOnly" in str(states[0][1])
        finally:
            await client.close()
        await js.call("disconnect", client="p")
    with pytest.raises(TypeError, match="private_only"):
        LocalRealtime(private_only="yes")  # type: ignore[arg-type]
