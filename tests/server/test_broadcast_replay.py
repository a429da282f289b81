"""Broadcast replay on private channels, as Supabase does it: a private join with ``config.broadcast.replay
= {since, limit}`` gets the stored private broadcasts of its topic from ``realtime.messages`` (those
written by ``realtime.send`` / ``broadcast_changes``) inserted at or after ``since`` (epoch ms): the
newest ``limit`` of them (1..25, 25 by default), oldest first, each pushed after the join's reply as a
``broadcast`` with ``meta: {"replayed": true, "id": …}``; a replayed message arriving live as well is
not delivered twice. Real stack, raw clients and the unmodified realtime-js.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from tests.polling import eventually, stays
from tests.server.authz_helpers import allow, fresh_topic, rules, stack, unauthorized
from tests.server.rt_helpers import Raw, raw_clients

__all__ = ["stack"]

READER = "0b7e3c52-0000-4000-a000-00000000000a"


@pytest.fixture
async def clients(stack: Any) -> AsyncIterator[Any]:
    async with raw_clients(stack.server, stack.anon_key) as make:
        yield make


def send(dsn: str, topic: str, n: int, *, private: bool = True, event: str = "note") -> list[tuple[str, int]]:
    """``n`` messages written with ``realtime.send`` (one transaction each); their (id, inserted_at ms)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(n):
            conn.execute(
                "select realtime.send(%s::jsonb, %s, %s, %s), pg_sleep(0.002)",  # 2 ms apart: distinct ms
                [json.dumps({"i": i}), event, topic, private],
            )
        rows = conn.execute(
            "select id::text, floor(extract(epoch from inserted_at) * 1000)::bigint from realtime.messages "
            "where topic = %s and private = %s and event = %s order by inserted_at",
            [topic, private, event],
        ).fetchall()
    return [(str(i), int(ms)) for i, ms in rows]


def join_with_replay(token: str, **replay: Any) -> dict[str, Any]:
    return {"config": {"private": True, "broadcast": {"replay": replay}}, "access_token": token}


def replayed(client: Raw) -> list[dict[str, Any]]:
    return [
        m["payload"] for m in client.messages("broadcast") if (m["payload"].get("meta") or {}).get("replayed")
    ]


async def test_a_private_join_replays_the_newest_stored_broadcasts_oldest_first(stack, clients):
    topic = fresh_topic("replay")
    allow(stack.dsn, rules(topic, READER, "broadcast:read"))
    stored = send(stack.dsn, topic, 4)
    send(stack.dsn, topic, 1, private=False, event="public")  # public rows are never replayed
    send(stack.dsn, fresh_topic("other"), 1)  # nor other topics' rows
    for vsn in ("1.0.0", "2.0.0"):
        client = await clients(vsn)
        reply = await client.join(
            f"realtime:{topic}", join_with_replay(stack.token_for(READER), since=0, limit=2)
        )
        assert reply["payload"]["status"] == "ok", reply
        await eventually(lambda c=client: len(replayed(c)) == 2, what=f"two replayed messages over {vsn}")
        assert replayed(client) == [
            {
                "type": "broadcast",
                "event": "note",
                "payload": {"i": i, "id": mid},
                "meta": {"replayed": True, "id": mid},
            }
            for i, (mid, _) in ((2, stored[2]), (3, stored[3]))
        ]

    # since: only the messages inserted at or after it; the limit defaults to 25 and never exceeds it
    late = await clients()
    await late.join(f"realtime:{topic}", join_with_replay(stack.token_for(READER), since=stored[3][1]))
    await eventually(lambda: replayed(late), what="the replay since the last message")
    assert [m["meta"]["id"] for m in replayed(late)] == [stored[3][0]]
    many = fresh_topic("replay")
    allow(stack.dsn, rules(many, READER, "broadcast:read"))
    send(stack.dsn, many, 27)
    for limit in (None, 100):
        c = await clients()
        params = {"since": 0} if limit is None else {"since": 0, "limit": limit}
        await c.join(f"realtime:{many}", join_with_replay(stack.token_for(READER), **params))
        await eventually(lambda c=c: len(replayed(c)) >= 25, what="25 replayed messages")
        await stays(lambda c=c: len(replayed(c)), 25, for_s=0.3, what="more than 25 replayed")
        assert [m["payload"]["i"] for m in replayed(c)] == list(range(2, 27))


async def test_a_replayed_message_is_not_delivered_again_when_it_arrives_live(stack, clients):
    topic = fresh_topic("replay")
    allow(stack.dsn, rules(topic, READER, "broadcast:read"))
    [(mid, _)] = send(stack.dsn, topic, 1)
    replaying, plain = await clients(), await clients()
    await replaying.join(f"realtime:{topic}", join_with_replay(stack.token_for(READER), since=0))
    await plain.join(
        f"realtime:{topic}", {"config": {"private": True}, "access_token": stack.token_for(READER)}
    )
    await eventually(lambda: replayed(replaying), what="the replay")
    # the same message id written again (its primary key is (id, inserted_at)) reaches both live
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute(
            "insert into realtime.messages (id, topic, extension, event, payload, private) "
            "values (%s, %s, 'broadcast', 'note', '{\"again\": true}', true)",
            [mid, topic],
        )
        conn.execute("select realtime.send('{\"fresh\": true}'::jsonb, 'note', %s, true)", [topic])

    def live(client: Raw) -> list[str]:
        """The live (not replayed) broadcasts a client got: "again" or "fresh"."""
        return [
            "fresh" if "fresh" in m["payload"]["payload"] else "again"
            for m in client.messages("broadcast")
            if "replayed" not in m["payload"]["meta"]
        ]

    await eventually(lambda: live(plain) == ["again", "fresh"], what="both live at the plain one")
    await eventually(lambda: live(replaying) == ["fresh"], what="the new one at the replaying one")
    await stays(lambda: live(replaying), ["fresh"], for_s=0.3, what="the replayed id delivered twice")


