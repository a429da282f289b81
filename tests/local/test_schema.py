"""The Harmony schema on a real PostgreSQL: idempotence, publication, replica identity and RLS."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from harmony_lab.local.schema import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    DM_ALICE_BOB,
    DM_CAROL_DAVE,
    ENGINEERING,
    ERIN,
    FRANK,
    GENERAL,
    MEMBERS,
    RANDOM,
    TABLES,
    USERS,
    apply_schema,
    claims_for,
)


@pytest.fixture(scope="module")
def harmony_dsn(postgres: Any) -> Iterator[str]:
    name = f"schema_{uuid.uuid4().hex[:8]}"
    with postgres.connect() as admin:
        admin.execute(f"CREATE DATABASE {name}")
    dsn = make_conninfo(postgres.dsn, dbname=name)
    apply_schema(dsn)
    yield dsn
    with postgres.connect() as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def conn(harmony_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(harmony_dsn, autocommit=True) as c:
        yield c


def _as(conn: psycopg.Connection[Any], role: str, claims: dict[str, Any] | None) -> None:
    """Inside the current transaction: act as ``role`` with ``claims`` like PostgREST does."""
    conn.execute(f"SET LOCAL ROLE {role}")
    if claims is not None:
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", [json.dumps(claims)])


def _visible(conn: psycopg.Connection[Any], user: uuid.UUID | None, sql: str, role: str = "authenticated"):
    with conn.transaction(force_rollback=True):
        _as(conn, role, claims_for(user, role=role) if user is not None else None)
        return conn.execute(sql).fetchall()


def test_apply_twice_is_idempotent(conn: psycopg.Connection[Any]) -> None:
    def counts() -> list[int]:
        return [conn.execute(f"SELECT count(*) FROM public.{t}").fetchone()[0] for t in TABLES]

    before = counts()
    apply_schema(conn)  # on an open connection this time
    apply_schema(conn, seed=False)
    assert counts() == before
    assert before[TABLES.index("profiles")] == len(USERS)
    # identity sequences continue after the seeded ids
    with conn.transaction(force_rollback=True):
        new_id = conn.execute(
            "INSERT INTO channels (name, kind) VALUES ('x', 'text') RETURNING id"
        ).fetchone()[0]
    assert new_id > DM_CAROL_DAVE


def test_apply_schema_rejects_other_inputs() -> None:
    with pytest.raises(TypeError, match="DSN string"):
        apply_schema(42)


def test_publication_and_replica_identity(conn: psycopg.Connection[Any]) -> None:
    published = {
        r[0]
        for r in conn.execute(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = 'supabase_realtime'"
        )
    }
    assert published == set(TABLES)
    ident = dict(
        conn.execute(
            "SELECT relname, relreplident::text FROM pg_class WHERE relnamespace = 'public'::regnamespace "
            "AND relkind = 'r'"
        ).fetchall()
    )
    for t in ("messages", "typing_indicators", "message_reactions", "channel_members", "notifications"):
        assert ident[t] == "f", t
    assert ident["channels"] == "d"
    rls = dict(
        conn.execute(
            "SELECT relname, relrowsecurity FROM pg_class WHERE relnamespace = 'public'::regnamespace "
            "AND relkind = 'r'"
        ).fetchall()
    )
    assert all(rls[t] for t in TABLES)
    bypass = conn.execute("SELECT rolbypassrls FROM pg_roles WHERE rolname = 'service_role'").fetchone()
    assert bypass == (True,)


def test_auth_functions_read_claims(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction(force_rollback=True):
        _as(conn, "authenticated", claims_for(ALICE, email="alice@harmony.test"))
        row = conn.execute("SELECT auth.uid(), auth.role(), auth.jwt() ->> 'email', auth.email()").fetchone()
    assert row == (ALICE, "authenticated", "alice@harmony.test", "alice@harmony.test")
    with conn.transaction(force_rollback=True):  # legacy per-claim settings
        conn.execute("SELECT set_config('request.jwt.claim.sub', %s, true)", [str(BOB)])
        conn.execute("SELECT set_config('request.jwt.claim.role', 'authenticated', true)")
        assert conn.execute("SELECT auth.uid(), auth.role()").fetchone() == (BOB, "authenticated")
    assert conn.execute("SELECT auth.uid()").fetchone() == (None,)


def test_members_read_only_their_channels_messages(conn: psycopg.Connection[Any]) -> None:
    sql = "SELECT DISTINCT channel_id FROM messages ORDER BY 1"
    for name, user in USERS.items():
        expected = sorted(ch for ch, members in MEMBERS.items() if user in members)
        assert [r[0] for r in _visible(conn, user, sql)] == expected, name
    # frank is in general and engineering only
    assert [r[0] for r in _visible(conn, FRANK, sql)] == [GENERAL, ENGINEERING]
    assert _visible(conn, FRANK, f"SELECT * FROM messages WHERE channel_id = {RANDOM}") == []
    assert _visible(conn, ALICE, f"SELECT id FROM messages WHERE channel_id = {DM_CAROL_DAVE}") == []
    assert len(_visible(conn, DAVE, f"SELECT id FROM messages WHERE channel_id = {DM_CAROL_DAVE}")) == 1


def test_channels_and_members_visible_to_members(conn: psycopg.Connection[Any]) -> None:
    assert [r[0] for r in _visible(conn, FRANK, "SELECT id FROM channels ORDER BY id")] == [
        GENERAL,
        ENGINEERING,
    ]
    # channel_members' policy calls the SECURITY DEFINER helper: no infinite recursion
    rows = _visible(conn, BOB, "SELECT DISTINCT channel_id FROM channel_members ORDER BY 1")
    assert [r[0] for r in rows] == [GENERAL, RANDOM, DM_ALICE_BOB]
    assert len(_visible(conn, ERIN, "SELECT * FROM profiles")) == len(USERS)
    assert _visible(conn, None, "SELECT * FROM profiles", role="anon") == []


def test_reactions_and_typing_follow_membership(conn: psycopg.Connection[Any]) -> None:
    sql = "SELECT message_id, emoji FROM message_reactions ORDER BY 1, 2"
    assert {r[0] for r in _visible(conn, FRANK, sql)} == {1, 6}  # general + engineering
    assert {r[0] for r in _visible(conn, BOB, sql)} == {1}  # not engineering
    with conn.transaction(force_rollback=True):
        conn.execute(
            "INSERT INTO typing_indicators (channel_id, user_id) VALUES (%s, %s), (%s, %s)",
            [ENGINEERING, CAROL, DM_ALICE_BOB, ALICE],
        )
        _as(conn, "authenticated", claims_for(ERIN))
        erin = conn.execute("SELECT channel_id, user_id FROM typing_indicators").fetchall()
    assert erin == [(ENGINEERING, CAROL)]


def test_notifications_and_key_shares_only_for_their_owner(conn: psycopg.Connection[Any]) -> None:
    notes = "SELECT id, user_id FROM notifications ORDER BY id"
    assert _visible(conn, ALICE, notes) == [(1, ALICE)]
    assert _visible(conn, BOB, notes) == [(2, BOB)]
    assert _visible(conn, FRANK, notes) == []
    shares = "SELECT id FROM megolm_session_shares ORDER BY id"
    assert _visible(conn, BOB, shares) == [(1,)]  # recipient
    assert _visible(conn, ALICE, shares) == [(1,)]  # sender
    assert _visible(conn, DAVE, shares) == [(2,)]
    assert _visible(conn, ERIN, shares) == []
    # service_role bypasses RLS and sees everything
    assert len(_visible(conn, ERIN, notes, role="service_role")) == 3
    assert len(_visible(conn, None, shares, role="service_role")) == 2


def test_members_insert_only_their_own_messages(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction(force_rollback=True):
        _as(conn, "authenticated", claims_for(FRANK))
        row = conn.execute(
            "INSERT INTO messages (channel_id, user_id, content) VALUES (%s, %s, 'hi') RETURNING user_id",
            [ENGINEERING, FRANK],
        ).fetchone()
    assert row == (FRANK,)
    for channel, author in ((RANDOM, FRANK), (GENERAL, ALICE)):  # not a member / someone else
        with conn.transaction(force_rollback=True):
            _as(conn, "authenticated", claims_for(FRANK))
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
                conn.execute(
                    "INSERT INTO messages (channel_id, user_id, content) VALUES (%s, %s, 'x')",
                    [channel, author],
                )


def test_users_edit_only_their_own_messages(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction(force_rollback=True):
        _as(conn, "authenticated", claims_for(BOB))
        # message 1 is alice's in general: bob sees it but cannot change it
        assert conn.execute("UPDATE messages SET content = 'x' WHERE id = 1").rowcount == 0
        assert conn.execute("UPDATE messages SET deleted_at = now() WHERE id = 2").rowcount == 1


def test_concurrent_applies_on_a_fresh_cluster() -> None:
    """Parallel test workers apply the schema at once: roles are cluster-wide, schemas per database."""
    from concurrent.futures import ThreadPoolExecutor

    from harmony_lab.local import LocalPostgres

    with LocalPostgres() as pg:  # fresh: the roles do not exist yet
        names = [f"par_{i}" for i in range(3)]
        with pg.connect() as admin:
            for name in names:
                admin.execute(f"CREATE DATABASE {name}")
        targets = [make_conninfo(pg.dsn, dbname=n) for n in [*names, names[0], names[0]]]
        with ThreadPoolExecutor(len(targets)) as pool:
            list(pool.map(apply_schema, targets))
        for name in names:
            with psycopg.connect(make_conninfo(pg.dsn, dbname=name)) as c:
                assert c.execute("SELECT count(*) FROM profiles").fetchone() == (len(USERS),)
                assert c.execute("SELECT count(*) FROM messages").fetchone() == (10,)
