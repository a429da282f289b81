"""LiveFrame starts from the table's current rows (read as the subscriber), then follows the stream.

Real Postgres, the real server and the real manager: the snapshot is merged with the live stream while
a writer races it, and must end equal to the table; row level security applies to the snapshot as it
does to the stream; the key comes from the table without a warning.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest

from harmony_lab.frames import LiveFrame
from harmony_lab.local.schema import ALICE, BOB, GENERAL, RANDOM
from harmony_lab.manager import BackoffPolicy, RealtimeConnectionManager
from tests.polling import eventually

pytestmark = [
    pytest.mark.filterwarnings("ignore:ConnectionClosed.code is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ConnectionClosed.reason is deprecated:DeprecationWarning"),
]

INSERT = "insert into messages (channel_id, user_id, content) values (%s, %s, %s) returning id"


def _manager(rt: Any, *, token: str | None = None, key: str | None = None, dsn: bool = True) -> Any:
    return RealtimeConnectionManager(
        rt.url,
        key or rt.anon_key,
        dsn=rt.dsn if dsn else None,
        access_token=token,
        heartbeat_interval=0.5,
        backoff=BackoffPolicy(base=0.1, max_delay=0.5, max_retries=10),
        join_timeout=5.0,
    )


@pytest.fixture
async def managers(rt):
    made: list[Any] = []

    def make(**kw: Any) -> Any:
        mgr = _manager(rt, **kw)
        made.append(mgr)
        return mgr

    yield make
    for mgr in made:
        await mgr.cleanup()
    RealtimeConnectionManager.reset_instance()


async def _visible(rt: Any, sql_where: str, *args: Any, role: str, sub: str | None) -> dict[int, str]:
    """id → content of the messages ``role`` (with ``sub`` as auth.uid()) may read, by SQL."""
    import json

    import psycopg

    claims = json.dumps({"role": role, **({"sub": sub} if sub else {})})
    async with await psycopg.AsyncConnection.connect(rt.dsn) as conn, conn.transaction():
        await conn.execute(f'SET LOCAL ROLE "{role}"')
        await conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
        cur = await conn.execute(f"select id, content from messages where {sql_where}", args or None)
        return dict(await cur.fetchall())


def _frame_rows(lf: LiveFrame) -> dict[int, str]:
    df = lf.df
    return dict(zip((int(i) for i in df["id"]), df["content"], strict=True)) if len(df) else {}


async def test_a_frame_starts_with_the_newest_rows_and_in_order(rt, managers):
    ids = [(await rt.execute(INSERT, GENERAL, ALICE, f"m{n}"))[0][0] for n in range(30)]
    mgr = managers(token=rt.token_for(str(ALICE)))
    async with LiveFrame(mgr, "messages", max_rows=10, filter=f"channel_id=eq.{GENERAL}") as lf:
        newest = await _visible(
            rt,
            "channel_id = %s order by created_at desc, id desc limit 10",
            GENERAL,
            role="authenticated",
            sub=str(ALICE),
        )
        assert set(newest) <= set(ids)
        assert _frame_rows(lf) == newest
        # oldest first, as if the rows had been inserted live in their order
        assert [int(i) for i in lf.df["id"]] == sorted(newest)
        assert lf.counters["snapshot"] == 10
        assert lf.inserts == 0  # loaded rows are not live inserts
        assert lf.snapshot_info is not None
        assert lf.snapshot_info["role"] == "authenticated"
        assert lf.snapshot_info["order_by"] == ["created_at", "id"]
        assert str(lf.df["created_at"].dtype) == "datetime64[us, UTC]"  # typed before any event
        # a live insert evicts the oldest loaded row
        new = (await rt.execute(INSERT, GENERAL, BOB, "live"))[0][0]
        await lf.wait_until(lambda f: new in f, within_s=30)
        assert len(lf) == 10
        assert min(newest) not in lf


@pytest.mark.parametrize("max_rows", [5000, 40])
async def test_writes_racing_the_snapshot_lose_and_duplicate_nothing(rt, managers, max_rows):
    rng = random.Random(12 + max_rows)
    live: list[int] = [(await rt.execute(INSERT, GENERAL, ALICE, f"seed{n}"))[0][0] for n in range(60)]
    stop = asyncio.Event()
    writes = 0

    async def writer() -> None:
        nonlocal writes
        import psycopg

        async with await psycopg.AsyncConnection.connect(rt.dsn, autocommit=True) as conn:
            while not stop.is_set():
                roll = rng.random()
                if roll < 0.45 or not live:
                    cur = await conn.execute(INSERT, (rng.choice([GENERAL, RANDOM]), BOB, f"w{writes}"))
                    row = await cur.fetchone()
                    assert row is not None
                    live.append(row[0])
                elif roll < 0.8:
                    await conn.execute(
                        "update messages set content = %s where id = %s", (f"u{writes}", rng.choice(live))
                    )
                else:
                    victim = live.pop(rng.randrange(len(live)))
                    await conn.execute("delete from messages where id = %s", (victim,))
                writes += 1
                await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    try:
        await eventually(lambda: writes >= 20, within=30, what="the writer got going")
        mgr = managers(key=rt.service_role_key)
        lf = LiveFrame(mgr, "messages", max_rows=max_rows, filter=f"channel_id=eq.{GENERAL}")
        await lf.ready()
        assert lf.status == "connected"
        started = writes
        await eventually(lambda: writes >= started + 60, within=60, what="writes after the start")
    finally:
        stop.set()
        await task
    try:
        expected = await _visible(rt, "channel_id = %s", GENERAL, role="service_role", sub=None)
        if max_rows >= len(expected):
            await eventually(lambda: _frame_rows(lf) == expected, within=30, what="frame == table")
        else:
            # a bounded window: every held row is current, no deleted row is held, nothing twice
            await eventually(
                lambda: (
                    lf.counters["events"] > 0
                    and all(expected.get(i) == c for i, c in _frame_rows(lf).items())
                ),
                within=30,
                what="every held row equals the table",
            )
            ids = [int(i) for i in lf.df["id"]]
            assert len(ids) == len(set(ids)) <= max_rows
        assert lf.counters["snapshot"] > 0  # the rows written before the start came from the snapshot
    finally:
        await lf.aclose()


async def test_the_snapshot_shows_no_row_the_stream_would_not(rt, managers):
    await rt.execute("insert into notifications (user_id, kind) values (%s, 'mention')", ALICE)
    await rt.execute("insert into notifications (user_id, kind) values (%s, 'mention')", BOB)
    await rt.execute("insert into notifications (user_id, kind) values (%s, 'reply')", BOB)
    alice = managers(token=rt.token_for(str(ALICE)))
    async with LiveFrame(alice, "notifications") as lf:
        assert len(lf) >= 1
        assert set(lf.df["user_id"]) == {str(ALICE)}
        assert lf.snapshot_info is not None
        assert lf.snapshot_info["role"] == "authenticated"
    # the anon key alone (no user): notifications are readable by signed-in owners only
    anon = managers()
    async with LiveFrame(anon, "notifications") as lf:
        assert len(lf) == 0
        assert lf.snapshot_info == {
            "rows": 0,
            "read": 0,
            "via": "dsn",
            "role": "anon",
            "order_by": ["created_at", "id"],
        }


async def test_a_key_from_the_table_without_a_warning(rt, managers, caplog):
    caplog.set_level(logging.INFO)
    await rt.execute("insert into typing_indicators (channel_id, user_id) values (%s, %s)", GENERAL, ALICE)
    mgr = managers(key=rt.service_role_key)
    async with LiveFrame(mgr, "typing_indicators") as typing:
        assert typing.key == ("channel_id", "user_id")
        assert (GENERAL, str(ALICE)) in typing
        await rt.execute("insert into typing_indicators (channel_id, user_id) values (%s, %s)", GENERAL, BOB)
        await rt.execute("delete from typing_indicators where user_id = %s", ALICE)
        await typing.wait_until(lambda f: (GENERAL, str(BOB)) in f and len(f) == 1, within_s=30)
        assert typing.counters["unkeyed"] == 0
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("harmony_lab")]
    assert warned == []


async def test_a_table_without_primary_key_is_keyed_by_its_replica_identity(rt, managers):
    # Realtime streams only tables with a primary key ("Error 400: Bad Request, no primary key"),
    # but the rows such a table holds still load, keyed by its replica-identity index
    await rt.execute(
        "create table public.cursors (room text not null, who uuid not null, pos int not null);"
        "create unique index cursors_room_who on public.cursors (room, who);"
        "alter table public.cursors replica identity using index cursors_room_who;"
        "insert into public.cursors values ('a', '" + str(ALICE) + "', 1), ('b', '" + str(BOB) + "', 2)"
    )
    mgr = managers(key=rt.service_role_key)
    snap = await mgr.snapshot("cursors")
    assert snap.key == ("room", "who")
    assert snap.columns == (("room", "text"), ("who", "uuid"), ("pos", "int4"))
    assert snap.order_by == ("room", "who")  # no time column: the key orders the rows
    assert [r["room"] for r in snap.rows] == ["b", "a"]
    lf = LiveFrame(None, "cursors")
    assert lf.load_rows(snap.rows, columns=snap.columns, key=snap.key) == 2
    assert lf.key == ("room", "who")
    assert lf.get(("a", str(ALICE)))["pos"] == 1
    assert list(lf.df["room"]) == ["a", "b"]


async def test_without_a_database_the_frame_says_so_and_follows_changes(rt, managers, caplog):
    await rt.execute(INSERT, GENERAL, ALICE, "already there")
    mgr = managers(key=rt.service_role_key, dsn=False)
    async with LiveFrame(mgr, "messages", key="id") as lf:
        assert len(lf) == 0
        assert lf.snapshot_info is not None
        assert "dsn=" in lf.snapshot_info["error"]
        new = (await rt.execute(INSERT, GENERAL, ALICE, "live"))[0][0]
        await lf.wait_until(lambda f: new in f, within_s=30)
    lines = [r.getMessage() for r in caplog.records if r.name == "harmony_lab.frames._live"]
    assert sum("could not load the table's current rows" in m for m in lines) == 1
    assert any("snapshot=False" in m for m in lines)


async def test_snapshot_false_starts_empty(rt, managers):
    await rt.execute(INSERT, GENERAL, ALICE, "already there")
    mgr = managers(key=rt.service_role_key)
    async with LiveFrame(mgr, "messages", snapshot=False) as lf:
        assert len(lf) == 0
        assert lf.snapshot_info is None


def test_the_postgrest_snapshot_request_mirrors_the_subscription():
    # the embedded stack serves no PostgREST; the request a hosted project gets is checked as built
    from postgrest import AsyncPostgrestClient

    from harmony_lab.filters import parse_filter
    from harmony_lab.manager._snapshot import postgrest_snapshot_query

    client = AsyncPostgrestClient("http://127.0.0.1:9/rest/v1")
    query = postgrest_snapshot_query(
        client,
        "public",
        "messages",
        conditions=parse_filter("channel_id=eq.1"),
        order_by=("created_at", "id"),
        limit=5,
    )
    assert str(query.request.path).endswith("/rest/v1/messages")
    assert str(query.request.params) == (
        "select=%2A&channel_id=eq.1&order=created_at.desc.nullslast%2Cid.desc.nullslast&limit=5"
    )


def test_newest_order_prefers_creation_time_then_any_time_then_the_key():
    from harmony_lab.manager._snapshot import newest_order

    cols = [("id", "int8"), ("updated_at", "timestamptz"), ("created_at", "timestamptz")]
    assert newest_order(cols, ("id",), None) == ("created_at", "id")
    assert newest_order(cols[:2], ("id",), None) == ("updated_at", "id")
    assert newest_order(cols[:1], ("id",), None) == ("id",)
    assert newest_order(cols, ("id",), "updated_at") == ("updated_at", "id")
    with pytest.raises(LookupError, match="order_by column"):
        newest_order(cols, ("id",), "nope")
