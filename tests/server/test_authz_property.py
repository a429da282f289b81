"""Property: for random access lists (who may read / write broadcast and presence on which private
topic), every subscriber receives exactly the broadcasts — from sockets, from the service role and from
the database (``realtime.send``) — and the presence its policies allow: zero leaks, zero losses, with
the real server, Postgres and websocket clients (one stack for the module)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.polling import eventually
from tests.server.authz_helpers import allow, clear, stack
from tests.server.rt_helpers import Raw, raw_factory

__all__ = ["stack"]


@dataclasses.dataclass(frozen=True)
class Grant:
    broadcast_read: bool
    presence_read: bool
    broadcast_write: bool
    presence_write: bool
    presence_on: bool
    """whether the subscriber joins with presence enabled"""

    @property
    def admitted(self) -> bool:
        return self.broadcast_read or (self.presence_on and self.presence_read)


@dataclasses.dataclass(frozen=True)
class Scenario:
    subs: int
    topics: int
    grants: dict[tuple[int, int], Grant]  # (subscriber, topic) → grant
    vsns: tuple[str, ...]


@st.composite
def scenarios(draw: Any) -> Scenario:
    subs = draw(st.integers(2, 4))
    topics = draw(st.integers(1, 2))
    grant = st.builds(Grant, st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans())
    grants = {(s, t): draw(grant) for s in range(subs) for t in range(topics)}
    vsns = tuple(draw(st.sampled_from(["1.0.0", "2.0.0"])) for _ in range(subs))
    return Scenario(subs, topics, grants, vsns)


def _broadcast_ids(client: Raw, topic: str) -> list[str]:
    """The ``id`` in the payload of every broadcast ``client`` received on ``topic`` (V1 JSON frames or
    V2 binary user broadcasts, which Broadcast from Database uses)."""
    ids = []
    for m in client.messages("broadcast", topic):
        ids.append(json.loads(m["data"])["id"] if "kind" in m else m["payload"]["payload"]["id"])
    return sorted(ids)


async def _round_trip(clients: list[Raw]) -> None:
    """A heartbeat answered on every socket: all frames sent before it were processed (fan-out done)."""
    refs = []
    for c in clients:
        ref = c.ref()
        refs.append(ref)
        await c.send("phoenix", "heartbeat", {}, ref)
    for c, ref in zip(clients, refs, strict=True):
        await c.expect("phx_reply", "phoenix", ref=ref, within=15)


async def _run(rt: Any, sc: Scenario) -> None:
    run = uuid.uuid4().hex[:6]
    topics = [f"prop-{run}-{t}" for t in range(sc.topics)]
    users = [str(uuid.uuid4()) for _ in range(sc.subs)]
    clear(rt.dsn)
    acl = []
    for (s, t), g in sc.grants.items():
        for ext, action, on in (
            ("broadcast", "read", g.broadcast_read), ("presence", "read", g.presence_read),
            ("broadcast", "write", g.broadcast_write), ("presence", "write", g.presence_write),
        ):  # fmt: skip
            if on:
                acl.append((topics[t], users[s], ext, action))
    allow(rt.dsn, acl)

    connect = raw_factory(rt.server)
    async with contextlib.AsyncExitStack() as stack_:
        subs = [await stack_.enter_async_context(connect(vsn=v, apikey=rt.anon_key)) for v in sc.vsns]
        service = await stack_.enter_async_context(connect(vsn="1.0.0", apikey=rt.service_role_key))
        join_refs: dict[tuple[int, int], str] = {}
        for (s, t), g in sc.grants.items():
            config = {"private": True, "presence": {"key": f"s{s}", "enabled": g.presence_on}}
            payload = {"config": config, "access_token": rt.token_for(users[s])}
            reply = await subs[s].join(f"realtime:{topics[t]}", payload, within=15)
            status = reply["payload"]["status"]
            assert status == ("ok" if g.admitted else "error"), (s, t, g, reply)
            if g.admitted:
                join_refs[(s, t)] = reply["ref"]
        service_refs = {}
        for t, topic in enumerate(topics):
            reply = await service.join(f"realtime:{topic}", {"config": {"private": True}}, within=15)
            assert reply["payload"]["status"] == "ok", reply
            service_refs[t] = reply["ref"]

        # everyone admitted sends one broadcast per topic and, with presence on, tracks itself
        for (s, t), ref in join_refs.items():
            topic = f"realtime:{topics[t]}"
            message = {"type": "broadcast", "event": "m", "payload": {"id": f"{s}"}}
            await subs[s].send(topic, "broadcast", message, None, ref)
            if sc.grants[(s, t)].presence_on:
                track = {"type": "presence", "event": "track", "payload": {"who": s}}
                await subs[s].send(topic, "presence", track, subs[s].ref(), ref)
        for t, ref in service_refs.items():
            msg = {"type": "broadcast", "event": "m", "payload": {"id": "svc"}}
            await service.send(f"realtime:{topics[t]}", "broadcast", msg, None, ref)
        # Broadcast from Database: one private realtime.send per topic, through the WAL
        for topic in topics:
            await rt.execute("select realtime.send('{\"id\": \"db\"}'::jsonb, 'm', %s, true)", topic)
        for topic in topics:
            await eventually(
                lambda t=topic: "db" in _broadcast_ids(service, f"realtime:{t}"),
                15,
                what="the database's send",
            )
        everyone = [*subs, service]
        await _round_trip(everyone)  # every send processed and fanned out
        await _round_trip(everyone)  # every frame queued before it delivered

        for s in range(sc.subs):
            for t, topic in enumerate(topics):
                g = sc.grants[(s, t)]
                frames = subs[s].messages(topic=f"realtime:{topic}")
                got = _broadcast_ids(subs[s], f"realtime:{topic}")
                want: list[str] = []
                if g.admitted and g.broadcast_read:
                    want = sorted(
                        ["svc", "db"]
                        + [
                            f"{u}" for u in range(sc.subs)
                            if u != s and sc.grants[(u, t)].admitted and sc.grants[(u, t)].broadcast_write
                        ]
                    )  # fmt: skip
                assert got == want, ("broadcasts", s, t, g, got, want)
                seen: set[str] = set()
                for m in frames:
                    if m["event"] == "presence_diff":
                        seen |= set(m["payload"]["joins"])
                    elif m["event"] == "presence_state":
                        seen |= set(m["payload"])
                expect: set[str] = set()
                if g.admitted and g.presence_on and g.presence_read:
                    expect = {
                        f"s{u}" for u in range(sc.subs)
                        if sc.grants[(u, t)].admitted and sc.grants[(u, t)].presence_on
                        and sc.grants[(u, t)].presence_write
                    }  # fmt: skip
                assert seen == expect, ("presence", s, t, g, seen, expect)


@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sc=scenarios())
def test_each_subscriber_receives_exactly_what_its_policies_allow(stack: Any, sc: Scenario) -> None:
    asyncio.run(asyncio.wait_for(_run(stack, sc), 60))
