"""Recording a real stream: the manager against a LocalRealtime, and the CLI end to end."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from harmony_lab.events import ChannelStatus, EventKind
from harmony_lab.local.schema import ALICE, GENERAL
from harmony_lab.manager import RealtimeConnectionManager
from harmony_lab.recording import Recorder, read_recording, replay
from harmony_lab.recording._manifest import read_manifest
from tests.polling import eventually
from tests.recording.test_roundtrip import assert_same_events

pytestmark = [
    pytest.mark.filterwarnings("ignore:ConnectionClosed.code is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ConnectionClosed.reason is deprecated:DeprecationWarning"),
]

INSERT_MSG = "insert into messages (channel_id, user_id, content) values (%s, %s, %s) returning id"


async def test_recording_a_manager_round_trips_real_events(rt, tmp_path):
    seen = []
    async with RealtimeConnectionManager(rt.url, rt.service_role_key, heartbeat_interval=0.5) as mgr:
        remove = mgr.add_listener(seen.append)
        async with Recorder(mgr, tmp_path, flush_seconds=0.2) as rec:
            state = await mgr.subscribe_to_table("general", "messages", filter=f"channel_id=eq.{GENERAL}")
            assert state.status is ChannelStatus.CONNECTED
            ids = [(await rt.execute(INSERT_MSG, GENERAL, ALICE, f"m{i}"))[0][0] for i in range(5)]
            await rt.execute("update messages set content = 'edited' where id = %s", ids[0])
            await eventually(
                lambda: sum(e.kind is EventKind.CHANGE for e in seen) >= 6, what="six change events"
            )
            await eventually(lambda: any(e.kind is EventKind.HEARTBEAT for e in seen), what="a heartbeat")
            await mgr.unsubscribe("general")
        remove()
    recorded = [ev async for ev in replay(tmp_path, speed=None)]
    assert_same_events(recorded, seen)  # every event the manager published, identical
    changes = [e for e in recorded if e.kind is EventKind.CHANGE]
    assert [e.pk["id"] for e in changes] == [*ids, ids[0]]
    assert [e.op for e in changes] == ["INSERT"] * 5 + ["UPDATE"]
    assert changes[0].new["content"] == "m0"
    df = read_recording(tmp_path)
    assert list(df["seq"]) == [e.seq for e in seen]
    m = read_manifest(tmp_path)["sessions"][rec.session_id]
    assert m["events"] == len(seen)
    assert "general" in m["bindings"]["channels"]
    assert m["source"].startswith("manager: harmony_lab.manager")


async def test_cli_record_inspect_replay_end_to_end(rt, tmp_path):
    out = tmp_path / "rec"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harmony_lab.cli",
        "record",
        "--url",
        rt.url,
        "--key",
        rt.service_role_key,
        "--table",
        "messages",
        "--filter",
        f"channel_id=eq.{GENERAL}",
        "--out",
        str(out),
        "--flush-seconds",
        "0.2",
        "--duration",
        "60",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        def connected() -> bool:
            if not list(Path(out).rglob("*.parquet")):
                return False
            df = read_recording(out, kinds="status")
            return "connected" in set(df["status"])

        await eventually(connected, within=60, what="the CLI's channel to connect")
        ids = [(await rt.execute(INSERT_MSG, GENERAL, ALICE, f"cli {i}"))[0][0] for i in range(4)]

        def all_recorded() -> bool:
            df = read_recording(out, kinds="change")
            return len(df) >= len(ids)

        await eventually(all_recorded, within=30, what="the inserts to be recorded")
        proc.terminate()  # SIGTERM: the CLI stops cleanly and flushes
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = err.decode()
    assert proc.returncode == 0, stderr
    assert "events" in stderr
    assert "files" in stderr
    assert "recorded" in stderr.splitlines()[-1]
    df = read_recording(out, kinds="change")
    assert df["op"].tolist() == ["INSERT"] * 4
    assert [int(p.split(":")[1].rstrip("}")) for p in df["pk"]] == ids
    (session,) = read_manifest(out)["sessions"].values()
    assert session["status"] == "stopped"
    # a graceful stop: the channel's final status (left on cleanup) is in the recording too
    statuses = read_recording(out, kinds="status")["status"].tolist()
    assert statuses[-1] == "disconnected"

    inspect = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "harmony_lab.cli", "inspect", str(out), stdout=asyncio.subprocess.PIPE
    )
    text = (await inspect.communicate())[0].decode()
    assert inspect.returncode == 0
    assert "record:public.messages" in text
    assert "change" in text
    assert session["session_id"] in text

    play = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harmony_lab.cli",
        "replay",
        str(out),
        "--speed",
        "max",
        "--kind",
        "change",
        stdout=asyncio.subprocess.PIPE,
    )
    lines = (await play.communicate())[0].decode().splitlines()
    assert play.returncode == 0
    assert len(lines) == 4
    assert all("INSERT public.messages" in line for line in lines)


async def test_presence_sessions_of_a_real_presence_stream(rt, tmp_path):
    from harmony_lab import analysis

    seen = []
    async with (
        RealtimeConnectionManager(rt.url, rt.service_role_key) as alice,
        RealtimeConnectionManager(rt.url, rt.service_role_key) as bob,
    ):
        alice.add_listener(seen.append)
        async with Recorder(alice, tmp_path, flush_seconds=0.2):
            await alice.join_presence("lobby", "alice")
            await eventually(lambda: presence_keys(seen) >= {"alice"}, what="alice's own presence")
            await bob.join_presence("lobby", "bob")
            await eventually(lambda: "bob" in presence_keys(seen, "join"), what="bob joining")
            await bob.unsubscribe("lobby")
            await eventually(lambda: "bob" in presence_keys(seen, "leave"), what="bob leaving")
    joined = next(e for e in seen if e.op == "join" and e.payload["key"] == "bob")
    left = next(e for e in seen if e.op == "leave" and e.payload["key"] == "bob")
    sessions = analysis.presence_sessions(read_recording(tmp_path))
    bob_rows = sessions[sessions["key"] == "bob"]
    assert len(bob_rows) == 1
    row = bob_rows.iloc[0]
    assert row["joined_at"].to_pydatetime() == joined.received_at
    assert row["left_at"].to_pydatetime() == left.received_at
    assert row["end_reason"] == "leave"
    alice_rows = sessions[sessions["key"] == "alice"]
    assert len(alice_rows) >= 1
    assert alice_rows.iloc[0]["channel"] == "lobby"


def presence_keys(events, op: str | None = None) -> set[str]:
    keys = set()
    for e in events:
        if e.kind is not EventKind.PRESENCE or (op is not None and e.op != op):
            continue
        if e.op == "sync":
            keys |= set(e.payload)
        else:
            keys.add(e.payload["key"])
    return keys
