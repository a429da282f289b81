"""The private-channel attack on Harmony's DM topic ``dm:alice-bob``, against the real stack with only
Harmony's own ``realtime.messages`` policies (members of the DM may read and write it).

Before Realtime Authorization was enforced, a non-member joined the private channel, read Alice's
broadcasts and presence, tracked presence as Bob and injected a broadcast Alice saw; the bare anon key
joined too, and a REST broadcast with the anon key into the private topic was delivered. Each of those
must now be refused, while the members keep talking.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from harmony_lab.local.schema import ALICE, BOB, CAROL
from tests.polling import eventually, stays
from tests.server.rt_helpers import Raw, raw_clients

TOPIC = "realtime:dm:alice-bob"
REFUSED = "Unauthorized: You do not have permissions to read from this Channel topic: dm:alice-bob"


@pytest.fixture(scope="module")
def stack() -> Iterator[Any]:
    from harmony_lab.local import LocalRealtime

    rt = LocalRealtime().start()
    try:
        yield rt
    finally:
        rt.stop()


@pytest.fixture
async def clients(stack: Any) -> AsyncIterator[Any]:
    """``await clients(vsn)``: raw websocket clients with the anon key, closed afterwards."""
    async with raw_clients(stack.server, stack.anon_key) as make:
        yield make


def join_payload(token: str | None, key: str) -> dict[str, Any]:
    payload: dict[str, Any] = {"config": {"private": True, "presence": {"key": key, "enabled": True}}}
    if token is not None:
        payload["access_token"] = token
    return payload


def bcast(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": "broadcast", "event": event, "payload": payload}


def heard(client: Raw, event: str) -> list[Any]:
    return [
        m["payload"]["payload"] for m in client.messages("broadcast") if m["payload"].get("event") == event
    ]


def presence_keys(client: Raw) -> set[str]:
    keys: set[str] = set()
    for m in client.messages("presence_diff") + client.messages("presence_state"):
        body = m["payload"]
        keys |= set(body.get("joins", {})) if "joins" in body else set(body)
    return keys


async def test_a_non_member_can_neither_join_nor_read_nor_write_a_dm(stack, clients):
    alice, bob = await clients("2.0.0"), await clients()
    carol, anon = await clients(), await clients("2.0.0")
    ja = await alice.join(TOPIC, join_payload(stack.token_for(str(ALICE)), "alice"))
    jb = await bob.join(TOPIC, join_payload(stack.token_for(str(BOB)), "bob"))
    assert ja["payload"]["status"] == "ok"
    assert jb["payload"]["status"] == "ok"

    # the non-member and the bare anon key are refused with Supabase's reply
    refused = await carol.join(TOPIC, join_payload(stack.token_for(str(CAROL)), "bob"))
    assert refused["payload"] == {"status": "error", "response": {"reason": REFUSED}}
    refused = await anon.join(TOPIC, join_payload(None, "anon"))
    assert refused["payload"] == {"status": "error", "response": {"reason": REFUSED}}
    members = stack.server.registry.members(TOPIC, private=True)
    assert sorted(ch.claims["sub"] for ch in members) == sorted([str(ALICE), str(BOB)])

    # without a channel, carol's pushes on the topic go nowhere
    await carol.send(TOPIC, "broadcast", bcast("inject", {"from": "carol"}), carol.ref(), refused["ref"])
    await carol.send(TOPIC, "presence", {"type": "presence", "event": "track", "payload": {"as": "bob"}})
    # carol on the public channel of the same name: a separate topic that hears nothing private
    public = await carol.join(TOPIC, {"config": {"private": False, "presence": {"key": "bob"}}})
    assert public["payload"]["status"] == "ok"
    await carol.send(TOPIC, "presence", {"type": "presence", "event": "track", "payload": {"as": "bob"}},
                     carol.ref(), public["ref"])  # fmt: skip
    await carol.send(TOPIC, "broadcast", bcast("inject", {"from": "carol"}), None, public["ref"])

    # the members still talk: alice broadcasts and tracks, bob hears both
    await alice.send(TOPIC, "broadcast", bcast("secret", {"text": "hi bob"}), None, ja["ref"])
    await alice.send(TOPIC, "presence", {"type": "presence", "event": "track", "payload": {"as": "alice"}},
                     alice.ref(), ja["ref"])  # fmt: skip
    await eventually(lambda: heard(bob, "secret") == [{"text": "hi bob"}], what="bob hearing alice")
    await eventually(lambda: "alice" in presence_keys(bob), what="alice's presence at bob")

    for c in (alice, bob):
        await stays(lambda c=c: heard(c, "inject"), [], for_s=0.3, what="carol's injected broadcast")
    assert "bob" not in presence_keys(alice)  # carol's track "as bob" never reached the DM
    assert heard(carol, "secret") == []
    assert heard(anon, "secret") == []
    assert "alice" not in presence_keys(carol)


async def test_rest_broadcast_into_the_dm_needs_a_member(stack, clients):
    alice = await clients()
    ja = await alice.join(TOPIC, join_payload(stack.token_for(str(ALICE)), "alice"))
    assert ja["payload"]["status"] == "ok"

    async def post(bearer: str | None, event: str) -> int:
        headers = {"apikey": stack.anon_key}
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        body = {"messages": [{"topic": "dm:alice-bob", "event": event, "payload": {}, "private": True}]}
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{stack.url}/realtime/v1/api/broadcast", json=body, headers=headers)
        return r.status_code

    assert await post(None, "anon") == 202  # accepted and dropped, as Supabase does
    assert await post(stack.token_for(str(CAROL)), "carol") == 202
    assert await post(stack.token_for(str(BOB)), "bob") == 202
    await eventually(lambda: heard(alice, "bob"), what="the member's REST broadcast")
    await stays(
        lambda: heard(alice, "anon") + heard(alice, "carol"), [], for_s=0.3, what="a refused REST broadcast"
    )


async def test_a_member_token_swapped_for_a_non_members_closes_the_channel(stack, clients):
    bob = await clients()
    jb = await bob.join(TOPIC, join_payload(stack.token_for(str(BOB)), "bob"))
    assert jb["payload"]["status"] == "ok"
    await bob.send(TOPIC, "access_token", {"access_token": stack.token_for(str(CAROL))}, bob.ref(), jb["ref"])
    system = await bob.expect("system", TOPIC)
    assert system["payload"] == {
        "channel": "dm:alice-bob", "extension": "system", "status": "error",
        "message": "You do not have permissions to read from this Channel topic: dm:alice-bob",
    }  # fmt: skip
    await bob.expect("phx_close", TOPIC)
    await eventually(
        lambda: all(ch.session is not bob for ch in stack.server.registry.members(TOPIC, private=True)),
        what="the channel gone",
    )
    assert not [
        ch for ch in stack.server.registry.members(TOPIC, private=True) if ch.claims["sub"] == str(CAROL)
    ]
