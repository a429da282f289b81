"""dashboard(..., names={user_id: name}) shows display names in its tables and its roster (real stack)."""

from __future__ import annotations

import pytest

from harmony_lab.local.schema import ALICE, BOB
from harmony_lab.widgets import dashboard
from tests.polling import eventually
from tests.widgets.recording_comm import RecordingComm

pytestmark = [
    pytest.mark.filterwarnings("ignore:ConnectionClosed.code is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ConnectionClosed.reason is deprecated:DeprecationWarning"),
]

NAMES = {ALICE: "Alice Liddell", BOB: "Bob Builder"}  # uuid keys, as read from a profiles table
SHOWN = {str(ALICE): "Alice Liddell", str(BOB): "Bob Builder"}


@pytest.fixture
def manager(rt, make_manager):
    """Alice's manager on the stack, with the suite's fast timings (cleaned up by make_manager)."""
    return make_manager(rt.url, rt.anon_key, dsn=rt.dsn, access_token=rt.token_for(str(ALICE)))


def opened_state(widget) -> dict:
    c = widget.comm
    assert isinstance(c, RecordingComm)
    (opened,) = [m for m in c.sent if m["msg_type"] == "comm_open"]
    return opened["data"]["state"]


async def test_names_reach_every_table_and_the_roster(rt, manager):
    bob = await manager.join_presence("lobby", str(BOB))  # no display name in the presence meta
    d = dashboard(manager, tables=["messages", "channels"], presence=bob, timeline=False, names=NAMES)
    try:
        for table in d.tables.values():
            assert table.names == SHOWN
            assert opened_state(table)["names"] == SHOWN  # sent to the browser with the widget
        roster = d.roster
        assert roster is not None
        await eventually(lambda: str(BOB) in {u["id"] for u in roster.roster()}, what="bob in the roster")
        by_id = {u["id"]: u["name"] for u in roster.roster()}
        assert by_id[str(BOB)] == "Bob Builder"
        # the roster's DataFrame view agrees with what the widget shows
        df = roster.df
        assert dict(zip(df["id"], df["name"], strict=True)) == by_id
        roster.comm.front({"type": "ready"})  # the browser side is up: the roster is sent to it
        await eventually(
            lambda: any(u.get("name") == "Bob Builder" for u in roster.users), what="the synced roster"
        )
    finally:
        await d.aclose()


async def test_names_reach_a_roster_that_follows_a_channel_name(rt, manager):
    d = dashboard(manager, presence="lobby", timeline=False, names=NAMES)
    alice = await manager.join_presence("lobby", str(ALICE))
    try:
        roster = d.roster
        assert roster is not None
        await eventually(
            lambda: {u["id"]: u["name"] for u in roster.roster()}.get(str(ALICE)) == "Alice Liddell",
            what="alice by name in the roster",
        )
    finally:
        await d.aclose()
        await alice.leave()


def test_names_are_checked_before_anything_subscribes():
    with pytest.raises(TypeError, match="dashboard: names must be a mapping"):
        dashboard(None, tables=["messages"], names=["Alice"])
