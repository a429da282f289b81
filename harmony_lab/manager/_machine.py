"""The per-channel connection state machine: pure, fed by inputs and a clock, returns decisions.

No sockets, no tasks, no sleeping. The asyncio runner (``_runner.py``) turns what it observes on the
wire into :data:`Input` objects, calls :meth:`ChannelMachine.handle`, and carries out the returned
:data:`Decision` objects (open a connection, tear it down, arm a retry timer, emit events). Tests feed
inputs with a :class:`~harmony_lab.manager._clock.FakeClock` and a seeded ``random.Random``.

Rules (the seed's, made precise):

* Every failure (connect refused, join error or timeout, close, stall) increments ``attempt``. While
  ``attempt <= backoff.max_retries`` a retry is scheduled after ``backoff.delay(attempt - 1)``; the
  failure after the last retry puts the channel in ``error``.
* Rapid close: when ``rapid_close_count`` closes of an opened connection fall within
  ``rapid_close_window`` seconds, the next retry waits ``rapid_close_cooldown`` instead.
* ``attempt`` resets to 0 only after a connection stayed healthy: ``healthy_heartbeats`` heartbeat
  replies while ``connected``. Opening a socket or joining never resets it.
* ``connected`` means events flow: after the join reply, and for channels with postgres_changes
  bindings only after the server's "Subscribed to PostgreSQL" system message.
* Health check: a ``HealthTick`` finds a channel that has been in ``error`` for ``error_reset_after``
  seconds, resets its attempts and reconnects.
* A wall-clock jump (suspend/resume) forces a reconnect without counting as a failure.
* Any interval in which a connected channel could not deliver becomes a gap: ``GapStart`` when it
  drops, ``GapEnd`` when it is connected again (``recovered=True``) or stopped (``recovered=False``).
  A gap starts when the channel last provably received data (``last_rx`` of the failure input: the
  last frame or heartbeat reply), not when the failure was noticed — a silent stall is only detected
  up to two heartbeat intervals later, and everything committed in between must count as missed.
"""

from __future__ import annotations

import collections
import dataclasses
import random
from datetime import datetime
from typing import Any

from harmony_lab.events import ChannelStatus
from harmony_lab.manager._backoff import BackoffPolicy
from harmony_lab.manager._clock import Clock

__all__ = [
    "Cancelled",
    "ChannelMachine",
    "ChannelState",
    "ClockJump",
    "Closed",
    "Connect",
    "ConnectFailed",
    "ConnectRequested",
    "Decision",
    "GapEnd",
    "GapStart",
    "HealthTick",
    "HeartbeatOk",
    "Input",
    "JoinFailed",
    "Joined",
    "MachineConfig",
    "PostgresSubscribed",
    "Refused",
    "RetryDue",
    "ScheduleRetry",
    "SetStatus",
    "SocketOpen",
    "StallDetected",
    "Stop",
    "TearDown",
    "TokenRefreshed",
    "TokenUnavailable",
]


# ---------------------------------------------------------------------------------------------- inputs
@dataclasses.dataclass(frozen=True, slots=True)
class ConnectRequested:
    """The user subscribed (or re-subscribed after a stop)."""


@dataclasses.dataclass(frozen=True, slots=True)
class SocketOpen:
    """The WebSocket handshake succeeded (does not reset attempts)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectFailed:
    """The WebSocket could not be opened (refused, HTTP error, timeout)."""

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Joined:
    """The server accepted the join. ``postgres``: the channel has postgres_changes bindings."""

    postgres: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class PostgresSubscribed:
    """The server's ``system`` message "Subscribed to PostgreSQL" arrived."""


@dataclasses.dataclass(frozen=True, slots=True)
class JoinFailed:
    """The join was refused or timed out. ``fatal``: retrying cannot help (e.g. a bad filter)."""

    reason: str
    fatal: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Refused:
    """The server refused this subscriber on this topic (authorization: no read policy, private
    channels only, permission revoked). Retrying with the same token cannot help: the channel goes to
    ``error`` and is retried after a token change or by the health check."""

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class HeartbeatOk:
    """A heartbeat reply arrived after ``rtt`` seconds."""

    rtt: float


