"""harmony_lab.demo.stack(): the stack from HARMONY_LAB_* or an in-process LocalRealtime."""

from __future__ import annotations

import asyncio
import time

import pytest

from harmony_lab.demo import _stack
from harmony_lab.demo._background import write_env_file
from harmony_lab.demo._stack import ENV_KEYS, RemoteStack, stack, stack_from_env


def full_env(rt) -> dict[str, str]:
    return {**rt.env(), "HARMONY_LAB_JWT_SECRET": rt.jwt_secret}


async def test_remote_stack_from_environment(rt, monkeypatch):
    for key, value in full_env(rt).items():
        monkeypatch.setenv(key, value)
    remote = stack()
    assert isinstance(remote, RemoteStack)
    assert remote.url == rt.url
    assert "another process" in repr(remote)
    assert remote.env() == full_env(rt)
    # tokens are accepted by the server exactly like LocalRealtime's own
    token = remote.token_for("00000000-0000-4000-a000-000000000001")
    claims = rt.server.verifier.verify(token, time.time())
    assert claims["sub"] == "00000000-0000-4000-a000-000000000001"
    assert claims["role"] == "authenticated"
    assert claims["aud"] == "authenticated"
    assert await remote.execute("SELECT count(*) FROM public.channels WHERE kind = %s", "text") == [(3,)]
    assert await remote.execute("SET application_name = 'x'") == []
    # faults go over the admin HTTP endpoint to the running server
    await asyncio.to_thread(remote.faults.latency, 5, 1)
    history = await asyncio.to_thread(lambda: remote.faults.history)
    assert history[-1]["kind"] == "latency"
    await asyncio.to_thread(remote.faults.clear)


def test_incomplete_environment_is_an_error(monkeypatch):
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    assert stack_from_env() is None
    monkeypatch.setenv("HARMONY_LAB_URL", "http://127.0.0.1:1")
    with pytest.raises(RuntimeError, match="incomplete harmony_lab environment"):
        stack_from_env()
    monkeypatch.delenv("HARMONY_LAB_URL")
    with pytest.raises(RuntimeError, match="no running stack in the environment"):
        stack(local=False)
    remote = RemoteStack("http://x", "a", "s", "postgresql://x")
    with pytest.raises(RuntimeError, match="HARMONY_LAB_JWT_SECRET"):
        remote.token_for("u")


def test_without_environment_starts_one_local_stack(monkeypatch):
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(_stack, "_local", None)
    first = stack()
    try:
        assert stack() is first  # re-running a notebook cell reuses it
        assert first.url.startswith("http://127.0.0.1:")
    finally:
        first.stop()
    second = stack()  # a stopped one is replaced
    try:
        assert second is not first
    finally:
        second.stop()
        monkeypatch.setattr(_stack, "_local", None)


def test_env_file_is_shell_sourceable(tmp_path):
    import subprocess

    path = tmp_path / "sub" / "stack.env"
    write_env_file(path, {"HARMONY_LAB_URL": "http://127.0.0.1:5", "HARMONY_LAB_DSN": "host='a b' x=$HOME"})
    out = subprocess.run(
        ["bash", "-c", f'. {path}; printf "%s|%s" "$HARMONY_LAB_URL" "$HARMONY_LAB_DSN"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == "http://127.0.0.1:5|host='a b' x=$HOME"
    assert oct(path.stat().st_mode)[-3:] == "600"


async def test_traffic_defers_to_a_background_simulator_and_is_reused(rt, monkeypatch):
    from harmony_lab.demo import NOTEBOOK_USER, traffic
    from harmony_lab.demo._stack import BackgroundTraffic

    for key, value in {**full_env(rt), "HARMONY_LAB_TRAFFIC": "2.5"}.items():
        monkeypatch.setenv(key, value)
    remote = stack()
    assert remote.traffic == 2.5
    assert remote.env()["HARMONY_LAB_TRAFFIC"] == "2.5"
    background = await traffic(remote)
    assert isinstance(background, BackgroundTraffic)
    assert "2.5 actions/s" in repr(background)
    await background.aclose()
    assert isinstance(await traffic(remote, rate=2.5), BackgroundTraffic)
    topped = await traffic(remote, rate=10, users=3, seed=1)  # asks for more than the background runs
    try:
        assert topped.running
        assert topped.rate == 7.5
        assert not topped.presence_enabled
        assert "rate=7.5/s + 2.5/s in the background" in repr(topped)  # what the notebook gets in all
        assert repr(topped).endswith("presence not simulated here>")  # the background's simulator does it
        await topped.wait_for(lambda s: s.actions >= 3, timeout=30)  # it really writes
    finally:
        await topped.aclose()

    monkeypatch.setenv("HARMONY_LAB_TRAFFIC", "fast")
    with pytest.raises(RuntimeError, match="HARMONY_LAB_TRAFFIC must be a number"):
        stack()

    sim = await traffic(rt, rate=20, users=3, seed=1, presence=False)
    try:
        assert sim.running
        assert await traffic(rt) is sim  # re-running the cell starts no second simulator
        assert NOTEBOOK_USER not in {u.username for u in sim.users}
        assert NOTEBOOK_USER in {u.username for u in sim.bystanders}
    finally:
        await sim.aclose()
