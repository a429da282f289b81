"""Every fault kind, exercised with real clients (raw websockets, realtime-py, realtime-js)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates
from websockets.exceptions import InvalidStatus

from harmony_lab.local.schema import ALICE, GENERAL
from harmony_lab.server import FaultError, Faults, ServerLimits
from tests.polling import eventually, stays
from tests.server.rt_helpers import ANON, SERVICE, raw_factory

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
        await eventually(lambda: states == [RealtimeSubscribeStates.SUBSCRIBED])
        n = await asyncio.to_thread(server.faults.drop_all, 1012, "restart")  # from another thread
        assert n == 1
        await eventually(lambda: states.count(RealtimeSubscribeStates.SUBSCRIBED) == 2, within=10)
        assert RealtimeSubscribeStates.CHANNEL_ERROR in states
        assert server.faults.history[-1]["kind"] == "drop_all"
        assert server.faults.history[-1]["code"] == 1012
    finally:
        await client.close()


async def test_drop_all_closes_with_the_code(server, raw):
    async with raw() as a, raw(vsn="2.0.0") as b:
        await eventually(lambda: server.connection_count == 2)
        assert server.faults.drop_all(code=4001, reason="bye") == 2
        await eventually(lambda: a.ws.close_code is not None and b.ws.close_code is not None)
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
        # nothing answered or delivered during the stall, and the socket stays open
        await stays(
            lambda: (len(c.messages("phx_reply", "phoenix")), len(c.messages("broadcast")), c.ws.close_code),
            (0, 0, None),
            for_s=0.4,
            what="replies, broadcasts and the close code during the stall",
        )
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
    await eventually(lambda: len(js.find(ev="status", client="js", status="SUBSCRIBED")) >= 2, within=15)


async def test_new_handshakes_wait_during_a_stall(server):
    server.faults.stall(0.6)
    t0 = time.perf_counter()
    async with websockets.connect(f"ws://127.0.0.1:{server.port}/socket/websocket?apikey={ANON}"):
        assert time.perf_counter() - t0 >= 0.5


def error_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    """ERROR (or worse) records of websockets' and harmony_lab's loggers, with their exception."""
    return [
        f"{r.name}: {r.getMessage()} {r.exc_info[1]!r}" if r.exc_info else f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.split(".")[0] in ("websockets", "harmony_lab")
    ]


def hang_ups(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "hung up before" in r.getMessage()]


def live_handlers(server) -> int:
    """Connections websockets still tracks (a leaked handshake would stay here)."""
    return len(server._server.handlers)


async def send_then_hang_up(port: int, data: bytes, *, after: float = 0.0, reset: bool = False) -> None:
    """Open a TCP connection, send ``data``, wait ``after`` s, then close it (``reset``: with an RST)."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    if data:
        writer.write(data)
        await writer.drain()
    await asyncio.sleep(after)
    if reset:
        linger_0 = struct.pack("ii", 1, 0)  # close() then sends an RST
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_0)
    writer.close()
    await writer.wait_closed()