@dataclasses.dataclass(frozen=True, slots=True)
class StallDetected:
    """The socket looks open but went silent: a heartbeat unanswered and no frame of any kind since it
    was sent (the rule lives in ``_liveness.HeartbeatTracker``). ``last_rx``: see :class:`Closed`."""

    reason: str
    last_rx: datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Closed:
    """The connection (socket or channel) was closed by the peer or the network.

    ``last_rx``: when the connection last provably received anything from the server (a frame or a
    heartbeat reply); a gap opened by this failure starts there (``None``: now).
    """

    reason: str
    code: int | None = None
    last_rx: datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ClockJump:
    """The wall clock moved ``delta`` seconds more (or less) than the monotonic clock.
    ``last_rx``: see :class:`Closed`."""

    delta: float
    last_rx: datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RetryDue:
    """The retry timer armed by :class:`ScheduleRetry` fired."""


@dataclasses.dataclass(frozen=True, slots=True)
class HealthTick:
    """The periodic health check (every ``health_interval`` seconds)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Stop:
    """Tear down now and stay down (unsubscribe, cleanup, ``signed_out``)."""

    reason: str = "unsubscribed"


@dataclasses.dataclass(frozen=True, slots=True)
class TokenUnavailable:
    """No valid access token to join with (expired and not refreshed in time)."""

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class TokenRefreshed:
    """A new access token arrived (SIGNED_IN / TOKEN_REFRESHED)."""


Input = (
    ConnectRequested
    | SocketOpen
    | ConnectFailed
    | Joined
    | PostgresSubscribed
    | JoinFailed
    | Refused
    | HeartbeatOk
    | StallDetected
    | Closed
    | ClockJump
    | RetryDue
    | HealthTick
    | Stop
    | TokenUnavailable
    | TokenRefreshed
)


# ------------------------------------------------------------------------------------------- decisions
@dataclasses.dataclass(frozen=True, slots=True)
class SetStatus:
    """Announce a status (a ``status`` RealtimeEvent). ``details`` lands in the event's payload."""

    status: ChannelStatus
    reason: str
    attempt: int
    at: datetime
    previous: ChannelStatus
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Connect:
    """Open a fresh connection and join (new client and channel objects)."""

    attempt: int


@dataclasses.dataclass(frozen=True, slots=True)
class TearDown:
    """Dispose of the current connection, if any."""

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleRetry:
    """Feed :class:`RetryDue` after ``delay`` seconds (replacing any armed timer)."""

    delay: float
    attempt: int


@dataclasses.dataclass(frozen=True, slots=True)
class Cancelled:
    """Disarm the retry timer, if armed."""


@dataclasses.dataclass(frozen=True, slots=True)
class GapStart:
    """A gap opened: delivery stopped at ``at`` (the last data received); noticed at ``detected``."""

    at: datetime
    reason: str
    detected: datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class GapEnd:
    """A gap closed: ``start`` (last data received) to ``end``; ``detected`` is when it was noticed."""

    start: datetime
    end: datetime
    reason: str
    recovered: bool
    detected: datetime | None = None


Decision = SetStatus | Connect | TearDown | ScheduleRetry | Cancelled | GapStart | GapEnd


