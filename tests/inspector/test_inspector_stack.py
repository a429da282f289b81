"""The Inspector against a real LocalRealtime, with realtime-py clients on the other side.

Negative checks ("the user does not see it") are made deterministic with a later change both
identities receive: changes reach a socket in commit order.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates

from harmony_lab.filters import FilterError
from harmony_lab.local.schema import ALICE, BOB, ENGINEERING, GENERAL
from harmony_lab.recording import read_recording
from tests.polling import eventually

pytestmark = pytest.mark.timeout(120)


def entries(insp, **flt) -> list[Any]:
    return insp.messages.select(**flt)


async def peer(stack, topic: str, **params: Any) -> tuple[AsyncRealtimeClient, Any, list[Any]]:
    """A realtime-py client joined to ``topic`` that keeps every broadcast it gets."""
    client = AsyncRealtimeClient(stack.ws_url, token=stack.anon_key, auto_reconnect=False)
    await client.connect()
    got: list[Any] = []
    states: list[Any] = []
    ch = client.channel(topic, {"config": {"broadcast": {"self": False, "ack": False}, **params}})
    ch.on_broadcast("*", got.append)
    await ch.subscribe(lambda s, _e: states.append(s))
    await eventually(lambda: RealtimeSubscribeStates.SUBSCRIBED in states, within=10)
    return client, ch, got


async def post(stack, channel_id: int, user: uuid.UUID, content: str) -> int:
    rows = await stack.execute(
        "insert into public.messages (channel_id, user_id, content) values (%s, %s, %s) returning id",
        channel_id,
        user,
        content,
    )
    return int(rows[0][0])


async def test_a_broadcast_from_another_client_and_a_row_change_appear_with_their_json(stack, make_inspector):
    insp = make_inspector(stack)
    topic = f"room-{uuid.uuid4().hex[:6]}"
    tag = uuid.uuid4().hex[:8]
    state = await insp.join(
        topic,
        postgres_changes={"table": "messages", "event": "INSERT", "filter": f"content=like.{tag}%"},
        broadcast="*",
    )
    assert str(state.status) == "connected"
    await insp.listen_as("service_role")
    await insp.manager.wait_for_status(topic, "connected")
    client, ch, _ = await peer(stack, topic)
    try:
        await ch.send_broadcast("cursor", {"x": 3, "who": "peer"})
        got = await eventually(lambda: entries(insp, kind="broadcast", channel=topic), within=10)
        assert got[0].event == "cursor"
        assert got[0].data() == {"event": "cursor", "payload": {"x": 3, "who": "peer"}}
        assert got[0].summary == '{"x":3,"who":"peer"}'

        msg_id = await post(stack, GENERAL, ALICE, f"{tag} hello")
        change = await eventually(lambda: entries(insp, kind="postgres_changes"), within=10)
        detail = change[0].data()
        assert change[0].event == "INSERT"
        assert change[0].channel == topic
        assert detail["schema"] == "public"
        assert detail["table"] == "messages"
        assert detail["eventType"] == "INSERT"
        assert detail["new"]["id"] == msg_id
        assert detail["new"]["content"] == f"{tag} hello"
        assert detail["new"]["user_id"] == str(ALICE)
        assert detail["old"] == {}
        assert detail["commit_timestamp"].startswith("20")
        # the channel's statuses are in the log too, and the DataFrame holds the same rows
        statuses = [e.event for e in entries(insp, kind="status", channel=topic)]
        assert "connected" in statuses
        df = insp.log
        assert set(df["kind"]) >= {"broadcast", "postgres_changes", "status"}
        assert (
            df.loc[df["id"] == change[0].id, "summary"]
            .item()
            .startswith(f"INSERT public.messages id={msg_id}")
        )
    finally:
        await client.close()


async def test_send_reaches_a_realtime_py_client_and_is_logged_as_sent(stack, make_inspector):
    insp = make_inspector(stack)
    topic = f"send-{uuid.uuid4().hex[:6]}"
    await insp.join(topic)
    client, _, got = await peer(stack, topic)
    try:
        await insp.send(topic, "greeting", '{"text": "hi from the inspector"}')
        await eventually(lambda: got, within=10)
        assert got[0]["event"] == "greeting"
        assert got[0]["payload"] == {"text": "hi from the inspector"}
        sent = entries(insp, kind="broadcast", channel=topic)
        assert len(sent) == 1
        assert sent[0].data()["sent"] is True
        with pytest.raises(ValueError, match="not JSON"):
            await insp.send(topic, "greeting", "{not json")
        with pytest.raises(TypeError, match="JSON object"):
            await insp.send(topic, "greeting", [1, 2])
        with pytest.raises(KeyError, match="is not joined"):
            await insp.send("elsewhere", "greeting", {})
        assert len(got) == 1
    finally:
        await client.close()


async def test_listen_as_a_user_hides_rows_rls_hides(stack, make_inspector):
    insp = make_inspector(stack)
    topic = f"rls-{uuid.uuid4().hex[:6]}"
    tag = uuid.uuid4().hex[:8]
    await insp.listen_as("service_role")
    await insp.join(
        topic, postgres_changes={"table": "messages", "event": "INSERT", "filter": f"content=like.{tag}%"}
    )
    await insp.manager.wait_for_status(topic, "connected")

    def contents() -> list[str]:
        return [e.data()["new"]["content"] for e in entries(insp, kind="postgres_changes")]

    await post(stack, ENGINEERING, ALICE, f"{tag} eng 1")
    await eventually(lambda: f"{tag} eng 1" in contents(), within=10)

    identity = await insp.listen_as(str(BOB))  # Bob is not a member of #engineering
    assert identity.label == f"user {BOB}"
    assert insp.identity == f"user {BOB}"
    await insp.manager.wait_for_status(topic, "connected")
    await eventually(lambda: entries(insp, text="Subscribed to PostgreSQL", channel=topic), within=10)
    await post(stack, ENGINEERING, ALICE, f"{tag} eng 2")
    await post(stack, GENERAL, ALICE, f"{tag} general")
    await eventually(lambda: f"{tag} general" in contents(), within=10)
    assert contents() == [f"{tag} eng 1", f"{tag} general"]
    assert entries(insp, event="listen_as")[-1].summary == f"listening as user {BOB} (role authenticated)"


async def test_a_refused_join_shows_the_servers_reason(stack, make_inspector):
    await stack.execute("create table if not exists public.insp_unpublished (id int primary key)")
    insp = make_inspector(stack)
    state = await insp.join("refused", postgres_changes="public.insp_unpublished")
    assert str(state.status) == "error"
    row = insp.channels["refused"]
    assert row["status"] == "error"
    assert "Unable to subscribe to changes with given parameters" in row["reason"]
    await eventually(lambda: entries(insp, kind="status", event="error", channel="refused"), within=5)
    system = await eventually(lambda: entries(insp, kind="system", channel="refused"), within=5)
    assert "insp_unpublished" in system[0].data()["message"]


async def test_bad_joins_raise_the_managers_errors_before_anything_is_sent(stack, make_inspector):
    insp = make_inspector(stack)
    with pytest.raises(FilterError):
        await insp.join("bad", postgres_changes={"table": "messages", "filter": "channel_id=eqq.1"})
    with pytest.raises(ValueError, match=r"TableSubscription\.event must be one of"):
        await insp.join("bad", postgres_changes={"table": "messages", "event": "UPSERT"})
    with pytest.raises(TypeError, match="unknown key"):
        await insp.join("bad", postgres_changes={"table": "messages", "filtr": "id=eq.1"})
    with pytest.raises(ValueError, match="without the 'realtime:' prefix"):
        await insp.join("realtime:room")
    with pytest.raises(ValueError, match="hosted project needs a token"):
        await make_inspector(url=stack.url, key=stack.anon_key).listen_as("some-user")
    with pytest.raises(TypeError, match="did you mean 'capacity'"):
        make_inspector(stack, capacty=10)
    assert insp.channels == {}
    assert len(insp.log) == 0


async def test_presence_roster_and_tracking_from_the_inspector(stack, make_inspector):
    insp = make_inspector(stack)
    topic = f"presence-{uuid.uuid4().hex[:6]}"
    await insp.join(topic, presence=True)
    await insp.manager.wait_for_status(topic, "connected")
    client, ch, _ = await peer(stack, topic, presence={"key": "peer-1", "enabled": True})
    try:
        await ch.track({"user_id": "peer-1", "status": "away"})
        joined = await eventually(lambda: entries(insp, kind="presence", event="join"), within=10)
        assert joined[0].summary == "join peer-1: away"
        await insp.track(topic, "dnd")
        assert insp.channels[topic]["tracking"] == "dnd"
        await eventually(lambda: insp._presence_key in ch.presence_state(), within=10)
        assert ch.presence_state()[insp._presence_key][-1]["status"] == "dnd"
        await insp.untrack(topic)
        await eventually(lambda: insp._presence_key not in ch.presence_state(), within=10)
    finally:
        await client.close()


async def test_record_writes_the_projects_recording_format(stack, make_inspector, tmp_path):
    insp = make_inspector(stack)
    topic = f"rec-{uuid.uuid4().hex[:6]}"
    await insp.join(topic)
    rec = insp.record(tmp_path / "rec")
    client, ch, _ = await peer(stack, topic)
    try:
        for i in range(3):
            await ch.send_broadcast("tick", {"i": i})
        await eventually(lambda: len(entries(insp, kind="broadcast")) == 3, within=10)
        await insp.listen_as("service_role")  # the recording follows the new connection
        await insp.manager.wait_for_status(topic, "connected")
        await ch.send_broadcast("tick", {"i": 3})
        await eventually(lambda: len(entries(insp, kind="broadcast")) == 4, within=10)
    finally:
        await client.close()
    await rec.aclose()
    frame = await asyncio.to_thread(read_recording, tmp_path / "rec")
    ticks = frame[(frame["kind"] == "broadcast") & (frame["channel"] == topic)]
    assert len(ticks) == 4
    assert frame["seq"].is_monotonic_increasing
    assert frame["seq"].is_unique


async def test_joining_a_topic_again_replaces_its_bindings(stack, make_inspector):
    insp = make_inspector(stack)
    topic = f"rejoin-{uuid.uuid4().hex[:6]}"
    await insp.join(topic, broadcast="typing")
    assert insp.channels[topic]["bindings"] == ["broadcast typing"]
    await insp.listen_as("service_role")
    state = await insp.join(topic, postgres_changes="public.messages", broadcast=False)
    assert str(state.status) == "connected"
    assert insp.channels[topic]["bindings"] == ["* public.messages"]
    state = await insp.join(topic)
    assert str(state.status) == "connected"
    assert insp.channels[topic]["bindings"] == ["broadcast *"]
    client, ch, _ = await peer(stack, topic)
    try:
        await ch.send_broadcast("anything", {"ok": True})
        await eventually(lambda: entries(insp, kind="broadcast", event="anything"), within=10)
    finally:
        await client.close()
    await insp.leave(topic)
    assert topic not in insp.channels


async def test_a_private_channel_without_a_policy_is_refused_with_the_servers_reason(stack, make_inspector):
    insp = make_inspector(stack)
    state = await insp.join("private-room", private=True)
    assert insp.channels["private-room"]["private"] is True
    # no realtime.messages policy lets this role read private-room: the server refuses, the chip says why
    assert str(state.status) == "error"
    assert (
        "You do not have permissions to read from this Channel topic: private-room"
        in (insp.channels["private-room"]["reason"])
    )


async def test_a_hosted_project_with_a_jwt_secret_that_is_never_kept(stack, make_inspector):
    """URL and anon key only (as for a hosted project): users and the service role get tokens signed
    with the JWT secret passed to listen_as, and the secret is held nowhere afterwards."""
    insp = make_inspector(url=stack.url, key=stack.anon_key)
    assert insp.hosted is True
    topic = f"hosted-{uuid.uuid4().hex[:6]}"
    tag = uuid.uuid4().hex[:8]
    with pytest.raises(ValueError, match="needs its key"):
        await insp.listen_as("service_role")
    await insp.listen_as(str(BOB), jwt_secret=stack.jwt_secret)
    await insp.join(
        topic, postgres_changes={"table": "messages", "event": "INSERT", "filter": f"content=like.{tag}%"}
    )
    await insp.manager.wait_for_status(topic, "connected")
    await eventually(lambda: entries(insp, text="Subscribed to PostgreSQL", channel=topic), within=10)
    await post(stack, ENGINEERING, ALICE, f"{tag} eng")
    await post(stack, GENERAL, ALICE, f"{tag} general")
    await eventually(lambda: entries(insp, kind="postgres_changes"), within=10)
    assert [e.data()["new"]["content"] for e in entries(insp, kind="postgres_changes")] == [f"{tag} general"]

    def holds_secret(obj: Any, depth: int = 0) -> bool:
        if isinstance(obj, str):
            return stack.jwt_secret in obj
        if depth > 3:
            return False
        if isinstance(obj, dict):
            return any(holds_secret(v, depth + 1) for v in obj.values())
        if isinstance(obj, list | tuple | set):
            return any(holds_secret(v, depth + 1) for v in obj)
        if hasattr(obj, "__dict__") and not isinstance(obj, type):
            return any(holds_secret(v, depth + 1) for v in vars(obj).values())
        return False

    assert not holds_secret(vars(insp))
    assert not holds_secret(insp.get_state())
    assert not holds_secret(vars(insp.manager))


async def test_closing_the_widget_leaves_its_channels(stack, make_inspector):
    insp = make_inspector(stack)
    topic = f"close-{uuid.uuid4().hex[:6]}"
    await insp.join(topic)
    manager = insp.manager
    insp.close()
    await eventually(lambda: manager.channels == {}, within=10)
    assert insp.manager is None
