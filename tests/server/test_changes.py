"""ChangesHub against a real Postgres and the real change capture.

Own tables in schema ``s2`` and publication ``s2_pub`` (not the Harmony schema), a recording
subscriber (a plain class collecting what the hub delivers), changes committed with psycopg.
Negative checks ("nothing delivered") are made deterministic by a probe subscriber: the hub
processes changes in commit order, so once the probe saw a later marker row, the earlier change
has been processed.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import psycopg
import pytest

from harmony_lab.filters import F
from harmony_lab.server.changes import ChangesHub, parse_binding
from tests.polling import eventually

PUB = "s2_pub"
ALICE = "11111111-1111-1111-1111-111111111111"
BOB = "22222222-2222-2222-2222-222222222222"
AUTH_ALICE = {"role": "authenticated", "sub": ALICE}
AUTH_BOB = {"role": "authenticated", "sub": BOB}
SERVICE = {"role": "service_role"}
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UNABLE = "Unable to subscribe to changes with given parameters."
PREFIX = UNABLE + " An exception happened so please check your connect parameters: "
NOT_ENABLED = UNABLE + " Please check Realtime is enabled for the given connect parameters: "
NO_PARAMS = "No subscription params provided. Please provide at least a `schema` or `table` to subscribe to: "

SCHEMA_SQL = """
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM (VALUES ('anon', 'NOLOGIN NOINHERIT'), ('authenticated', 'NOLOGIN NOINHERIT'),
                                 ('service_role', 'NOLOGIN NOINHERIT BYPASSRLS')) AS t(name, attrs)
  LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.name) THEN
      EXECUTE format('CREATE ROLE %I %s', r.name, r.attrs);
    END IF;
  END LOOP;
