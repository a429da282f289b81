"""The stall rule of ``_liveness.HeartbeatTracker``, with a fake clock and no sockets.

A stall is a socket that went silent — a heartbeat unanswered *and* no frame of any kind since it was
sent — not one whose heartbeat replies are late: under load (2 000 changes/s) a reply queues behind the
backlog of postgres_changes frames sent before it, and the chaos campaign saw healthy sockets declared
stalled that way (a gap no fault caused).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harmony_lab.manager._clock import FakeClock
from harmony_lab.manager._liveness import HeartbeatTracker

INTERVAL = 1.0


def test_late_replies_on_a_busy_socket_are_not_a_stall():
    clock = FakeClock()
    t0 = clock.monotonic()
    hb = HeartbeatTracker()
    first = hb.tick(clock.monotonic(), last_rx=None)
    assert first.ref == "hl-1"
    assert not first.stalled
    # changes keep arriving; the reply to hl-1 is queued behind them for 2.5 intervals
    last_rx = None
    for _ in range(2):
        for _ in range(10):
            clock.advance(INTERVAL / 10)
            last_rx = clock.monotonic()  # a postgres_changes frame
        tick = hb.tick(clock.monotonic(), last_rx)
        assert not tick.stalled, "a socket that keeps delivering frames is alive"
        assert tick.ref is not None  # heartbeats keep going out (the server's idle timer needs them)
    assert hb.pending == 3
    assert hb.summary()["late_ticks"] == 2
    clock.advance(INTERVAL / 2)
    assert hb.reply("hl-1", clock.monotonic()) == pytest.approx(2.5 * INTERVAL)
    assert hb.reply("hl-2", clock.monotonic()) == pytest.approx(1.5 * INTERVAL)
    assert hb.reply("hl-3", clock.monotonic()) == pytest.approx(0.5 * INTERVAL)
    assert clock.monotonic() - t0 == pytest.approx(2.5 * INTERVAL)
    assert hb.summary()["samples"] == 3


def test_rtt_is_the_replys_own_round_trip_not_that_of_other_frames():
    clock = FakeClock()
    hb = HeartbeatTracker()
    ref = hb.tick(clock.monotonic()).ref
    clock.advance(0.05)
    # frames that are not replies to our refs (changes, realtime-py's null-ref heartbeat, foreign refs)
    assert hb.reply(None, clock.monotonic()) is None
    assert hb.reply("hl-999", clock.monotonic()) is None
    tick = hb.tick(clock.monotonic() + 0.0, last_rx=clock.monotonic())
    assert not tick.stalled
    assert hb.summary()["samples"] == 0
    clock.advance(1.2)
    assert hb.reply(ref, clock.monotonic()) == pytest.approx(1.25)
    assert hb.summary()["last_ms"] == pytest.approx(1250)
    assert hb.reply(ref, clock.monotonic()) is None  # a reply counts once


def test_silence_after_a_heartbeat_is_a_stall_within_two_intervals():
    clock = FakeClock()
    hb = HeartbeatTracker()
    hb.tick(clock.monotonic())
    clock.advance(0.3)
    last_rx = clock.monotonic()  # the last frame ever: the socket goes silent at t = 0.3
    clock.advance(0.7)
    at_1 = hb.tick(clock.monotonic(), last_rx)
    assert not at_1.stalled, "hl-1 was sent before the last frame: nothing proves silence yet"
    clock.advance(INTERVAL)
    at_2 = hb.tick(clock.monotonic(), last_rx)
    assert at_2.stalled
    assert at_2.waited == pytest.approx(INTERVAL)  # hl-2, the first heartbeat sent into the silence
    assert at_2.silent == pytest.approx(1.7)
    assert at_2.silent <= 2 * INTERVAL


def test_nothing_received_at_all_is_a_stall_at_the_next_tick():
    hb = HeartbeatTracker()
    hb.tick(0.0, last_rx=None)
    tick = hb.tick(INTERVAL, last_rx=None)
    assert tick.stalled
    assert tick.silent is None
    assert tick.waited == pytest.approx(INTERVAL)


def test_pending_refs_are_bounded_and_reset_per_connection():
    hb = HeartbeatTracker(max_pending=3)
    for i in range(10):
        assert not hb.tick(float(i), last_rx=i + 0.5 - 1).stalled  # frames keep arriving
    assert hb.pending == 3
    assert hb.reply("hl-1", 10.0) is None  # forgotten: no RTT from it
    assert hb.reply("hl-10", 10.0) == pytest.approx(1.0)
    hb.reset()
    assert hb.pending == 0
    with pytest.raises(ValueError, match="max_pending"):
        HeartbeatTracker(max_pending=0)


# ------------------------------------------------------------------------------------- property
@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(st.floats(0.001, 0.95 * INTERVAL), min_size=1, max_size=60),
    delays=st.lists(st.floats(0.001, 4 * INTERVAL), min_size=30, max_size=30),
    phase=st.floats(0.001, 0.999),
)
def test_busy_sockets_never_stall_and_silent_ones_stall_within_two_intervals(gaps, delays, phase):
    """The join reply arrives at 0, then frames with gaps shorter than an interval until ``stall_at``
    (the last frame); heartbeats go out every interval from ``phase`` and their replies take up to four
    intervals (queued behind the backlog), or are lost once the stall began. No stall may be declared
    while frames still arrive, and one must be by ``stall_at`` + two intervals."""
    frames = []
    t = 0.0
    for g in gaps:
        t += g
        frames.append(t)
    stall_at = frames[-1]
    hb = HeartbeatTracker()
    last_rx: float | None = 0.0
    arrivals: list[tuple[float, str | None]] = [(f, None) for f in frames]
    sent: dict[str, float] = {}
    stalled_at = silent_at_stall = None
    tick_at = phase
    n = 0
    while stalled_at is None and tick_at <= stall_at + 3 * INTERVAL:
        due = sorted((a for a in arrivals if a[0] < tick_at), key=lambda a: a[0])
        for when, ref in due:  # deliver what arrived before this tick, in order
            arrivals.remove((when, ref))
            last_rx = when
            if ref is not None:
                assert hb.reply(ref, when) == pytest.approx(when - sent[ref])
        tick = hb.tick(tick_at, last_rx)
        if tick.stalled:
            stalled_at, silent_at_stall = tick_at, tick.silent
        else:
            assert tick.ref is not None
            sent[tick.ref] = tick_at
            reply_at = tick_at + delays[n % len(delays)]
            if reply_at <= stall_at:  # once the stall began nothing arrives any more
                arrivals.append((reply_at, tick.ref))
        n += 1
        tick_at += INTERVAL
    assert stalled_at is not None, "a silent socket must be declared stalled"
    assert stalled_at > stall_at, "a socket that was still delivering frames was declared stalled"
    assert stalled_at - stall_at <= 2 * INTERVAL
    assert silent_at_stall is not None
    assert silent_at_stall >= INTERVAL - 1e-9  # at least one whole interval of silence
