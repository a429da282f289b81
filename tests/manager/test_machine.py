"""The per-channel state machine, with a fake clock and seeded randomness: no sockets."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from harmony_lab.events import ChannelStatus
from harmony_lab.manager import BackoffPolicy
from harmony_lab.manager._clock import FakeClock
from harmony_lab.manager._machine import (
    Cancelled,
    ChannelMachine,
    ClockJump,
    Closed,
    Connect,
    ConnectFailed,
    ConnectRequested,
    GapEnd,
    GapStart,
    HealthTick,
    HeartbeatOk,
    Joined,
    JoinFailed,
    MachineConfig,
    PostgresSubscribed,
    Refused,
    RetryDue,
    ScheduleRetry,
    SetStatus,
    SocketOpen,
    StallDetected,
    Stop,
    TearDown,
    TokenRefreshed,
    TokenUnavailable,
)

S = ChannelStatus


def make(**config):
    clock = FakeClock()
    m = ChannelMachine("room", config=MachineConfig(**config), clock=clock, rng=random.Random(42))
    return m, clock


def kinds(decisions):
    return [type(d).__name__ for d in decisions]


def connect(m, *, postgres=False):
    m.handle(ConnectRequested())
    m.handle(SocketOpen())
    out = m.handle(Joined(postgres=postgres))
    if postgres:
        out += m.handle(PostgresSubscribed())
    assert m.status is S.CONNECTED
    return out


def retry_delay(decisions):
    (sched,) = [d for d in decisions if isinstance(d, ScheduleRetry)]
    return sched.delay


def test_initial_state_is_disconnected():
    m, _ = make()
    assert m.status is S.DISCONNECTED
    assert m.snapshot().reason == "not subscribed"
    assert m.attempt == 0


def test_connect_requested_goes_connecting_and_connects():
    m, _ = make()
    out = m.handle(ConnectRequested())
    assert kinds(out) == ["SetStatus", "Connect"]
    assert out[0].status is S.CONNECTING
    assert out[0].previous is S.DISCONNECTED
    assert out[1] == Connect(0)
    # idempotent while live
    assert m.handle(ConnectRequested()) == []


def test_socket_open_does_not_connect_nor_reset():
    m, _ = make()
    m.handle(ConnectRequested())
    assert m.handle(SocketOpen()) == []
    assert m.status is S.CONNECTING


def test_broadcast_channel_is_connected_on_join():
    m, _ = make()
    m.handle(ConnectRequested())
    out = m.handle(Joined(postgres=False))
    assert kinds(out) == ["SetStatus"]
    assert out[0].status is S.CONNECTED
    assert m.snapshot().last_connected_at is not None


def test_postgres_channel_waits_for_subscribed_to_postgresql():
    m, _ = make()
    m.handle(ConnectRequested())
    out = m.handle(Joined(postgres=True))
    assert m.status is S.CONNECTING
    assert "Subscribed to PostgreSQL" in out[0].reason
    out = m.handle(PostgresSubscribed())
    assert m.status is S.CONNECTED
    assert out[0].reason == "subscribed to PostgreSQL"
    # repeated after a token refresh: no new transition
    assert m.handle(PostgresSubscribed()) == []


def test_postgres_subscribed_before_join_is_ignored():
    m, _ = make()
    m.handle(ConnectRequested())
    assert m.handle(PostgresSubscribed()) == []
    assert m.status is S.CONNECTING


def test_close_when_connected_schedules_retry_and_opens_gap():
    m, clock = make()
    connect(m)
    clock.advance(5)
    out = m.handle(Closed("going away", code=1001))
    assert kinds(out) == ["TearDown", "GapStart", "SetStatus", "ScheduleRetry"]
    assert out[1].at == clock.now()
    status = out[2]
    assert status.status is S.RECONNECTING
    assert status.attempt == 1
    assert "closed (1001): going away" in status.reason
    assert 0.8 <= retry_delay(out) <= 1.2
    assert status.details["delay"] == retry_delay(out)
    # the retry fires: connect again, attempt carried
    assert m.handle(RetryDue()) == [Connect(1)]
    # a stale second RetryDue does nothing
    assert m.handle(RetryDue()) == []
    clock.advance(2)
    m.handle(SocketOpen())
    out = m.handle(Joined())
    assert kinds(out) == ["SetStatus", "GapEnd"]
    gap = out[1]
    assert isinstance(gap, GapEnd)
    assert gap.recovered
    assert (gap.end - gap.start).total_seconds() == pytest.approx(2)
    assert "1001" in gap.reason


def test_delays_follow_backoff_and_ten_retries_then_error():
    m, clock = make()
    m.handle(ConnectRequested())
    policy = BackoffPolicy()
    delays = []
    for n in range(10):
        out = m.handle(ConnectFailed("refused"))
        assert m.status is S.RECONNECTING
        assert m.attempt == n + 1
        d = retry_delay(out)
        delays.append(d)
        assert 0.8 * policy.nominal(n) <= d <= 1.2 * policy.nominal(n)
        clock.advance(d)
        assert m.handle(RetryDue()) == [Connect(n + 1)]
    # cap: the nominal delay is capped at 30 s, jitter stays within ±20 %
    assert all(24.0 <= d <= 36.0 for d in delays[5:])
    out = m.handle(ConnectFailed("refused"))
    assert m.status is S.ERROR
    assert "gave up after 10 retries" in m.reason
    assert not any(isinstance(d, ScheduleRetry) for d in out)
    assert out[-1].details == {"kind": "retries"}
    # nothing happens in error until the health check
    assert m.handle(RetryDue()) == []
    assert m.handle(Closed("x")) == []


def test_custom_max_retries_zero_errors_immediately():
    m, _ = make(backoff=BackoffPolicy(max_retries=0))
    m.handle(ConnectRequested())
    out = m.handle(ConnectFailed("refused"))
    assert m.status is S.ERROR
    assert kinds(out) == ["TearDown", "SetStatus"]


def test_seeded_runs_are_reproducible():
    def run():
        m, _ = make()
        m.handle(ConnectRequested())
        return [retry_delay(m.handle(ConnectFailed("x"))) for _ in range(5) if not m.handle(RetryDue())]

    assert run() == run()


def test_rapid_close_cools_down():
    m, clock = make(rapid_close_window=10.0, rapid_close_cooldown=30.0)
    connect(m)
    out1 = m.handle(Closed("boom", code=1011))
    assert retry_delay(out1) < 2
    clock.advance(1.0)
    m.handle(RetryDue())
    m.handle(SocketOpen())
    out2 = m.handle(Closed("boom", code=1011))
    assert retry_delay(out2) < 3
    clock.advance(2.0)
    m.handle(RetryDue())
    out3 = m.handle(Closed("boom", code=1011))
    assert retry_delay(out3) == 30.0
    status = next(d for d in out3 if isinstance(d, SetStatus))
    assert status.reason.startswith("rapid close: 3 closes within 10 s; cooling down 30 s")
    assert status.details["cooldown"] is True
    # the close history was cleared: the next close is a normal backoff again
    clock.advance(30)
    m.handle(RetryDue())
    out4 = m.handle(Closed("boom", code=1011))
    assert retry_delay(out4) < 30


def test_closes_outside_the_window_are_not_rapid():
    m, clock = make(rapid_close_window=10.0)
    connect(m)
    for _ in range(3):
        out = m.handle(Closed("bye"))
        assert retry_delay(out) != 30.0
        clock.advance(6.0)
        m.handle(RetryDue())


def test_connect_failures_are_not_closes():
    m, _ = make()
    m.handle(ConnectRequested())
    for _ in range(4):
        out = m.handle(ConnectFailed("503"))
        assert retry_delay(out) != 30.0
        m.handle(RetryDue())


def test_configurable_rapid_close_count_and_window():
    m, clock = make(rapid_close_count=2, rapid_close_window=1.0, rapid_close_cooldown=5.0)
    connect(m)
    m.handle(Closed("a"))
    m.handle(RetryDue())
    clock.advance(0.5)
    assert retry_delay(m.handle(Closed("a"))) == 5.0


def test_attempts_reset_only_after_two_heartbeats_while_connected():
    m, _ = make()
    connect(m)
    m.handle(Closed("a"))
    m.handle(RetryDue())
    m.handle(ConnectFailed("b"))
    m.handle(RetryDue())
    assert m.attempt == 2
    m.handle(SocketOpen())
    assert m.attempt == 2  # open does not reset
    m.handle(Joined())
    assert m.attempt == 2  # connected does not reset
    assert m.handle(HeartbeatOk(0.01)) == []
    assert m.attempt == 2
    out = m.handle(HeartbeatOk(0.01))
    assert m.attempt == 0
    assert kinds(out) == ["SetStatus"]
    assert out[0].status is S.CONNECTED
    assert "attempts reset" in out[0].reason
    assert out[0].attempt == 0
    # further heartbeats are quiet
    assert m.handle(HeartbeatOk(0.01)) == []


def test_one_heartbeat_then_drop_keeps_counting():
    m, _ = make()
    connect(m)
    m.handle(Closed("a"))
    m.handle(RetryDue())
    m.handle(Joined())
    m.handle(HeartbeatOk(0.01))
    out = m.handle(Closed("again"))
    assert m.attempt == 2
    assert next(d for d in out if isinstance(d, SetStatus)).attempt == 2


def test_heartbeats_while_not_connected_do_not_count():
    m, _ = make()
    m.handle(ConnectRequested())
    m.handle(ConnectFailed("x"))
    m.handle(RetryDue())
    m.handle(HeartbeatOk(0.01))
    m.handle(HeartbeatOk(0.01))
    m.handle(Joined())
    assert m.attempt == 1
    m.handle(HeartbeatOk(0.01))
    assert m.attempt == 1


def test_stall_counts_as_failure_with_teardown_and_gap():
    m, _ = make()
    connect(m)
    out = m.handle(StallDetected("no heartbeat reply for 2.0 s"))
    assert kinds(out) == ["TearDown", "GapStart", "SetStatus", "ScheduleRetry"]
    assert out[2].reason.startswith("stall: no heartbeat reply")


def test_join_failed_retries_and_fatal_errors():
    m, _ = make()
    m.handle(ConnectRequested())
    out = m.handle(JoinFailed("TIMED_OUT"))
    assert m.status is S.RECONNECTING
    assert kinds(out) == ["TearDown", "SetStatus", "ScheduleRetry"]
    m.handle(RetryDue())
    out = m.handle(JoinFailed("Unable to subscribe to changes", fatal=True))
    assert m.status is S.ERROR
    # RetryDue means the retry timer has fired: nothing is pending, so nothing is cancelled
    assert kinds(out) == ["TearDown", "SetStatus"]
    assert out[-1].details == {"kind": "fatal"}


def test_health_tick_resets_error_after_three_minutes():
    m, clock = make(backoff=BackoffPolicy(max_retries=1))
    m.handle(ConnectRequested())
    m.handle(ConnectFailed("x"))
    m.handle(RetryDue())
    m.handle(ConnectFailed("x"))
    assert m.status is S.ERROR
    assert m.attempt == 2
    for _ in range(2):  # health ticks at 60 s and 120 s: too early
        clock.advance(60)
        assert m.handle(HealthTick()) == []
    clock.advance(59)
    assert m.handle(HealthTick()) == []
    clock.advance(1)
    out = m.handle(HealthTick())
    assert kinds(out) == ["SetStatus", "Connect"]
    assert out[0].status is S.RECONNECTING
    assert "health check" in out[0].reason
    assert out[1] == Connect(0)
    assert m.attempt == 0
    # health ticks in other states do nothing
    assert m.handle(HealthTick()) == []


def test_health_tick_ignores_healthy_channels():
    m, clock = make()
    connect(m)
    clock.advance(10_000)
    assert m.handle(HealthTick()) == []


def test_error_reset_after_is_configurable():
    m, clock = make(backoff=BackoffPolicy(max_retries=0), error_reset_after=5.0)
    m.handle(ConnectRequested())
    m.handle(ConnectFailed("x"))
    clock.advance(5.0)
    assert kinds(m.handle(HealthTick())) == ["SetStatus", "Connect"]


def test_gap_stays_open_through_error_until_recovery():
    m, clock = make(backoff=BackoffPolicy(max_retries=0), error_reset_after=1.0)
    connect(m)
    start = clock.now()
    out = m.handle(Closed("gone"))
    assert any(isinstance(d, GapStart) for d in out)
    assert m.status is S.ERROR
    assert m.snapshot().gap_open_since == start
    clock.advance(2)
    m.handle(HealthTick())
    out = m.handle(Joined())
    gap = next(d for d in out if isinstance(d, GapEnd))
    assert gap.start == start
    assert gap.recovered
    assert (gap.end - gap.start).total_seconds() == 2


def test_clock_jump_forces_reconnect_without_counting_a_failure():
    m, _ = make()
    connect(m)
    out = m.handle(ClockJump(3600.0))
    assert kinds(out) == ["TearDown", "GapStart", "SetStatus", "Connect"]
    assert "+3600.0 s" in out[2].reason
    assert m.status is S.RECONNECTING
    assert m.attempt == 0
    out = m.handle(Joined())
    assert any(isinstance(d, GapEnd) for d in out)


def test_clock_jump_while_waiting_for_retry_is_ignored():
    m, _ = make()
    m.handle(ConnectRequested())
    m.handle(ConnectFailed("x"))
    assert m.handle(ClockJump(100)) == []


def test_stop_tears_down_cancels_and_closes_gap_unrecovered():
    m, _ = make()
    connect(m)
    m.handle(Closed("x"))
    out = m.handle(Stop("signed_out"))
    assert kinds(out) == ["TearDown", "Cancelled", "GapEnd", "SetStatus"]
    assert out[2].recovered is False
    assert out[2].reason.endswith("ended by signed_out")
    assert m.status is S.DISCONNECTED
    assert m.reason == "signed_out"
    # stale inputs after stop do nothing
    assert m.handle(RetryDue()) == []
    assert m.handle(Joined()) == []
    assert m.handle(Closed("late")) == []
    assert m.handle(Stop("again")) == []


def test_stop_from_connected_has_no_gap():
    m, _ = make()
    connect(m)
    out = m.handle(Stop())
    assert kinds(out) == ["TearDown", "SetStatus"]
    assert out[-1].reason == "unsubscribed"


def test_resubscribe_after_stop_starts_fresh():
    m, _ = make()
    connect(m)
    m.handle(Closed("x"))
    m.handle(Stop())
    out = m.handle(ConnectRequested())
    assert kinds(out) == ["SetStatus", "Connect"]
    assert m.attempt == 0


def test_connect_requested_from_error_restarts():
    m, _ = make(backoff=BackoffPolicy(max_retries=0))
    m.handle(ConnectRequested())
    m.handle(ConnectFailed("x"))
    assert m.status is S.ERROR
    out = m.handle(ConnectRequested())
    assert kinds(out) == ["SetStatus", "Connect"]


def test_token_unavailable_errors_and_token_refresh_recovers():
    m, _ = make()
    m.handle(ConnectRequested())
    out = m.handle(TokenUnavailable("access token expired 12 s ago"))
    assert m.status is S.ERROR
    assert out[-1].details == {"kind": "auth"}
    out = m.handle(TokenRefreshed())
    assert kinds(out) == ["SetStatus", "Connect"]
    assert m.status is S.RECONNECTING
    # a refresh while healthy does nothing
    m.handle(Joined())
    assert m.handle(TokenRefreshed()) == []


def test_a_refusal_waits_for_a_token_change_or_the_health_check():
    reason = "Unauthorized: You do not have permissions to read from this Channel topic: dm:a-b"
    for revive in ("token", "health"):
        m, clock = make(backoff=BackoffPolicy(max_retries=5), error_reset_after=30.0)
        m.handle(ConnectRequested())
        m.handle(SocketOpen())
        out = m.handle(Refused(reason))
        # no retry scheduled: the same token would be refused again
        assert kinds(out) == ["TearDown", "SetStatus"]
        assert out[1].details == {"kind": "auth"}
        assert m.status is S.ERROR
        assert m.snapshot().reason == f"refused: {reason}"
        assert m.handle(RetryDue()) == []
        assert m.handle(Refused(reason)) == []  # a second refusal in error changes nothing
        clock.advance(29)
        assert m.handle(HealthTick()) == []
        if revive == "token":
            out = m.handle(TokenRefreshed())
            assert "new access token" in out[0].reason
        else:
            clock.advance(1)
            out = m.handle(HealthTick())
            assert "health check" in out[0].reason
        assert kinds(out) == ["SetStatus", "Connect"], revive
        assert out[0].status is S.RECONNECTING
        assert out[1] == Connect(0)


def test_token_refresh_does_not_revive_other_errors():
    m, _ = make(backoff=BackoffPolicy(max_retries=0))
    m.handle(ConnectRequested())
    m.handle(ConnectFailed("x"))
    assert m.handle(TokenRefreshed()) == []


def test_transitions_are_recorded_with_timestamps():
    m, clock = make()
    m.handle(ConnectRequested())
    clock.advance(1)
    m.handle(Joined())
    statuses = [(t.previous, t.status) for t in m.transitions]
    assert statuses == [(S.DISCONNECTED, S.CONNECTING), (S.CONNECTING, S.CONNECTED)]
    assert m.since == clock.now()
    assert m.transitions[0].at < m.transitions[1].at


def test_unknown_input_is_rejected():
    m, _ = make()
    with pytest.raises(TypeError, match="expected one of the Input types"):
        m.handle("connect")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rapid_close_window": -1}, "rapid_close_window"),
        ({"rapid_close_count": 0}, "rapid_close_count"),
        ({"healthy_heartbeats": 0}, "healthy_heartbeats"),
        ({"error_reset_after": "3"}, "error_reset_after"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MachineConfig(**kwargs)


def test_every_decision_type_is_exercised():
    """Guard: the transitions above produce every decision type at least once."""
    m, clock = make(backoff=BackoffPolicy(max_retries=3), error_reset_after=1)
    seen = set()
    for ev in [
        ConnectRequested(),
        Joined(),
        Closed("x"),
        RetryDue(),
        Joined(),
        Closed("y"),
        Stop(),
    ]:
        seen |= {type(d) for d in m.handle(ev)}
    assert {SetStatus, Connect, TearDown, ScheduleRetry, Cancelled, GapStart, GapEnd} <= seen
    assert clock.monotonic() > 0


@pytest.mark.parametrize(
    "failure",
    [
        lambda rx: StallDetected("no heartbeat reply for 2.0 s", last_rx=rx),
        lambda rx: Closed("going away", code=1001, last_rx=rx),
        lambda rx: ClockJump(3600.0, last_rx=rx),
    ],
    ids=["stall", "close", "clock-jump"],
)
def test_gap_starts_at_the_last_data_received_not_at_detection(failure):
    m, clock = make()
    connect(m)
    last_rx = clock.now()
    clock.advance(4.5)  # e.g. a stall noticed two heartbeat intervals later
    detected = clock.now()
    out = m.handle(failure(last_rx))
    (start,) = [d for d in out if isinstance(d, GapStart)]
    assert start.at == last_rx
    assert start.detected == detected
    assert m.snapshot().gap_open_since == last_rx
    clock.advance(1)
    m.handle(RetryDue())
    (end,) = [d for d in m.handle(Joined()) if isinstance(d, GapEnd)]
    assert end.start == last_rx
    assert end.detected == detected
    assert (end.end - end.start).total_seconds() == pytest.approx(5.5)


def test_gap_never_starts_in_the_future():
    m, clock = make()
    connect(m)
    ahead = clock.now() + timedelta(hours=1)  # e.g. stamped before the wall clock was stepped back
    out = m.handle(Closed("x", last_rx=ahead))
    (start,) = [d for d in out if isinstance(d, GapStart)]
    assert start.at == clock.now()
