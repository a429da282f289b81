"""postgres_changes end to end: LocalRealtime (Postgres + Harmony schema + hub + server) and the
unmodified official clients (realtime-py ``AsyncRealtimeClient``, supabase-py ``acreate_client``).

Negative checks ("Bob does not get it") are made deterministic with a later change both clients
receive: changes reach a socket in commit order.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates
from supabase import acreate_client

from harmony_lab.filters import F
from harmony_lab.local.schema import ALICE, BOB, ENGINEERING, GENERAL
from harmony_lab.local.stack import LocalRealtime
from tests.polling import eventually

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def rt() -> Any:
    stack = LocalRealtime().start()
    try:
        yield stack
    finally:
        stack.stop()


class Client:
    """A realtime-py client signed in as one user, with one channel on ``messages``."""

    def __init__(self, rt: Any, user: uuid.UUID | None) -> None:
        self.rt = rt
        self.user = user
        self.client = AsyncRealtimeClient(rt.ws_url, token=rt.anon_key, auto_reconnect=False)
        self.changes: list[dict[str, Any]] = []
        self.states: list[tuple[Any, Any]] = []
        self.systems: list[Any] = []

    async def open(self, topic: str, bindings: list[dict[str, Any]]) -> Any:
        await self.client.connect()
        if self.user is not None:
            await self.client.set_auth(self.rt.token_for(str(self.user)))
        ch = self.client.channel(topic)
        for binding in bindings:
            ch.on_postgres_changes(callback=self.changes.append, **binding)
        ch.on_system(self.systems.append)
        await ch.subscribe(lambda s, e: self.states.append((s, e)))
        return ch

    def contents(self) -> list[str]:
        return [c["data"].get("record", {}).get("content") for c in self.changes]

    async def close(self) -> None:
        await self.client.close()


async def post(rt: Any, channel_id: int, user: uuid.UUID, content: str) -> int:
    rows = await rt.execute(
        "insert into public.messages (channel_id, user_id, content) values (%s, %s, %s) returning id",
        channel_id,
        user,
        content,
    )
    return int(rows[0][0])


async def test_member_sees_non_member_does_not(rt):
    alice, bob = Client(rt, ALICE), Client(rt, BOB)
    try:
        for c in (alice, bob):
            await c.open("rls", [{"event": "INSERT", "table": "messages"}])
            await eventually(lambda c=c: c.systems, within=10)
            assert c.states[0][0] == RealtimeSubscribeStates.SUBSCRIBED
            assert c.systems[0].message == "Subscribed to PostgreSQL"
        tag = uuid.uuid4().hex[:8]
        await post(rt, ENGINEERING, ALICE, f"eng {tag}")  # Bob is not in #engineering
        await post(rt, GENERAL, ALICE, f"general {tag}")  # everyone is in #general
        await eventually(lambda: f"general {tag}" in bob.contents(), within=10)
        await eventually(lambda: f"general {tag}" in alice.contents(), within=10)
        assert f"eng {tag}" not in bob.contents()
        assert alice.contents()[-2:] == [f"eng {tag}", f"general {tag}"]
        data = alice.changes[-1]["data"]
        assert data["errors"] is None
        assert TS_RE.match(data["commit_timestamp"])
        assert [c["name"] for c in data["columns"]][:3] == ["id", "channel_id", "user_id"]
        assert alice.changes[-1]["ids"]
    finally:
        await alice.close()
        await bob.close()


async def test_filters_with_operators_and_events(rt):
    alice = Client(rt, ALICE)
    tag = uuid.uuid4().hex[:8]
    like = str(F.like("content", f"{tag}%") & F.in_("channel_id", [GENERAL, ENGINEERING]))
    try:
        await alice.open(
            "filters",
            [
                {"event": "INSERT", "table": "messages", "filter": like},
                {"event": "UPDATE", "table": "messages", "filter": f"content=imatch.^{tag} EDITED"},
                {"event": "DELETE", "table": "messages", "filter": "id=gt.0"},
            ],
        )
        await eventually(lambda: alice.systems, within=10)
        await post(rt, GENERAL, ALICE, f"other {tag}")  # does not match the like filter
        mid = await post(rt, GENERAL, ALICE, f"{tag} hello")
        # RLS is checked against the row as it is when the change is processed (as on Supabase), so
        # each step waits for the previous delivery: a row deleted first would hide its INSERT/UPDATE.
        await eventually(lambda: len(alice.changes) >= 1, within=10)
        await rt.execute("update public.messages set content = %s where id = %s", f"{tag} edited", mid)
        await eventually(lambda: len(alice.changes) >= 2, within=10)
        await rt.execute("delete from public.messages where id = %s", mid)
        await eventually(lambda: len(alice.changes) >= 3, within=10)
        types = [c["data"]["type"] for c in alice.changes]
        assert types == ["INSERT", "UPDATE", "DELETE"]
        ins, upd, dele = (c["data"] for c in alice.changes)
        assert ins["record"]["content"] == f"{tag} hello"
        assert upd["record"]["content"] == f"{tag} edited"
        # messages has REPLICA IDENTITY FULL: the old row is complete
        assert upd["old_record"]["id"] == mid
        assert upd["old_record"]["content"] == f"{tag} hello"
        # messages has RLS: the DELETE is cut to the key even under FULL identity
        assert dele["old_record"] == {"id": mid}
        assert "record" not in dele
    finally:
        await alice.close()


async def test_invalid_filter_is_a_system_error_and_channel_stays_usable(rt):
    alice = Client(rt, ALICE)
    try:
        await alice.open("bad-filter", [{"event": "*", "table": "messages", "filter": "content=foo.bar"}])
        await eventually(
            lambda: any(s == RealtimeSubscribeStates.CHANNEL_ERROR for s, _ in alice.states), within=10
        )
        errors = [e for s, e in alice.states if s == RealtimeSubscribeStates.CHANNEL_ERROR]
        payload = json.loads(str(errors[0]))
        assert payload["extension"] == "postgres_changes"
        assert payload["status"] == "error"
        assert payload["message"] == 'Error parsing `filter` params: ["foo", "bar"]'
        assert payload["channel"] == "bad-filter"
    finally:
        await alice.close()


async def test_table_outside_the_publication_gets_the_real_error(rt):
    await rt.execute("create table if not exists public.e2e_unpublished (id int primary key)")
    alice = Client(rt, ALICE)
    try:
        await alice.open("unpublished", [{"event": "*", "table": "e2e_unpublished"}])
        await eventually(
            lambda: any(s == RealtimeSubscribeStates.CHANNEL_ERROR for s, _ in alice.states), within=10
        )
        error = next(e for s, e in alice.states if s == RealtimeSubscribeStates.CHANNEL_ERROR)
        assert json.loads(str(error))["message"] == (
            "Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the "
            "given connect parameters: [event: *, schema: public, table: e2e_unpublished, filters: [], "
            "select: nil]"
        )
    finally:
        await alice.close()


async def test_access_token_refresh_changes_visibility(rt):
    bob = Client(rt, BOB)
    tag = uuid.uuid4().hex[:8]
    try:
        await bob.open(
            "refresh", [{"event": "INSERT", "table": "messages", "filter": f"content=like.{tag}%"}]
        )
        await eventually(lambda: bob.systems, within=10)
        await post(rt, ENGINEERING, ALICE, f"{tag} 1")
        await post(rt, GENERAL, ALICE, f"{tag} 2")
        await eventually(lambda: f"{tag} 2" in bob.contents(), within=10)
        assert bob.contents() == [f"{tag} 2"]
        # the same socket, now with Alice's token (a member of #engineering)
        await bob.client.set_auth(rt.token_for(str(ALICE)))
        await eventually(lambda: len(bob.systems) >= 2, within=10)  # re-subscribed
        await post(rt, ENGINEERING, ALICE, f"{tag} 3")
        await eventually(lambda: f"{tag} 3" in bob.contents(), within=10)
    finally:
        await bob.close()


async def test_select_and_supabase_py_client(rt):
    sb = await acreate_client(rt.url, rt.anon_key)
    got: list[dict[str, Any]] = []
    systems: list[Any] = []
    tag = uuid.uuid4().hex[:8]
    try:
        await sb.realtime.set_auth(rt.token_for(str(ALICE)))
        ch = sb.realtime.channel("sb-select")
        ch.on_postgres_changes(
            "INSERT", got.append, table="messages", filter=f"content=eq.{tag}", select=["content"]
        )
        ch.on_system(systems.append)
        await ch.subscribe()
        await eventually(lambda: systems, within=10)
        mid = await post(rt, GENERAL, BOB, tag)
        await eventually(lambda: got, within=10)
        data = got[0]["data"]
        assert data["record"] == {"id": mid, "content": tag}
        assert [c["name"] for c in data["columns"]] == ["id", "content"]
    finally:
        await sb.realtime.close()


async def test_numeric_filters_compare_exactly_beyond_float_precision(rt):
    """12345678901234567.1 and .2 are the same float; Postgres (and so Supabase) tells them apart."""
    await rt.execute(
        "create table public.ledger (id bigint primary key, amount numeric(30, 10) not null);"
        "grant select on public.ledger to anon, authenticated;"
        "alter publication supabase_realtime add table public.ledger"
    )
    watcher = Client(rt, ALICE)
    try:
        await watcher.open(
            "ledger",
            [
                {"event": "INSERT", "table": "ledger", "filter": "amount=eq.12345678901234567.1"},
                {"event": "INSERT", "table": "ledger", "filter": "amount=gt.12345678901234567.1"},
                {"event": "INSERT", "table": "ledger", "filter": "amount=in.(98765432109876543.21)"},
            ],
        )
        await eventually(lambda: watcher.systems, within=10)
        await rt.execute(
            "insert into public.ledger values (1, 12345678901234567.1), (2, 12345678901234567.2),"
            " (3, 12345678901234567.0), (4, 98765432109876543.21), (5, 98765432109876543.22)"
        )
        await rt.execute("insert into public.ledger values (6, 1)")  # matches nothing: a fence
        await rt.execute("insert into public.ledger values (7, 99999999999999999.9)")  # gt: the last one
        await eventually(lambda: any(c["data"]["record"]["id"] == 7 for c in watcher.changes), within=10)
        matched: dict[int, set[int]] = {}  # row id → the binding ids its deliveries carried
        for c in watcher.changes:
            matched.setdefault(c["data"]["record"]["id"], set()).update(c["ids"])
        # row 3 (.0) matches nothing; row 1 (.1) only eq; row 2 (.2) only gt; rows 4, 5, 7 are gt,
        # and row 4 (…543.21) is also in the in-list, which …543.22 (row 5) is not
        assert sorted(matched) == [1, 2, 4, 5, 7], matched
        ((eq_id,), (gt_id,)) = matched[1], matched[2]
        (in_id,) = matched[4] - {gt_id}
        assert len({eq_id, gt_id, in_id}) == 3
        assert matched[4] == {gt_id, in_id}
        assert matched[5] == matched[7] == {gt_id}
    finally:
        await watcher.close()
