"""The ``realtime`` schema (realtime.messages, topic(), send(), broadcast_changes()) and the Harmony
topic policies on a real Postgres: what a Realtime Authorization probe sees for members and others."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from harmony_lab.local.schema import ALICE, BOB, CAROL, DM_ALICE_BOB, GENERAL, apply_schema, claims_for


@pytest.fixture(scope="module")
def conn(postgres: Any) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(postgres.dsn, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS realtime_schema_test")
        c.execute("CREATE DATABASE realtime_schema_test")
    dsn = psycopg.conninfo.make_conninfo(postgres.dsn, dbname="realtime_schema_test")
    apply_schema(dsn)
    apply_schema(dsn)  # re-applying is safe
    with psycopg.connect(dsn, autocommit=True) as c:
        yield c


def _as(conn: psycopg.Connection[Any], user: uuid.UUID | None, topic: str) -> None:
    role = "anon" if user is None else "authenticated"
    claims = {"role": "anon"} if user is None else claims_for(user)
    conn.execute(
        "select set_config('role', %s, true), set_config('realtime.topic', %s, true), "
        "set_config('request.jwt.claims', %s, true)",
        [role, topic, json.dumps(claims)],
    )


def _can_read(conn: psycopg.Connection[Any], user: uuid.UUID | None, topic: str) -> bool:
    with conn.transaction(force_rollback=True):
        probe = uuid.uuid4()
        conn.execute(
            "insert into realtime.messages (id, topic, extension) values (%s, %s, 'broadcast')",
            [probe, topic],
        )
        _as(conn, user, topic)
        row = conn.execute("select count(*) from realtime.messages where id = %s", [probe]).fetchone()
        return bool(row and row[0] == 1)


def _can_write(conn: psycopg.Connection[Any], user: uuid.UUID | None, topic: str) -> bool:
    with conn.transaction(force_rollback=True):
        _as(conn, user, topic)
        try:
            with conn.transaction():
                conn.execute(
                    "insert into realtime.messages (topic, extension) values (%s, 'broadcast')", [topic]
                )
        except psycopg.errors.InsufficientPrivilege:
            return False
        return True


def test_members_read_and_write_their_dm_topic_others_do_not(conn: psycopg.Connection[Any]) -> None:
    assert _can_read(conn, ALICE, "dm:alice-bob")
    assert _can_read(conn, BOB, "dm:alice-bob")
    assert not _can_read(conn, CAROL, "dm:alice-bob")
    assert not _can_read(conn, None, "dm:alice-bob")
    assert _can_write(conn, ALICE, "dm:alice-bob")
    assert not _can_write(conn, CAROL, "dm:alice-bob")
    assert not _can_write(conn, None, "dm:alice-bob")
    assert _can_read(conn, CAROL, "channel:engineering")
    assert not _can_read(conn, BOB, "channel:engineering")
    assert not _can_read(conn, ALICE, "no-such-topic")


def test_send_writes_a_private_broadcast_row_with_its_id_in_the_payload(
    conn: psycopg.Connection[Any],
) -> None:
    topic = f"t-{uuid.uuid4()}"
    conn.execute("select realtime.send(%s::jsonb, 'ev', %s)", [json.dumps({"n": 1}), topic])
    conn.execute("select realtime.send(%s::jsonb, 'ev2', %s, false)", [json.dumps({"id": "mine"}), topic])
    rows = conn.execute(
        "select event, private, extension, payload, id::text from realtime.messages where topic = %s "
        "order by event",
        [topic],
    ).fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [("ev", True, "broadcast"), ("ev2", False, "broadcast")]
    assert rows[0][3] == {"n": 1, "id": rows[0][4]}
    assert rows[1][3] == {"id": "mine"}


def test_send_refused_by_policy_is_a_warning_not_an_error(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction(force_rollback=True):
        _as(conn, CAROL, "dm:alice-bob")
        conn.execute("select realtime.send('{}'::jsonb, 'x', 'dm:alice-bob')")  # no exception
        conn.execute("reset role")
        row = conn.execute("select count(*) from realtime.messages where event = 'x'").fetchone()
    assert row == (0,)


def test_message_trigger_broadcasts_changes_to_the_channel_topic(conn: psycopg.Connection[Any]) -> None:
    content = f"hello {uuid.uuid4()}"
    conn.execute(
        "insert into public.messages (channel_id, user_id, content) values (4, %s, %s)", [ALICE, content]
    )
    conn.execute("update public.messages set content = content || '!' where content = %s", [content])
    rows = conn.execute(
        "select topic, event, private, payload from realtime.messages "
        "where payload -> 'record' ->> 'content' like %s order by inserted_at, event",
        [content + "%"],
    ).fetchall()
    assert [(t, e, p) for t, e, p, _ in rows] == [
        ("dm:alice-bob", "INSERT", True),
        ("dm:alice-bob", "UPDATE", True),
    ]
    insert, update = rows[0][3], rows[1][3]
    assert {k: insert[k] for k in ("operation", "schema", "table", "old_record")} == {
        "operation": "INSERT", "schema": "public", "table": "messages", "old_record": None,
    }  # fmt: skip
    assert insert["record"]["content"] == content
    assert update["old_record"]["content"] == content
    assert update["record"]["content"] == content + "!"


def test_reaction_typing_and_delete_triggers_broadcast_to_the_channel_topic(
    conn: psycopg.Connection[Any],
) -> None:
    tag = uuid.uuid4().hex[:8]
    row = conn.execute(
        "insert into public.messages (channel_id, user_id, content) values (%s, %s, %s) returning id",
        [DM_ALICE_BOB, ALICE, f"react to me {tag}"],
    ).fetchone()
    assert row is not None
    message_id = row[0]
    conn.execute(
        "insert into public.message_reactions (message_id, user_id, emoji) values (%s, %s, %s)",
        [message_id, BOB, tag],
    )
    conn.execute(
        "delete from public.typing_indicators where channel_id = %s and user_id = %s", [GENERAL, BOB]
    )
    conn.execute("insert into public.typing_indicators (channel_id, user_id) values (%s, %s)", [GENERAL, BOB])
    conn.execute("delete from public.message_reactions where emoji = %s", [tag])
    conn.execute("delete from public.messages where id = %s", [message_id])

    def sent(table: str, key: str, value: Any) -> list[tuple[str, str, bool, Any]]:
        rows = conn.execute(
            "select topic, event, private, payload::text from realtime.messages "
            "where payload ->> 'table' = %s "
            "and coalesce(nullif(payload -> 'record', 'null'), payload -> 'old_record') ->> %s = %s "
            "order by inserted_at",
            [table, key, str(value)],
        ).fetchall()
        return [(t, e, p, json.loads(body)) for t, e, p, body in rows]

    reactions = sent("message_reactions", "emoji", tag)
    assert [(t, e, p) for t, e, p, _ in reactions] == [
        ("dm:alice-bob", "INSERT", True),
        ("dm:alice-bob", "DELETE", True),
    ]
    assert reactions[0][3]["record"]["user_id"] == str(BOB)
    assert (reactions[1][3]["record"], reactions[1][3]["old_record"]["emoji"]) == (None, tag)
    typing = [r for r in sent("typing_indicators", "user_id", BOB) if r[1] == "INSERT"]
    assert typing, "typing indicator INSERT not broadcast"
    topic, _, private, payload = typing[-1]
    assert (topic, private, payload["schema"]) == ("channel:general", True, "public")
    assert payload["record"]["channel_id"] == GENERAL
    deleted = [r for r in sent("messages", "id", message_id) if r[1] == "DELETE"]
    assert [(t, p) for t, _, p, _ in deleted] == [("dm:alice-bob", True)]
    assert deleted[0][3]["record"] is None
    assert deleted[0][3]["old_record"]["content"] == f"react to me {tag}"


def test_send_binary_stores_the_bytes_in_binary_payload(conn: psycopg.Connection[Any]) -> None:
    event = f"bin-{uuid.uuid4().hex[:8]}"
    with conn.transaction():
        _as(conn, ALICE, "dm:alice-bob")
        conn.execute("select realtime.send_binary('\\x00ff'::bytea, %s, 'dm:alice-bob')", [event])
        conn.execute("reset role")
    row = conn.execute(
        "select payload, binary_payload, private, extension from realtime.messages where event = %s", [event]
    ).fetchone()
    assert row == (None, b"\x00\xff", True, "broadcast")
    # refused by policy: a warning, no row (as realtime.send)
    with conn.transaction():
        _as(conn, CAROL, "dm:alice-bob")
        conn.execute("select realtime.send_binary('\\x01'::bytea, %s, 'dm:alice-bob')", [event + "-carol"])
        conn.execute("reset role")
    assert conn.execute(
        "select count(*) from realtime.messages where event = %s", [event + "-carol"]
    ).fetchone() == (0,)
    with pytest.raises(psycopg.errors.CheckViolation, match="messages_payload_exclusive"):
        conn.execute(
            "insert into realtime.messages (topic, extension, payload, binary_payload) "
            "values ('t', 'broadcast', '{}', '\\x00')"
        )


def test_broadcast_changes_refuses_statement_level(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(psycopg.errors.RaiseException, match="only be triggered for each row"):
        conn.execute(
            "select realtime.broadcast_changes('t', 'e', 'INSERT', 'x', 'public', "
            "null::record, null::record, 'STATEMENT')"
        )


def test_grants_and_rls_match_supabase(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(
        "select relrowsecurity from pg_class where oid = 'realtime.messages'::regclass"
    ).fetchone()
    assert row == (True,)
    for role in ("anon", "authenticated", "service_role"):
        for priv in ("SELECT", "INSERT", "UPDATE"):
            got = conn.execute(
                "select has_table_privilege(%s, 'realtime.messages', %s)", [role, priv]
            ).fetchone()
            assert got == (True,), (role, priv)
    for role in ("anon", "authenticated", "service_role"):
        got = conn.execute(
            "select has_function_privilege(%s, %s, 'EXECUTE')",
            [role, "realtime.send_binary(bytea, text, text, boolean)"],
        ).fetchone()
        assert got == (True,), role
    pub = conn.execute(
        "select schemaname, tablename from pg_publication_tables "
        "where pubname = 'supabase_realtime_messages_publication'"
    ).fetchall()
    assert pub == [("realtime", "messages")]
