"""PresenceRosterWidget and StatusTimelineWidget on the Python side, fed with envelope events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from harmony_lab.events import RealtimeEvent
from harmony_lab.widgets import PresenceRosterWidget, StatusTimelineWidget
from harmony_lab.widgets._roster import display_status, initials
from tests.frames.frame_events import make_change
from tests.polling import eventually, stays
from tests.widgets.recording_comm import RecordingComm
from tests.widgets.widget_events import status_event

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z


def at(s: float) -> datetime:
    return datetime.fromtimestamp(T0 + s, UTC)


def presence(op: str, payload, *, channel: str = "room:lobby", s: float = 0.0) -> RealtimeEvent:
    return RealtimeEvent(kind="presence", channel=channel, op=op, payload=payload, received_at=at(s))


def typing(op: str, user: str, *, s: float = 0.0, expires: float | None = None) -> RealtimeEvent:
    cols = (
        ("channel_id", "int8"),
        ("user_id", "uuid"),
        ("started_at", "timestamptz"),
        ("expires_at", "timestamptz"),
    )
    row = {"channel_id": 1, "user_id": user, "started_at": at(s).isoformat()}
    if expires is not None:
        row["expires_at"] = at(expires).isoformat()
    return make_change(
        op,
        None if op == "DELETE" else row,
        {"channel_id": 1, "user_id": user} if op == "DELETE" else None,
        table="typing_indicators",
        columns=cols,
        pk_cols=("channel_id", "user_id"),
        received_at=at(s),
    )


def users_by_id(w: PresenceRosterWidget) -> dict[str, dict]:
    return {u["id"]: u for u in w.roster()}


def test_initials_and_status_mapping():
    assert initials("Ada Lovelace") == "AL"
    assert initials("grace_hopper") == "GH"
    assert initials("linus") == "LI"
    assert initials("") == "?"
    assert [display_status(s) for s in ("online", "away", "dnd", "invisible", None, "weird")] == [
        "online",
        "away",
        "dnd",
        "offline",
        "offline",
        "offline",
    ]


def test_roster_follows_sync_join_leave():
    w = PresenceRosterWidget(wall_clock=lambda: T0 + 100)
    w.apply(
        presence(
            "sync",
            {
                "u1": [{"user_id": "u1", "status": "online", "display_name": "Ada Lovelace"}],
                "u2": [{"user_id": "u2", "status": "dnd", "username": "grace"}],
                "u3": [{"user_id": "u3", "status": "invisible"}],
            },
        )
    )
    u = users_by_id(w)
    assert (u["u1"]["status"], u["u1"]["initials"], u["u1"]["name"]) == ("online", "AL", "Ada Lovelace")
    assert u["u2"]["status"] == "dnd"
    assert u["u3"]["status"] == "offline"  # invisible is shown as offline
    w.apply(presence("join", {"key": "u4", "current": [], "new": [{"user_id": "u4", "status": "away"}]}, s=5))
    w.apply(presence("leave", {"key": "u1", "current": [], "left": [{"user_id": "u1"}]}, s=7))
    u = users_by_id(w)
    assert u["u4"]["status"] == "away"
    assert u["u1"]["status"] == "offline"
    assert u["u1"]["last_seen_ms"] == int((T0 + 7) * 1000)
    # present users first, then offline ones
    order = [x["status"] for x in w.roster()]
    assert order == sorted(order, key={"online": 0, "away": 1, "dnd": 2, "offline": 3}.get)
    # a sync without u2 marks u2 offline
    w.apply(presence("sync", {"u4": [{"user_id": "u4", "status": "away"}]}, s=9))
    assert users_by_id(w)["u2"]["status"] == "offline"


def test_other_channels_are_ignored_when_one_is_chosen():
    w = PresenceRosterWidget(channel="room:lobby")
    assert not w.apply(presence("sync", {"u1": [{"user_id": "u1"}]}, channel="room:other"))
    assert w.roster() == []


def test_typing_indicator_from_typing_rows_with_expiry():
    clock = {"t": T0 + 1}
    w = PresenceRosterWidget(wall_clock=lambda: clock["t"], typing_ttl_s=6)
    w.apply(presence("sync", {"u1": [{"user_id": "u1"}], "u2": [{"user_id": "u2"}]}))
    w.apply(typing("INSERT", "u1", s=0, expires=5))
    w.apply(typing("INSERT", "u2", s=0))  # no expiry column: ttl
    u = users_by_id(w)
    assert u["u1"]["typing"]
    assert u["u2"]["typing"]
    assert u["u1"]["typing_until_ms"] == int((T0 + 5) * 1000)
    clock["t"] = T0 + 5.5
    u = users_by_id(w)
    assert not u["u1"]["typing"]
    assert u["u2"]["typing"]
    w.apply(typing("DELETE", "u2", s=5.6))
    assert not users_by_id(w)["u2"]["typing"]


def test_the_roster_dataframe_agrees_with_the_widget_typing_included():
    clock = {"t": T0 + 1}
    names = {"u1": "Ada Lovelace", "u3": "Grace Hopper"}
    w = PresenceRosterWidget(wall_clock=lambda: clock["t"], names=names)
    w.apply(presence("sync", {"u1": [{"user_id": "u1"}], "u2": [{"user_id": "u2", "status": "away"}]}))
    w.apply(presence("join", {"key": "u3", "new": [{"user_id": "u3", "status": "dnd"}]}))
    w.apply(typing("INSERT", "u3", s=0, expires=5))
    comm = w.comm
    assert isinstance(comm, RecordingComm)
    comm.front({"type": "ready"})  # the widget pushes its state: what the browser receives
    shown = w.users
    df = w.df
    assert list(df["id"]) == [u["id"] for u in shown] == ["u1", "u2", "u3"]
    assert list(df["name"]) == [u["name"] for u in shown] == ["Ada Lovelace", "u2", "Grace Hopper"]
    assert list(df["status"]) == [u["status"] for u in shown] == ["online", "away", "dnd"]
    assert list(df["typing"]) == [u["typing"] for u in shown] == [False, False, True]
    assert df["typing_until"][2] == at(5)
    assert df["typing_until"].isna()[:2].all()
    assert str(df["last_seen"].dtype) == "datetime64[us, UTC]"
    # typing expires without an event: both views drop it together
    clock["t"] = T0 + 6
    assert not w.df["typing"].any()
    assert not any(u["typing"] for u in w.roster())


def test_names_are_bounded_and_checked():
    from harmony_lab.widgets._sources import MAX_NAMES

    with pytest.raises(ValueError, match="at most"):
        PresenceRosterWidget(names={str(i): "x" for i in range(MAX_NAMES + 1)})
    with pytest.raises(TypeError, match="mapping of user id"):
        PresenceRosterWidget(names=["alice"])
    w = PresenceRosterWidget(names={"u1": "A" * 1000})
    w.apply(presence("sync", {"u1": [{"user_id": "u1"}]}))
    assert len(w.roster()[0]["name"]) == 200


class FakeHandleRoster:
    """The presence handle's documented surface: ``roster`` and ``on_change(cb) -> remove``."""

    def __init__(self) -> None:
        self.roster: dict = {}
        self.callbacks: list = []

    def on_change(self, cb):
        self.callbacks.append(cb)
        return lambda: self.callbacks.remove(cb)


