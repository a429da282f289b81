"""The hub reads a row's current state (RLS check, TOAST fill) only once its commit is visible.

Postgres hands a commit to logical decoding when its WAL is flushed, before the committing backend
leaves the proc array; a read made in that window does not see the row, and the change was hidden as
if RLS had refused it (seen as a few percent of changes lost under load by the manager's tests).
"""

from __future__ import annotations

import asyncio

import psycopg

from harmony_lab.server import rls
from harmony_lab.server.changes import ChangesHub, xid_running
from tests.polling import stays
from tests.server.test_changes import ALICE, AUTH_ALICE, PUB, b, dsn, env  # noqa: F401 - fixtures

EPOCH = 2**32


def test_xid_running_reads_a_pg_snapshot():
    snap = f"{EPOCH + 100}:{EPOCH + 110}:{EPOCH + 100},{EPOCH + 105}"
    assert xid_running(snap, 100)  # listed in xip
    assert xid_running(snap, 105)
    assert not xid_running(snap, 101)  # between xmin and xmax, not listed: finished
    assert not xid_running(snap, 99)  # before xmin
    assert xid_running(snap, 110)  # at xmax: not yet visible to this snapshot
    assert xid_running(snap, 120)
    # 32-bit ids around a wraparound: 2**32 - 5 belongs to the previous epoch, 3 to this one
    wrap = f"{EPOCH - 10}:{EPOCH + 5}:{EPOCH - 5}"
    assert xid_running(wrap, EPOCH - 5)
    assert not xid_running(wrap, EPOCH - 6)
    assert not xid_running(wrap, 3)
    assert xid_running(wrap, 5)
    assert not xid_running("10:10:", 9)


async def test_reads_wait_until_a_transaction_is_visible(dsn):  # noqa: F811 - the fixture
    hub = ChangesHub(dsn, publication=PUB)
    conn = await rls.connect(dsn)
    writer = await psycopg.AsyncConnection.connect(dsn)
    try:
        cur = await writer.execute("select pg_current_xact_id()::text::bigint % 4294967296")
        row = await cur.fetchone()
        assert row is not None
        xid = int(row[0])
        waiting = asyncio.ensure_future(hub._await_visible(conn, {xid}))
        # the transaction is still running: the hub must wait
        await stays(waiting.done, False, for_s=0.2, what="the visibility wait")
        await writer.commit()
        await asyncio.wait_for(waiting, 2)
        assert hub.stats["visibility_waits"] > 0
        before = hub.stats["visibility_waits"]
        await hub._await_visible(conn, {xid})  # visible now: no wait
        assert hub.stats["visibility_waits"] == before
    finally:
        await writer.close()
        await conn.close()


async def test_every_change_of_a_burst_reaches_an_rls_subscriber(env, dsn):  # noqa: F811 - fixtures
    """Concurrent writers make the commit/visibility window likely (without the wait, a few of these
    400 changes were usually hidden); every change must arrive."""
    alice = await env.sub([b("secret", event="INSERT")], AUTH_ALICE, name="alice")

    async def writer(w: int) -> None:
        for i in range(100):  # a connection per write, like LocalRealtime.execute
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute("insert into s2.secret values (%s, %s, 'burst')", (w * 1000 + i, ALICE))

    await asyncio.gather(*(writer(w) for w in range(4)))
    await env.settle()
    got = sorted(d["record"]["id"] for d in alice.datas())
    assert got == sorted(w * 1000 + i for w in range(4) for i in range(100))
