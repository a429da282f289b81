"""Helpers for the server tests: a real RealtimeServer per test, raw websocket clients, realtime-js.

Fixtures are re-exported by ``conftest.py``; test modules import helpers from here
(import it as ``tests.server.rt_helpers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from harmony_lab.server._auth import make_token
from harmony_lab.server._codec import decode_server_binary
from harmony_lab.server._limits import ServerLimits
from harmony_lab.server._server import RealtimeServer
from tests.polling import eventually

IN_CI = bool(os.environ.get("CI"))


def skip_or_fail(reason: str) -> None:
    """Skip on a developer machine; fail in CI (same rule as tests/conftest.py)."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


SECRET = "test-secret-with-at-least-32-characters!"
JS_DIR = Path(__file__).resolve().parent.parent / "js"


def token(role: str = "anon", expires_in: float = 3600, secret: str = SECRET, **claims: Any) -> str:
    now = int(time.time())
    return make_token(secret, {"role": role, "exp": int(now + expires_in), "iat": now, **claims})


ANON = token("anon", 10 * 365 * 86400)
SERVICE = token("service_role", 10 * 365 * 86400)


@pytest.fixture
async def server() -> AsyncIterator[RealtimeServer]:
    async with RealtimeServer(jwt_secret=SECRET) as srv:
        yield srv


@pytest.fixture
def make_server() -> Callable[..., Any]:
    """Start a server with custom limits: ``async with make_server(limits=...) as srv``."""

    def factory(**kwargs: Any) -> RealtimeServer:
        kwargs.setdefault("jwt_secret", SECRET)
        return RealtimeServer(**kwargs)

    return factory


class Raw:
    """A raw websocket client speaking V1 or V2 frames, recording everything it receives."""

    def __init__(self, ws: ClientConnection, vsn: str) -> None:
        self.ws = ws
        self.vsn = vsn
        self.frames: list[Any] = []
        self._refs = itertools.count(1)
        self._task = asyncio.create_task(self._reader())

    async def _reader(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for frame in self.ws:
                if isinstance(frame, bytes):
                    self.frames.append(decode_server_binary(frame))
                else:
                    self.frames.append(json.loads(frame))

    def ref(self) -> str:
        return str(next(self._refs))

    async def send(self, topic: str, event: str, payload: Any, ref: Any = None, join_ref: Any = None) -> None:
        if self.vsn == "1.0.0":
            await self.ws.send(
                json.dumps(
                    {"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": join_ref}
                )
            )
        else:
            await self.ws.send(json.dumps([join_ref, ref, topic, event, payload]))

    async def send_raw(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    def norm(self, f: Any) -> dict[str, Any]:
        """Frames as dicts: V2 arrays become {join_ref, ref, topic, event, payload}."""
        if isinstance(f, list):
            return dict(zip(("join_ref", "ref", "topic", "event", "payload"), f, strict=False))
        return f

    def messages(self, event: str | None = None, topic: str | None = None) -> list[dict[str, Any]]:
        out = []
        for f in self.frames:
            m = self.norm(f)
            if "kind" in m:
                m = {**m, "event": "broadcast" if m["kind"] == 4 else m.get("event")}
            if (event is None or m.get("event") == event) and (topic is None or m.get("topic") == topic):
                out.append(m)
        return out

    async def expect(
        self, event: str, topic: str | None = None, *, ref: Any = ..., within: float = 5.0
    ) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for m in self.messages(event, topic):
                if ref is ... or m.get("ref") == ref:
                    return m
            return None

        return await eventually(find, within)

    async def join(self, topic: str, payload: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        ref = self.ref()
        await self.send(topic, "phx_join", payload if payload is not None else {"config": {}}, ref, ref)
        reply = await self.expect("phx_reply", topic, ref=ref, **kw)
        return {"ref": ref, **reply}

    async def close(self) -> None:
        await self.ws.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
def raw(server: RealtimeServer) -> Callable[..., Any]:
    """``async with raw(vsn="2.0.0") as c`` — a raw client of the ``server`` fixture."""
    return raw_factory(server)


def raw_factory(server: RealtimeServer) -> Callable[..., Any]:
    @contextlib.asynccontextmanager
    async def connect(
        vsn: str | None = "1.0.0", apikey: str | None = ANON, path: str = "/realtime/v1/websocket", **kw: Any
    ) -> AsyncIterator[Raw]:
        query = []
        if apikey is not None:
            query.append(f"apikey={apikey}")
        if vsn is not None:
            query.append(f"vsn={vsn}")
        url = f"ws://127.0.0.1:{server.port}{path}?{'&'.join(query)}"
        async with websockets.connect(url, **kw) as ws:
            client = Raw(ws, vsn or "1.0.0")
            try:
                yield client
            finally:
                await client.close()

    return connect


@contextlib.asynccontextmanager
async def raw_clients(server: RealtimeServer, apikey: str) -> AsyncIterator[Callable[..., Any]]:
    """``await make(vsn="1.0.0", **connect_kw)``: raw clients with ``apikey``, all closed on exit."""
    connect = raw_factory(server)
    async with contextlib.AsyncExitStack() as opened:

        async def make(vsn: str = "1.0.0", **kw: Any) -> Raw:
            return await opened.enter_async_context(connect(vsn=vsn, apikey=apikey, **kw))

        yield make


# ---------------------------------------------------------------------------------------------
# realtime-js under node


class JsDriver:
    """Drives tests/js/driver.mjs (realtime-js / supabase-js) with line-based JSON."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reqs = itertools.count(1)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("ev") == "reply" and msg.get("req") in self._replies:
                self._replies.pop(msg["req"]).set_result(msg)
            else:
                self.events.append(msg)

    async def call(self, cmd: str, within: float = 15.0, **args: Any) -> dict[str, Any]:
        req = next(self._reqs)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[req] = fut
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"req": req, "cmd": cmd, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        reply = await asyncio.wait_for(fut, within)
        if not reply.get("ok"):
            raise AssertionError(f"js {cmd} failed: {reply.get('error')}")
        return reply

    def find(self, **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.events if all(e.get(k) == v for k, v in match.items())]

    async def expect(self, within: float = 10.0, **match: Any) -> dict[str, Any]:
        found = await eventually(lambda: self.find(**match), within)
        return found[0]

    async def subscribe(self, client: str, topic: str, within: float = 10.0, **kw: Any) -> None:
        await self.call("channel", client=client, topic=topic, **kw)
        status = await self.expect(within, ev="status", client=client, topic=topic)
        assert status["status"] == "SUBSCRIBED", status

    async def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
async def js() -> AsyncIterator[JsDriver]:
    node = shutil.which("node")
    if node is None:
        skip_or_fail("node is not installed")
    if not (JS_DIR / "node_modules" / "@supabase" / "realtime-js").exists():
        skip_or_fail("realtime-js is not installed: run `cd tests/js && npm ci`")
    assert node is not None
    proc = await asyncio.create_subprocess_exec(
        node,
        "--experimental-websocket",
        "--no-warnings",
        str(JS_DIR / "driver.mjs"),
        cwd=str(JS_DIR),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    driver = JsDriver(proc)
    await driver.expect(within=20, ev="ready")
    try:
        yield driver
    finally:
        await driver.close()


__all__ = [
    "ANON",
    "SECRET",
    "SERVICE",
    "JsDriver",
    "Raw",
    "ServerLimits",
    "raw_factory",
    "token",
]
