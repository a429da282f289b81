"""subscribe_to_broadcast(..., replay=BroadcastReplay(...)): a private channel gets the broadcasts its topic
stored (``realtime.send``) — the recent ones on the first join, and after a gap those stored while it was
gone — as backfilled broadcast events, none twice. The ReplayBook rules first, then the real stack."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from harmony_lab import BroadcastReplay
from harmony_lab.events import ChannelStatus, EventKind, RealtimeEvent
from harmony_lab.manager._replay import SEEN_IDS, ReplayBook
from tests.manager.manager_helpers import REALTIME_PY_DEPRECATIONS
from tests.polling import eventually, stays

pytestmark = REALTIME_PY_DEPRECATIONS

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
MS = 1_796_299_200_000  # T0 in epoch milliseconds


def test_the_first_join_asks_from_since_and_a_rejoin_from_the_gap_minus_the_lookback():
    book = ReplayBook("c", BroadcastReplay(since=timedelta(minutes=1), limit=5, lookback=2.0), T0)
    assert book.join_config() == {"since": MS - 60_000, "limit": 5}
    assert book.join_config() == {"since": MS - 60_000, "limit": 5}  # a refused join asks again
    book.joined()
    assert book.join_config() is None  # a plain rejoin (no gap seen) asks for nothing
    book.gap_started(T0 + timedelta(seconds=30))
    book.gap_started(T0 + timedelta(seconds=40))  # a second gap before the rejoin: the earliest wins
    assert book.join_config() == {"since": MS + 28_000, "limit": 5}
    book.joined()
    assert book.join_config() is None
    no_catch_up = ReplayBook("c", BroadcastReplay(since=T0, catch_up=False), T0)
    no_catch_up.joined()
    no_catch_up.gap_started(T0)
    assert no_catch_up.join_config() is None
    assert ReplayBook("c", None, T0).join_config() is None


def test_a_message_id_is_delivered_once_and_a_full_catch_up_is_reported(caplog):
    book = ReplayBook("dm", BroadcastReplay(limit=2), T0)
    assert book.deliver({"id": "a"}) is True
    assert book.deliver({"id": "a", "replayed": True}) is False
    assert book.deliver(None) is True  # plain broadcasts carry no id
    assert book.deliver({}) is True
    book.gap_started(T0)
    assert book.join_config() == {"since": MS - 2000, "limit": 2}
    book.joined()
    with caplog.at_level(logging.WARNING, logger="harmony_lab.manager._replay"):
        assert book.deliver({"id": "b", "replayed": True}) is True
        assert caplog.records == []
        assert book.deliver({"id": "c", "replayed": True}) is True
    assert "returned its limit (2 messages)" in caplog.text
    assert book.stats == {"replayed": 2, "duplicates": 1, "truncated_catch_ups": 1}
    for i in range(SEEN_IDS + 1):  # the memory of ids is bounded: the oldest is forgotten
        book.deliver({"id": f"x{i}"})
    assert book.deliver({"id": "x0"}) is True
    assert book.deliver({"id": f"x{SEEN_IDS}"}) is False


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"since": datetime(2026, 1, 1)}, "aware datetime"),  # naive on purpose
        ({"since": timedelta(seconds=-1)}, ">= 0"),
        ({"limit": 26}, "from 1 to 25"),
        ({"limit": 0}, "from 1 to 25"),
        ({"catch_up": "yes"}, "True or False"),
        ({"lookback": -1}, "seconds >= 0"),
    ],
)
def test_bad_replay_options_say_what_to_pass(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BroadcastReplay(**kwargs)


async def test_replay_needs_a_private_channel(rt, make_manager):
    mgr = make_manager(rt.url, rt.anon_key)
    with pytest.raises(ValueError, match="replay needs a private channel"):
        await mgr.subscribe_to_broadcast("room", "room:1", replay=BroadcastReplay())
    with pytest.raises(TypeError, match="BroadcastReplay"):
        await mgr.subscribe_to_broadcast("room", "room:1", private=True, replay={"since": 0})  # type: ignore[arg-type]


OPEN_READ = (
    "CREATE POLICY lab_replay_read ON realtime.messages FOR SELECT TO anon, authenticated "
    "USING (realtime.topic() LIKE 'replay-%')"
)


async def store(rt, topic: str, *ns: int) -> None:
    for n in ns:
        await rt.execute("select realtime.send(%s::jsonb, 'note', %s, true)", json.dumps({"n": n}), topic)


def notes(events: list[RealtimeEvent]) -> list[tuple[int, bool]]:
    return [(e.payload["n"], e.backfilled) for e in events if e.kind is EventKind.BROADCAST]


async def test_stored_broadcasts_on_join_and_the_ones_missed_during_a_gap(rt, make_manager):
    await rt.execute(OPEN_READ)
    topic = "replay-room"
    await store(rt, topic, 1, 2, 3)
    mgr = make_manager(rt.url, rt.anon_key)
    got: list[RealtimeEvent] = []
    state = await mgr.subscribe_to_broadcast(
        "room", topic, private=True, callback=got.append, replay=BroadcastReplay(since=timedelta(minutes=5))
    )
    assert state.status is ChannelStatus.CONNECTED
    await eventually(
        lambda: notes(got) == [(1, True), (2, True), (3, True)], what="the stored three, replayed"
    )
    await store(rt, topic, 4)
    await eventually(lambda: notes(got)[-1:] == [(4, False)], what="a live one")

    # a gap: every connection dropped and refused for a while; two messages are stored meanwhile
    rt.faults.refuse(1.5)
    rt.faults.drop_all(code=1001, reason="test: gap")
    await mgr.wait_for_status("room", "reconnecting", timeout=10)
    await store(rt, topic, 5, 6)
    await mgr.wait_for_status("room", "connected", timeout=20)
    await eventually(lambda: len(notes(got)) >= 6, what="the two stored during the gap")
    # the catch-up asked from the gap's start minus the lookback: 4 came back too and was dropped
    await stays(
        lambda: notes(got), [(1, True), (2, True), (3, True), (4, False), (5, True), (6, True)], for_s=0.5
    )
    info = mgr.get_debug_info()["channels"]["room"]
    assert info["replay"]["replayed"] == 5
    assert info["replay"]["duplicates"] >= 1
    assert "replay limit=25 catch-up" in info["bindings"]
