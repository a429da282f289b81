"""The real server over real sockets with raw frames: handshake, routing, bad input, REST, timers."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from harmony_lab.server import RealtimeServer, ServerLimits
from harmony_lab.server._codec import encode_user_broadcast_push
from tests.polling import eventually
from tests.server.rt_helpers import ANON, SECRET, SERVICE, raw_factory, token


async def handshake_error(url: str, **kw) -> tuple[int, dict]:
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(url, **kw):
            pass
    resp = info.value.response
    return resp.status_code, json.loads(resp.body)


async def test_both_paths_and_default_vsn_is_v1(server, raw):
    for path in ("/realtime/v1/websocket", "/socket/websocket"):
        async with raw(vsn=None, path=path) as c:
            await c.send("phoenix", "heartbeat", {}, None)
            reply = await c.expect("phx_reply")
            ok = {"status": "ok", "response": {}}
            assert reply == {"topic": "phoenix", "event": "phx_reply", "payload": ok, "ref": None}


# keys are made when the test runs (an expired token made at collection time would have aged by then)
_KEYS = {
    "missing": lambda: None,
    "malformed": lambda: "not-a-jwt",
    "expired": lambda: token(expires_in=-10),
    "foreign": lambda: token(secret="some-other-secret-some-other-secret"),
}


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("missing", "API key is missing"),
        ("malformed", "The token provided is not a valid JWT"),
        ("expired", "Token has expired 10 seconds ago"),
        ("foreign", "Failed to validate JWT signature"),
    ],
)
async def test_handshake_401_json(server, key, message):
    apikey = _KEYS[key]()
    q = f"?apikey={apikey}" if apikey else ""
    status, body = await handshake_error(f"ws://127.0.0.1:{server.port}/realtime/v1/websocket{q}")
    assert status == 401
    assert body["error"] in (message, message.replace("10 seconds", "11 seconds"))


async def test_x_api_key_header_takes_precedence(server):
    url = f"ws://127.0.0.1:{server.port}/realtime/v1/websocket?apikey={ANON}"
    status, body = await handshake_error(url, additional_headers={"x-api-key": "bad"})
    assert (status, body) == (401, {"error": "The token provided is not a valid JWT"})
    url = f"ws://127.0.0.1:{server.port}/realtime/v1/websocket"
    async with websockets.connect(url, additional_headers={"x-api-key": ANON}) as ws:
        await ws.send(json.dumps({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "1"}))
        assert json.loads(await ws.recv())["ref"] == "1"


async def test_unsupported_vsn_and_unknown_paths(server):
    status, body = await handshake_error(
        f"ws://127.0.0.1:{server.port}/socket/websocket?apikey={ANON}&vsn=3.0.0"
    )
    assert status == 403
    assert "1.0.0, 2.0.0" in body["error"]
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{server.url}/nope")
        assert r.status_code == 404
        r = await http.get(f"{server.url}/realtime/v1/api/ping")
        assert r.status_code == 200
        assert r.json()["message"] == "ok"


async def test_connect_error_delay_is_configurable():
    async with RealtimeServer(jwt_secret=SECRET, limits=ServerLimits(connect_error_delay_s=0.4)) as srv:
        t0 = time.perf_counter()
        status, _ = await handshake_error(f"ws://127.0.0.1:{srv.port}/realtime/v1/websocket")
        assert status == 401
        assert time.perf_counter() - t0 >= 0.4


async def test_v2_join_push_leave_and_stale_refs(server, raw):
    async with raw(vsn="2.0.0") as c:
        j1 = await c.join("realtime:room", {"config": {"broadcast": {"ack": True}}})
        assert j1["join_ref"] == j1["ref"]
        assert j1["payload"]["status"] == "ok"
        await c.send("realtime:room", "broadcast", {"event": "x", "payload": {}}, "50", "stale")
        await c.send("realtime:room", "broadcast", {"event": "x", "payload": {}}, "51", j1["ref"])
        ack = await c.expect("phx_reply", ref="51")
        assert ack["join_ref"] == j1["ref"]
        assert not [m for m in c.messages("phx_reply") if m["ref"] == "50"]
        await c.send("realtime:room", "phx_leave", {}, "52", j1["ref"])
        close = await c.expect("phx_close")
        assert close["ref"] == j1["ref"]
        assert close["join_ref"] == j1["ref"]
        await c.send("realtime:room", "broadcast", {"event": "x"}, "53", None)
        err = await c.expect("phx_reply", ref="53")
        assert err["payload"] == {"status": "error", "response": {"reason": "unmatched topic"}}


async def test_push_right_after_join_sees_the_join(server, raw):
    """In-order processing: frames sent back to back without awaiting the reply."""
    async with raw() as a, raw() as b:
        await b.join("realtime:room")
        await a.send("realtime:room", "phx_join", {"config": {}}, "1", "1")
        await a.send(
            "realtime:room", "broadcast", {"type": "broadcast", "event": "e", "payload": {"n": 1}}, "2", "1"
        )
        msg = await b.expect("broadcast")
        assert msg["payload"]["payload"] == {"n": 1}


async def test_bad_input_is_answered_and_others_keep_working(server, raw):
    async with raw() as victim, raw() as bystander, raw(vsn="2.0.0") as bad2:
        await bystander.join("realtime:room")
        await victim.join("realtime:room")
        bad_join = json.dumps({"topic": "realtime:room", "event": "phx_join", "payload": [], "ref": {}})
        no_ref = '{"topic":"a","event":"b","payload":{}}'
        for frame in [
            "{",
            "[]",
            "null",
            '"str"',
            "1e999",
            '{"topic":1}',
            no_ref,
            bad_join,
            b"\x03\x00",
            b"\x00",
        ]:
            await victim.send_raw(frame)
        for frame in ["{}", "[1]", '[null,null,1,"x",{}]', b"\x03\xff\xff\xff\xff\xff\x01", b"\x07junk", b""]:
            await bad2.send_raw(frame)
        await victim.send("realtime:nope", "presence", {"event": "track"}, "9", "9")
        err = await victim.expect("phx_reply", ref="9")
        assert err["payload"]["response"]["reason"] == "unmatched topic"
        await victim.send(
            "realtime:room", "broadcast", {"type": "broadcast", "event": "ok", "payload": {}}, "10"
        )
        assert (await bystander.expect("broadcast"))["payload"]["event"] == "ok"
        await bad2.send("phoenix", "heartbeat", {}, "h")
        assert (await bad2.expect("phx_reply", ref="h"))["payload"]["status"] == "ok"
    assert server.stats["rejected"]


async def test_oversize_frame_closes_only_that_socket(make_server):
    async with make_server(limits=ServerLimits(max_frame_bytes=10_000)) as srv:
        connect = raw_factory(srv)
        async with connect() as big, connect() as other:
            await other.join("realtime:room")
            await big.send_raw("x" * 20_000)
            await eventually(lambda: big.ws.close_code is not None)
            assert big.ws.close_code == 1009
            await other.send("phoenix", "heartbeat", {}, "after")
            await other.expect("phx_reply", ref="after")


async def test_idle_timeout_closes_silent_sockets(make_server):
    async with make_server(limits=ServerLimits(idle_timeout_s=0.3)) as srv, raw_factory(srv)() as c:
        await eventually(lambda: c.ws.close_code is not None, within=3)
        assert c.ws.close_code == 1000
        assert c.ws.close_reason == "idle timeout"


async def test_expiry_closes_the_channel_end_to_end(server, raw):
    async with raw() as c:
        short = token("authenticated", expires_in=1, sub="u")
        j = await c.join("realtime:room", {"config": {}, "access_token": short})
        system = await c.expect("system", within=4)
        assert system["payload"]["message"] in (
            "Token has expired 0 seconds ago",
            "Token has expired 1 seconds ago",
        )
        assert system["payload"]["extension"] == "system"
        assert system["payload"]["status"] == "error"
        assert (await c.expect("phx_close"))["ref"] == j["ref"]


async def test_binary_broadcast_over_the_wire(server, raw):
    async with raw(vsn="2.0.0") as js_like, raw() as py_like:
        await py_like.join("realtime:room")
        j = await js_like.join("realtime:room", {"config": {"broadcast": {"ack": True, "self": True}}})
        await js_like.send_raw(
            encode_user_broadcast_push(j["ref"], "77", "realtime:room", "hello", b'{"a":1}')
        )
        ack = await js_like.expect("phx_reply", ref="77")
        assert ack["payload"] == {"status": "ok", "response": {}}
        own = await js_like.expect("broadcast")
        assert own["kind"] == 4
        assert own["data"] == b'{"a":1}'
        assert own["event"] == "broadcast"
        v1 = await py_like.expect("broadcast")
        assert v1["payload"] == {"type": "broadcast", "event": "hello", "payload": {"a": 1}}
        assert v1["ref"] is None


async def test_rest_broadcast_endpoints(server, raw):
    async with raw() as v1, raw(vsn="2.0.0") as v2:
        await v1.join("realtime:room")
        await v2.join("realtime:room")
        headers = {"apikey": ANON, "Authorization": f"Bearer {ANON}"}
        async with httpx.AsyncClient(base_url=server.url) as http:
            body = {"messages": [{"topic": "room", "event": "e1", "payload": {"n": 1}, "private": False}]}
            r = await http.post("/realtime/v1/api/broadcast", json=body, headers=headers)
            assert r.status_code == 202
            r = await http.post("/realtime/v1/api/broadcast/room/events/e2", json={"n": 2}, headers=headers)
            assert r.status_code == 202
            r = await http.post(
                "/realtime/v1/api/broadcast/room/events/bin", content=b"\x00\x01",
                headers={**headers, "Content-Type": "application/octet-stream"},
            )  # fmt: skip
            assert r.status_code == 202
            r = await http.post("/realtime/v1/api/broadcast", json=body)
            assert (r.status_code, r.json()) == (401, {"error": "API key is missing"})
            r = await http.post("/realtime/v1/api/broadcast", json={"nope": 1}, headers=headers)
            assert r.status_code == 422
            assert "messages" in r.json()["error"]
            r = await http.post("/realtime/v1/api/broadcast", content=b"{", headers=headers)
            assert r.status_code == 400
        await eventually(lambda: len(v2.messages("broadcast")) == 3)
        assert [m["payload"]["event"] for m in v1.messages("broadcast")] == ["e1", "e2"]  # binary not for V1
        assert v2.messages("broadcast")[2]["data"] == b"\x00\x01"


async def test_admin_endpoint_auth(server):
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.post("/admin/v1/faults/clear", json={})
        assert r.status_code == 401
        r = await http.post("/admin/v1/faults/clear", json={}, headers={"Authorization": f"Bearer {ANON}"})
        assert r.status_code == 403
        auth = {"Authorization": f"Bearer {SERVICE}"}
        r = await http.post("/admin/v1/faults/latency", json={"ms": 5}, headers=auth)
        assert r.status_code == 200
        assert r.json() == {"ok": True, "result": None}
        r = await http.post("/admin/v1/faults/explode", json={}, headers=auth)
        assert r.status_code == 400
        assert "valid: drop_all" in r.json()["error"]
        r = await http.post("/admin/v1/faults/stall", json={"seconds": "x"}, headers={"apikey": SERVICE})
        assert r.status_code == 400
        r = await http.get("/admin/v1/faults", headers=auth)
        assert [h["kind"] for h in r.json()["history"]] == ["latency"]
        r = await http.get("/admin/v1/stats", headers=auth)
        assert r.json()["connections"] == 0


async def test_fanout_to_many_sockets(server, raw):
    """One broadcast reaches 20 V2 sockets; closing them leaves no connection behind."""
    async with raw() as sender:
        receivers = []
        for _ in range(20):
            cm = raw(vsn="2.0.0")
            c = await cm.__aenter__()
            receivers.append((cm, c))
            await c.join("realtime:fan")
        await sender.join("realtime:fan")
        await sender.send(
            "realtime:fan", "broadcast", {"type": "broadcast", "event": "e", "payload": {"i": 1}}, "2"
        )
        await eventually(lambda: all(c.messages("broadcast") for _, c in receivers))
        for cm, _ in receivers:
            await cm.__aexit__(None, None, None)
    await eventually(lambda: server.connection_count == 0)


async def test_connection_limit_429(make_server):
    async with make_server(limits=ServerLimits(max_connections=1)) as srv, raw_factory(srv)():
        status, body = await handshake_error(f"ws://127.0.0.1:{srv.port}/socket/websocket?apikey={ANON}")
        assert (status, body) == (429, {"error": "Too many connected users"})


async def test_server_broadcast_helper_is_thread_safe(server, raw):
    async with raw() as c:
        await c.join("realtime:room")
        n = await asyncio.to_thread(server.broadcast, "room", "from-thread", {"ok": True})
        assert n == 1
        assert (await c.expect("broadcast"))["payload"]["event"] == "from-thread"