END $$;
DROP PUBLICATION IF EXISTS s2_pub;
DROP SCHEMA IF EXISTS s2 CASCADE;
CREATE SCHEMA s2;
CREATE TYPE s2.mood AS ENUM ('sad', 'ok', 'happy');
CREATE FUNCTION s2.uid() RETURNS uuid LANGUAGE sql STABLE AS $f$
  SELECT (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')::uuid
$f$;
CREATE TABLE s2.items (
  id bigint PRIMARY KEY, name text, qty int, price numeric, ratio float8, active boolean,
  tag uuid, at timestamptz, day date, mood s2.mood, payload jsonb, flags int[], big text
);
CREATE TABLE s2.full_items (id int PRIMARY KEY, name text, kind text);
ALTER TABLE s2.full_items REPLICA IDENTITY FULL;
CREATE TABLE s2.secret (id int PRIMARY KEY, owner uuid NOT NULL, body text);
ALTER TABLE s2.secret REPLICA IDENTITY FULL;
ALTER TABLE s2.secret ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON s2.secret FOR SELECT TO authenticated USING (owner = s2.uid());
CREATE TABLE s2.cols (id int PRIMARY KEY, public_col text, hidden_col text);
CREATE TABLE s2.nopk (a int, b text);
ALTER TABLE s2.nopk REPLICA IDENTITY FULL;
CREATE TABLE s2.marker (id serial PRIMARY KEY, note text);
CREATE TABLE s2.unpublished (id int PRIMARY KEY);
GRANT USAGE ON SCHEMA s2 TO anon, authenticated, service_role;
GRANT SELECT ON s2.items, s2.full_items, s2.secret, s2.nopk, s2.marker, s2.unpublished
  TO anon, authenticated, service_role;
GRANT SELECT (id, public_col) ON s2.cols TO authenticated;
GRANT SELECT (public_col) ON s2.cols TO anon;
GRANT SELECT ON s2.cols TO service_role;
CREATE PUBLICATION s2_pub FOR TABLE s2.items, s2.full_items, s2.secret, s2.cols, s2.nopk, s2.marker;
"""


@pytest.fixture(scope="module")
def dsn(postgres):
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL)
    return postgres.dsn


class Recorder:
    """A subscriber that records every delivery (what a channel would send to its socket)."""

    def __init__(self, name: str = "room") -> None:
        self.channel_name = name
        self.messages: list[tuple[list[int], dict[str, Any]]] = []
        self._changed = asyncio.Event()

    def deliver(self, ids: list[int], data: dict[str, Any]) -> None:
        self.messages.append((ids, data))
        self._changed.set()

    async def wait(self, n: int = 1) -> list[tuple[list[int], dict[str, Any]]]:
        async with asyncio.timeout(10):
            while len(self.messages) < n:
                self._changed.clear()
                await self._changed.wait()
        return self.messages

    def datas(self, table: str | None = None) -> list[dict[str, Any]]:
        return [d for _ids, d in self.messages if table is None or d["table"] == table]


class Env:
    def __init__(self, hub: ChangesHub, db: psycopg.AsyncConnection, probe: Recorder) -> None:
        self.hub = hub
        self.db = db
        self.probe = probe

    async def sql(self, query: str, *params: Any) -> None:
        await self.db.execute(query, params or None)

    async def settle(self) -> None:
        """Wait until every change committed so far has been processed."""
        before = len(self.probe.messages)
        await self.db.execute("insert into s2.marker (note) values ('sync')")
        await self.probe.wait(before + 1)

    async def sub(
        self, bindings: list[dict[str, Any]], claims: dict[str, Any] | None = None, name: str = "room"
    ):
        rec = Recorder(name)
        err = await self.hub.subscribe(rec, bindings, claims or SERVICE)
        assert err is None, err
        return rec


@pytest.fixture
async def env(dsn):
    hub = ChangesHub(dsn, publication=PUB)
    await hub.start()
    db = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    probe = Recorder("probe")
    assert (
        await hub.subscribe(probe, [{"event": "INSERT", "schema": "s2", "table": "marker"}], SERVICE) is None
    )
    await db.execute(
        "truncate s2.items, s2.full_items, s2.secret, s2.cols, s2.nopk, s2.marker, s2.unpublished"
    )
    try:
        yield Env(hub, db, probe)
    finally:
        await db.close()
        await hub.aclose()


def b(table: str = "items", event: str = "*", filter: str | None = None, **extra: Any) -> dict[str, Any]:
    binding: dict[str, Any] = {"event": event, "schema": "s2", "table": table}
    if filter is not None:
        binding["filter"] = filter
    binding.update(extra)
    return binding


# --------------------------------------------------------------------------------------------
# payloads


async def test_insert_update_delete_payloads(env):
    rec = await env.sub([b()])
    await env.sql(
        "insert into s2.items (id, name, qty, price, ratio, active, tag, at, day, mood, payload, flags)"
        " values (1, 'apple', 3, 1.50, 0.25, true, %s, '2025-01-02 03:04:05.678+00', '2025-01-02',"
        " 'ok', '{\"a\": [1, 2]}', '{1,2}')",
        ALICE,
    )
    await env.sql("update s2.items set qty = 4 where id = 1")
    await env.sql("delete from s2.items where id = 1")
    await rec.wait(3)
    ins, upd, dele = rec.datas()
    bid = ChangesHub.binding_id(b())
    assert [ids for ids, _ in rec.messages] == [[bid]] * 3
    assert [ins["type"], upd["type"], dele["type"]] == ["INSERT", "UPDATE", "DELETE"]
    for data in (ins, upd, dele):
        assert data["schema"] == "s2"
        assert data["table"] == "items"
        assert data["errors"] is None
        assert TS_RE.match(data["commit_timestamp"]), data["commit_timestamp"]
        assert [c["name"] for c in data["columns"]] == [
            "id",
            "name",
            "qty",
            "price",
            "ratio",
            "active",
            "tag",
            "at",
            "day",
            "mood",
            "payload",
            "flags",
            "big",
        ]
        assert {c["name"]: c["type"] for c in data["columns"]}["flags"] == "_int4"
    assert set(ins) == {"schema", "table", "commit_timestamp", "type", "columns", "errors", "record"}
    assert set(upd) == {
        "schema",
        "table",
        "commit_timestamp",
        "type",
        "columns",
        "errors",
        "record",
        "old_record",
    }
    assert set(dele) == {"schema", "table", "commit_timestamp", "type", "columns", "errors", "old_record"}
    assert ins["record"] == {
        "id": 1,
        "name": "apple",
        "qty": 3,
        "price": 1.5,
        "ratio": 0.25,
        "active": True,
        "tag": ALICE,
        "at": "2025-01-02T03:04:05.678+00:00",
        "day": "2025-01-02",
        "mood": "ok",
        "payload": {"a": [1, 2]},
        "flags": [1, 2],
        "big": None,
    }
    assert upd["record"]["qty"] == 4
    assert upd["old_record"] == {"id": 1}  # default replica identity: the key only
    assert dele["old_record"] == {"id": 1}


async def test_truncate_is_never_emitted(env):
    rec = await env.sub([b()])
    await env.sql("insert into s2.items (id) values (1)")
    await env.sql("truncate s2.items")
    await env.settle()
    assert [d["type"] for d in rec.datas()] == ["INSERT"]


# --------------------------------------------------------------------------------------------
# filters


ROW = {
    "id": 7,
    "name": "Apple pie",
    "qty": 10,
    "price": "2.50",
    "ratio": 0.5,
    "active": True,
    "tag": ALICE,
    "at": "2025-06-01 12:00:00+00",
    "day": "2025-06-01",
    "mood": "ok",
}

# (filter, SQL predicate the row must satisfy for the filter to match) — Postgres is the oracle
FILTERS = [
    ("qty=eq.10", "qty = 10"),
    ("qty=neq.10", "qty <> 10"),
    ("qty=lt.11", "qty < 11"),
    ("qty=lte.9", "qty <= 9"),
    ("qty=gt.9", "qty > 9"),
    ("qty=gte.11", "qty >= 11"),
    ("qty=in.(1,10,100)", "qty in (1, 10, 100)"),
    ("qty=in.(1,2)", "qty in (1, 2)"),
    ("qty=not.in.(1,2)", "qty not in (1, 2)"),
    ("qty=isdistinct.10", "qty is distinct from 10"),
    ("qty=not.isdistinct.10", "qty is not distinct from 10"),
    ("price=eq.2.5", "price = 2.5"),
    ("price=gt.2.49", "price > 2.49"),
    ("price=lt.2.5", "price < 2.5"),
    ("ratio=eq.0.5", "ratio = 0.5"),
    ("ratio=gte.0.6", "ratio >= 0.6"),
    ("active=eq.true", "active = true"),
    ("active=is.true", "active is true"),
    ("active=is.false", "active is false"),
    ("active=not.is.true", "active is not true"),
    ("name=eq.Apple pie", "name = 'Apple pie'"),
    ("name=neq.apple pie", "name <> 'apple pie'"),
    ("name=like.Apple%", "name like 'Apple%'"),
    ("name=like.apple%", "name like 'apple%'"),
    ("name=ilike.apple%", "name ilike 'apple%'"),
    ("name=ilike.%PIE", "name ilike '%PIE'"),
    ("name=not.like.A_ple%", "name not like 'A_ple%'"),
    ("name=match.^A.*e$", "name ~ '^A.*e$'"),
    ("name=match.^a", "name ~ '^a'"),
    ("name=imatch.^a", "name ~* '^a'"),
    ("name=match.[[:alpha:]]+ pie", "name ~ '[[:alpha:]]+ pie'"),
    ("name=lt.B", "name < 'B'"),
    ("name=gt.B", "name > 'B'"),
    (f"tag=eq.{ALICE.upper()}", f"tag = '{ALICE}'"),
    (f"tag=neq.{BOB}", f"tag <> '{BOB}'"),
    ("at=eq.2025-06-01T14:00:00+02:00", "at = '2025-06-01T14:00:00+02:00'"),
    ("at=gt.2025-06-01", "at > '2025-06-01'"),
    ("at=lt.2025-06-01 11:00:00-02", "at < '2025-06-01 11:00-02'"),
    ("day=eq.2025-06-01", "day = '2025-06-01'"),
    ("day=lt.infinity", "day < 'infinity'"),
    ("mood=gt.sad", "mood > 'sad'"),
    ("mood=eq.happy", "mood = 'happy'"),
    ("mood=in.(sad,ok)", "mood in ('sad','ok')"),
    ("big=is.null", "big is null"),
    ("big=not.is.null", "big is not null"),
    ("big=eq.x", "big = 'x'"),
    ("big=not.eq.x", "not (big = 'x')"),
    ("big=isdistinct.x", "big is distinct from 'x'"),
    ("qty=gt.5,name=like.A%", "qty > 5 and name like 'A%'"),
    ("qty=gt.5,name=like.B%", "qty > 5 and name like 'B%'"),
    ("id=eq.7,id=gt.6,mood=neq.sad", "id = 7 and id > 6 and mood <> 'sad'"),
]


async def test_every_operator_by_type_matches_postgres(env):
    bindings = [b(event="INSERT", filter=f) for f, _ in FILTERS]
    ids = {ChangesHub.binding_id(bb): f for bb, (f, _) in zip(bindings, FILTERS, strict=True)}
    assert len(ids) == len(FILTERS)
    rec = await env.sub(bindings)
    cols = list(ROW)
    await env.sql(
        f"insert into s2.items ({', '.join(cols)}) values ({', '.join(['%s'] * len(cols))})", *ROW.values()
    )
    await rec.wait(1)
    await env.settle()
    assert len(rec.messages) == 1  # one message per change, all matching ids in it
    got = {ids[i] for i in rec.messages[0][0]}
    want = set()
    for f, predicate in FILTERS:
        cur = await env.db.execute(f"select exists(select 1 from s2.items where id = 7 and ({predicate}))")
        if (await cur.fetchone())[0]:
            want.add(f)
    assert got == want
    assert "qty=eq.10" in got  # sanity: both outcomes occur
    assert "qty=neq.10" not in got


async def test_sql_fallback_types_jsonb_and_arrays(env):
    json_filter = str(F.eq("payload", '{"a": [1, 2]}'))
    assert json_filter == 'payload=eq."{\\"a\\": [1, 2]}"'
    rec = await env.sub(
        [
            b(event="INSERT", filter=json_filter),
            b(event="INSERT", filter=str(F.eq("flags", "{1,2}"))),
            b(event="INSERT", filter=str(F.neq("flags", "{1,2}"))),
        ]
    )
    await env.sql("insert into s2.items (id, payload, flags) values (1, '{\"a\": [1, 2]}', '{1,2}')")
    await rec.wait(1)
    await env.settle()
    assert sorted(rec.messages[0][0]) == sorted(
        [
            ChangesHub.binding_id(b(event="INSERT", filter=json_filter)),
            ChangesHub.binding_id(b(event="INSERT", filter=str(F.eq("flags", "{1,2}")))),
        ]
    )
    assert env.hub.stats["sql_filter_checks"] >= 2


async def test_event_filtering_is_case_insensitive_and_unknown_means_all(env):
    ins = await env.sub([b(event="insert")], name="ins")
    upd = await env.sub([b(event="UPDATE")], name="upd")
    odd = await env.sub([b(event="whatever")], name="odd")
    await env.sql("insert into s2.items (id, qty) values (1, 1)")
    await env.sql("update s2.items set qty = 2 where id = 1")
    await env.sql("delete from s2.items where id = 1")
    await env.settle()
    assert [d["type"] for d in ins.datas()] == ["INSERT"]
    assert [d["type"] for d in upd.datas()] == ["UPDATE"]
    assert [d["type"] for d in odd.datas()] == ["INSERT", "UPDATE", "DELETE"]


async def test_one_message_lists_all_matching_bindings(env):
    bindings = [
        b(),
        b(event="INSERT"),
        b(event="INSERT", filter="qty=gt.0"),
        b(event="INSERT", filter="qty=lt.0"),
    ]
    rec = await env.sub(bindings)
    await env.sql("insert into s2.items (id, qty) values (1, 5)")
    await env.settle()
    assert len(rec.messages) == 1
    assert rec.messages[0][0] == [ChangesHub.binding_id(x) for x in bindings[:3]]


async def test_select_limits_columns_to_selected_and_pk(env):
    rec = await env.sub([b(select=["name"])])
    await env.sql("insert into s2.items (id, name, qty) values (1, 'a', 2)")
    await env.sql("update s2.items set name = 'b' where id = 1")
    await env.settle()
    ins, upd = rec.datas()
    assert [c["name"] for c in ins["columns"]] == ["id", "name"]
    assert ins["record"] == {"id": 1, "name": "a"}
    assert upd["record"] == {"id": 1, "name": "b"}
    assert upd["old_record"] == {"id": 1}


# --------------------------------------------------------------------------------------------
# DELETE semantics


async def test_delete_default_identity_non_pk_filter_misses(env):
    by_pk = await env.sub([b(event="DELETE", filter="id=eq.1")], name="pk")
    by_name = await env.sub([b(event="DELETE", filter="name=eq.a")], name="name")
    await env.sql("insert into s2.items (id, name) values (1, 'a')")
    await env.sql("delete from s2.items where id = 1")
    await env.settle()
    assert [d["old_record"] for d in by_pk.datas()] == [{"id": 1}]
    assert by_name.datas() == []


async def test_delete_full_identity_filters_and_full_old_record(env):
    rec = await env.sub([b("full_items", event="DELETE", filter="kind=eq.x")])
    upd = await env.sub([b("full_items", event="UPDATE")], name="upd")
    await env.sql("insert into s2.full_items values (1, 'one', 'x'), (2, 'two', 'y')")
    await env.sql("update s2.full_items set name = 'uno' where id = 1")
    await env.sql("delete from s2.full_items")
    await env.settle()
    assert [d["old_record"] for d in rec.datas()] == [{"id": 1, "name": "uno", "kind": "x"}]
    assert upd.datas()[0]["old_record"] == {"id": 1, "name": "one", "kind": "x"}


# --------------------------------------------------------------------------------------------
# RLS, privileges, errors


async def test_rls_member_sees_non_member_does_not(env):
    alice = await env.sub([b("secret")], AUTH_ALICE, name="alice")
    bob = await env.sub([b("secret")], AUTH_BOB, name="bob")
    svc = await env.sub([b("secret")], SERVICE, name="svc")
    anon = await env.sub([b("secret")], {"role": "anon"}, name="anon")
    # RLS looks the row up by key when the change is processed (like Supabase): settle in between
    await env.sql("insert into s2.secret values (1, %s, 'for alice')", ALICE)
    await env.settle()
    await env.sql("update s2.secret set body = 'still alice' where id = 1")
    await env.settle()
    await env.sql("delete from s2.secret where id = 1")
    await env.settle()
    assert [d["type"] for d in alice.datas()] == ["INSERT", "UPDATE", "DELETE"]
    assert alice.datas()[0]["record"]["body"] == "for alice"
    assert [d["type"] for d in svc.datas()] == ["INSERT", "UPDATE", "DELETE"]
    # DELETEs skip RLS, but are cut to the primary key when RLS is on (even with FULL identity)
    assert [d["type"] for d in bob.datas()] == ["DELETE"]
    assert [d["type"] for d in anon.datas()] == ["DELETE"]
    assert bob.datas()[0]["old_record"] == {"id": 1}
    assert svc.datas()[-1]["old_record"] == {"id": 1}


async def test_identical_claims_share_one_rls_query(env):
    recs = [await env.sub([b("secret")], AUTH_ALICE, name=f"a{i}") for i in range(5)]
    before = env.hub.stats["rls_queries"]
    await env.sql("insert into s2.secret values (1, %s, 'x')", ALICE)
    await env.settle()
    assert all(len(r.datas()) == 1 for r in recs)
    assert env.hub.stats["rls_queries"] - before == 1
    assert len({id(r.datas()[0]) for r in recs}) == 1  # one data object shared


async def test_claims_update_changes_visibility(env):
    rec = await env.sub([b("secret", event="INSERT")], AUTH_BOB)
    await env.sql("insert into s2.secret values (1, %s, 'x')", ALICE)
    await env.settle()
    assert rec.datas() == []
    assert await env.hub.update_claims(rec, AUTH_ALICE) is None
    await env.sql("insert into s2.secret values (2, %s, 'y')", ALICE)
    await env.settle()
    assert [d["record"]["id"] for d in rec.datas()] == [2]


async def test_column_privileges_limit_columns_and_missing_pk_gives_401(env):
    auth = await env.sub([b("cols")], AUTH_ALICE, name="auth")
    anon = await env.sub([b("cols")], {"role": "anon"}, name="anon")
    await env.sql("insert into s2.cols values (1, 'pub', 'secret')")
    await env.sql("delete from s2.cols where id = 1")
    await env.settle()
    ins = auth.datas()[0]
    assert [c["name"] for c in ins["columns"]] == ["id", "public_col"]
    assert ins["record"] == {"id": 1, "public_col": "pub"}
    err = anon.datas()[0]
    assert err == {
        "schema": "s2",
        "table": "cols",
        "commit_timestamp": None,
        "type": "INSERT",
        "columns": [],
        "errors": ["Error 401: Unauthorized"],
        "record": {},
    }
    # DELETE: no 401 check; anon sees no key column, so the old record is empty
    assert anon.datas()[1]["type"] == "DELETE"
    assert anon.datas()[1]["old_record"] == {}


async def test_table_without_primary_key_gets_error_400(env):
    rec = await env.sub([b("nopk", filter="a=eq.999")])
    await env.sql("insert into s2.nopk values (1, 'x')")
    await env.sql("update s2.nopk set b = 'y'")
    await env.settle()
    assert [d["errors"] for d in rec.datas()] == [["Error 400: Bad Request, no primary key"]] * 2
    assert rec.datas()[0] == {
        "schema": "s2",
        "table": "nopk",
        "commit_timestamp": None,
        "type": "INSERT",
        "columns": [],
        "errors": ["Error 400: Bad Request, no primary key"],
        "record": {},
    }
    assert rec.datas()[1]["old_record"] == {}


async def test_oversize_record_gets_413_and_small_values_only(dsn):
    hub = ChangesHub(dsn, publication=PUB, max_record_bytes=2000)
    await hub.start()
    try:
        rec = Recorder()
        assert await hub.subscribe(rec, [b(event="INSERT")], SERVICE) is None
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as db:
            await db.execute("insert into s2.items (id, name, big) values (99, 'small', repeat('x', 5000))")
        await rec.wait(1)
        data = rec.datas()[0]
        assert data["errors"] == ["Error 413: Payload Too Large"]
        assert data["record"]["name"] == "small"
        assert "big" not in data["record"]
        assert TS_RE.match(data["commit_timestamp"])
    finally:
        await hub.aclose()


async def test_unchanged_toast_values_are_filled(env):
    rec = await env.sub([b(event="UPDATE")])
    await env.sql(
        "insert into s2.items (id, name, big)"
        " select 1, 'a', string_agg(md5(i::text), '') from generate_series(1, 800) i"
    )
    await env.sql("update s2.items set name = 'b' where id = 1")
    await env.settle()
    cur = await env.db.execute("select big from s2.items where id = 1")
    big = (await cur.fetchone())[0]
    assert len(big) > 20000
    (data,) = rec.datas()
    assert data["record"]["name"] == "b"
    assert data["record"]["big"] == big
    assert env.hub.stats["toast_fetches"] == 1


# --------------------------------------------------------------------------------------------
# subscribe errors (exact real-server messages)


async def test_table_not_in_publication(env):
    rec = Recorder()
    err = await env.hub.subscribe(rec, [{"event": "*", "schema": "s2", "table": "unpublished"}], SERVICE)
    assert err == (NOT_ENABLED + "[event: *, schema: s2, table: unpublished, filters: [], select: nil]")
    err = await env.hub.subscribe(
        rec, [{"event": "INSERT", "schema": "public", "table": "x", "filter": "id=eq.1"}], SERVICE
    )
    assert err == (
        NOT_ENABLED + '[event: INSERT, schema: public, table: x, filters: [{"id", "eq", "1", false}], '
        "select: nil]"
    )


@pytest.mark.parametrize(
    ("binding", "message"),
    [
        (b(filter="subject=foo.hey"), 'Error parsing `filter` params: ["foo", "hey"]'),
        (b(filter="undefined"), 'Error parsing `filter` params: ["undefined"]'),
        (
            b(filter="id=in.1,2"),
            "Error parsing `filter` params: `in` filter value must be wrapped by parentheses",
        ),
        (
            {},
            NO_PARAMS + "%{}",
        ),
        (
            {"event": "*", "schema": "s2", "table": "items", "filter": None},
            NO_PARAMS + '%{"event" => "*", "filter" => nil, "schema" => "s2", "table" => "items"}',
        ),
        (
            b(select="name"),
            "Error parsing `select` params: expected a list of column name strings, "
            'e.g. select: ["col1", "col2"]',
        ),
        (
            {"schema": "s2", "select": ["name"]},
            "Column selection is not supported for wildcard subscriptions. "
            "Provide an explicit schema and table name.",
        ),
    ],
)
async def test_parse_errors(env, binding, message):
    assert await env.hub.subscribe(Recorder(), [binding], SERVICE) == message


@pytest.mark.parametrize(
    ("filter", "exception"),
    [
        ("nope=eq.1", "ERROR P0001 (raise_exception) invalid column for filter nope"),
        (
            "qty=eq.abc",
            'ERROR 22P02 (invalid_text_representation) invalid input syntax for type integer: "abc"',
        ),
        (
            "active=eq.maybe",
            'ERROR 22P02 (invalid_text_representation) invalid input syntax for type boolean: "maybe"',
        ),
        (
            "qty=is.true",
            "ERROR P0001 (raise_exception) is true filter requires a boolean column, got integer",
        ),
        (
            "name=match.(",
            "ERROR P0001 (raise_exception) invalid regular expression for match filter: "
            "invalid regular expression: parentheses () not balanced",
        ),
        # the column's type is checked before the pattern, as subscription_check_filters does
        (
            "qty=match.(",
            "ERROR P0001 (raise_exception) operator match requires a text-compatible column type, "
            "got integer",
        ),
        (
            "payload=imatch.x",
            "ERROR P0001 (raise_exception) operator imatch requires a text-compatible column type, got jsonb",
        ),
        (
            "tag=ilike.a%",
            "ERROR P0001 (raise_exception) operator ilike requires a text-compatible column type, got uuid",
        ),
        (
            "qty=like.1%",
            "ERROR P0001 (raise_exception) operator like requires a text-compatible column type, got integer",
        ),
        (
            "flags=like.x",
            "ERROR P0001 (raise_exception) operator like requires a text-compatible column type, "
            "got integer[]",
        ),
    ],
)
async def test_check_errors(env, filter, exception):
    err = await env.hub.subscribe(Recorder(), [b(filter=filter)], SERVICE)
    assert err is not None
    assert err.startswith(PREFIX + "[event: *, schema: s2, table: items, filters: [")
    assert "Exception: " + exception in err, err


async def test_column_not_selectable_by_role_is_invalid_column(env):
    err = await env.hub.subscribe(Recorder(), [b("cols", filter="hidden_col=eq.x")], AUTH_ALICE)
    assert err.endswith("Exception: ERROR P0001 (raise_exception) invalid column for filter hidden_col")
    err = await env.hub.subscribe(Recorder(), [b("cols", select=["hidden_col"])], AUTH_ALICE)
    assert err.endswith("Exception: ERROR P0001 (raise_exception) invalid column for select hidden_col")
    assert await env.hub.subscribe(Recorder(), [b("cols", filter="hidden_col=eq.x")], SERVICE) is None


async def test_too_many_in_values(env):
    values = ",".join(str(i) for i in range(101))
    err = await env.hub.subscribe(Recorder(), [b(filter=f"qty=in.({values})")], SERVICE)
    assert err.endswith(
        "Exception: ERROR P0001 (raise_exception) too many values for `in` filter. Maximum 100"
    )


async def test_failed_subscribe_registers_nothing_and_keeps_earlier_bindings(env):
    rec = await env.sub([b(event="INSERT")])
    err = await env.hub.subscribe(rec, [b(event="UPDATE"), b(filter="nope=eq.1")], SERVICE)
    assert err is not None
    await env.sql("insert into s2.items (id) values (1)")
    await env.sql("update s2.items set qty = 1")
    await env.settle()
    assert [d["type"] for d in rec.datas()] == ["INSERT"]


async def test_wildcards_use_like_semantics(env):
    rec = await env.sub([{"event": "INSERT", "schema": "s2"}], name="schema-only")
    like = await env.sub([{"event": "INSERT", "schema": "s2", "table": "full%"}], name="like")
    await env.sql("insert into s2.items (id) values (1)")
    await env.sql("insert into s2.full_items (id) values (1)")
    await env.settle()
    assert [d["table"] for d in rec.datas()] == ["items", "full_items", "marker"]
    assert [d["table"] for d in like.datas()] == ["full_items"]


# --------------------------------------------------------------------------------------------
# fan-out and robustness


async def test_one_capture_feeds_many_subscribers(env):
    recs = [await env.sub([b(event="INSERT", filter=f"qty=eq.{i % 2}")], name=f"r{i}") for i in range(40)]
    before = env.hub.stats["changes"]
    await env.sql("insert into s2.items (id, qty) values (1, 0), (2, 1)")
    await env.settle()
    assert env.hub.stats["changes"] - before == 3  # two rows + the probe marker, processed once each
    for i, rec in enumerate(recs):
        assert [d["record"]["id"] for d in rec.datas()] == [1 if i % 2 == 0 else 2]
    shared = {id(r.datas()[0]) for r in recs[::2]}
    assert len(shared) == 1


class Exploding(Recorder):
    def deliver(self, ids, data):
        raise RuntimeError("subscriber bug")


async def test_a_failing_subscriber_does_not_hurt_others(env):
    bad = Exploding("bad")
    assert await env.hub.subscribe(bad, [b()], SERVICE) is None
    good = await env.sub([b()], name="good")
    await env.sql("insert into s2.items (id) values (1)")
    await env.settle()
    assert len(good.datas()) == 1
    assert env.hub.stats["deliver_errors"] == 1


async def test_unsubscribe_stops_delivery(env):
    rec = await env.sub([b()])
    env.hub.unsubscribe(rec)
    env.hub.unsubscribe(rec)  # idempotent
    await env.sql("insert into s2.items (id) values (1)")
    await env.settle()
    assert rec.datas() == []


# --------------------------------------------------------------------------------------------
# pure parts


def test_binding_id_is_deterministic_nonzero_and_in_range():
    ids = {ChangesHub.binding_id({"event": "*", "schema": "public", "table": f"t{i}"}) for i in range(2000)}
    assert len(ids) == 2000
    assert all(1 <= i < 2**27 for i in ids)
    a = ChangesHub.binding_id({"event": "*", "schema": "public", "table": "x"})
    assert a == ChangesHub.binding_id({"table": "x", "schema": "public", "event": "*"})
    assert a == ChangesHub.binding_id({"table": "x", "schema": "public", "event": "*", "id": 5})
    assert a != ChangesHub.binding_id({"event": "INSERT", "schema": "public", "table": "x"})


def test_parse_binding_defaults():
    p = parse_binding({"table": "todos"})
    assert (p.schema, p.table, p.event, p.conditions, p.select) == ("public", "todos", "*", (), None)
    p = parse_binding({"schema": "public"})
    assert (p.schema, p.table) == ("public", "*")
    p = parse_binding({"event": "delete", "schema": "a", "table": "b", "filter": "  "})
    assert (p.event, p.conditions) == ("DELETE", ())
    p = parse_binding({"schema": "a", "table": "b", "select": ["x", 1, None]})
    assert p.select == ("x",)


def test_user_token_in_binding_is_redacted():
    from harmony_lab.server.changes import BindingError

    with pytest.raises(BindingError, match="<redacted>"):
        parse_binding({"user_token": "secret"})


def test_constructor_validates():
    with pytest.raises(TypeError, match="dsn"):
        ChangesHub("")
    with pytest.raises(ValueError, match="max_record_bytes"):
        ChangesHub("postgresql://x", max_record_bytes=0)


async def test_capture_reconnect_is_survived(env):
    rec = await env.sub([b(event="INSERT")])
    slot = env.hub.stats["capture"]["slot"]
    cur = await env.db.execute("select active_pid from pg_replication_slots where slot_name = %s", (slot,))
    (pid,) = await cur.fetchone()
    await env.sql("select pg_terminate_backend(%s)", pid)
    await eventually(
        lambda: env.hub.stats["capture_reconnects"] >= 1, within=30, what="the capture to reconnect"
    )
    assert env.hub.stats["capture_reconnects"] == 1
    await env.sql("insert into s2.items (id) values (42)")
    await rec.wait(1)
    assert rec.datas()[0]["record"]["id"] == 42
