"""``request.headers`` in Realtime Authorization policies, as Supabase sets it: a websocket's checks see
the ``x-*`` headers of its websocket request (by lower-case name), a REST broadcast's check sees all
of the request's headers. Real stack, raw websocket clients (the official clients cannot add headers
to a websocket request) and httpx for REST.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.polling import eventually, stays
from tests.server.authz_helpers import fresh_topic, stack, unauthorized
from tests.server.rt_helpers import Raw, raw_clients

__all__ = ["stack"]

PASS = "open-sesame"

POLICIES = f"""
CREATE OR REPLACE FUNCTION public.lab_header(name text) RETURNS text
LANGUAGE sql STABLE SET search_path = ''
AS $$ SELECT (nullif(current_setting('request.headers', true), '')::json) ->> name $$;
GRANT EXECUTE ON FUNCTION public.lab_header(text) TO anon, authenticated;
DROP POLICY IF EXISTS lab_header_read ON realtime.messages;
CREATE POLICY lab_header_read ON realtime.messages FOR SELECT TO anon, authenticated
  USING (realtime.topic() LIKE 'hdr-%' AND public.lab_header('x-room-pass') = '{PASS}');
DROP POLICY IF EXISTS lab_header_write ON realtime.messages;
CREATE POLICY lab_header_write ON realtime.messages FOR INSERT TO anon, authenticated
  WITH CHECK (realtime.topic() LIKE 'hdr-%' AND public.lab_header('room-pass') = '{PASS}');
"""


@pytest.fixture(scope="module")
def policies(stack: Any) -> Any:
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute(POLICIES)
    return stack


@pytest.fixture
async def clients(policies: Any) -> AsyncIterator[Any]:
    """``await clients(headers)``: raw websocket clients with the anon key and these request headers."""
    async with raw_clients(policies.server, policies.anon_key) as make:

        async def with_headers(headers: dict[str, str] | None = None) -> Raw:
            return await make(additional_headers=headers or {})

        yield with_headers


def private(token: str) -> dict[str, Any]:
    return {"config": {"private": True}, "access_token": token}


async def test_a_policy_reads_the_websocket_requests_x_headers(policies, clients):
    stack = policies
    topic = fresh_topic("hdr")
    token = stack.token_for("d7c2a1e0-0000-4000-a000-000000000001")
    # a header's name is matched in lower case, whatever case the client wrote it in
    allowed = await clients({"X-Room-Pass": PASS})
    wrong = await clients({"x-room-pass": "guess"})
    none = await clients()
    not_x = await clients({"room-pass": PASS})  # not an x-* header: a websocket check does not see it
    ok = await allowed.join(f"realtime:{topic}", private(token))
    assert ok["payload"]["status"] == "ok", ok
    for refused in (wrong, none, not_x):
        reply = await refused.join(f"realtime:{topic}", private(token))
        assert reply["payload"] == {"status": "error", "response": {"reason": unauthorized(topic)}}


async def test_a_rest_broadcast_check_sees_all_the_requests_headers(policies, clients):
    stack = policies
    topic = fresh_topic("hdr")
    listener = await clients({"x-room-pass": PASS})
    joined = await listener.join(f"realtime:{topic}", private(stack.anon_key))
    assert joined["payload"]["status"] == "ok", joined

    async def post(event: str, headers: dict[str, str]) -> int:
        body = {"messages": [{"topic": topic, "event": event, "payload": {"e": event}, "private": True}]}
        async with httpx.AsyncClient() as http:
            r = await http.post(
                f"{stack.url}/realtime/v1/api/broadcast", json=body,
                headers={"apikey": stack.anon_key, "Authorization": f"Bearer {stack.anon_key}", **headers},
            )  # fmt: skip
        return r.status_code

    assert await post("without", {}) == 202  # accepted and dropped, as Supabase does
    assert await post("wrong", {"room-pass": "guess"}) == 202
    assert await post("with", {"Room-Pass": PASS}) == 202

    def heard() -> list[str]:
        return [m["payload"]["event"] for m in listener.messages("broadcast")]

    await eventually(lambda: heard() == ["with"], what="the REST broadcast the header allows")
    await stays(heard, ["with"], for_s=0.3, what="a refused REST broadcast arriving")
