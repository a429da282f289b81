"""The one way sources are recognised and streams are read (harmony_lab._feed), and that LiveFrame,
the widgets and the recorder all go through it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from harmony_lab._feed import YIELD_EVERY, EventSource, is_presence_handle, pump, source_kind
from harmony_lab.events import EventKind, RealtimeEvent


def _ev(n: int) -> RealtimeEvent:
    return RealtimeEvent(kind=EventKind.BROADCAST, channel="c", op="e", seq=n)


class Listening:
    def __init__(self) -> None:
        self.fns: list = []

    def add_listener(self, fn):
        self.fns.append(fn)
        return lambda: self.fns.remove(fn)


async def _stream(n: int) -> AsyncIterator[RealtimeEvent]:
    for i in range(n):
        yield _ev(i)


def test_source_forms():
    assert source_kind(None, "x") == "none"
    assert source_kind(Listening(), "x") == "listener"
    assert isinstance(Listening(), EventSource)
    assert source_kind(_stream(1), "x") == "stream"
    assert source_kind([_ev(1)], "x", iterables=True) == "iterable"
    with pytest.raises(TypeError, match=r"Thing: source must be .*add_listener.*got list"):
        source_kind([_ev(1)], "Thing")
    with pytest.raises(TypeError, match="got str"):
        source_kind("messages", "Thing", iterables=True)
    assert not is_presence_handle(Listening())


async def test_pump_yields_to_the_loop_every_256_events_and_can_stop():
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    seen: list[int] = []
    before = ticks
    assert await pump(_stream(YIELD_EVERY * 4), lambda e: seen.append(e.seq)) == YIELD_EVERY * 4
    assert seen == list(range(YIELD_EVERY * 4))
    assert ticks - before >= 4  # the loop ran between batches
    stop.set()
    await task
    got: list[int] = []
    assert await pump(_stream(100), lambda e: got.append(e.seq), until=lambda: len(got) >= 10) == 10


@pytest.mark.parametrize("what", ["LiveFrame", "Recorder", "PresenceRosterWidget"])
def test_every_consumer_refuses_a_bad_source_the_same_way(what, tmp_path):
    from harmony_lab import LiveFrame, PresenceRosterWidget, Recorder

    make = {
        "LiveFrame": lambda: LiveFrame(42, "messages"),
        "Recorder": lambda: Recorder(42, tmp_path / "rec"),
        "PresenceRosterWidget": lambda: PresenceRosterWidget(42),
    }[what]
    with pytest.raises(TypeError, match=rf"{what}.*source must be a RealtimeConnectionManager .*got int"):
        make()


def test_a_frame_follows_any_event_source():
    from harmony_lab import LiveFrame
    from tests.frames.frame_events import make_change, message

    src = Listening()
    lf = LiveFrame(src, "messages")
    assert lf.status == "live"
    (fn,) = src.fns
    fn(make_change("INSERT", message(1)))
    assert 1 in lf
    asyncio.run(lf.aclose())
    assert src.fns == []
