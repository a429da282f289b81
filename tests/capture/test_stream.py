"""ChangeStream against a real PostgreSQL: delivery after commit, commit order, reconnect, refusals."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from harmony_lab.capture import Change, ChangeStream, ChangeStreamError, poll_changes
from harmony_lab.local import LocalPostgres
from harmony_lab.local.schema import ALICE, BOB, GENERAL, RANDOM, apply_schema
from tests.polling import eventually


async def _next(it: Any) -> Change:
    return await asyncio.wait_for(anext(it), 10.0)


async def _nothing(it: Any, wait: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(it), wait)


def _insert_message(c: psycopg.Connection[Any], content: str, channel: int = GENERAL) -> None:
    c.execute(
        "INSERT INTO messages (channel_id, user_id, content) VALUES (%s, %s, %s)", [channel, ALICE, content]
    )


async def test_changes_arrive_after_commit_in_commit_order(harmony_dsn: str) -> None:
    async with ChangeStream(harmony_dsn) as stream:
        it = aiter(stream)
        with psycopg.connect(harmony_dsn) as a, psycopg.connect(harmony_dsn) as b:
            for i in range(3):
                _insert_message(a, f"a{i}")  # transaction A open, not committed
            _insert_message(b, "b0", RANDOM)
            await _nothing(it)  # nothing before a commit
            b.commit()  # B commits first although it began later
            first = await _next(it)
            assert (first.op, first.table, first.new["content"]) == ("INSERT", "messages", "b0")
            await _nothing(it)
            a.commit()
            got = [await _next(it) for _ in range(3)]
        assert [c.new["content"] for c in got] == ["a0", "a1", "a2"]
        assert len({c.xid for c in got}) == 1
        assert got[0].xid != first.xid
        assert got[0].commit_ts_us >= first.commit_ts_us
        assert [c.lsn for c in got] == sorted(c.lsn for c in got)
        assert stream.stats["insert"] == 4
        assert stream.stats["transactions"] == 2


async def test_reconnects_after_walsender_is_terminated(harmony_dsn: str) -> None:
    reasons: list[str] = []
    async with ChangeStream(harmony_dsn, on_reconnect=reasons.append) as stream:
        it = aiter(stream)
        slot = stream.slot_name
        with psycopg.connect(harmony_dsn, autocommit=True) as c:
            _insert_message(c, "before")
            assert (await _next(it)).new["content"] == "before"
            killed = c.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s",
                [slot],
            ).fetchall()
            assert killed == [(True,)]
            await eventually(lambda: reasons, what="the new slot")
            assert "terminat" in reasons[0]
            assert stream.slot_name != slot
            _insert_message(c, "after")
            assert (await _next(it)).new["content"] == "after"
        assert stream.stats["reconnects"] == 1
        assert stream.stats["connected"] is True


async def test_close_ends_iteration_and_drops_the_slot(harmony_dsn: str) -> None:
    stream = ChangeStream(harmony_dsn)
    await stream.start()
    slot = stream.slot_name
    with psycopg.connect(harmony_dsn, autocommit=True) as c:
        assert c.execute(
            "SELECT temporary FROM pg_replication_slots WHERE slot_name = %s", [slot]
        ).fetchall() == [(True,)]
        _insert_message(c, "queued before close")
        await asyncio.sleep(0.3)
        await stream.aclose()
        await stream.aclose()  # idempotent
        items = [c async for c in stream]  # what was queued is still delivered, then the end
        assert [i.new["content"] for i in items] == ["queued before close"]
        await eventually(
            lambda: (
                not c.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", [slot]).fetchall()
            ),
            within=5,
            what=f"slot {slot} to be dropped after aclose()",
        )


async def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(ChangeStreamError, match=r"cannot connect to PostgreSQL at postgresql://u:\*\*\*@127"):
        await ChangeStream("postgresql://u:secret@127.0.0.1:1/postgres?connect_timeout=2").start()


async def test_refuses_a_missing_publication(db_dsn: str) -> None:
    with pytest.raises(ChangeStreamError, match="publication 'nope' does not exist"):
        await ChangeStream(db_dsn, publication="nope").start()


async def test_refuses_tables_without_replica_identity(conn: psycopg.Connection[Any], db_dsn: str) -> None:
    conn.execute("CREATE TABLE nopk (a int, b text)")
    conn.execute("CREATE TABLE withpk (a int PRIMARY KEY)")
    conn.execute("CREATE PUBLICATION nopk_pub FOR TABLE nopk, withpk")
    with pytest.raises(
        ChangeStreamError, match=r"public\.nopk .*ALTER TABLE public\.nopk REPLICA IDENTITY FULL"
    ):
        await ChangeStream(db_dsn, publication="nopk_pub").start()
    conn.execute("ALTER TABLE nopk REPLICA IDENTITY FULL")
    async with ChangeStream(db_dsn, publication="nopk_pub") as stream:
        conn.execute("INSERT INTO nopk VALUES (1, 'x')")
        conn.execute("UPDATE nopk SET b = 'y'")
        up = [await _next(aiter(stream)) for _ in range(2)][1]
        assert (up.op, up.old, up.new) == ("UPDATE", {"a": 1, "b": "x"}, {"a": 1, "b": "y"})


async def test_refuses_wal_level_replica() -> None:
    with (
        LocalPostgres(settings={"wal_level": "replica"}) as pg,
        pytest.raises(ChangeStreamError, match=r"wal_level is 'replica'.*ALTER SYSTEM SET wal_level"),
    ):
        await ChangeStream(pg.dsn).start()


def test_poll_changes_uses_the_same_decoder(harmony_dsn: str) -> None:
    with psycopg.connect(harmony_dsn, autocommit=True) as c:
        c.execute("SELECT pg_create_logical_replication_slot('poll_test', 'pgoutput', true)")
        assert poll_changes(c, "poll_test") == []
        c.execute(
            "INSERT INTO notifications (user_id, kind, payload) VALUES (%s, 'mention', '{\"by\": \"bob\"}')",
            [BOB],
        )
        c.execute("UPDATE notifications SET read_at = '2025-11-03 09:32:55.123+00' WHERE kind = 'mention'")
        changes = poll_changes(c, "poll_test")
        assert [ch.op for ch in changes] == ["INSERT", "UPDATE"]
        assert changes[0].new["payload"] == {"by": "bob"}
        assert changes[1].new["read_at"] == "2025-11-03T09:32:55.123+00:00"
        assert changes[1].old["read_at"] is None
        assert changes[1].old_is_full
        assert changes[1].pk_columns == ("id",)  # the real PK, although FULL flags every column
        assert poll_changes(c, "poll_test") == []


async def test_large_transaction_with_backpressure(harmony_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import harmony_lab.capture.stream as stream_mod

    monkeypatch.setattr(stream_mod, "_HIGH_WATER", 500)  # pause reading early, resume at low water
    monkeypatch.setattr(stream_mod, "_LOW_WATER", 100)
    n = 20_000
    async with ChangeStream(harmony_dsn) as stream:
        with psycopg.connect(harmony_dsn, autocommit=True) as c:
            c.execute(
                "INSERT INTO notifications (user_id, kind, payload) "
                "SELECT %s, 'bulk', jsonb_build_object('i', g) FROM generate_series(1, %s) g",
                [BOB, n],
            )
        seen: list[int] = []
        max_queued = 0
        async with asyncio.timeout(120):
            async for change in stream:
                seen.append(change.new["payload"]["i"])
                max_queued = max(max_queued, stream.stats["queued"])
                if len(seen) % 2_000 == 0:
                    await asyncio.sleep(0.01)  # a slow consumer
                if len(seen) == n:
                    break
        assert seen == list(range(1, n + 1))
        assert stream.stats["transactions"] == 1
        assert max_queued <= n  # a transaction is released whole, then reads pause


async def test_logical_messages_reach_the_callback(harmony_dsn: str) -> None:
    seen: list[Any] = []
    async with ChangeStream(harmony_dsn, on_logical_message=seen.append) as stream:
        with psycopg.connect(harmony_dsn, autocommit=True) as c:
            c.execute("SELECT pg_logical_emit_message(false, 'harmony', 'ping')")
            _insert_message(c, "after the ping")
        change = await _next(aiter(stream))
        assert change.new["content"] == "after the ping"
    assert [(m.prefix, m.content, m.transactional) for m in seen] == [("harmony", b"ping", False)]
    assert stream.stats["logical_messages"] == 1


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the server user (nobody, when root) can reach; pytest's tmp_path is 0700."""
    base = Path(tempfile.mkdtemp(prefix="hl-restart-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


async def test_survives_a_server_restart_and_gives_up_when_it_stays_down(shared_dir: Path) -> None:
    reasons: list[str] = []
    pg = LocalPostgres(shared_dir / "data").start()
    try:
        port = pg.port
        apply_schema(pg.dsn)
        stream = ChangeStream(pg.dsn, on_reconnect=reasons.append, reconnect_timeout=3.0)
        await stream.start()
        it = aiter(stream)
        # stop from a thread: a fast shutdown waits for the walsender, which waits for this loop
        await asyncio.to_thread(pg.stop)
        pg = LocalPostgres(shared_dir / "data", port=port).start()
        await eventually(lambda: reasons, what="a reconnect after the server came back")
        with pg.connect() as c:
            _insert_message(c, "after restart")
        assert (await _next(it)).new["content"] == "after restart"
        await asyncio.to_thread(pg.stop)  # and now it stays down: iteration fails after reconnect_timeout
        with pytest.raises(ChangeStreamError, match="could not reconnect"):
            await _next(it)
        await stream.aclose()
    finally:
        pg.stop()


async def test_decoding_a_big_transaction_does_not_block_the_event_loop(harmony_dsn: str) -> None:
    n = 20_000
    async with ChangeStream(harmony_dsn) as stream:
        with psycopg.connect(harmony_dsn, autocommit=True) as c:
            c.execute(
                "INSERT INTO notifications (user_id, kind) SELECT %s, 'tick' FROM generate_series(1, %s)",
                [BOB, n],
            )
        seen_counts: list[int] = []  # what another task observes while the stream decodes
        async with asyncio.timeout(120):
            while stream.stats["insert"] < n:
                seen_counts.append(stream.stats["messages"])
                await asyncio.sleep(0)
        during = {m for m in seen_counts if 0 < m < n}
        # the decoder hands the loop back every batch of messages: other tasks ran in between
        assert len(during) >= 5, sorted(during)
        assert [c.new["kind"] for c in [await _next(aiter(stream)) for _ in range(3)]] == ["tick"] * 3


@pytest.mark.skipif(
    not Path("/usr/lib/postgresql/15/bin/postgres").exists(), reason="no Debian PostgreSQL 15 to test against"
)
async def test_schema_and_stream_on_postgresql_15() -> None:
    with LocalPostgres(backend="system") as pg:
        assert pg.binaries is not None
        assert pg.binaries.major == 15
        apply_schema(pg.dsn)
        seen: list[Any] = []
        async with ChangeStream(pg.dsn, on_logical_message=seen.append) as stream:
            with pg.connect() as c:
                c.execute("SELECT pg_logical_emit_message(false, 'p', 'x')")
                _insert_message(c, "hello from 15")
                c.execute(
                    "UPDATE messages SET deleted_at = '2025-01-01 00:00+00' WHERE content = 'hello from 15'"
                )
            ins, upd = await _next(aiter(stream)), await _next(aiter(stream))
        assert ins.new["content"] == "hello from 15"
        assert (upd.old["deleted_at"], upd.new["deleted_at"]) == (None, "2025-01-01T00:00:00+00:00")
        assert len(seen) == 1


async def test_constructor_and_misuse_errors(harmony_dsn: str) -> None:
    with pytest.raises(ValueError, match="slot_name must be lower-case"):
        ChangeStream(harmony_dsn, slot_name="Bad-Name")
    with pytest.raises(TypeError, match="dsn must be a libpq connection string"):
        ChangeStream(None)  # type: ignore[arg-type]
    stream = ChangeStream(harmony_dsn, slot_name="my_slot")
    assert "not connected" in repr(stream)
    with pytest.raises(ChangeStreamError, match="after start"):
        await anext(aiter(stream))
    async with stream:
        assert stream.slot_name == "my_slot"
        assert "connected" in repr(stream)
        with pytest.raises(ChangeStreamError, match="already started"):
            await stream.start()


async def test_ddl_and_tables_added_while_streaming(conn: psycopg.Connection[Any], db_dsn: str) -> None:
    conn.execute("CREATE TABLE ddl_a (id int PRIMARY KEY, v text)")
    conn.execute("CREATE PUBLICATION ddl_pub FOR TABLE ddl_a")
    async with ChangeStream(db_dsn, publication="ddl_pub") as stream:
        it = aiter(stream)
        conn.execute("INSERT INTO ddl_a VALUES (1, 'x')")
        assert (await _next(it)).new == {"id": 1, "v": "x"}
        conn.execute("ALTER TABLE ddl_a ADD COLUMN extra int DEFAULT 7")
        conn.execute("INSERT INTO ddl_a VALUES (2, 'y')")
        assert (await _next(it)).new == {"id": 2, "v": "y", "extra": 7}
        # a table (with a new enum array type and a FULL identity) joins the publication mid-stream:
        # its primary key and types are looked up without blocking the loop
        conn.execute("CREATE TYPE ddl_mood AS ENUM ('calm', 'busy')")
        conn.execute("CREATE TABLE ddl_b (k text, n int, moods ddl_mood[], PRIMARY KEY (k, n))")
        conn.execute("ALTER TABLE ddl_b REPLICA IDENTITY FULL")
        conn.execute("ALTER PUBLICATION ddl_pub ADD TABLE ddl_b")
        conn.execute("INSERT INTO ddl_b VALUES ('a', 1, '{calm,busy}')")
        conn.execute("DELETE FROM ddl_b")
        ins, dele = await _next(it), await _next(it)
        assert (ins.table, ins.new) == ("ddl_b", {"k": "a", "n": 1, "moods": ["calm", "busy"]})
        assert ins.pk_columns == ("k", "n")  # the real PK, not every column of the FULL identity
        assert [c.type_name for c in ins.columns] == ["text", "int4", "_ddl_mood"]
        assert (dele.op, dele.old, dele.old_is_full) == ("DELETE", ins.new, True)


async def test_every_harmony_table_matches_to_jsonb(harmony_dsn: str) -> None:
    from harmony_lab.local.schema import CAROL, DM_ALICE_BOB, ENGINEERING, TABLES

    statements = [
        ("profiles", "UPDATE profiles SET status = 'online', last_seen_at = now() WHERE id = %s", [CAROL]),
        ("channels", "INSERT INTO channels (name, kind, topic, created_by) VALUES ('x', 'text', 't', %s)",
         [CAROL]),
        ("channel_members", "INSERT INTO channel_members (channel_id, user_id) VALUES (%s, %s)",
         [DM_ALICE_BOB, CAROL]),
        ("messages", "INSERT INTO messages (channel_id, user_id, content, reply_to) "
         "VALUES (%s, %s, 'é ✓', 1)", [ENGINEERING, CAROL]),
        ("message_reactions", "INSERT INTO message_reactions (message_id, user_id, emoji) "
         "VALUES (2, %s, '🔥')", [CAROL]),
        ("notifications", "INSERT INTO notifications (user_id, kind, payload) VALUES (%s, 'mention', "
         "'{\"a\": [1, 2.5, null], \"b\": {\"c\": true}}')", [CAROL]),
        ("typing_indicators", "INSERT INTO typing_indicators (channel_id, user_id) VALUES (%s, %s)",
         [ENGINEERING, CAROL]),
        ("megolm_session_shares", "INSERT INTO megolm_session_shares (session_id, sender_id, recipient_id, "
         "channel_id, encrypted_key) VALUES ('s', %s, %s, %s, 'k')", [CAROL, ALICE, ENGINEERING]),
    ]  # fmt: skip
    assert {t for t, _, _ in statements} == set(TABLES)
    async with ChangeStream(harmony_dsn) as stream:
        it = aiter(stream)
        with psycopg.connect(harmony_dsn, autocommit=True) as c:
            for table, sql, params in statements:
                c.execute(sql, params)
                change = await _next(it)
                assert change.table == table
                where = " AND ".join(f"{k} = %s" for k in change.pk_columns)
                row = c.execute(
                    f"SELECT to_jsonb(t) FROM {table} t WHERE {where}",
                    [change.new[k] for k in change.pk_columns],
                ).fetchone()[0]
                assert change.new == row, table
