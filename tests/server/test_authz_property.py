"""Property: for random memberships (who belongs to which private topic) and random policies on
``realtime.messages`` (SELECT or INSERT, per extension, for the topic's members, any authenticated
token, the anon key or both), with users and bare anon keys subscribing, every subscriber receives
exactly the broadcasts — from sockets, from the service role and from the database (``realtime.send``)
— and the presence its policies allow: zero leaks, zero losses, with the real server, Postgres and
websocket clients (one stack for the module)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from typing import Any

import psycopg
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.polling import eventually
from tests.server.authz_helpers import clear, stack
from tests.server.rt_helpers import Raw, raw_factory

__all__ = ["stack"]


AUDIENCES = ("members", "authenticated", "anon", "everyone")
"""whom a drawn policy lets in: members of the topic (role authenticated, a row in public.prop_members
for the token's ``sub``), any authenticated token, the bare anon key, or both roles"""


@dataclasses.dataclass(frozen=True)
class Policy:
    """One permissive policy on ``realtime.messages``, scoped to one topic."""

    command: str  # "SELECT" (read: join, receive) or "INSERT" (write: send, track)
    extensions: frozenset[str]
    audience: str

    def sql(self, name: str, topic: str) -> str:
        roles = {"members": "authenticated", "authenticated": "authenticated", "anon": "anon"}
        to = roles.get(self.audience, "anon, authenticated")
        exts = ", ".join(f"'{e}'" for e in sorted(self.extensions))
        cond = f"realtime.topic() = '{topic}' AND realtime.messages.extension IN ({exts})"
        if self.audience == "members":
            cond += (
                " AND EXISTS (SELECT 1 FROM public.prop_members m"
                " WHERE m.topic = realtime.topic() AND m.sub = auth.jwt() ->> 'sub')"
            )
        clause = "USING" if self.command == "SELECT" else "WITH CHECK"
        return f"CREATE POLICY {name} ON realtime.messages FOR {self.command} TO {to} {clause} ({cond})"

    def admits(self, *, anon: bool, member: bool, extension: str, command: str) -> bool:
        """The model: whether this policy lets a subscriber do ``command`` on ``extension``."""
        if command != self.command or extension not in self.extensions:
            return False
        return {
            "members": not anon and member,
            "authenticated": not anon,
            "anon": anon,
            "everyone": True,
        }[self.audience]


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
    anon: tuple[bool, ...]  # per subscriber: joins with the bare anon key (no user)
    members: frozenset[tuple[int, int]]  # (subscriber, topic) memberships
    policies: tuple[tuple[Policy, ...], ...]  # per topic
    presence_on: dict[tuple[int, int], bool]
    vsns: tuple[str, ...]

    def grant(self, s: int, t: int) -> Grant:
        """What the drawn memberships and policies allow subscriber ``s`` on topic ``t``."""

        def may(extension: str, command: str) -> bool:
            member = (s, t) in self.members
            return any(
                p.admits(anon=self.anon[s], member=member, extension=extension, command=command)
                for p in self.policies[t]
            )

        return Grant(
            may("broadcast", "SELECT"), may("presence", "SELECT"),
            may("broadcast", "INSERT"), may("presence", "INSERT"),
            self.presence_on[(s, t)],
        )  # fmt: skip


def policies_st(command: str) -> Any:
    return st.builds(
        Policy,
        st.just(command),
        st.frozensets(st.sampled_from(["broadcast", "presence"]), min_size=1),
        st.sampled_from(AUDIENCES),
    )


# one or two read policies and up to two write policies per topic: most joins have something to pass
topic_policies = st.tuples(
    st.lists(policies_st("SELECT"), min_size=1, max_size=2), st.lists(policies_st("INSERT"), max_size=2)
).map(lambda rw: (*rw[0], *rw[1]))


@st.composite
def scenarios(draw: Any) -> Scenario:
    subs = draw(st.integers(2, 4))
    topics = draw(st.integers(1, 2))
    pairs = [(s, t) for s in range(subs) for t in range(topics)]
    return Scenario(
        subs=subs,
        topics=topics,
        anon=tuple(draw(st.booleans()) if s else False for s in range(subs)),  # one user at least
        members=frozenset(draw(st.sets(st.sampled_from(pairs)))),
        policies=tuple(draw(topic_policies) for _ in range(topics)),
        presence_on={pair: draw(st.booleans()) for pair in pairs},
        vsns=tuple(draw(st.sampled_from(["1.0.0", "2.0.0"])) for _ in range(subs)),
    )


MEMBERS_SQL = """
CREATE TABLE IF NOT EXISTS public.prop_members (
  topic text NOT NULL, sub text NOT NULL, PRIMARY KEY (topic, sub)
);
GRANT SELECT ON public.prop_members TO anon, authenticated;
"""


def _install(dsn: str, sc: Scenario, topics: list[str], users: list[str]) -> None:
    """The scenario's memberships and policies, replacing the previous example's."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(MEMBERS_SQL)
        conn.execute("DELETE FROM public.prop_members")
        old = conn.execute(
            "SELECT policyname FROM pg_policies WHERE schemaname = 'realtime' AND tablename = 'messages' "
            "AND policyname LIKE 'prop\\_%'"
        ).fetchall()
        for (name,) in old:
            conn.execute(f"DROP POLICY {name} ON realtime.messages")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO public.prop_members VALUES (%s, %s)",
                [(topics[t], users[s]) for s, t in sorted(sc.members)],
            )
        for t, drawn in enumerate(sc.policies):
            for i, policy in enumerate(drawn):
                conn.execute(policy.sql(f"prop_{t}_{i}", topics[t]))


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
    clear(rt.dsn)  # the module's access list grants nothing: only the drawn policies apply
    _install(rt.dsn, sc, topics, users)
    grants = {(s, t): sc.grant(s, t) for s in range(sc.subs) for t in range(sc.topics)}

    connect = raw_factory(rt.server)
    async with contextlib.AsyncExitStack() as stack_:
        subs = [await stack_.enter_async_context(connect(vsn=v, apikey=rt.anon_key)) for v in sc.vsns]
        service = await stack_.enter_async_context(connect(vsn="1.0.0", apikey=rt.service_role_key))
        join_refs: dict[tuple[int, int], str] = {}
        for (s, t), g in grants.items():
            config = {"private": True, "presence": {"key": f"s{s}", "enabled": g.presence_on}}
            token = rt.anon_key if sc.anon[s] else rt.token_for(users[s])
            payload = {"config": config, "access_token": token}
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
            if grants[(s, t)].presence_on:
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
                g = grants[(s, t)]
                frames = subs[s].messages(topic=f"realtime:{topic}")
                got = _broadcast_ids(subs[s], f"realtime:{topic}")
                want: list[str] = []
                if g.admitted and g.broadcast_read:
                    want = sorted(
                        ["svc", "db"]
                        + [
                            f"{u}" for u in range(sc.subs)
                            if u != s and grants[(u, t)].admitted and grants[(u, t)].broadcast_write
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
                        if grants[(u, t)].admitted and grants[(u, t)].presence_on
                        and grants[(u, t)].presence_write
                    }  # fmt: skip
                assert seen == expect, ("presence", s, t, g, seen, expect)


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sc=scenarios())
@example(  # Harmony's DM: members read and write both; an outsider, the anon key; a second, open topic
    sc=Scenario(
        subs=4,
        topics=2,
        anon=(False, False, False, True),
        members=frozenset({(0, 0), (1, 0), (2, 1)}),
        policies=(
            (
                Policy("SELECT", frozenset({"broadcast", "presence"}), "members"),
                Policy("INSERT", frozenset({"broadcast", "presence"}), "members"),
            ),
            (
                Policy("SELECT", frozenset({"broadcast"}), "everyone"),
                Policy("INSERT", frozenset({"broadcast"}), "authenticated"),
            ),
        ),
        presence_on={(s, t): True for s in range(4) for t in range(2)},
        vsns=("1.0.0", "2.0.0", "1.0.0", "2.0.0"),
    )
)
def test_each_subscriber_receives_exactly_what_its_policies_allow(stack: Any, sc: Scenario) -> None:
    asyncio.run(asyncio.wait_for(_run(stack, sc), 60))
