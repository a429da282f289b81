"""dashboard() against the real stack: LocalRealtime + RealtimeConnectionManager."""

from __future__ import annotations

import ipywidgets
import pytest

from harmony_lab.frames import LiveFrame
from harmony_lab.local.schema import ALICE, BOB, GENERAL
from harmony_lab.widgets import LiveTableWidget, PresenceRosterWidget, StatusTimelineWidget, dashboard
from tests.widgets.recording_comm import RecordingComm, rows_of

pytestmark = [
    pytest.mark.filterwarnings("ignore:ConnectionClosed.code is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ConnectionClosed.reason is deprecated:DeprecationWarning"),
]


@pytest.fixture
def manager(rt, make_manager):
    """Alice's manager on the stack, with the suite's fast timings (cleaned up by make_manager)."""
    return make_manager(rt.url, rt.anon_key, dsn=rt.dsn, access_token=rt.token_for(str(ALICE)))


async def test_dashboard_composes_and_streams(rt, manager):
    me = await manager.join_presence("lobby", str(BOB), meta={"display_name": "Bob"})
    d = dashboard(manager, tables=["messages", "channels"], presence=me)
    assert isinstance(d, ipywidgets.VBox)
    tab, bottom = d.children
    assert isinstance(tab, ipywidgets.Tab)
    assert [tab.get_title(i) for i in range(2)] == ["messages", "channels"]
    assert all(isinstance(w, LiveTableWidget) for w in tab.children)
    assert isinstance(bottom.children[0], PresenceRosterWidget)
    assert isinstance(bottom.children[1], StatusTimelineWidget)
    assert set(d.frames) == {"messages", "channels"}
    for f in d.frames.values():
        await f.ready()
        await manager.wait_for_status(f.name, "connected", timeout=30)
    table = d.tables["messages"]
    c = table.comm
    assert isinstance(c, RecordingComm)
    c.front({"type": "ready"})
    c.clear()
    (new_id,) = (
        await rt.execute(
            "insert into messages (channel_id, user_id, content) values (%s, %s, 'via dashboard') "
            "returning id",
            GENERAL,
            ALICE,
        )
    )[0]
    await d.frames["messages"].wait_until(lambda f: new_id in f, within_s=30)
    await d.frames["messages"].wait_until(lambda f: bool(c.customs("delta")), within_s=2)
    (delta,) = c.customs("delta")
    assert rows_of(delta["_buffers"][0])[0]["content"] == "via dashboard"
    # the timeline sees every channel of the manager, the roster sees Bob
    names = {lane["channel"] for lane in d.timeline.state()}
    assert {d.frames["messages"].name, "lobby"} <= names
    assert any(u["id"] == str(BOB) for u in d.roster.roster())
    await d.aclose()
    assert all(f.name not in manager.channels for f in d.frames.values())


async def test_dashboard_accepts_frames_and_a_presence_channel_name(rt, manager):
    lf = LiveFrame(manager, "messages")
    d = dashboard(manager, tables=[lf], presence="lobby", timeline=False)
    (table, bottom) = d.children
    assert bottom.children == (d.roster,)
    assert isinstance(table, LiveTableWidget)
    assert table.frame is lf
    assert d.timeline is None
    assert d.roster is not None
    assert d.roster.channel == "lobby"
    await d.aclose()


def test_dashboard_rejects_bad_tables():
    with pytest.raises(TypeError, match="table names or LiveFrames"):
        dashboard(None, tables=[42])
