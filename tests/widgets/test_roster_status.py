"""Status lines of the roster (its presence channel) and the timeline (its worst channel): live while
all is well, the status and why otherwise. Real manager (against a refused port and the real embedded
stack), the widgets' comms recorded."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from harmony_lab.frames import LiveFrame
from harmony_lab.manager import BackoffPolicy, RealtimeConnectionManager
from harmony_lab.widgets import PresenceRosterWidget, StatusTimelineWidget
from tests.polling import eventually
from tests.widgets.recording_comm import install

pytestmark = [
    pytest.mark.filterwarnings("ignore:ConnectionClosed.code is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ConnectionClosed.reason is deprecated:DeprecationWarning"),
]
FAST = BackoffPolicy(base=0.1, max_delay=0.3, max_retries=100)


def _refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _shown(widget: PresenceRosterWidget) -> str:
    return f"{widget.status} · {widget.reason}" if widget.reason else widget.status


async def test_a_roster_on_a_channel_nobody_joined_says_so(monkeypatch):
    install(monkeypatch)
    mgr = RealtimeConnectionManager(_refused_url(), "anon-key", backoff=FAST)
    roster = PresenceRosterWidget(mgr, channel="presence:lobby")
    try:
        roster.comm.front({"type": "ready"})
        assert _shown(roster) == "disconnected · not subscribed"
    finally:
        roster.close()
        await mgr.cleanup()
        RealtimeConnectionManager.reset_instance()


async def test_a_roster_whose_presence_cannot_connect_shows_why(monkeypatch):
    install(monkeypatch)
    mgr = RealtimeConnectionManager(_refused_url(), "anon-key", backoff=FAST, join_timeout=3.0)
    joining = asyncio.ensure_future(mgr.join_presence("lobby", "00000000-0000-4000-a000-000000000001"))
    roster = PresenceRosterWidget(mgr, channel="lobby")
    try:
        roster.comm.front({"type": "ready"})
        await eventually(lambda: roster.status == "reconnecting", within=10, what="status reconnecting")
        await eventually(lambda: "refused" in roster.reason.lower(), within=5, what="the reason")
        assert "attempt" in roster.reason
    finally:
        joining.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await joining
        roster.close()
        await mgr.cleanup()
        RealtimeConnectionManager.reset_instance()


async def test_a_roster_of_a_joined_presence_is_live(rt, monkeypatch):
    install(monkeypatch)
    mgr = RealtimeConnectionManager(rt.url, rt.anon_key, backoff=FAST)
    me = await mgr.join_presence("lobby", "00000000-0000-4000-a000-000000000001", status="online")
    roster = PresenceRosterWidget(me, events=mgr)
    try:
        roster.comm.front({"type": "ready"})
        await eventually(lambda: roster.status == "live" and roster.reason == "", within=10)
        await eventually(lambda: roster.df["status"].tolist() == ["online"], within=10, what="me, online")
        await eventually(lambda: any(u.get("users") for u in roster.comm.updates()), within=5)
    finally:
        roster.close()
        await mgr.cleanup()
        RealtimeConnectionManager.reset_instance()


async def test_the_timeline_names_its_worst_channel_and_why(rt, monkeypatch):
    install(monkeypatch)
    good = RealtimeConnectionManager(rt.url, rt.anon_key, backoff=FAST)
    timeline = StatusTimelineWidget(good)
    ok = LiveFrame(good, "messages", snapshot=False, name="feed")
    try:
        timeline.comm.front({"type": "ready"})
        await asyncio.wait_for(ok.ready(), 30)
        await eventually(lambda: _shown(timeline) == "live", within=10, what="live")
        rt.faults.refuse(4)  # new connections get a 503 for 4 s
        rt.faults.drop_all()
        await eventually(lambda: timeline.status == "reconnecting", within=10, what="reconnecting")
        await eventually(lambda: timeline.reason.startswith("feed: "), within=5, what="the channel named")
        assert "attempt" in timeline.reason
        assert "503" in timeline.reason
        await eventually(lambda: _shown(timeline) == "live", within=30, what="live again")
    finally:
        timeline.close()
        await ok.aclose()
        await good.cleanup()
        RealtimeConnectionManager.reset_instance()
