"""The channel runner and the presence handle driven through their host interfaces by a host of our own.

The host (``RunnerHost`` / ``PresenceHost``) is the manager's side of the boundary, so a small recording
host stands in for it here; everything on the other side is real: realtime-py clients, and a real
LocalRealtime where a server is needed.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates

from harmony_lab.events import ChannelStatus, EventKind, PresenceStatus, RealtimeEvent
from harmony_lab.manager import BackoffPolicy
from harmony_lab.manager._clock import SystemClock
from harmony_lab.manager._host import RunnerSettings
from harmony_lab.manager._machine import ChannelState, MachineConfig, TokenRefreshed
from harmony_lab.manager._presence import PresenceHandle
from harmony_lab.manager._runner import ChannelRunner, TokenUnavailableError
from harmony_lab.manager._specs import ChannelSpec
from tests.manager.manager_helpers import REALTIME_PY_DEPRECATIONS
from tests.polling import eventually

pytestmark = REALTIME_PY_DEPRECATIONS


class RecordingHost:
    """A RunnerHost and PresenceHost that records everything it is asked to do."""

    def __init__(self, url: str, key: str = "test-key", *, token: str | None = None) -> None:
        self.url = url
        self.key = key
        self.token = token or key
        self.token_error: str | None = None
        self.clock = SystemClock()
        self.settings = RunnerSettings(
            machine=MachineConfig(backoff=BackoffPolicy(base=0.05, max_delay=0.1, max_retries=3)),
            heartbeat_interval=0.5,
            join_timeout=3.0,
        )
        self.seq = 0
        self.events: list[RealtimeEvent] = []
        self.delivered: list[tuple[RealtimeEvent, list[Any]]] = []
        self.statuses: list[tuple[ChannelState, bool]] = []
        self.clients: list[AsyncRealtimeClient] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.guarded: list[tuple[str, Any]] = []
        self.left: list[str] = []

    def make_event(self, **fields: Any) -> RealtimeEvent:
        self.seq += 1
        return RealtimeEvent(seq=self.seq, received_at=self.clock.now(), **fields)

    def emit(self, **fields: Any) -> RealtimeEvent:
        ev = self.make_event(**fields)
        self.events.append(ev)
        return ev

    def deliver(self, ev: RealtimeEvent, callbacks: Any) -> None:
        self.delivered.append((ev, list(callbacks)))

    def deliver_change(self, ev: RealtimeEvent, callbacks: Any) -> None:
        self.delivered.append((ev, list(callbacks)))

    def status_changed(self, state: ChannelState, *, changed: bool) -> None:
        self.statuses.append((state, changed))

    async def token_for_join(self) -> str:
        if self.token_error is not None:
            raise TokenUnavailableError(self.token_error)
        return self.token

    async def new_client(self, token: str) -> AsyncRealtimeClient:
        client = AsyncRealtimeClient(
            self.url, token=token, auto_reconnect=False, hb_interval=3600, max_retries=1
        )
        self.clients.append(client)
        return client

    async def fetch_gap(self, sub: Any, since: Any, key_columns: Any, known: Any) -> Any:
        raise AssertionError("no backfill in these tests")

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task

    def call_guarded(self, where: str, fn: Any, *args: Any) -> None:
        self.guarded.append((where, fn))
        fn(*args)

    async def leave(self, name: str) -> None:
        self.left.append(name)

    def status_list(self) -> list[ChannelStatus]:
        return [e.status for e in self.events if e.kind is EventKind.STATUS]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_no_token_means_error_and_no_connection():
    host = RecordingHost(f"http://127.0.0.1:{closed_port()}/realtime/v1")
    host.token_error = "access token expired; refresh the session"
    runner = ChannelRunner(host, ChannelSpec("room"))
    runner.start()
    await runner.wait(lambda status, _a: status is ChannelStatus.ERROR, timeout=5)
    assert host.clients == []  # nothing was dialled
    assert host.status_list() == [ChannelStatus.CONNECTING, ChannelStatus.ERROR]
    assert [changed for _, changed in host.statuses] == [True, True]
    assert host.statuses[-1][0].reason == "access token expired; refresh the session"
    # a new token revives it (error kind "auth"), through the host again
    host.token_error = None
    host.url = f"http://127.0.0.1:{closed_port()}/realtime/v1"
    runner.feed(TokenRefreshed())
    await runner.wait(lambda _s, attempt: attempt >= 1, timeout=5)
    assert len(host.clients) >= 1
    await runner.stop("unsubscribed")
    assert runner.machine.status is ChannelStatus.DISCONNECTED


async def test_refused_connections_retry_through_host_tasks_then_give_up():
    host = RecordingHost(f"http://127.0.0.1:{closed_port()}/realtime/v1")
    runner = ChannelRunner(host, ChannelSpec("room"))
    runner.start()
    await runner.wait(lambda status, _a: status is ChannelStatus.ERROR, timeout=10)
    assert host.status_list() == [
        ChannelStatus.CONNECTING,
        ChannelStatus.RECONNECTING,
        ChannelStatus.RECONNECTING,
        ChannelStatus.RECONNECTING,
        ChannelStatus.ERROR,
    ]
    # a status event for every decision; "changed" only where the status moved
    assert [changed for _, changed in host.statuses] == [True, True, False, False, True]
    delays = [e.payload["delay"] for e in host.events if e.kind is EventKind.STATUS and "delay" in e.payload]
    assert len(delays) == 3
    assert all(0 < d <= 0.1 for d in delays)
    assert len(host.clients) == 4  # one client per attempt, each from the host's factory
    assert len(host.tasks) >= 7  # attempts and retry timers all ran as host tasks
    await runner.stop("unsubscribed")
    await eventually(lambda: all(t.done() for t in host.tasks), what="every host task finished")


async def test_joined_runner_reports_and_delivers_through_the_host(rt):
    host = RecordingHost(rt.ws_url, rt.anon_key)
    got: list[RealtimeEvent] = []
    runner = ChannelRunner(host, ChannelSpec("room", topic="room:1"))
    runner.callbacks.append(got.append)
    runner.start()
    await runner.wait(lambda status, _a: status is ChannelStatus.CONNECTED, timeout=10)
    assert runner.topic == "realtime:room:1"
    assert rt.server.registry.topics() == ["realtime:room:1"]
    assert rt.server.broadcast("room:1", "ping", {"n": 1}) == 1
    await eventually(lambda: host.delivered, what="a delivery")
    ev, callbacks = host.delivered[0]
    assert (ev.kind, ev.channel, ev.topic, ev.op, ev.payload) == (
        EventKind.BROADCAST,
        "room",
        "realtime:room:1",
        "ping",
        {"n": 1},
    )
    assert callbacks == [got.append]  # the host calls them; the runner only names them
    assert got == []
    await eventually(lambda: any(e.kind is EventKind.HEARTBEAT for e in host.events), what="a heartbeat")
    await runner.stop("unsubscribed")
    assert host.status_list()[-1] is ChannelStatus.DISCONNECTED
    await eventually(lambda: rt.server.stats["connections"] == 0, what="the socket closed")


async def test_an_authorization_refusal_is_error_with_the_servers_reason_and_no_retry():
    host = RecordingHost(f"http://127.0.0.1:{closed_port()}/realtime/v1")
    runner = ChannelRunner(host, ChannelSpec("dm", topic="dm:alice-bob", private=True))
    runner.start()
    reason = "Unauthorized: You do not have permissions to read from this Channel topic: dm:alice-bob"
    # what realtime-py hands the subscribe callback for a join error reply
    runner._on_subscribe_state(
        runner.generation, RealtimeSubscribeStates.CHANNEL_ERROR, Exception(json.dumps({"reason": reason}))
    )
    state = runner.machine.snapshot()
    assert state.status is ChannelStatus.ERROR
    assert state.reason == f"refused: {reason}"
    assert runner.machine.error_kind == "auth"
    assert not runner.machine.retry_armed
    await runner.stop("unsubscribed")


async def test_presence_handle_through_its_host():
    host = RecordingHost("http://127.0.0.1:1/realtime/v1")

    class Link:
        name = "lobby"
        channel = None
        joined = False

    handle = PresenceHandle(host, Link(), "lobby", "alice", PresenceStatus.ONLINE, {"device": "lab"})
    seen: list[RealtimeEvent] = []
    handle.on_change(seen.append)
    await handle.set_status("away")  # not joined: kept until the next join
    assert handle.status is PresenceStatus.AWAY
    assert handle.calls_sent == 0
    with pytest.raises(ValueError, match="presence status must be one of online, away, dnd, invisible"):
        await handle.set_status("busy")
    ev = host.make_event(kind=EventKind.PRESENCE, channel="lobby", op="sync")
    handle._on_sync({"k": [{"user_id": "bob", "status": "dnd"}]}, ev)
    assert handle.roster["bob"]["status"] == "dnd"
    assert seen == [ev]
    assert host.guarded == [("presence 'lobby'", seen.append)]
    await handle.leave()
    assert host.left == ["lobby"]
    gone = PresenceHandle(host, None, "lobby", "alice", PresenceStatus.ONLINE, None)
    assert gone.closed
    assert gone.superseded
    with pytest.raises(RuntimeError, match="join_presence again"):
        await gone.set_status("away")


def test_presence_status_coercion_lives_on_the_enum():
    assert PresenceStatus.coerce("dnd") is PresenceStatus.DND
    assert PresenceStatus.coerce(PresenceStatus.AWAY) is PresenceStatus.AWAY
    with pytest.raises(ValueError, match="got 'busy'"):
        PresenceStatus.coerce("busy")
