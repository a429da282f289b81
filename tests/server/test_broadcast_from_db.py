"""Broadcast from Database end to end: rows written by ``realtime.send`` / ``realtime.broadcast_changes``
are read from the WAL and reach unmodified realtime-py (V1 JSON) and realtime-js (V2 binary) clients in
Supabase's shapes — private rows only on private channels, public rows only on public ones, in commit
order, nothing from rolled-back transactions.

Negative checks are made deterministic with a later message the same client does receive: messages of
one topic reach a socket in commit order.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from realtime import AsyncRealtimeClient

from harmony_lab.local.schema import ALICE, DM_ALICE_BOB, GENERAL
from harmony_lab.local.stack import LocalRealtime
from tests.polling import eventually

pytestmark = pytest.mark.timeout(120)


# private channels are authorised (Realtime Authorization): the test topics may be read by anyone
OPEN_TEST_TOPICS = (
    "CREATE POLICY bfd_tests_read ON realtime.messages FOR SELECT TO anon, authenticated "
    "USING (realtime.topic() LIKE 'bfd-%')"
)


@pytest.fixture(scope="module")
def rt() -> Any:
    import psycopg

    stack = LocalRealtime().start()
    try:
        with psycopg.connect(stack.dsn, autocommit=True) as conn:
            conn.execute(OPEN_TEST_TOPICS)
        yield stack
    finally:
        stack.stop()


class PyClient:
    """A realtime-py client with one channel (public or private) listening to every broadcast event."""

    def __init__(self, rt: Any, *, user: uuid.UUID | None = None) -> None:
        self.rt = rt
        self.user = user
        self.client = AsyncRealtimeClient(rt.ws_url, token=rt.anon_key, auto_reconnect=False)
        self.got: list[dict[str, Any]] = []

    async def open(self, topic: str, *, private: bool) -> None:
        await self.client.connect()
        if self.user is not None:
            await self.client.set_auth(self.rt.token_for(str(self.user)))
        ch = self.client.channel(topic, {"config": {"private": private, "broadcast": {"self": False}}})
        ch.on_broadcast("*", self.got.append)
        states: list[Any] = []
        await ch.subscribe(lambda s, e: states.append((s, e)))
        await eventually(lambda: any(str(s).endswith("SUBSCRIBED") for s, _ in states), 10)

    def events(self) -> list[str]:
        return [m["event"] for m in self.got]

    async def close(self) -> None:
        await self.client.close()


async def send(rt: Any, topic: str, event: str, payload: dict[str, Any], *, private: bool) -> None:
    await rt.execute("select realtime.send(%s::jsonb, %s, %s, %s)", _json(payload), event, topic, private)


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


async def test_send_reaches_realtime_py_with_supabase_shape_and_private_flag(rt):
    topic = f"bfd-{uuid.uuid4().hex[:8]}"
    public, private = PyClient(rt), PyClient(rt, user=ALICE)
    await public.open(topic, private=False)
    await private.open(topic, private=True)
    try:
        await send(rt, topic, "to-private", {"n": 1}, private=True)
        await send(rt, topic, "to-public", {"n": 2}, private=False)
        await send(rt, topic, "fence", {"n": 3}, private=True)
        await send(rt, topic, "fence", {"n": 4}, private=False)
        await eventually(lambda: "fence" in public.events() and "fence" in private.events(), 15)

        assert private.events() == ["to-private", "fence"]
        assert public.events() == ["to-public", "fence"]
        msg = private.got[0]
        # realtime-py keeps {event, payload, meta} of the JSON (test_v1_frame checks the whole frame);
        # send() put the message id into the payload too
        assert set(msg) == {"event", "payload", "meta"}
        assert msg["payload"]["n"] == 1
        assert msg["meta"]["id"] == msg["payload"]["id"]
        stored = await rt.execute(
            "select id::text, private from realtime.messages where topic = %s order by inserted_at", topic
        )
        assert [s[0] for s in stored][:1] == [msg["meta"]["id"]]
    finally:
        await public.close()
        await private.close()


async def test_v1_frame_is_supabase_json_broadcast_with_meta(rt):
    import json

    import websockets

    topic = f"bfd-{uuid.uuid4().hex[:8]}"
    url = f"{rt.ws_url}/websocket?apikey={rt.anon_key}&vsn=1.0.0"
    async with websockets.connect(url) as ws:
        join = {"topic": f"realtime:{topic}", "event": "phx_join", "ref": "1", "join_ref": "1"}
        join["payload"] = {"config": {"private": False}, "access_token": rt.anon_key}
        await ws.send(json.dumps(join))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["payload"]["status"] == "ok", reply
        await send(rt, topic, "shape", {"a": [1, "two"]}, private=False)
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
    msg_id = frame["payload"]["meta"]["id"]
    assert frame == {
        "topic": f"realtime:{topic}",
        "event": "broadcast",
        "payload": {
            "type": "broadcast",
            "event": "shape",
            "payload": {"a": [1, "two"], "id": msg_id},
            "meta": {"id": msg_id},
        },
        "ref": None,
    }
    uuid.UUID(msg_id)


async def test_commit_order_and_nothing_from_rolled_back_transactions(rt):
    import psycopg

    topic = f"bfd-{uuid.uuid4().hex[:8]}"
    sub = PyClient(rt)
    await sub.open(topic, private=False)
    try:
        async with (
            await psycopg.AsyncConnection.connect(rt.dsn) as a,
            await psycopg.AsyncConnection.connect(rt.dsn) as b,
        ):
            # a starts first but commits last: delivery follows the commits, not the inserts
            await a.execute("select realtime.send('{\"k\":\"a\"}'::jsonb, 'a', %s, false)", [topic])
            await b.execute("select realtime.send('{\"k\":\"b\"}'::jsonb, 'b', %s, false)", [topic])
            await b.commit()
            await a.commit()
            await a.execute(
                "select realtime.send('{\"k\":\"lost\"}'::jsonb, 'rolled-back', %s, false)", [topic]
            )
            await a.rollback()
            await b.execute("select realtime.send('{\"k\":\"c\"}'::jsonb, 'c', %s, false)", [topic])
            await b.commit()
        await eventually(lambda: "c" in sub.events(), 15)
        assert sub.events() == ["b", "a", "c"]
    finally:
        await sub.close()


async def test_broadcast_changes_trigger_shape(rt):
    topic = f"bfd-{uuid.uuid4().hex[:8]}"
    table = f"bfd_items_{uuid.uuid4().hex[:6]}"
    await rt.execute(f"create table public.{table} (id bigint primary key, name text)")
    await rt.execute(
        f"""create function public.{table}_bc() returns trigger language plpgsql as $$
        begin
          perform realtime.broadcast_changes('{topic}', TG_OP, TG_OP, TG_TABLE_NAME, TG_TABLE_SCHEMA,
                                             NEW, OLD);
          return null;
        end $$"""
    )
    await rt.execute(
        f"create trigger bc after insert or update or delete on public.{table} "
        f"for each row execute function public.{table}_bc()"
    )
    sub = PyClient(rt, user=ALICE)
    await sub.open(topic, private=True)
    try:
        await rt.execute(f"insert into public.{table} values (1, 'one')")
        await rt.execute(f"update public.{table} set name = 'uno' where id = 1")
        await rt.execute(f"delete from public.{table} where id = 1")
        await eventually(lambda: len(sub.got) == 3, 15)
        assert sub.events() == ["INSERT", "UPDATE", "DELETE"]
        ins, upd, dele = (m["payload"] for m in sub.got)
        for p, op in ((ins, "INSERT"), (upd, "UPDATE"), (dele, "DELETE")):
            assert set(p) == {"operation", "schema", "table", "record", "old_record", "id"}
            assert (p["operation"], p["schema"], p["table"]) == (op, "public", table)
        assert (ins["record"], ins["old_record"]) == ({"id": 1, "name": "one"}, None)
        assert (upd["record"], upd["old_record"]) == ({"id": 1, "name": "uno"}, {"id": 1, "name": "one"})
        assert (dele["record"], dele["old_record"]) == (None, {"id": 1, "name": "uno"})
    finally:
        await sub.close()
        await rt.execute(f"drop table public.{table}")
        await rt.execute(f"drop function public.{table}_bc()")


async def test_harmony_triggers_broadcast_a_new_message(rt):
    sub = PyClient(rt, user=ALICE)
    await sub.open("dm:alice-bob", private=True)
    other = PyClient(rt, user=ALICE)
    await other.open("channel:general", private=True)
    try:
        content = f"hello {uuid.uuid4().hex[:6]}"
        await rt.execute(
            "insert into public.messages (channel_id, user_id, content) values (%s, %s, %s)",
            DM_ALICE_BOB,
            ALICE,
            content,
        )
        await rt.execute(
            "insert into public.messages (channel_id, user_id, content) values (%s, %s, 'fence')",
            GENERAL,
            ALICE,
        )
        await eventually(lambda: len(other.got) >= 1, 15)
        await eventually(lambda: len(sub.got) >= 1, 15)
        msg = sub.got[0]
        assert msg["event"] == "INSERT"
        assert msg["payload"]["table"] == "messages"
        assert msg["payload"]["record"]["content"] == content
        assert msg["payload"]["record"]["channel_id"] == DM_ALICE_BOB
        assert [m["payload"]["record"]["content"] for m in other.got] == ["fence"]
        assert all(m["payload"]["record"]["content"] != "fence" for m in sub.got)
    finally:
        await sub.close()
        await other.close()


@pytest.mark.js
async def test_realtime_js_private_and_public_over_v2(rt, js):
    topic = f"bfd-{uuid.uuid4().hex[:8]}"
    await js.call("connect", client="priv", url=rt.ws_url, apikey=rt.anon_key)
    await js.call("setAuth", client="priv", token=rt.token_for(str(ALICE)))
    await js.call("connect", client="pub", url=rt.ws_url, apikey=rt.anon_key)
    listen = {"broadcast": ["e1", "e2", "fence"]}
    await js.subscribe("priv", topic, config={"private": True}, listen=listen)
    await js.subscribe("pub", topic, config={"private": False}, listen=listen)
    await send(rt, topic, "e1", {"who": "private"}, private=True)
    await send(rt, topic, "e2", {"who": "public"}, private=False)
    await send(rt, topic, "fence", {}, private=True)
    await send(rt, topic, "fence", {}, private=False)
    await js.expect(ev="broadcast", client="priv", event="fence", within=15)
    await js.expect(ev="broadcast", client="pub", event="fence", within=15)
    priv = js.find(ev="broadcast", client="priv")
    pub = js.find(ev="broadcast", client="pub")
    assert [m["event"] for m in priv] == ["e1", "fence"]
    assert [m["event"] for m in pub] == ["e2", "fence"]
    assert priv[0]["payload"]["who"] == "private"
    assert priv[0]["meta"] == {"id": priv[0]["payload"]["id"]}
    assert pub[0]["payload"]["who"] == "public"


@pytest.mark.js
async def test_send_binary_reaches_realtime_js_as_bytes_and_skips_v1(rt, js):
    import base64

    topic = f"bfd-{uuid.uuid4().hex[:8]}"
    await js.call("connect", client="bin", url=rt.ws_url, apikey=rt.anon_key)
    await js.subscribe("bin", topic, config={"private": True}, listen={"broadcast": ["*"]})
    v1 = PyClient(rt)  # realtime-py speaks V1 JSON: binary payloads cannot reach it
    await v1.open(topic, private=True)
    try:
        blob = bytes(range(256)) * 4
        await rt.execute("select realtime.send_binary(%s, 'blob', %s)", blob, topic)
        await send(rt, topic, "fence", {}, private=True)
        await js.expect(ev="broadcast", client="bin", event="fence", within=15)
        await eventually(lambda: "fence" in v1.events(), 15)
        (got,) = js.find(ev="broadcast", client="bin", event="blob")
        assert base64.b64decode(got["payload"]["__binary__"]) == blob
        [(stored,)] = await rt.execute(
            "select id::text from realtime.messages where topic = %s and event = 'blob'", topic
        )
        assert got["meta"] == {"id": stored}
        assert v1.events() == ["fence"]
    finally:
        await v1.close()


async def test_janitor_keeps_daily_partitions_and_drops_old_messages(rt):
    import datetime as dt

    from harmony_lab.server._bfd import MessagesJanitor

    today = dt.datetime.now(dt.UTC).date()
    names = {f"messages_{today + dt.timedelta(days=d):%Y_%m_%d}" for d in range(-1, 4)}
    rows = await rt.execute(
        "select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid "
        "where i.inhparent = 'realtime.messages'::regclass"
    )
    assert names <= {r[0] for r in rows}  # created when the stack started
    # the running server keeps its own janitor: it ran once at start and keeps a pass every 4 hours
    running = rt.hub.stats["broadcast_from_db"]["janitor"]
    assert running["runs"] >= 1
    assert running["failures"] == 0

    old_topic, kept_topic = f"old-{uuid.uuid4().hex[:6]}", f"kept-{uuid.uuid4().hex[:6]}"
    await rt.execute(
        "create table realtime.messages_2020_01_01 partition of realtime.messages "
        "for values from ('2020-01-01') to ('2020-01-02')"
    )
    insert = (
        "insert into realtime.messages (topic, extension, event, payload, private, inserted_at) "
        "values (%s, 'broadcast', 'x', '{}', false, %s)"
    )
    await rt.execute(insert, old_topic, dt.datetime(2020, 1, 1, 12))
    # 5 days ago: no daily partition covers it, so it sits in the default partition
    await rt.execute(insert, old_topic, dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=5))
    await rt.execute(insert, kept_topic, dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=1))

    janitor = MessagesJanitor(rt.dsn)
    await janitor.run_once()

    assert janitor.stats["failures"] == 0
    assert janitor.stats["partitions_dropped"] == 1
    assert janitor.stats["rows_deleted"] >= 1
    assert await rt.execute("select to_regclass('realtime.messages_2020_01_01')") == [(None,)]
    left = await rt.execute(
        "select topic from realtime.messages where topic in (%s, %s)", old_topic, kept_topic
    )
    assert left == [(kept_topic,)]


@pytest.mark.js
async def test_realtime_js_hears_the_harmony_trigger(rt, js):
    await js.call("connect", client="alice", url=rt.ws_url, apikey=rt.anon_key)
    await js.call("setAuth", client="alice", token=rt.token_for(str(ALICE)))
    await js.subscribe("alice", "dm:alice-bob", config={"private": True}, listen={"broadcast": ["INSERT"]})
    content = f"to bob {uuid.uuid4().hex[:6]}"
    await rt.execute(
        "insert into public.messages (channel_id, user_id, content) values (%s, %s, %s)",
        DM_ALICE_BOB,
        ALICE,
        content,
    )
    msg = await js.expect(ev="broadcast", client="alice", event="INSERT", within=15)
    payload = msg["payload"]
    assert set(payload) == {"operation", "schema", "table", "record", "old_record", "id"}
    assert (payload["operation"], payload["schema"], payload["table"]) == ("INSERT", "public", "messages")
    assert payload["record"]["content"] == content
    assert payload["old_record"] is None
    assert msg["meta"] == {"id": payload["id"]}


async def test_delivery_resumes_after_the_replication_connection_is_killed(rt):
    topic = f"bfd-{uuid.uuid4().hex[:8]}"
    sub = PyClient(rt)
    await sub.open(topic, private=False)
    try:
        slot = rt.hub.stats["broadcast_from_db"]["slot"]
        killed = await rt.execute(
            "select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = %s", slot
        )
        assert killed == [(True,)]
        # messages committed while the slot is re-created are lost (a temporary slot, as on Supabase):
        # send one every half second until one arrives
        for n in range(60):
            await send(rt, topic, "after", {"n": n}, private=False)
            try:
                await eventually(lambda: "after" in sub.events(), 0.5)
                break
            except AssertionError:
                continue
        assert "after" in sub.events()
        assert rt.hub.stats["broadcast_from_db"]["slot"] != slot  # a new temporary slot
    finally:
        await sub.close()
