"""What held up in the red-team pass must stay: every token is verified, on every path, every time.

The attacks: a socket, a REST broadcast and an admin call with no key, garbage, a token signed with
another secret, an unsigned ``alg=none`` token, a ``service_role`` token forged either way, and an
expired one; and the same tokens pushed as a refresh (``access_token``) onto a joined channel. Every
one is refused with the real server's wording, nothing of a refused request is delivered or applied,
and a genuine refresh keeps a channel open past its first token's expiry.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.polling import eventually, stays
from tests.server.rt_helpers import ANON, SERVICE, raw_factory, token

OTHER_SECRET = "another-projects-secret-at-least-32-chars"


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned(role: str, *, signature: str = "") -> str:
    """An ``alg=none`` token: no signature, claims of the attacker's choosing."""
    claims = {"role": role, "exp": int(time.time()) + 3600, "iss": "supabase"}
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.{signature}"


SIGNATURE = "Failed to validate JWT signature"
MALFORMED = "The token provided is not a valid JWT"

# name -> (make the token, the handshake's error); made when the test runs, so expiry is exact
BAD_TOKENS: dict[str, tuple[Callable[[], str], set[str]]] = {
    "garbage": (lambda: "not.a.jwt", {MALFORMED}),
    "wrong-secret": (lambda: token("authenticated", secret=OTHER_SECRET, sub="u"), {SIGNATURE}),
    "forged-service-role": (lambda: token("service_role", secret=OTHER_SECRET), {SIGNATURE}),
    "alg-none-service-role": (lambda: unsigned("service_role"), {SIGNATURE, MALFORMED}),
    "alg-none-with-a-signature": (lambda: unsigned("service_role", signature="c2ln"), {SIGNATURE, MALFORMED}),
    "expired-service-role": (
        lambda: token("service_role", expires_in=-30),
        {f"Token has expired {n} seconds ago" for n in (30, 31, 32)},
    ),
}


async def handshake_error(url: str) -> tuple[int, dict[str, str]]:
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(url):
            pass
    return info.value.response.status_code, json.loads(info.value.response.body)


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
async def test_a_socket_with_a_bad_token_is_refused(server, name):
    make, messages = BAD_TOKENS[name]
    status, body = await handshake_error(f"{server.ws_url}/websocket?apikey={make()}&vsn=2.0.0")
    assert status == 401
    assert body["error"] in messages, body
    status, body = await handshake_error(f"{server.ws_url}/websocket?vsn=2.0.0")
    assert (status, body) == (401, {"error": "API key is missing"})
    assert server.connection_count == 0


async def test_forged_tokens_get_no_admin_call_and_no_rest_broadcast(server):
    async with raw_factory(server)(vsn="2.0.0") as listener, httpx.AsyncClient(base_url=server.url) as http:
        assert (await listener.join("realtime:room"))["payload"]["status"] == "ok"
        for name, (make, _) in sorted(BAD_TOKENS.items()):
            forged = make()
            for headers in ({"apikey": forged}, {"Authorization": f"Bearer {forged}", "apikey": forged}):
                r = await http.post("/admin/v1/faults/stall", json={"seconds": 60}, headers=headers)
                assert r.status_code == 401, (name, r.status_code, r.text)
                r = await http.post(
                    "/realtime/v1/api/broadcast/room/events/e", json={"from": name}, headers=headers
                )
                assert r.status_code == 401, (name, r.status_code, r.text)
        r = await http.post("/admin/v1/faults/stall", json={"seconds": 60}, headers={"apikey": ANON})
        assert r.status_code == 403, r.text  # a genuine token of the wrong role
        history = await http.get("/admin/v1/faults", headers={"apikey": SERVICE})
        assert history.status_code == 200
        assert history.json()["history"] == []  # no forged call was applied
        ok = await http.post(
            "/realtime/v1/api/broadcast/room/events/e", json={"from": "anon"}, headers={"apikey": ANON}
        )
        assert ok.status_code == 202
        await eventually(lambda: listener.messages("broadcast"), 5, what="the genuine broadcast")
        await stays(lambda: len(listener.messages("broadcast")), 1, for_s=0.3, what="only the genuine one")
        assert listener.messages("broadcast")[0]["payload"]["payload"] == {"from": "anon"}


@pytest.mark.parametrize("name", ["wrong-secret", "forged-service-role", "alg-none-service-role"])
async def test_a_forged_refresh_closes_the_channel(server, name):
    make, messages = BAD_TOKENS[name]
    async with raw_factory(server)(vsn="2.0.0") as c:
        j = await c.join("realtime:room", {"config": {}, "access_token": token("authenticated", sub="u")})
        assert j["payload"]["status"] == "ok"
        await c.send("realtime:room", "access_token", {"access_token": make()}, c.ref(), j["ref"])
        system = await c.expect("system", "realtime:room")
        assert system["payload"]["status"] == "error"
        assert system["payload"]["message"] in messages, system
        assert (await c.expect("phx_close", "realtime:room"))["join_ref"] == j["ref"]
        assert server.registry.topics() == []  # the channel is gone, not re-authorised


async def test_a_genuine_refresh_outlives_the_first_token(server):
    async with raw_factory(server)(vsn="2.0.0") as kept, raw_factory(server)(vsn="2.0.0") as lapsed:
        short = token("authenticated", expires_in=2, sub="u")
        jk = await kept.join("realtime:room", {"config": {}, "access_token": short})
        jl = await lapsed.join("realtime:room", {"config": {}, "access_token": short})
        assert jk["payload"]["status"] == jl["payload"]["status"] == "ok"
        fresh = token("authenticated", expires_in=3600, sub="u")
        await kept.send("realtime:room", "access_token", {"access_token": fresh}, kept.ref(), jk["ref"])
        # the channel that did not refresh is closed when its token expires...
        system = await lapsed.expect("system", "realtime:room", within=6)
        assert system["payload"]["message"].startswith("Token has expired"), system
        # ...while the refreshed one stays open and keeps receiving
        await stays(lambda: kept.messages("system") + kept.messages("phx_close"), [], for_s=0.5)
        async with httpx.AsyncClient(base_url=server.url) as http:
            r = await http.post(
                "/realtime/v1/api/broadcast/room/events/e", json={"n": 1}, headers={"apikey": ANON}
            )
            assert r.status_code == 202
        await eventually(lambda: kept.messages("broadcast"), 5, what="a broadcast after the first expiry")