async def test_replay_errors_use_the_real_servers_words(stack, clients):
    topic = fresh_topic("replay")
    presence_only = "0b7e3c52-0000-4000-a000-00000000000b"
    allow(stack.dsn, rules(topic, READER, "broadcast:read"))
    allow(stack.dsn, rules(topic, presence_only, "presence:read"))
    c = await clients()
    cases = [
        ({"since": "yesterday"}, READER, "UnableToReplayMessages: Replay params are not valid"),
        ({}, READER, "UnableToReplayMessages: Replay params are not valid"),
        ({"since": 0, "limit": 2.5}, READER, "UnableToReplayMessages: Replay params are not valid"),
        ({"since": 0}, presence_only, unauthorized(topic)),  # replay needs broadcast read
    ]
    for params, sub, reason in cases:
        reply = await c.join(f"realtime:{topic}", join_with_replay(stack.token_for(sub), **params))
        assert reply["payload"] == {"status": "error", "response": {"reason": reason}}, params
    public = await c.join(f"realtime:{topic}-pub", {"config": {"broadcast": {"replay": {"since": 0}}}})
    assert public["payload"]["response"]["reason"] == (
        "UnableToReplayMessages: Replay is not allowed for public channels"
    )


@pytest.mark.js
async def test_realtime_js_gets_the_replayed_messages_with_their_meta(stack, js):
    topic = fresh_topic("replay")
    allow(stack.dsn, rules(topic, READER, "broadcast:read"))
    stored = send(stack.dsn, topic, 3)
    await js.call("connect", client="r", url=stack.ws_url, apikey=stack.anon_key)
    await js.call("setAuth", client="r", token=stack.token_for(READER))
    await js.call(
        "channel", client="r", topic=topic, listen={"broadcast": ["*"]},
        config={"private": True, "broadcast": {"replay": {"since": stored[1][1], "limit": 10}}},
    )  # fmt: skip
    assert (await js.expect(ev="status", client="r", topic=topic))["status"] == "SUBSCRIBED"
    await eventually(
        lambda: len(js.find(ev="broadcast", client="r")) == 2, what="two replayed at realtime-js"
    )
    got = js.find(ev="broadcast", client="r")
    assert [(g["payload"], g["meta"]) for g in got] == [
        ({"i": i, "id": stored[i][0]}, {"replayed": True, "id": stored[i][0]}) for i in (1, 2)
    ]


@pytest.mark.js
async def test_binary_messages_are_replayed_to_realtime_js_and_not_to_v1(stack, js, clients):
    import base64

    topic = fresh_topic("replay")
    allow(stack.dsn, rules(topic, READER, "broadcast:read"))
    ((json_id, since),) = send(stack.dsn, topic, 1)
    blob = bytes(range(200))
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute("select realtime.send_binary(%s, 'blob', %s)", [blob, topic])
        (blob_id,) = conn.execute(
            "select id::text from realtime.messages where topic = %s and event = 'blob'", [topic]
        ).fetchone()
    await js.call("connect", client="b", url=stack.ws_url, apikey=stack.anon_key)
    await js.call("setAuth", client="b", token=stack.token_for(READER))
    await js.call(
        "channel", client="b", topic=topic, listen={"broadcast": ["*"]},
        config={"private": True, "broadcast": {"replay": {"since": since, "limit": 10}}},
    )  # fmt: skip
    assert (await js.expect(ev="status", client="b", topic=topic))["status"] == "SUBSCRIBED"
    await eventually(
        lambda: len(js.find(ev="broadcast", client="b")) == 2, what="both replayed at realtime-js"
    )
    first, second = js.find(ev="broadcast", client="b")
    assert (first["event"], first["meta"]) == ("note", {"replayed": True, "id": json_id})
    assert (second["event"], second["meta"]) == ("blob", {"replayed": True, "id": blob_id})
    assert base64.b64decode(second["payload"]["__binary__"]) == blob
    # a V1 JSON socket cannot carry the binary one: it gets the JSON message only
    v1 = await clients("1.0.0")
    reply = await v1.join(f"realtime:{topic}", join_with_replay(stack.token_for(READER), since=since))
    assert reply["payload"]["status"] == "ok", reply
    await eventually(lambda: replayed(v1), what="the JSON message replayed over V1")
    await _heartbeat(v1)  # every frame of the join has been read
    assert [m["meta"]["id"] for m in replayed(v1)] == [json_id]


async def _heartbeat(client: Raw) -> None:
    ref = client.ref()
    await client.send("phoenix", "heartbeat", {}, ref)
    await client.expect("phx_reply", "phoenix", ref=ref, within=10)
