"""Every fault kind, exercised with real clients (raw websockets, realtime-py, realtime-js)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import websockets
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates
from websockets.exceptions import InvalidStatus

from harmony_lab.server import FaultError, Faults
from tests.server.rt_helpers import ANON, SERVICE, wait_until

# realtime-py 2.34.1 reads ConnectionClosed.code/.reason (deprecated in websockets 13.1) when a socket is
# closed abnormally; with warnings as errors that would kill its listener instead of reconnecting.
pytestmark = [
    pytest.mark.filterwarnings("ignore:ConnectionClosed.code is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ConnectionClosed.reason is deprecated:DeprecationWarning"),
]


async def heartbeat_rtt(c, ref: str) -> float:
    t0 = time.perf_counter()
    await c.send("phoenix", "heartbeat", {}, ref)
    await c.expect("phx_reply", ref=ref, within=10)
    return time.perf_counter() - t0


async def test_drop_all_realtime_py_reconnects_and_rejoins(server):
    client = AsyncRealtimeClient(server.ws_url, token=ANON)  # auto_reconnect on
    await client.connect()
    states: list[Any] = []
    ch = client.channel("room")
    await ch.subscribe(lambda s, e: states.append(s))
    try:
        await wait_until(lambda: states == [RealtimeSubscribeStates.SUBSCRIBED])
        n = await asyncio.to_thread(server.faults.drop_all, 1012, "restart")  # from another thread
        assert n == 1
        await wait_until(lambda: states.count(RealtimeSubscribeStates.SUBSCRIBED) == 2, within=10)
        assert RealtimeSubscribeStates.CHANNEL_ERROR in states
        assert server.faults.history[-1]["kind"] == "drop_all"
        assert server.faults.history[-1]["code"] == 1012
    finally:
        await client.close()


async def test_drop_all_closes_with_the_code(server, raw):
    async with raw() as a, raw(vsn="2.0.0") as b:
        await wait_until(lambda: server.connection_count == 2)
        assert server.faults.drop_all(code=4001, reason="bye") == 2
        await wait_until(lambda: a.ws.close_code is not None and b.ws.close_code is not None)
        assert (a.ws.close_code, a.ws.close_reason, b.ws.close_code) == (4001, "bye", 4001)


async def test_stall_holds_replies_then_delivers_in_order(server, raw):
    async with raw() as c, raw() as other:
        await c.join("realtime:room")
        await other.join("realtime:room")
        server.faults.stall(0.8)
        t0 = time.perf_counter()
        await c.send("phoenix", "heartbeat", {}, "hb1")
        await other.send(
            "realtime:room", "broadcast", {"type": "broadcast", "event": "e", "payload": {"i": 1}}, "b"
        )
        await asyncio.sleep(0.4)
        assert not c.messages("phx_reply", "phoenix")  # nothing answered during the stall
        assert not c.messages("broadcast")
        assert c.ws.close_code is None  # the socket stays open
        await c.expect("phx_reply", ref="hb1", within=5)
        await c.expect("broadcast", within=5)
        assert time.perf_counter() - t0 >= 0.7
        # afterwards everything is normal again
        assert await heartbeat_rtt(c, "hb2") < 0.5


@pytest.mark.js
async def test_stall_makes_realtime_js_heartbeat_time_out_and_reconnect(server, js):
    await js.call("connect", client="js", url=server.ws_url, apikey=ANON, heartbeatIntervalMs=250)
    await js.subscribe("js", "room")
    await js.expect(ev="heartbeat", client="js", status="ok")
    server.faults.stall(1.0)
    await js.expect(ev="heartbeat", client="js", status="timeout", within=5)
    # realtime-js tears the socket down and reconnects; the channel rejoins after the stall
    await wait_until(lambda: len(js.find(ev="status", client="js", status="SUBSCRIBED")) >= 2, within=15)


async def test_new_handshakes_wait_during_a_stall(server):
    server.faults.stall(0.6)
    t0 = time.perf_counter()
    async with websockets.connect(f"ws://127.0.0.1:{server.port}/socket/websocket?apikey={ANON}"):
        assert time.perf_counter() - t0 >= 0.5


async def test_refuse_rejects_handshakes_with_the_status(server):
    server.faults.refuse(1.0, status=503)
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(f"ws://127.0.0.1:{server.port}/socket/websocket?apikey={ANON}"):
            pass
    assert info.value.response.status_code == 503
    # realtime-py retries with backoff (1 s, 2 s…) and gets in once the refusal ends
    client = AsyncRealtimeClient(server.ws_url, token=ANON, initial_backoff=0.5)
    t0 = time.perf_counter()
    await client.connect()
    try:
        assert time.perf_counter() - t0 >= 0.3
        await client.channel("room").subscribe()
        await wait_until(lambda: server.connection_count == 1)
    finally:
        await client.close()


async def test_rapid_close_closes_the_next_connections_only(server, raw):
    server.faults.rapid_close(2, code=1011)
    for _ in range(2):
        async with raw() as c:
            await wait_until(lambda c=c: c.ws.close_code is not None)
            assert (c.ws.close_code, c.ws.close_reason) == (1011, "fault: rapid close")
    async with raw() as c:
        await c.send("phoenix", "heartbeat", {}, "1")
        await c.expect("phx_reply", ref="1")


@pytest.mark.js
async def test_rapid_close_realtime_js_recovers(server, js):
    server.faults.rapid_close(1, code=1011)
    await js.call("connect", client="js", url=server.ws_url, apikey=ANON)
    await js.call("channel", client="js", topic="room")
    await js.expect(ev="status", client="js", status="SUBSCRIBED", within=15)
    assert server.faults.rapid_close_remaining == 0


@pytest.mark.js
async def test_latency_delays_every_outbound_frame_then_clear(server, raw, js):
    async with raw() as c:
        assert await heartbeat_rtt(c, "1") < 0.2
        server.faults.latency(300)
        assert await heartbeat_rtt(c, "2") >= 0.29
        # the heartbeat interval must exceed the latency, or realtime-js times the heartbeat out
        await js.call("connect", client="js", url=server.ws_url, apikey=ANON, heartbeatIntervalMs=700)
        ok = await js.expect(ev="heartbeat", client="js", status="ok", within=5)
        assert ok["latency"] >= 290
        server.faults.clear()
        assert await heartbeat_rtt(c, "3") < 0.2


async def test_latency_with_duration_expires(server, raw):
    async with raw() as c:
        server.faults.latency(250, seconds=0.3)
        assert await heartbeat_rtt(c, "1") >= 0.24
        await asyncio.sleep(0.35)
        assert await heartbeat_rtt(c, "2") < 0.2


def test_fault_arguments_are_validated():
    f = Faults()
    with pytest.raises(FaultError, match="cannot be sent"):
        f.drop_all(code=1006)
    with pytest.raises(FaultError, match="non-negative"):
        f.stall(-1)
    with pytest.raises(FaultError, match="400-599"):
        f.refuse(1, status=200)
    with pytest.raises(FaultError, match="non-negative integer"):
        f.rapid_close(1.5)  # type: ignore[arg-type]
    with pytest.raises(FaultError, match="unknown fault"):
        f.apply("explode", {})
    with pytest.raises(FaultError, match="bad arguments"):
        f.apply("stall", {"minutes": 1})
    assert f.drop_all() == 0  # no server: nothing to drop
    assert [h["kind"] for h in f.history] == ["drop_all"]
    assert "none active" in repr(f)


async def test_stall_holds_rest_but_not_the_admin_api(server):
    server.faults.stall(5)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        rest = asyncio.create_task(
            http.post("/realtime/v1/api/broadcast/room/events/e", json={}, headers={"apikey": ANON})
        )
        await asyncio.sleep(0.3)
        assert not rest.done()  # held by the stall
        t0 = time.perf_counter()
        r = await http.post("/admin/v1/faults/clear", json={}, headers={"Authorization": f"Bearer {SERVICE}"})
        assert r.status_code == 200
        assert (await rest).status_code == 202
        assert time.perf_counter() - t0 < 2


def test_fault_windows_with_a_fake_clock():
    now = [100.0]
    f = Faults(clock=lambda: now[0])
    f.refuse(2, status=429)
    f.latency(50, seconds=1)
    f.stall(3)
    f.rapid_close(2, code=4000)
    assert (f.refusing(), f.current_latency(), f.stalled(), f.stall_remaining()) == (429, 0.05, True, 3.0)
    assert [f.take_rapid_close(), f.take_rapid_close(), f.take_rapid_close()] == [4000, 4000, None]
    now[0] = 101.5
    assert (f.refusing(), f.current_latency(), f.stalled()) == (429, 0.0, True)
    now[0] = 103.0
    assert (f.refusing(), f.stalled()) == (None, False)
    f.stall(10)
    f.clear()
    assert not f.stalled()
    assert [h["kind"] for h in f.history] == ["refuse", "latency", "stall", "rapid_close", "stall", "clear"]
    assert f.history[0]["status"] == 429
