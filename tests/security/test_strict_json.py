"""The REST and admin APIs accept strict JSON only and always answer with strict JSON.

Python's json module reads ``NaN``, ``Infinity``, ``-Infinity`` and overflowing numbers such as
``1e999`` as floats. Accepted, ``stall {"seconds": Infinity}`` set a fault with no end and the admin
API then answered with ``Infinity`` in its body, which strict parsers (browsers, realtime-js, Jason on
the Elixir side) refuse.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.server.rt_helpers import ANON, SERVICE

NON_FINITE = ["Infinity", "-Infinity", "NaN", "1e999", "-1e999"]


def strict(text: str) -> object:
    def refuse(name: str) -> object:
        raise AssertionError(f"non-strict JSON in a response: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("number", NON_FINITE)
async def test_the_admin_api_refuses_non_finite_numbers(server, number):
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        r = await http.post(
            "/admin/v1/faults/stall",
            content=f'{{"seconds": {number}}}',
            headers={"Authorization": f"Bearer {SERVICE}", "Content-Type": "application/json"},
        )
        assert r.status_code == 400, r.text
        assert "strict JSON" in strict(r.text)["error"]
        assert not server.faults.stalled()
        # a finite value still works, and the answer is strict JSON
        ok = await http.post(
            "/admin/v1/faults/stall", json={"seconds": 0.5}, headers={"Authorization": f"Bearer {SERVICE}"}
        )
        assert ok.status_code == 200, ok.text
        strict(ok.text)
        server.faults.clear()


@pytest.mark.parametrize("number", NON_FINITE)
async def test_rest_broadcast_refuses_non_finite_numbers(server, number):
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        headers = {"apikey": ANON, "Content-Type": "application/json"}
        batch = await http.post(
            "/realtime/v1/api/broadcast",
            content=f'{{"messages": [{{"topic": "room", "event": "e", "payload": {{"x": {number}}}}}]}}',
            headers=headers,
        )
        assert batch.status_code == 400, batch.text
        assert "strict JSON" in strict(batch.text)["error"]
        single = await http.post(
            "/realtime/v1/api/broadcast/room/events/e", content=f'{{"x": {number}}}', headers=headers
        )
        assert single.status_code == 400, single.text
        assert "strict JSON" in strict(single.text)["error"]
        fine = await http.post("/realtime/v1/api/broadcast/room/events/e", json={"x": 1.5}, headers=headers)
        assert fine.status_code == 202
