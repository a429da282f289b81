"""The server's memory is bounded by bytes, not frames, and every HTTP request is bounded too.

Attacks: a subscriber that never reads while REST broadcasts of 1 MB keep coming (the server queued
every frame for it and grew by hundreds of MB); REST payloads far over Supabase's limit and bursts
far over its rate; joins with multi-megabyte topic names; hundreds of unauthenticated POSTs that
declare 8 MiB bodies and never send them, and requests that trickle in byte by byte. The memory
checks run the server in its own process and read that process's resident set size.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from harmony_lab.server._limits import ServerLimits
from tests.polling import eventually, stays
from tests.server.rt_helpers import ANON, SERVICE, raw_factory

MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# a server in its own process


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def memory_kib(self, field: str = "VmRSS") -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc/{self.proc.pid}/status")

    def stats(self) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/admin/v1/stats", headers={"apikey": SERVICE}, timeout=10)
        r.raise_for_status()
        return r.json()


@contextlib.contextmanager
def server_process(tmp_path: Path, **limits: Any) -> Iterator[ServerProcess]:
    log = tmp_path / "server.log"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.security.memory_server", json.dumps(limits)],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the server prints its port once it listens
        assert line.startswith("PORT "), f"the server did not start: {line!r}; log: {log.read_text()}"
        yield ServerProcess(proc, int(line.split()[1]), log)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        finally:
            assert proc.stdout is not None
            proc.stdout.close()


async def v2_join(port: int, topic: str) -> websockets.ClientConnection:
    ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/realtime/v1/websocket?apikey={ANON}&vsn=2.0.0", max_size=None
    )
    await ws.send(json.dumps(["1", "1", f"realtime:{topic}", "phx_join", {"config": {}}]))
    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert reply[3] == "phx_reply", reply
    assert reply[4]["status"] == "ok", reply
    return ws


async def read_until_closed(ws: websockets.ClientConnection, within: float) -> None:
    """Read and drop frames until the connection ends (ConnectionClosed); fail after ``within`` s."""
    async with asyncio.timeout(within):
        while True:
            await ws.recv()


# ---------------------------------------------------------------------------------------------
# a slow consumer


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_a_never_reading_subscriber_is_closed_and_memory_stays_bounded(tmp_path):
    posts, size = 400, 1_000_000
    with server_process(
        tmp_path, max_broadcast_bytes=2 * MIB, max_rest_events_per_second=10_000, idle_timeout_s=None
    ) as srv:
        slow = await v2_join(srv.port, "firehose")
        slow.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        slow.transport.pause_reading()  # from now on this client reads nothing
        reader = await v2_join(srv.port, "firehose")
        received = 0

        async def read_all() -> None:
            nonlocal received
            async for frame in reader:
                if json.loads(frame)[3] == "broadcast":
                    received += 1

        reading = asyncio.create_task(read_all())
        body = json.dumps({"blob": "x" * size})
        headers = {"apikey": ANON, "Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as http:
            first = await http.post(
                "/realtime/v1/api/broadcast/firehose/events/big", content=body, headers=headers
            )
            assert first.status_code == 202, first.text
            await eventually(lambda: received == 1, 30, what="the reading subscriber got the first post")
            baseline = srv.memory_kib("VmRSS")
            for _ in range(posts - 1):
                r = await http.post(
                    "/realtime/v1/api/broadcast/firehose/events/big", content=body, headers=headers
                )
                assert r.status_code == 202, r.text
        await eventually(lambda: received == posts, 60, what=f"the reading subscriber got all {posts} posts")
        peak, now = srv.memory_kib("VmHWM"), srv.memory_kib("VmRSS")
        grown = (max(peak, now) - baseline) / 1024
        assert grown <= 64, (
            f"server RSS grew by {grown:.0f} MiB over its baseline of {baseline / 1024:.0f} MiB"
        )

        stats = await asyncio.to_thread(srv.stats)
        assert stats["rejected"].get("slow consumer") == 1, stats
        await eventually(lambda: srv.stats()["connections"] == 1, 30, what="the slow socket to be gone")
        log = srv.log.read_text()
        assert "closing with 1008 slow consumer: more than 16777216 bytes queued" in log, log[-2000:]
        slow.transport.resume_reading()
        with pytest.raises(websockets.ConnectionClosed):
            await read_until_closed(slow, 30)  # what was in flight, then the end of the connection
        await reader.close()
        await slow.close()
        await reading


async def test_a_slow_consumer_gets_the_close_reason_once_it_reads(make_server):
    limits = ServerLimits(max_outbound_bytes=256 * 1024, idle_timeout_s=None)
    async with make_server(limits=limits) as srv:
        slow = await v2_join(srv.port, "room")
        slow.transport.pause_reading()
        async with httpx.AsyncClient(base_url=srv.url, timeout=10) as http:
            for _ in range(200):
                r = await http.post(
                    "/realtime/v1/api/broadcast/room/events/e",
                    json={"x": "y" * 50_000},
                    headers={"apikey": ANON},
                )
                assert r.status_code == 202, r.text
                if srv.stats["rejected"].get("slow consumer"):
                    break
        assert srv.stats["rejected"].get("slow consumer") == 1, srv.stats
        slow.transport.resume_reading()
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await read_until_closed(slow, 10)
        assert closed.value.rcvd is not None, "the server's close frame did not arrive"
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "slow consumer")
        await eventually(lambda: srv.connection_count == 0, 10)


# ---------------------------------------------------------------------------------------------
# REST broadcast: payload size and rate


@contextlib.asynccontextmanager
async def listening(srv: Any, topic: str) -> AsyncIterator[Any]:
    async with raw_factory(srv)(vsn="2.0.0") as c:
        assert (await c.join(f"realtime:{topic}"))["payload"]["status"] == "ok"
        yield c


async def test_an_oversized_rest_payload_is_refused_with_supabases_422(make_server):
    limit = 1000
    async with (
        make_server(limits=ServerLimits(max_broadcast_bytes=limit)) as srv,
        listening(srv, "room") as c,
    ):
        headers = {"apikey": ANON}
        async with httpx.AsyncClient(base_url=srv.url, timeout=10) as http:
            at_limit = {"x": "a" * (limit - len('{"x":""}'))}
            ok = await http.post("/realtime/v1/api/broadcast/room/events/e", json=at_limit, headers=headers)
            assert ok.status_code == 202, ok.text
            over = {"x": "a" * limit}
            single = await http.post("/realtime/v1/api/broadcast/room/events/e", json=over, headers=headers)
            assert single.status_code == 422, single.text
            assert single.json()["errors"] == {"payload": ["Payload size exceeds tenant limit"]}
            assert f"the limit is {limit} bytes" in single.json()["error"]
            binary = await http.post(
                "/realtime/v1/api/broadcast/room/events/e",
                content=b"\0" * (limit + 1),
                headers={**headers, "Content-Type": "application/octet-stream"},
            )
            assert binary.status_code == 422, binary.text
            batch = await http.post(
                "/realtime/v1/api/broadcast",
                json={"messages": [
                    {"topic": "room", "event": "e", "payload": {"small": 1}},
                    {"topic": "room", "event": "e", "payload": over},
                ]},
                headers=headers,
            )  # fmt: skip
            assert batch.status_code == 422, batch.text
            assert "messages[1]" in batch.json()["error"]
        await eventually(lambda: len(c.messages("broadcast")) == 1)
        await stays(lambda: len(c.messages("broadcast")), 1, for_s=0.3, what="nothing of a refused request")


async def test_a_rest_broadcast_burst_gets_429_with_supabases_texts(make_server):
    limits = ServerLimits(max_rest_events_per_second=10, rate_window_s=30)  # 300 messages per 30 s
    async with make_server(limits=limits) as srv, listening(srv, "room") as c:
        headers = {"apikey": ANON}
        async with httpx.AsyncClient(base_url=srv.url, timeout=10) as http:
            big_batch = {
                "messages": [{"topic": "room", "event": "e", "payload": {"i": i}} for i in range(301)]
            }
            r = await http.post("/realtime/v1/api/broadcast", json=big_batch, headers=headers)
            assert r.status_code == 429, r.text
            assert r.json()["message"] == "Too many messages to broadcast, please reduce the batch size"
            statuses = []
            for i in range(310):
                r = await http.post(
                    "/realtime/v1/api/broadcast/room/events/e", json={"i": i}, headers=headers
                )
                statuses.append(r.status_code)
            assert statuses == [202] * 300 + [429] * 10, statuses
            assert r.json()["message"] == "You have exceeded your rate limit"
        await eventually(lambda: len(c.messages("broadcast")) == 300, 20)
        await stays(lambda: len(c.messages("broadcast")), 300, for_s=0.3, what="no refused message delivered")
        assert srv.stats["rejected"]["rest broadcast 429"] == 11


# ---------------------------------------------------------------------------------------------
# topic length


async def test_a_join_with_an_over_long_topic_is_refused(make_server):
    limit = ServerLimits().max_topic_bytes
    async with make_server() as srv, raw_factory(srv)(vsn="2.0.0", max_size=None) as c:
        fits = "realtime:" + "a" * (limit - len("realtime:"))
        assert (await c.join(fits))["payload"]["status"] == "ok"
        for topic in (
            "realtime:" + "b" * limit,
            "realtime:" + "é" * (limit // 2),
            "realtime:" + "c" * 4_500_000,
        ):
            reply = await c.join(topic)
            assert reply["payload"]["status"] == "error", reply["payload"]
            assert reply["payload"]["response"]["reason"] == (
                f"TopicNameTooLong: a topic may be at most {limit} bytes"
            )
        assert srv.registry.topics() == [fits]


# ---------------------------------------------------------------------------------------------
# HTTP requests: head, body, pending connections, read time


async def http_exchange(port: int, request: bytes, *, within: float = 10.0) -> tuple[int | None, bytes]:
    """Send ``request`` and read the answer: (status, body), or (None, b"") if the server closed
    the connection without one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        async with asyncio.timeout(within):
            try:
                answer = await reader.read(-1)
            except ConnectionError:
                return None, b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    if not answer:
        return None, b""
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def post_head(path: str, length: int, *, apikey: str | None = None) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: x",
        "Content-Type: application/json",
        f"Content-Length: {length}",
    ]
    if apikey is not None:
        lines.append(f"apikey: {apikey}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.timeout(120)
async def test_unauthenticated_posts_declaring_huge_bodies_are_answered_at_once(tmp_path):
    with server_process(tmp_path) as srv:
        baseline = srv.memory_kib("VmRSS")
        start = time.monotonic()
        head = post_head("/realtime/v1/api/broadcast", 8 * MIB)
        answers = await asyncio.gather(*(http_exchange(srv.port, head, within=20) for _ in range(400)))
        elapsed = time.monotonic() - start
        statuses = sorted({status for status, _ in answers}, key=str)
        assert set(statuses) <= {401, 503}, statuses  # unauthenticated, or over the pending-connection cap
        assert any(status == 401 for status, _ in answers)
        assert elapsed < 20, f"400 refusals took {elapsed:.1f} s"
        stats = await asyncio.to_thread(srv.stats)
        assert stats["rejected"].get("http 401", 0) + stats["rejected"].get("http 503", 0) == 400, stats
        grown = (srv.memory_kib("VmHWM") - baseline) / 1024
        assert grown <= 64, f"server RSS grew by {grown:.0f} MiB"


async def test_request_bodies_are_bounded_before_they_are_read(make_server):
    limits = ServerLimits(
        max_http_body_bytes=1 * MIB, max_http_buffered_bytes=3 * MIB, http_read_timeout_s=1.0
    )
    async with make_server(limits=limits) as srv:
        path = "/realtime/v1/api/broadcast/room/events/e"
        status, body = await http_exchange(srv.port, post_head(path, MIB + 1, apikey=ANON), within=5)
        assert status == 413, (status, body)
        assert b"over the limit of 1048576 bytes" in body, body
        # authenticated requests that declare 1 MiB and send none of it: three fit in the buffer budget,
        # the fourth is told to retry; the three are answered 408 once the read time is up
        held = [
            asyncio.create_task(http_exchange(srv.port, post_head(path, MIB, apikey=ANON))) for _ in range(3)
        ]
        await eventually(lambda: srv._gate.buffered == 3 * MIB, 5, what="three bodies reserved")
        status, body = await http_exchange(srv.port, post_head(path, MIB, apikey=ANON), within=5)
        assert status == 503, (status, body)
        assert b"retry shortly" in body, body
        assert [s for s, _ in await asyncio.gather(*held)] == [408, 408, 408]
        await eventually(lambda: (srv._gate.buffered, srv._gate.pending) == (0, 0), 5, what="nothing held")
        # a body that does arrive is read and answered; bytes past its declared length are not read
        ok = await http_exchange(srv.port, post_head(path, 2, apikey=ANON) + b"{}", within=5)
        assert ok[0] == 202, ok
        extra = await http_exchange(srv.port, post_head(path, 2, apikey=ANON) + b"{}" + b"\x81\xff" * 5000)
        assert extra[0] == 202, extra
        chunked = b"POST /api/broadcast HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        status, body = await http_exchange(srv.port, chunked, within=5)
        assert status == 411, (status, body)
        await eventually(lambda: (srv._gate.buffered, srv._gate.pending) == (0, 0), 5, what="nothing held")


async def test_heads_are_bounded_in_bytes_and_time(make_server):
    limits = ServerLimits(max_http_head_bytes=4096, http_read_timeout_s=1.0)
    async with make_server(limits=limits) as srv:
        huge = b"GET /realtime/v1/websocket HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 5000 + b"\r\n\r\n"
        status, body = await http_exchange(srv.port, huge, within=5)
        assert status == 431, (status, body)
        assert b"at most 4096 bytes" in body, body
        # slowloris: a head that never ends is answered 408 when the read time is up
        start = time.monotonic()
        status, body = await http_exchange(
            srv.port, b"GET /realtime/v1/websocket HTTP/1.1\r\nHost: x\r\n", within=5
        )
        assert status == 408, (status, body)
        assert b"not complete within 1 s" in body, body
        assert 0.9 <= time.monotonic() - start < 4
        # a normal websocket still connects
        async with raw_factory(srv)(vsn="2.0.0") as c:
            assert (await c.join("realtime:room"))["payload"]["status"] == "ok"


async def test_connections_waiting_for_an_answer_are_capped(make_server):
    limits = ServerLimits(max_pending_connections=5, http_read_timeout_s=2.0)
    async with make_server(limits=limits) as srv:
        partial = b"POST /api/broadcast HTTP/1.1\r\nHost: x\r\n"  # never completes its head
        held = [asyncio.create_task(http_exchange(srv.port, partial)) for _ in range(5)]
        await eventually(lambda: srv._gate.pending == 5, 5, what="five connections pending")
        status, body = await http_exchange(srv.port, partial, within=5)
        assert status == 503, (status, body)
        assert b"waiting for an answer" in body, body
        assert [s for s, _ in await asyncio.gather(*held)] == [408] * 5
        await eventually(lambda: srv._gate.pending == 0, 5, what="no connection pending")
        async with raw_factory(srv)(vsn="2.0.0") as c:
            assert (await c.join("realtime:room"))["payload"]["status"] == "ok"