# ----------------------------------------------------------------------------------------------- state
@dataclasses.dataclass(frozen=True, slots=True)
class MachineConfig:
    backoff: BackoffPolicy = dataclasses.field(default_factory=BackoffPolicy)
    rapid_close_window: float = 10.0
    rapid_close_count: int = 3
    rapid_close_cooldown: float = 30.0
    error_reset_after: float = 180.0
    healthy_heartbeats: int = 2

    def __post_init__(self) -> None:
        for name in ("rapid_close_window", "rapid_close_cooldown", "error_reset_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
        for name in ("rapid_close_count", "healthy_heartbeats"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelState:
    """A snapshot of one channel's connection status (what ``get_status`` returns)."""

    name: str
    status: ChannelStatus
    reason: str
    attempt: int
    since: datetime
    last_connected_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    gap_open_since: datetime | None = None
    superseded: bool = False
    """True for what a call returns when a later call on the same name took over before it settled."""
    backfilling: bool = False
    """True while the backfill of a gap is still being fetched or delivered (it runs in the background
    after the reconnect): until it is False again, rows written during the gap may not have arrived."""

    def __repr__(self) -> str:
        extra = f" last_error={self.last_error!r}" if self.last_error else ""
        extra += " superseded" if self.superseded else ""
        extra += " backfilling" if self.backfilling else ""
        return (
            f"<ChannelState {self.name!r} {self.status} reason={self.reason!r} attempt={self.attempt} "
            f"since={self.since.isoformat(timespec='seconds')}{extra}>"
        )


_LIVE = (ChannelStatus.CONNECTING, ChannelStatus.CONNECTED, ChannelStatus.RECONNECTING)


class ChannelMachine:
    """The state of one named subscription. Call :meth:`handle` with an input; act on the decisions."""

    def __init__(
        self,
        name: str,
        *,
        config: MachineConfig | None = None,
        clock: Clock,
        rng: random.Random,
        history: int = 200,
    ) -> None:
        self.name = name
        self.config = config or MachineConfig()
        self._clock = clock
        self._rng = rng
        self.status = ChannelStatus.DISCONNECTED
        self.reason = "not subscribed"
        self.attempt = 0
        self.since = clock.now()
        self._since_mono = clock.monotonic()
        self.joined = False
        self.postgres = False
        self.healthy_replies = 0
        self.retry_armed = False
        self.error_kind: str | None = None
        self.last_connected_at: datetime | None = None
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self.gap_start: datetime | None = None
        self.gap_detected: datetime | None = None
        self.gap_reason: str | None = None
        self._closes: collections.deque[float] = collections.deque()
        self.transitions: collections.deque[SetStatus] = collections.deque(maxlen=history)

    # ------------------------------------------------------------------------------------ public API
    def snapshot(self) -> ChannelState:
        return ChannelState(
            name=self.name,
            status=self.status,
            reason=self.reason,
            attempt=self.attempt,
            since=self.since,
            last_connected_at=self.last_connected_at,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            gap_open_since=self.gap_start,
        )

    @property
    def seconds_in_status(self) -> float:
        return self._clock.monotonic() - self._since_mono

    def handle(self, event: Input) -> list[Decision]:
        """Apply one input; return what the driver must do, in order."""
        match event:
            case ConnectRequested():
                return self._on_connect_requested()
            case SocketOpen():
                return []
            case ConnectFailed(reason=reason):
                return self._fail(f"connect failed: {reason}", closed=False)
            case Joined(postgres=postgres):
                return self._on_joined(postgres)
            case PostgresSubscribed():
                if self.status in (ChannelStatus.CONNECTING, ChannelStatus.RECONNECTING) and self.joined:
                    return self._become_connected("subscribed to PostgreSQL")
                return []
            case JoinFailed(reason=reason, fatal=fatal):
                if fatal:
                    return self._give_up(f"join failed: {reason}", kind="fatal")
                return self._fail(f"join failed: {reason}", closed=False)
            case Refused(reason=reason):
                if self.status not in _LIVE:
                    return []
                return self._give_up(f"refused: {reason}", kind="auth")
            case HeartbeatOk():
                return self._on_heartbeat_ok()
            case StallDetected(reason=reason, last_rx=last_rx):
                return self._fail(f"stall: {reason}", closed=True, last_rx=last_rx)
            case Closed(reason=reason, code=code, last_rx=last_rx):
                label = f"closed ({code}): {reason}" if code is not None else f"closed: {reason}"
                return self._fail(label, closed=True, last_rx=last_rx)
            case ClockJump(delta=delta, last_rx=last_rx):
                return self._on_clock_jump(delta, last_rx)
            case RetryDue():
                if self.status is ChannelStatus.RECONNECTING and self.retry_armed:
                    self.retry_armed = False
                    return [Connect(self.attempt)]
                return []
            case HealthTick():
                return self._on_health_tick()
            case Stop(reason=reason):
                return self._on_stop(reason)
            case TokenUnavailable(reason=reason):
                if self.status not in _LIVE:
                    return []
                return self._give_up(reason, kind="auth")
            case TokenRefreshed():
                if self.status is ChannelStatus.ERROR and self.error_kind == "auth":
                    return self._restart("new access token; reconnecting")
                return []
        raise TypeError(f"ChannelMachine.handle got {event!r}; expected one of the Input types")

    # ------------------------------------------------------------------------------------ transitions
    def _set(self, status: ChannelStatus, reason: str, details: dict[str, Any] | None = None) -> SetStatus:
        previous = self.status
        now = self._clock.now()
        if status is not previous:
            self.since = now
            self._since_mono = self._clock.monotonic()
        self.status = status
        self.reason = reason
        decision = SetStatus(status, reason, self.attempt, now, previous, details or {})
        self.transitions.append(decision)
        return decision

    def _on_connect_requested(self) -> list[Decision]:
        if self.status in _LIVE:
            return []
        self.attempt = 0
        self._closes.clear()
        self.error_kind = None
        self.joined = False
        out: list[Decision] = [Cancelled()] if self.retry_armed else []
        self.retry_armed = False
        out += [self._set(ChannelStatus.CONNECTING, "subscribe requested"), Connect(0)]
        return out

    def _on_joined(self, postgres: bool) -> list[Decision]:
        if self.status not in (ChannelStatus.CONNECTING, ChannelStatus.RECONNECTING):
            return []
        self.joined = True
        self.postgres = postgres
        if not postgres:
            return self._become_connected("joined")
        return [self._set(self.status, "joined; waiting for 'Subscribed to PostgreSQL'")]

    def _become_connected(self, reason: str) -> list[Decision]:
        self.healthy_replies = 0
        self.error_kind = None
        self.last_connected_at = self._clock.now()
        out: list[Decision] = [self._set(ChannelStatus.CONNECTED, reason)]
        out += self._close_gap(recovered=True)
        return out

    def _close_gap(self, *, recovered: bool, suffix: str = "") -> list[Decision]:
        if self.gap_start is None:
            return []
        gap = GapEnd(
            self.gap_start,
            self._clock.now(),
            (self.gap_reason or "unknown") + suffix,
            recovered,
            self.gap_detected,
        )
        self.gap_start = None
        self.gap_detected = None
        self.gap_reason = None
        return [gap]

    def _open_gap(self, reason: str, last_rx: datetime | None = None) -> list[Decision]:
        """Open a gap starting at ``last_rx`` (when data last arrived; never later than now)."""
        if self.status is not ChannelStatus.CONNECTED or self.gap_start is not None:
            return []
        now = self._clock.now()
        self.gap_start = now if last_rx is None else min(now, last_rx)
        self.gap_detected = now
        self.gap_reason = reason
        return [GapStart(self.gap_start, reason, now)]

    def _on_heartbeat_ok(self) -> list[Decision]:
        if self.status is not ChannelStatus.CONNECTED:
            return []
        self.healthy_replies += 1
        if self.healthy_replies >= self.config.healthy_heartbeats and self.attempt:
            self.attempt = 0
            return [
                self._set(
                    ChannelStatus.CONNECTED,
                    f"healthy ({self.healthy_replies} heartbeat replies); attempts reset",
                )
            ]
        return []

    def _fail(self, reason: str, *, closed: bool, last_rx: datetime | None = None) -> list[Decision]:
        if self.status not in _LIVE:
            return []
        out: list[Decision] = [TearDown(reason)]
        out += self._open_gap(reason, last_rx)
        self.joined = False
        self.attempt += 1
        self.last_error = reason
        self.last_error_at = self._clock.now()
        now = self._clock.monotonic()
        if closed:
            self._closes.append(now)
        while self._closes and now - self._closes[0] > self.config.rapid_close_window:
            self._closes.popleft()
        backoff = self.config.backoff
        if self.attempt > backoff.max_retries:
            return out + self._give_up(
                f"gave up after {backoff.max_retries} retries: {reason}", teardown=False
            )
        if closed and len(self._closes) >= self.config.rapid_close_count:
            count = len(self._closes)
            self._closes.clear()
            delay = float(self.config.rapid_close_cooldown)
            status_reason = (
                f"rapid close: {count} closes within {self.config.rapid_close_window:g} s; "
                f"cooling down {delay:g} s (last: {reason})"
            )
            details = {"delay": delay, "cause": reason, "cooldown": True}
        else:
            delay = backoff.delay(self.attempt - 1, self._rng)
            status_reason = f"{reason}; retry {self.attempt}/{backoff.max_retries} in {delay:.2f} s"
            details = {"delay": delay, "cause": reason, "cooldown": False}
        self.retry_armed = True
        out += [
            self._set(ChannelStatus.RECONNECTING, status_reason, details),
            ScheduleRetry(delay, self.attempt),
        ]
        return out

    def _give_up(self, reason: str, *, kind: str = "retries", teardown: bool = True) -> list[Decision]:
        out: list[Decision] = []
        if teardown and self.status in _LIVE:
            out.append(TearDown(reason))
            out += self._open_gap(reason)
        if self.retry_armed:
            out.append(Cancelled())
            self.retry_armed = False
        self.joined = False
        self.error_kind = kind
        self.last_error = reason
        self.last_error_at = self._clock.now()
        out.append(self._set(ChannelStatus.ERROR, reason, {"kind": kind}))
        return out

    def _on_clock_jump(self, delta: float, last_rx: datetime | None) -> list[Decision]:
        if self.status not in (ChannelStatus.CONNECTED, ChannelStatus.CONNECTING):
            return []
        reason = f"wall clock jumped {delta:+.1f} s (suspend/resume?)"
        out: list[Decision] = [TearDown(reason)]
        out += self._open_gap(reason, last_rx)
        self.joined = False
        out += [self._set(ChannelStatus.RECONNECTING, f"{reason}; reconnecting now"), Connect(self.attempt)]
        return out

    def _on_health_tick(self) -> list[Decision]:
        if self.status is not ChannelStatus.ERROR:
            return []
        if self.seconds_in_status < self.config.error_reset_after:
            return []
        return self._restart(
            f"health check: in error for {self.seconds_in_status:.0f} s "
            f"(>= {self.config.error_reset_after:g} s); resetting and reconnecting"
        )

    def _restart(self, reason: str) -> list[Decision]:
        self.attempt = 0
        self._closes.clear()
        self.error_kind = None
        self.joined = False
        return [self._set(ChannelStatus.RECONNECTING, reason), Connect(0)]

    def abandon(self, reason: str) -> list[Decision]:
        """The driver can no longer act (its event loop ended): ``error`` now, no teardown, no retry.

        Unlike every other transition this is not an input: nothing can be carried out any more, so
        the only decision returned is the status."""
        out: list[Decision] = []
        if self.retry_armed:
            out.append(Cancelled())
            self.retry_armed = False
        if self.status is ChannelStatus.DISCONNECTED:
            return out
        self.joined = False
        self.error_kind = "loop"
        self.last_error = reason
        self.last_error_at = self._clock.now()
        out.append(self._set(ChannelStatus.ERROR, reason, {"kind": "loop"}))
        return out

    def _on_stop(self, reason: str) -> list[Decision]:
        if self.status is ChannelStatus.DISCONNECTED and not self.retry_armed:
            return []
        out: list[Decision] = [TearDown(reason)]
        if self.retry_armed:
            out.append(Cancelled())
            self.retry_armed = False
        out += self._close_gap(recovered=False, suffix=f"; ended by {reason}")
        self.joined = False
        self.attempt = 0
        self.error_kind = None
        out.append(self._set(ChannelStatus.DISCONNECTED, reason))
        return out

    def __repr__(self) -> str:
        return f"<ChannelMachine {self.name!r} {self.status} attempt={self.attempt} reason={self.reason!r}>"