async def test_handshake_abandoned_during_a_stall_is_dropped_quietly(server, raw, caplog):
    caplog.set_level(logging.DEBUG)
    url = f"ws://127.0.0.1:{server.port}/realtime/v1/websocket?apikey={ANON}&vsn=1.0.0"
    async with raw() as c:
        server.faults.stall(1.0)
        await c.send("phoenix", "heartbeat", {}, "hb1")  # an open socket's request, held by the stall

        async def patient_connect() -> Any:
            return await websockets.connect(url, open_timeout=10)

        patient = asyncio.create_task(patient_connect())  # waits the stall out
        with pytest.raises(TimeoutError):
            await websockets.connect(url, open_timeout=0.3)  # gives up during the stall
        await send_then_hang_up(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", after=0.1)
        await eventually(lambda: len(hang_ups(caplog)) == 2)  # dropped at once, not when the stall ends
        assert not patient.done()
        assert not c.messages("phx_reply")
        await c.expect("phx_reply", ref="hb1", within=5)  # the stall ends: the backlog is delivered
        ws = await asyncio.wait_for(patient, 5)  # the patient client gets its handshake
        try:
            await ws.send('{"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "p1"}')
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["ref"] == "p1"
            await eventually(lambda: server.connection_count == 2 and live_handlers(server) == 2)
        finally:
            await ws.close()
    await eventually(lambda: live_handlers(server) == 0)  # nothing leaked
    assert error_records(caplog) == []
    dropped = [r for r in caplog.records if "hung up before" in r.getMessage()]
    assert all(r.levelno == logging.DEBUG for r in dropped)
    assert sorted(r.args[1] for r in dropped) == ["GET /healthz", "GET /realtime/v1/websocket"]
    assert not any(ANON in r.getMessage() for r in dropped)  # the query's apikey stays out of the log


async def test_handshake_abandoned_during_the_connect_error_delay_is_dropped_quietly(make_server, caplog):
    caplog.set_level(logging.DEBUG)
    async with make_server(limits=ServerLimits(connect_error_delay_s=0.5)) as srv:
        url = f"ws://127.0.0.1:{srv.port}/realtime/v1/websocket?apikey=not-a-jwt"
        with pytest.raises(TimeoutError):
            await websockets.connect(url, open_timeout=0.2)
        await eventually(lambda: hang_ups(caplog))
        await asyncio.sleep(0.5)  # past the delay, when the answer would have been written
        with pytest.raises(InvalidStatus) as info:  # a patient client still gets the 401
            await websockets.connect(url, open_timeout=5)
        assert info.value.response.status_code == 401
        await eventually(lambda: live_handlers(srv) == 0)
    assert error_records(caplog) == []


@pytest.mark.parametrize(
    ("data", "reset"),
    [
        (b"", False),  # a TCP probe
        (b"GET /realtime/v1/websocket HTTP/1.1\r\nHost: x\r\n", False),  # half a head
        (  # half a body (with a valid key: a request without one is refused before its body)
            f"POST /api/broadcast HTTP/1.1\r\nHost: x\r\napikey: {ANON}\r\n".encode()
            + b"Content-Length: 100\r\n\r\n{",
            False,
        ),
        (b"GET /healthz HTTP/1.1\r\n", True),  # connection reset
    ],
    ids=["probe", "partial-head", "partial-body", "reset"],
)
async def test_hang_up_before_a_complete_request_is_dropped_quietly(server, raw, caplog, data, reset):
    caplog.set_level(logging.DEBUG)
    async with raw() as c:
        await send_then_hang_up(server.port, data, reset=reset)
        await eventually(lambda: hang_ups(caplog))
        assert hang_ups(caplog)[0].endswith("hung up before sending a complete HTTP request; dropped it")
        await c.send("phoenix", "heartbeat", {}, "1")  # everyone else is still served
        await c.expect("phx_reply", ref="1")
        await eventually(lambda: live_handlers(server) == 1)
    assert error_records(caplog) == []


async def test_requests_that_are_no_websocket_handshake_are_logged_at_info(server, raw, caplog):
    caplog.set_level(logging.DEBUG)
    ws_url = f"{server.url}/realtime/v1/websocket?apikey={ANON}"
    async with raw() as c, httpx.AsyncClient(timeout=5) as http:
        plain = await http.get(ws_url)  # a browser or curl on the websocket URL
        assert plain.status_code == 426
        no_key = await http.get(ws_url, headers={"Upgrade": "websocket", "Connection": "Upgrade"})
        assert no_key.status_code == 400
        await send_then_hang_up(server.port, b"HELLO\r\n\r\n", after=0.1)  # malformed, then gone

        def rejected_records() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.getMessage().startswith("rejected an HTTP request")]

        await eventually(lambda: len(rejected_records()) == 3)
        rejected = rejected_records()
        assert {r.levelno for r in rejected} == {logging.INFO}
        reasons = " | ".join(r.getMessage() for r in rejected)
        assert "(GET /realtime/v1/websocket): invalid Connection header" in reasons
        assert "missing Sec-WebSocket-Key header" in reasons
        assert "(no complete request): did not receive a valid HTTP request (invalid HTTP request" in reasons
        assert ANON not in reasons
        await c.send("phoenix", "heartbeat", {}, "1")  # everyone else is still served
        await c.expect("phx_reply", ref="1")
        await eventually(lambda: live_handlers(server) == 1)
    assert error_records(caplog) == []


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
        await eventually(lambda: server.connection_count == 1)
    finally:
        await client.close()


async def test_rapid_close_closes_the_next_connections_only(server, raw):
    server.faults.rapid_close(2, code=1011)
    for _ in range(2):
        async with raw() as c:
            await eventually(lambda c=c: c.ws.close_code is not None)
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


async def test_a_close_under_latency_flushes_the_queued_frames_first(make_server):
    async with make_server(limits=ServerLimits(idle_timeout_s=0.3)) as srv, raw_factory(srv)() as c:
        srv.faults.latency(400)
        await c.send("phoenix", "heartbeat", {}, "1")
        await eventually(lambda: c.ws.close_code is not None, within=5)  # idle timeout
        assert [m["ref"] for m in c.messages("phx_reply")] == ["1"]  # written before the close frame
        assert (c.ws.close_code, c.ws.close_reason) == (1000, "idle timeout")
        await eventually(lambda: live_handlers(srv) == 0)