def test_roster_from_a_presence_handle():
    h = FakeHandleRoster()
    h.roster = {
        "u1": {"status": "online", "last_seen": at(0), "meta": {"display_name": "Ada L"}, "online_at": None}
    }
    w = PresenceRosterWidget(h)
    assert users_by_id(w)["u1"]["initials"] == "AL"
    h.roster = {"u1": {"status": "away", "last_seen": at(3), "meta": {}, "online_at": None}}
    for cb in h.callbacks:
        cb(presence("sync", {}))
    assert users_by_id(w)["u1"]["status"] == "away"
    w.close()
    assert h.callbacks == []


async def test_roster_streams_only_after_ready_at_most_every_tick():
    w = PresenceRosterWidget()
    c = w.comm
    assert isinstance(c, RecordingComm)
    c.clear()
    w.apply(presence("sync", {"u1": [{"user_id": "u1"}]}))
    await stays(lambda: any("users" in u for u in c.updates()), False, for_s=0.25, what="pushes before ready")
    c.front({"type": "ready"})
    assert any(u.get("users") and u["users"][0]["id"] == "u1" for u in c.updates())
    c.clear()
    for i in range(50):
        w.apply(presence("join", {"key": f"x{i}", "new": [{"user_id": f"x{i}"}]}))

    def pushes() -> list[dict]:
        return [u for u in c.updates() if "users" in u]

    await eventually(pushes, what="the roster push")
    await stays(lambda: len(pushes()), 1, for_s=0.25, what="roster pushes for 50 joins in one tick")
    assert len(pushes()[0]["users"]) == 51


