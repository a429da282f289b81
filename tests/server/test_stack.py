"""LocalRealtime end to end: Postgres + schema + hub + server, async and thread modes, and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates
from supabase import acreate_client

from harmony_lab.local.stack import LocalRealtime
from harmony_lab.server import RemoteFaults
from tests.polling import eventually


async def test_insert_reaches_a_realtime_py_callback():
    from harmony_lab.local.schema import ALICE, GENERAL

    async with LocalRealtime() as rt:
        assert rt.hub is not None, "the postgres_changes hub did not start"
        client = AsyncRealtimeClient(rt.ws_url, token=rt.anon_key, auto_reconnect=False)
        await client.connect()
        try:
            await client.set_auth(rt.token_for(str(ALICE), email="alice@example.com"))
            got: list[dict[str, Any]] = []
            states: list[Any] = []
            systems: list[Any] = []
            ch = client.channel("general")
            ch.on_postgres_changes("INSERT", got.append, table="messages", filter=f"channel_id=eq.{GENERAL}")
            ch.on_system(systems.append)
            await ch.subscribe(lambda s, e: states.append((s, e)))
            await eventually(lambda: systems, within=10)
            assert states[0][0] == RealtimeSubscribeStates.SUBSCRIBED
            assert systems[0].message == "Subscribed to PostgreSQL"
            await rt.execute(
                "insert into public.messages (channel_id, user_id, content) values (%s, %s, %s)",
                GENERAL, ALICE, "hello from the stack",
            )  # fmt: skip
            await eventually(lambda: got, within=10)
            data = got[0]["data"]
            assert data["type"] == "INSERT"
            assert data["table"] == "messages"
            assert data["record"]["content"] == "hello from the stack"
            assert data["errors"] is None
        finally:
            await client.close()


async def test_supabase_py_on_the_stack_url():
    async with LocalRealtime(seed=False) as rt:
        assert rt.url.startswith("http://127.0.0.1:")
        sb = await acreate_client(rt.url, rt.anon_key)
        got: list[Any] = []
        try:
            ch = sb.realtime.channel("room", {"config": {"broadcast": {"self": True}}})
            ch.on_broadcast("ping", got.append)
            await ch.subscribe()
            await ch.send_broadcast("ping", {"n": 1})
            await eventually(lambda: got)
        finally:
            await sb.realtime.close()


@pytest.fixture(scope="module")
def threaded() -> Any:
    rt = LocalRealtime(seed=False).start()
    try:
        yield rt
    finally:
        rt.stop()


def test_thread_mode_surface(threaded):
    rt = threaded
    env = rt.env()
    assert set(env) == {
        "HARMONY_LAB_URL",
        "HARMONY_LAB_ANON_KEY",
        "HARMONY_LAB_SERVICE_ROLE_KEY",
        "HARMONY_LAB_DSN",
    }
    assert env["HARMONY_LAB_URL"] == rt.url
    assert rt.ws_url == rt.url.replace("http://", "ws://") + "/realtime/v1"
    claims = jwt.decode(rt.token_for("u1", email="u@example.com"), rt.jwt_secret, algorithms=["HS256"],
                        audience="authenticated")  # fmt: skip
    assert (claims["sub"], claims["role"], claims["email"]) == ("u1", "authenticated", "u@example.com")
    assert jwt.decode(rt.service_role_key, rt.jwt_secret, algorithms=["HS256"])["role"] == "service_role"
    assert "thread" in repr(rt)
    with pytest.raises(RuntimeError, match="already running"):
        asyncio.run(rt.__aenter__())


async def test_thread_mode_from_a_running_loop(threaded):
    rt = threaded
    assert await rt.execute("select %s::int + 1", 41) == [(42,)]
    client = AsyncRealtimeClient(rt.ws_url, token=rt.anon_key, auto_reconnect=False)
    await client.connect()
    try:
        await client.channel("t").subscribe()
        await eventually(lambda: rt.server.connection_count == 1)
        remote = RemoteFaults(rt.url, rt.service_role_key)
        n = await asyncio.to_thread(remote.drop_all, 4000, "remote drop")
        assert n == 1
        assert [h["kind"] for h in await asyncio.to_thread(lambda: remote.history)][-1] == "drop_all"
        await eventually(lambda: rt.server.connection_count == 0)
    finally:
        await client.close()


def test_constructor_rejects_bad_arguments():
    with pytest.raises(TypeError, match="ServerLimits"):
        LocalRealtime(limits={"max_connections": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="port"):
        LocalRealtime(port=70000)
    with pytest.raises(TypeError, match="unexpected keyword"):
        LocalRealtime(nope=1)  # type: ignore[call-arg]
    with pytest.raises(RuntimeError, match="not started"):
        _ = LocalRealtime().url


@pytest.mark.slow
async def test_cli_serve_prints_and_stops_on_sigint():
    secret = "serve-test-secret-" + os.urandom(12).hex()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "harmony_lab.cli", "serve", "--no-seed", "--private-only",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HARMONY_LAB_JWT_SECRET": secret},
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not lines or "Press Ctrl-C" not in lines[-1]:
                line = (await proc.stdout.readline()).decode()
                assert line, f"serve exited early: {lines}"
                lines.append(line)
        url = next(line.split()[1] for line in lines if line.strip().startswith("URL"))
        assert any("anon key" in line for line in lines)
        assert any("DSN" in line for line in lines)
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/realtime/v1/api/ping")).json()["message"] == "ok"
        # --private-only: a public join is refused with Supabase's PrivateOnly error
        assert any(line.split() == ["public", "channels", "refused", "(private", "only)"] for line in lines)
        anon = next(line.split()[-1] for line in lines if line.strip().startswith("anon key"))
        ws_url = url.replace("http://", "ws://") + f"/realtime/v1/websocket?apikey={anon}&vsn=1.0.0"
        async with websockets.connect(ws_url) as ws:
            join = {"topic": "realtime:room", "event": "phx_join", "payload": {"config": {}}, "ref": "1"}
            await ws.send(json.dumps({**join, "join_ref": "1"}))
            async with asyncio.timeout(10):
                reply = json.loads(await ws.recv())
        assert reply["payload"] == {
            "status": "error",
            "response": {"reason": "PrivateOnly: This project only allows private channels"},
        }
        printed = next(line.split()[-1] for line in lines if line.strip().startswith("JWT secret"))
        assert printed == secret  # taken from the environment, never from argv
        cmdline = await asyncio.to_thread(Path(f"/proc/{proc.pid}/cmdline").read_bytes)
        assert secret.encode() not in cmdline
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            rest = (await proc.stdout.read()).decode()
            code = await proc.wait()
        assert code == 0
        assert "stopped" in rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.js
async def test_insert_reaches_realtime_js_over_v2(js):
    from harmony_lab.local.schema import BOB, RANDOM

    async with LocalRealtime() as rt:
        await js.call("connect", client="js", url=rt.ws_url, apikey=rt.anon_key)
        await js.call("setAuth", client="js", token=rt.token_for(str(BOB)))
        binding = {"event": "*", "schema": "public", "table": "messages", "filter": f"channel_id=eq.{RANDOM}"}
        await js.subscribe("js", "random", listen={"postgres_changes": [binding]})
        await js.expect(ev="system", client="js", within=10)
        await rt.execute(
            "insert into public.messages (channel_id, user_id, content) values (%s, %s, 'from bob')",
            RANDOM,
            BOB,
        )
        change = await js.expect(ev="postgres_changes", client="js", within=10)
        payload = change["payload"]
        assert payload["eventType"] == "INSERT"
        assert payload["new"]["content"] == "from bob"
        assert payload["table"] == "messages"
