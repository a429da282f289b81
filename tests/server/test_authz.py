"""The Authorizer on a real Postgres with the Harmony schema: read and write per extension for members,
non-members and anon on Harmony's private topics, custom policies, errors, and nothing left behind."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest

from harmony_lab.local.schema import ALICE, BOB, CAROL, apply_schema, claims_for
from harmony_lab.server._authz import Authorizer, AuthzError, Policies, rest_broadcast_allowed

ANON = {"role": "anon", "exp": int(time.time()) + 3600}


@pytest.fixture(scope="module")
def dsn(postgres: Any) -> Iterator[str]:
    with psycopg.connect(postgres.dsn, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS authz_test")
        c.execute("CREATE DATABASE authz_test")
    url = psycopg.conninfo.make_conninfo(postgres.dsn, dbname="authz_test")
    apply_schema(url)
    yield url
    with psycopg.connect(postgres.dsn, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS authz_test WITH (FORCE)")


@pytest.fixture
async def authz(dsn: str) -> AsyncIterator[Authorizer]:
    a = Authorizer(dsn, statement_timeout_s=2.0)
    try:
        yield a
    finally:
        await a.aclose()


def _count(dsn: str) -> int:
    with psycopg.connect(dsn) as c:
        row = c.execute("select count(*) from realtime.messages").fetchone()
        assert row is not None
        return int(row[0])


async def test_members_read_and_write_others_do_not(authz: Authorizer, dsn: str) -> None:
    before = _count(dsn)
    alice = await authz.read("dm:alice-bob", claims_for(ALICE))
    assert (alice.broadcast_read, alice.presence_read) == (True, True)
    assert (alice.broadcast_write, alice.presence_write) == (None, None)  # not evaluated yet
    await authz.write("dm:alice-bob", claims_for(ALICE), policies=alice)
    assert alice == Policies(True, True, True, True)
    carol_read = await authz.read("dm:alice-bob", claims_for(CAROL))
    carol_write = await authz.write("dm:alice-bob", claims_for(CAROL))
    assert not carol_read.can_read
    assert (carol_write.broadcast_write, carol_write.presence_write) == (False, False)
    anon = await authz.read("dm:alice-bob", ANON)
    assert not anon.can_read
    assert (await authz.write("dm:alice-bob", ANON)).broadcast_write is False
    # presence off at join: only broadcast is evaluated, presence stays unknown
    bob = await authz.read("channel:general", claims_for(BOB), presence=False)
    assert (bob.broadcast_read, bob.presence_read) == (True, None)
    # the service role bypasses RLS in Postgres
    service = {"role": "service_role"}
    assert (await authz.read("dm:alice-bob", service)).can_read
    assert (await authz.write("dm:alice-bob", service)).broadcast_write is True
    assert _count(dsn) == before  # every probe was rolled back
    assert authz.stats["connects"] <= 2


async def test_per_extension_policies(authz: Authorizer, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(
            "CREATE POLICY t_presence_only ON realtime.messages FOR SELECT TO anon "
            "USING (realtime.topic() = 'lobby' AND extension = 'presence')"
        )
        c.execute(
            "CREATE POLICY t_send_only ON realtime.messages FOR INSERT TO anon "
            "WITH CHECK (realtime.topic() = 'lobby' AND extension = 'broadcast' "
            "AND (auth.jwt() ->> 'tier') = 'gold')"
        )
    try:
        p = await authz.read("lobby", ANON)
        assert (p.broadcast_read, p.presence_read) == (False, True)
        assert p.can_read
        w = await authz.write("lobby", ANON)
        assert (w.broadcast_write, w.presence_write) == (False, False)
        gold = await authz.write("lobby", {**ANON, "tier": "gold"})
        assert (gold.broadcast_write, gold.presence_write) == (True, False)
        assert not (await authz.read("elsewhere", ANON)).can_read
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("DROP POLICY t_presence_only ON realtime.messages")
            c.execute("DROP POLICY t_send_only ON realtime.messages")


async def test_errors_are_authz_errors_with_the_real_servers_words(authz: Authorizer, dsn: str) -> None:
    with pytest.raises(AuthzError) as info:
        await authz.read("dm:alice-bob", {"role": "no_such_role"})
    assert info.value.kind == "policy"
    assert info.value.join_reason("dm:alice-bob") == (
        "Unauthorized: You do not have permissions to read from this Channel topic: dm:alice-bob"
    )
    with pytest.raises(AuthzError, match="role claim"):
        await authz.read("t", {"role": 7})
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(
            "CREATE POLICY t_slow ON realtime.messages FOR SELECT TO anon "
            "USING (realtime.topic() = 'slow' AND pg_sleep(5) IS NOT NULL)"
        )
    try:
        with pytest.raises(AuthzError) as info:
            await authz.read("slow", ANON)
        assert info.value.kind == "canceled"
        assert info.value.join_reason("slow").startswith("QueryCanceled: ERROR 57014 (query_canceled)")
        assert info.value.shutdown_message("slow") == "Query was cancelled, please try again"
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("DROP POLICY t_slow ON realtime.messages")
    # the pool still works after the errors
    assert (await authz.read("dm:alice-bob", claims_for(ALICE))).can_read


async def test_unreachable_database_and_closed_authorizer() -> None:
    a = Authorizer("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", acquire_timeout_s=1)
    with pytest.raises(AuthzError) as info:
        await a.read("t", ANON)
    assert info.value.kind == "unavailable"
    assert "unable to connect to the project database" in info.value.join_reason("t")
    await a.aclose()
    with pytest.raises(AuthzError, match="closed"):
        await a.write("t", ANON)
    with pytest.raises(ValueError, match="pool_size"):
        Authorizer("dbname=x", pool_size=0)


async def test_the_pool_bounds_concurrent_checks(dsn: str) -> None:
    a = Authorizer(dsn, pool_size=1, acquire_timeout_s=0.2)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(
            "CREATE POLICY t_wait ON realtime.messages FOR SELECT TO anon "
            "USING (realtime.topic() = 'wait' AND pg_sleep(1) IS NOT NULL)"
        )
    try:
        results = await asyncio.gather(
            a.read("wait", ANON), a.read("dm:alice-bob", ANON), return_exceptions=True
        )
        assert isinstance(results[0], Policies)
        assert isinstance(results[1], AuthzError)
        assert results[1].kind == "pool"
        assert "increase your connection pool" in results[1].join_reason("x")
    finally:
        await a.aclose()
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("DROP POLICY t_wait ON realtime.messages")


async def test_rest_broadcast_allowed(authz: Authorizer) -> None:
    msgs = [
        {"topic": "dm:alice-bob", "event": "e"},
        {"topic": "room", "event": "e"},
        {"topic": "dm:alice-bob", "event": "f"},
        {"topic": "dm:carol-dave", "event": "e"},
    ]
    flags = [True, False, True, True]
    assert await rest_broadcast_allowed(authz, ANON, msgs, private=flags) == [False, True, False, False]
    assert await rest_broadcast_allowed(authz, claims_for(ALICE), msgs, private=flags) == [
        True, True, True, False,
    ]  # fmt: skip
    assert await rest_broadcast_allowed(authz, {"role": "service_role"}, msgs, private=flags) == [True] * 4
    assert await rest_broadcast_allowed(None, {"role": "service_role"}, msgs, private=flags) == [
        False, True, False, False,
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the session state machine with a real Authorizer (no sockets)


class _Peer:
    def __init__(self, registry: Any, authorizer: Any, sid: int) -> None:
        from harmony_lab.server._auth import TokenVerifier
        from harmony_lab.server._session import Session

        self.out: list[Any] = []
        self.session = Session(
            sid=sid, vsn="1.0.0", apikey=_token("anon"), verifier=TokenVerifier(_SECRET), registry=registry,
            send=self.out.append, clock=time.time, authorizer=authorizer,
        )  # fmt: skip

    async def feed(self, topic: str, event: str, payload: Any, ref: str) -> list[Any]:
        """One frame; the Await effects are performed the way the socket glue performs them."""
        from harmony_lab.server._session import Await, run_inline

        pending = run_inline(self.session.receive(_frame(topic, event, payload, ref)))
        while pending:
            e = pending.pop(0)
            if isinstance(e, Await):
                pending = run_inline(await e.run()) + pending
        return [json.loads(f) for f in self.out]


_SECRET = "authz-session-secret-0123456789abcdef"


def _frame(topic: str, event: str, payload: Any, ref: str) -> str:
    return json.dumps({"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": "1"})


def _token(role: str, **claims: Any) -> str:
    from harmony_lab.server._auth import make_token

    return make_token(_SECRET, {"role": role, "exp": int(time.time()) + 600, **claims})


async def test_a_private_join_is_held_until_authorised_and_writes_are_checked_once(authz: Authorizer) -> None:
    from harmony_lab.server._session import Await, Registry

    registry = Registry()
    alice, carol = _Peer(registry, authz, 1), _Peer(registry, authz, 2)
    join = {"config": {"private": True}, "access_token": _token("authenticated", sub=str(ALICE))}
    # nothing is answered before the check ran: the join's only effect is the Await
    effects = alice.session.receive(_frame("realtime:dm:alice-bob", "phx_join", join, "1"))
    assert [type(e) for e in effects] == [Await]
    assert alice.out == []
    assert registry.members("realtime:dm:alice-bob", private=True) == []
    await effects[0].run()
    assert len(alice.out) == 1
    assert '"status":"ok"' in alice.out[0]
    checks = authz.stats["write_checks"]
    bcast = {"type": "broadcast", "event": "e", "payload": {}}
    await alice.feed("realtime:dm:alice-bob", "broadcast", bcast, "2")
    await alice.feed("realtime:dm:alice-bob", "broadcast", bcast, "3")
    assert authz.stats["write_checks"] == checks + 1  # evaluated on first use, then kept
    refused = await carol.feed(
        "realtime:dm:alice-bob", "phx_join",
        {"config": {"private": True}, "access_token": _token("authenticated", sub=str(CAROL))}, "1",
    )  # fmt: skip
    assert refused[-1]["payload"]["status"] == "error"


async def test_an_unexpected_failure_while_authorising_is_a_crashed_join_not_a_dead_socket(dsn: str) -> None:
    from harmony_lab.server._session import Registry

    class Broken(Authorizer):
        async def read(self, *args: Any, **kwargs: Any) -> Policies:
            raise RuntimeError("a bug in the authorizer")

    broken = Broken(dsn)
    peer = _Peer(Registry(), broken, 1)
    frames = await peer.feed("realtime:t", "phx_join", {"config": {"private": True}}, "1")
    assert frames[-1]["payload"] == {"status": "error", "response": {"reason": "join crashed"}}
    assert peer.session.registry.stats.rejected["internal error"] == 1
    frames = await peer.feed("phoenix", "heartbeat", {}, "2")
    assert frames[-1]["payload"]["status"] == "ok"  # the socket keeps going
    await broken.aclose()