def test_timeline_spans_retries_gaps_heartbeats():
    w = StatusTimelineWidget(wall_clock=lambda: T0 + 60)
    w.apply(status_event("messages", "connecting", at=T0))
    w.apply(status_event("messages", "connected", at=T0 + 1))
    w.apply(status_event("messages", "reconnecting", at=T0 + 10, attempt=1, reason="socket closed"))
    w.apply(status_event("messages", "reconnecting", at=T0 + 12, attempt=2, reason="refused"))
    w.apply(status_event("messages", "connected", at=T0 + 15))
    w.apply(
        RealtimeEvent(
            kind="gap",
            channel="messages",
            gap_start=at(10),
            gap_end=at(15),
            reason="drop",
            received_at=at(15),
        )
    )
    w.apply(RealtimeEvent(kind="heartbeat", channel="messages", payload={"rtt_ms": 3.25}, received_at=at(20)))
    w.apply(
        RealtimeEvent(kind="heartbeat", channel="messages", payload={"timeout": True}, received_at=at(21))
    )
    w.apply(status_event("presence", "connected", at=T0 + 2))
    (lane, other) = w.state()
    assert lane["channel"] == "messages"
    assert lane["status"] == "connected"
    ms = lambda s: int((T0 + s) * 1000)  # noqa: E731
    assert [s[:3] for s in lane["spans"]] == [
        [ms(0), ms(1), "connecting"],
        [ms(1), ms(10), "connected"],
        [ms(10), ms(12), "reconnecting"],
        [ms(12), ms(15), "reconnecting"],
        [ms(15), None, "connected"],
    ]
    assert [r[:2] for r in lane["retries"]] == [[ms(10), 1], [ms(12), 2]]
    assert lane["gaps"] == [[ms(10), ms(15), "drop"]]
    assert lane["rtt_ms"] == 3.25
    assert lane["hb_timeouts"] == 1
    assert other["channel"] == "presence"
    assert w.now_ms_for_display() == ms(60)  # the wall clock (within the window of the events)


def test_timeline_replaying_old_history_uses_event_time_as_now():
    w = StatusTimelineWidget(window_s=60)  # real wall clock, events from 2024
    w.apply(status_event("m", "connected", at=T0))
    assert w.now_ms_for_display() == int(T0 * 1000)


def test_timeline_repeats_and_channel_filter():
    w = StatusTimelineWidget(channels=["messages"])
    assert w.apply(status_event("messages", "connected", at=T0))
    assert not w.apply(status_event("messages", "connected", at=T0 + 1))  # a repeat
    assert not w.apply(status_event("other", "connected", at=T0))
    assert len(w.state()) == 1


def test_timeline_trims_history():
    w = StatusTimelineWidget(window_s=10, max_spans=5)
    for k in range(40):
        w.apply(status_event("c", "reconnecting" if k % 2 else "connected", at=T0 + k, attempt=k))
    lane = w.state()[0]
    assert len(lane["spans"]) <= 5
    assert lane["spans"][-1][1] is None


async def test_timeline_pushes_after_ready_only():
    w = StatusTimelineWidget()
    c = w.comm
    c.clear()
    w.apply(status_event("m", "connected", at=T0))
    await stays(lambda: any("lanes" in u for u in c.updates()), False, for_s=0.25, what="pushes before ready")
    c.front({"type": "ready"})
    assert any(u.get("lanes") for u in c.updates())


async def test_timeline_reads_a_replay():
    async def replay():
        for k, st in enumerate(["connecting", "connected", "reconnecting", "connected"]):
            yield status_event("m", st, at=T0 + k)

    w = StatusTimelineWidget(replay())
    want = ["connecting", "connected", "reconnecting", "connected"]
    await eventually(
        lambda: w.state() and [s[2] for s in w.state()[0]["spans"]] == want, what="the replayed spans"
    )


def test_bad_sources_are_rejected():
    with pytest.raises(TypeError, match="add_listener"):
        StatusTimelineWidget(42)

    async def gen():
        yield None

    replay = gen()
    with pytest.raises(RuntimeError, match="running event loop"):
        StatusTimelineWidget(replay)


def test_reset_forgets_everything_seen_and_the_widgets_follow_again():
    roster = PresenceRosterWidget()
    roster.apply(presence("sync", {"u1": [{"user_id": "u1", "presence_ref": "a"}]}))
    roster.apply(typing("INSERT", "u1"))
    assert set(users_by_id(roster)) == {"u1"}
    roster.reset()
    assert roster.roster() == []
    roster.apply(presence("join", {"key": "u2", "new": [{"user_id": "u2", "presence_ref": "b"}]}))
    assert set(users_by_id(roster)) == {"u2"}  # the presence state started over too

    timeline = StatusTimelineWidget()
    timeline.apply(status_event("messages", "connected", at=T0))
    assert [lane["channel"] for lane in timeline.state()] == ["messages"]
    timeline.reset()
    assert timeline.state() == []
    timeline.apply(status_event("inbox", "connecting", at=T0 + 5))
    assert [lane["channel"] for lane in timeline.state()] == ["inbox"]