async def test_a_socket_handler_cancelled_while_flushing_stops_its_writer(make_server):
    async with make_server(limits=ServerLimits(idle_timeout_s=0.3)) as srv, raw_factory(srv)() as c:
        sock = await eventually(lambda: next(iter(srv._sockets.values()), None))
        handler = srv._server.handlers[sock.conn]
        srv.faults.latency(3000)
        await c.send("phoenix", "heartbeat", {}, "1")  # its reply is held 3 s
        await eventually(lambda: sock.close_request is not None, within=2)  # idle: waiting for the flush
        await asyncio.sleep(0.05)
        handler.cancel()  # e.g. the event loop shutting down
        await eventually(lambda: sock.writer.done(), within=1)  # not left running until the frame is due
        assert sock.writer.cancelled()
        await eventually(handler.done)
        assert handler.cancelled()  # the cancellation is not swallowed
        assert not c.messages("phx_reply")
        srv.faults.clear()


async def test_stopping_the_server_during_a_stall_is_prompt(server, raw, caplog):
    async with raw() as c, raw(vsn="2.0.0") as d:
        await c.join("realtime:room")
        server.faults.stall(30)
        await c.send("phoenix", "heartbeat", {}, "hb")  # unread: the stall paused reading
        t0 = time.perf_counter()
        await server.aclose()  # closing handshakes need the sockets read again
        assert time.perf_counter() - t0 < 3  # not websockets' 10 s close timeout
        await eventually(lambda: c.ws.close_code is not None and d.ws.close_code is not None)
        assert (c.ws.close_code, d.ws.close_code) == (1001, 1001)
    assert error_records(caplog) == []


async def test_clients_vanishing_mid_join_and_during_latency_leave_no_trace(rt, caplog):
    """Hard disconnects while a postgres_changes join is in flight (RLS token, the hub subscribing in
    Postgres), during a latency delay and during a stall: no ERROR, nothing left subscribed, others
    served."""
    caplog.set_level(logging.DEBUG)
    url = f"{rt.ws_url}/websocket?apikey={rt.anon_key}&vsn=1.0.0"
    binding = {"event": "*", "schema": "public", "table": "messages"}

    def join(token: str, ref: str = "1") -> str:
        payload = {"config": {"postgres_changes": [binding], "presence": {"key": ""}}, "access_token": token}
        return json.dumps(
            {"topic": "realtime:m", "event": "phx_join", "payload": payload, "ref": ref, "join_ref": ref}
        )

    async def vanish_after_join(pause: float, fault: Callable[[], None] | None = None) -> None:
        ws = await websockets.connect(url)
        if fault is not None:
            fault()
        await ws.send(join(rt.token_for(str(ALICE))))
        await asyncio.sleep(pause)
        ws.transport.abort()  # no close frame: the TCP connection just goes

    for pause in (0.0, 0.002, 0.01, 0.05):  # before, during and after the hub's subscribe
        await vanish_after_join(pause)
    await vanish_after_join(0.1, lambda: rt.faults.latency(300))  # the reply waits out the latency
    rt.faults.clear()
    await vanish_after_join(0.1, lambda: rt.faults.stall(0.3))  # the join is unread, held by the stall
    await eventually(lambda: rt.server.connection_count == 0 and rt.hub.stats["subscribers"] == 0)

    async with websockets.connect(url) as ws:  # everyone else is still served, by the same join
        await ws.send(join(rt.token_for(str(ALICE))))
        rt.faults.latency(100)

        async def next_frame(event: str) -> dict[str, Any]:
            while True:
                msg = json.loads(await ws.recv())
                if msg["event"] == event:
                    return msg["payload"]

        assert (await asyncio.wait_for(next_frame("system"), 10))["message"] == "Subscribed to PostgreSQL"
        await rt.execute(
            "insert into public.messages (channel_id, user_id, content) values (%s, %s, 'still here')",
            GENERAL, ALICE,
        )  # fmt: skip
        change = await asyncio.wait_for(next_frame("postgres_changes"), 10)
        assert change["data"]["record"]["content"] == "still here"
        rt.faults.clear()
    await eventually(lambda: rt.hub.stats["subscribers"] == 0)
    assert error_records(caplog) == []


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
        await stays(rest.done, False, for_s=0.3, what="the REST call held by the stall")
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
