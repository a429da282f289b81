"""The asyncio driver of one named channel over the official ``realtime.AsyncRealtimeClient``.

One runner = one named subscription = one realtime-py client (one WebSocket) and one channel object,
both re-created on every (re)connect: ``subscribe()`` works once per channel object, and realtime-py's
own reconnection is switched off (``auto_reconnect=False``) so it never fights the state machine.
A socket per subscription also isolates failures (one channel's join errors or rate limits never
disturb another's); a notebook has a handful of subscriptions, well within connection limits.

Hooks into realtime-py 2.34.1 (read its source before changing them):

* Heartbeat replies. realtime-py routes each inbound message with ``client.channels.get(topic)`` and
  drops replies on topic ``phoenix``. The runner replaces ``client.channels`` with a ``dict`` subclass
  whose ``get("phoenix")`` returns a small sink, so our own heartbeats (sent with refs ``hl-N``) have
  their replies matched. Iteration over ``channels`` (rejoin, set_auth, close) is unaffected.
* Last data received. The same ``get``, called from the client's listener task, runs once per inbound
  message, so it also stamps when the connection last received anything: a gap starts there, not when
  its failure is noticed (see ``_machine.py``), and a socket that keeps delivering frames is never
  declared stalled, however late its heartbeat replies are (see ``_liveness.py``).
* Socket loss. With ``auto_reconnect=False`` realtime-py marks joined channels errored and calls the
  subscribe callback with ``CHANNEL_ERROR`` and the websockets exception; the runner also watches
  ``client._listen_task`` so a listener that dies for any other reason is noticed.
* Every callback given to realtime-py is wrapped: an exception there would kill its listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import websockets
from realtime import AsyncRealtimeChannel, AsyncRealtimeClient, Message, RealtimeSubscribeStates
from realtime.message import ReplyMessage

from harmony_lab.events import ChannelStatus, EventKind, RealtimeEvent
from harmony_lab.manager import _logs
from harmony_lab.manager._backfill import BackfillBook
from harmony_lab.manager._convert import change_fields, guess_primary_key, pk_of
from harmony_lab.manager._liveness import ClockWatch, HeartbeatTracker
from harmony_lab.manager._machine import (
    Cancelled,
    ChannelMachine,
    ChannelState,
    ClockJump,
    Closed,
    Connect,
    ConnectFailed,
    ConnectRequested,
    Decision,
    GapEnd,
    GapStart,
    HeartbeatOk,
    Input,
    Joined,
    JoinFailed,
    PostgresSubscribed,
    Refused,
    RetryDue,
    ScheduleRetry,
    SetStatus,
    SocketOpen,
    StallDetected,
    Stop,
    TearDown,
    TokenUnavailable,
)
from harmony_lab.manager._replay import ReplayBook
from harmony_lab.manager._specs import ChannelSpec, TableSubscription

if TYPE_CHECKING:
    from harmony_lab.manager._host import RunnerHost
    from harmony_lab.manager._presence import PresenceHandle

__all__ = ["ChannelRunner", "TokenUnavailableError", "abort_socket", "describe_exception"]

logger = logging.getLogger("harmony_lab.manager")

# postgres_changes system errors that retrying cannot fix (bad filter, unknown table, column
# selection): the real server does not retry them and neither do we
_FATAL_PG_PREFIXES = ("Error parsing", "Unable to subscribe", "No subscription params", "Column selection")
# join refusals that retrying with the same token cannot change (Realtime Authorization): the channel
# goes to error and waits for a new token or the health check instead of retrying in a loop
_REFUSED_PREFIXES = ("Unauthorized:", "PrivateOnly:")
# the system errors a joined private channel gets when a new token may no longer read it (then
# phx_close): nothing may be read at all, or one read permission it had is gone
_REVOKED_PREFIXES = ("You do not have permissions to read", "You no longer have permission")
_GRACEFUL = ("unsubscribed", "signed_out", "cleanup", "replaced")


class TokenUnavailableError(Exception):
    """No usable access token (expired, no refresh arrived in time)."""


def describe_exception(exc: BaseException) -> str:
    """A short human description of a connect/close failure."""
    if isinstance(exc, websockets.exceptions.InvalidStatus):
        body = exc.response.body or b""
        detail = body.decode("utf-8", "replace")[:200] if body else ""
        return f"HTTP {exc.response.status_code}" + (f" {detail}" if detail else "")
    if isinstance(exc, websockets.exceptions.ConnectionClosed):
        frame = exc.rcvd or exc.sent
        if frame is None:
            return "connection lost (1006, no close frame)"
        return f"{frame.code}" + (f" {frame.reason}" if frame.reason else "")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _close_code(exc: BaseException) -> int | None:
    if isinstance(exc, websockets.exceptions.ConnectionClosed):
        frame = exc.rcvd or exc.sent
        return frame.code if frame is not None else 1006
    return None


def abort_socket(client: AsyncRealtimeClient, name: str) -> None:
    """Close a client's WebSocket without awaiting anything (its event loop may be ending).

    ``transport.abort()`` closes the socket on the loop's next iteration, which still comes while
    ``asyncio.run()`` finishes; on a loop that is already closed nothing can be closed any more."""
    ws = getattr(client, "_ws_connection", None)
    transport = getattr(ws, "transport", None)
    if transport is None:
        return
    try:
        transport.abort()
    except RuntimeError as exc:
        logger.warning(
            "channel %r: its socket could not be closed (%s); it is released when garbage-collected",
            name,
            exc,
        )


class _PhoenixSink:
    """Receives what realtime-py would drop: replies on topic ``phoenix`` (our heartbeats)."""

    def __init__(self, on_reply: Callable[[str | None], None]) -> None:
        self._on_reply = on_reply

    def _handle_message(self, message: Any) -> None:
        if isinstance(message, ReplyMessage):
            try:
                self._on_reply(message.ref)
            except Exception:
                logger.exception("heartbeat reply handling failed")


class _Router(dict[str, Any]):
    """``client.channels`` replacement: routes topic ``phoenix`` to the sink, everything else as before.

    ``on_rx()`` runs on every lookup made by the client's listener task (realtime-py looks up the topic
    of every inbound message there); lookups made elsewhere (creating or removing a channel) are not
    traffic and must not make a silent socket look alive."""

    def __init__(self, sink: _PhoenixSink, on_rx: Callable[[], None], listener: Callable[[], Any]) -> None:
        super().__init__()
        self._sink = sink
        self._on_rx = on_rx
        self._listener = listener

    def get(self, key: str, default: Any = None) -> Any:
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop: certainly not the listener
            task = None
        if task is not None and task is self._listener():
            self._on_rx()
        if key == "phoenix":
            return self._sink
        return super().get(key, default)


class ChannelRunner:
    """Drives one :class:`ChannelMachine` with real I/O."""

    def __init__(self, host: RunnerHost, spec: ChannelSpec) -> None:
        self.host = host
        settings = host.settings
        self.spec = spec
        self.name = spec.name
        self.machine = ChannelMachine(spec.name, config=settings.machine, clock=host.clock, rng=settings.rng)
        self.callbacks: list[Callable[[RealtimeEvent], Any]] = []
        self.broadcast_callbacks: dict[str, list[Callable[[RealtimeEvent], Any]]] = {}
        self.presence: PresenceHandle | None = None
        self.client: AsyncRealtimeClient | None = None
        self.channel: AsyncRealtimeChannel | None = None
        self.generation = 0
        self.heartbeats = HeartbeatTracker()
        self.clock_watch = ClockWatch(threshold=max(5.0, 2 * settings.heartbeat_interval))
        self.pk: dict[tuple[str, str], tuple[str, ...]] = {}
        self.book = BackfillBook(spec.tables)
        self.replays = ReplayBook(spec.name, spec.replay, host.clock.now())
        self.events_received = 0
        self.last_event_at: Any = None
        self.backfilled = 0
        self._bf_queue: list[tuple[GapEnd, int]] = []
        self._bf_task: asyncio.Task[None] | None = None
        self.connects = 0
        self._last_pg_payload: object = None
        self._rx_mono: float | None = None
        self._rx_wall: datetime | None = None
        self._retry_task: asyncio.Task[None] | None = None
        self._attempt_task: asyncio.Task[None] | None = None
        self._hb_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._waiters: list[tuple[Callable[[ChannelStatus, int], bool], asyncio.Future[None]]] = []
        for sub in spec.tables:
            if sub.primary_key:
                self.pk[(sub.schema, sub.table)] = tuple(sub.primary_key)

    # ---------------------------------------------------------------------------------- machine glue
    def feed(self, inp: Input) -> None:
        for decision in self.machine.handle(inp):
            self._apply(decision)

    def _apply(self, d: Decision) -> None:
        match d:
            case SetStatus():
                self._emit_status(d)
                self._notify_waiters()
            case Connect():
                self._start_attempt()
            case TearDown(reason=reason):
                self._teardown(reason)
                if reason in _GRACEFUL:  # stopped for good: a pending backfill has no one to deliver to
                    self._cancel_backfill()
            case ScheduleRetry(delay=delay):
                self._cancel_retry()
                self._retry_task = self._spawn(self._retry_after(delay))
            case Cancelled():
                self._cancel_retry()
            case GapStart(at=at):
                # the status event announces it; the gap event is emitted once complete
                self.replays.gap_started(at)
            case GapEnd():
                self._emit_gap(d)
                if d.recovered and self.book.enabled:
                    self._schedule_backfill(d)

    def _emit_status(self, d: SetStatus) -> None:
        log = logger.warning if d.status is ChannelStatus.ERROR else logger.info
        log("channel %r: %s → %s (%s) attempt=%d", self.name, d.previous, d.status, d.reason, d.attempt)
        self.host.emit(
            kind=EventKind.STATUS,
            channel=self.name,
            topic=self.topic,
            status=d.status,
            reason=d.reason,
            attempt=d.attempt,
            payload={"previous": str(d.previous), "at": d.at.isoformat(), **d.details},
        )
        self.host.status_changed(self.state(), changed=d.status is not d.previous)

    def _emit_gap(self, gap: GapEnd) -> None:
        self.host.emit(
            kind=EventKind.GAP,
            channel=self.name,
            topic=self.topic,
            gap_start=gap.start,
            gap_end=gap.end,
            reason=gap.reason,
            payload={
                "recovered": gap.recovered,
                "seconds": (gap.end - gap.start).total_seconds(),
                "detected_at": gap.detected.isoformat() if gap.detected is not None else None,
                "undetected_s": (gap.detected - gap.start).total_seconds() if gap.detected else None,
            },
        )

    def _deliver_change(self, ev: RealtimeEvent, subs: list[TableSubscription]) -> None:
        callbacks = [*self.callbacks, *(s.callback for s in subs if s.callback is not None)]
        self.host.deliver_change(ev, callbacks)

    @property
    def topic(self) -> str:
        """The wire topic (``realtime:<topic>``; the topic is the channel's name unless given)."""
        return self.spec.wire_topic

    @property
    def joined(self) -> bool:
        return self.machine.joined

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self.host.spawn(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error("channel %r: internal task failed: %r", self.name, exc, exc_info=exc)

    def _cancel_retry(self) -> None:
        if self._retry_task is not None and self._retry_task is not asyncio.current_task():
            self._retry_task.cancel()
        self._retry_task = None

    async def _retry_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._retry_task = None
        self.feed(RetryDue())

    # --------------------------------------------------------------------------------- status waits
    def _notify_waiters(self) -> None:
        status, attempt = self.machine.status, self.machine.attempt
        for pred, fut in list(self._waiters):
            if not fut.done() and pred(status, attempt):
                fut.set_result(None)
        self._waiters = [(p, f) for p, f in self._waiters if not f.done()]

    async def wait(
        self,
        pred: Callable[[ChannelStatus, int], bool],
        timeout: float | None,  # noqa: ASYNC109 - passed on to asyncio.wait_for
    ) -> None:
        if pred(self.machine.status, self.machine.attempt):
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((pred, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            if not fut.done():
                fut.cancel()

    # --------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.feed(ConnectRequested())

    async def stop(self, reason: str) -> None:
        self.feed(Stop(reason))
        await self.settle()

    async def settle(self) -> None:
        """Wait for teardown work (closing sockets) spawned so far."""
        pending = [t for t in self._tasks if t is not asyncio.current_task() and t is not self._retry_task]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def abandon(self, reason: str) -> None:
        """The event loop this runner ran on is ending (or gone): release the socket synchronously,
        drop every task, and report ``error`` — never a ``connected`` that nothing drives."""
        self.generation += 1
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current and not task.done():
                with contextlib.suppress(RuntimeError):  # a task of a closed loop
                    task.cancel()
        self._tasks.clear()
        self._hb_task = self._attempt_task = self._retry_task = self._bf_task = None
        client, self.client, self.channel = self.client, None, None
        self.heartbeats.reset()
        if client is not None:
            abort_socket(client, self.name)
        for decision in self.machine.abandon(reason):
            if isinstance(decision, SetStatus):
                self._emit_status(decision)
                self._notify_waiters()

    def _start_attempt(self) -> None:
        self.generation += 1
        if self._attempt_task is not None and self._attempt_task is not asyncio.current_task():
            self._attempt_task.cancel()
        self._attempt_task = self._spawn(self._attempt(self.generation))

    def _teardown(self, reason: str) -> None:
        self.generation += 1
        current = asyncio.current_task()
        for task in (self._hb_task, self._attempt_task):
            if task is not None and task is not current:
                task.cancel()
        self._hb_task = None
        self._attempt_task = None
        client, channel = self.client, self.channel
        self.client = self.channel = None
        self.heartbeats.reset()
        if client is not None:
            self._spawn(self._dispose(client, channel, graceful=reason in _GRACEFUL))

    async def _dispose(
        self, client: AsyncRealtimeClient, channel: AsyncRealtimeChannel | None, *, graceful: bool
    ) -> None:
        if channel is not None:
            if graceful and client.is_connected and channel.is_joined:
                try:
                    await asyncio.wait_for(channel.unsubscribe(), 2.0)
                except Exception as exc:
                    logger.info("channel %r: phx_leave not sent (%s); closing the socket", self.name, exc)
            channel.rejoin_timer.reset()
            channel.join_push.destroy()
            for push in list(channel.messages_waiting_for_ack.values()):
                push.destroy()
            channel.messages_waiting_for_ack.clear()
        try:
            await client.close()
        except Exception as exc:
            logger.info("channel %r: closing the old socket raised %s (ignored: it is gone)", self.name, exc)

    # ----------------------------------------------------------------------------------- attempt
    async def _attempt(self, gen: int) -> None:
        _logs.own(asyncio.current_task(), self.name)  # realtime-py's connect failures log in this task
        try:
            token = await self.host.token_for_join()
        except TokenUnavailableError as exc:
            if gen == self.generation:
                self.feed(TokenUnavailable(str(exc)))
            return
        if gen != self.generation:
            return
        client = await self.host.new_client(token)
        sink = _PhoenixSink(lambda ref: self._on_heartbeat_reply(gen, ref))
        client.channels = _Router(
            sink, lambda: self._on_rx(gen), lambda: getattr(client, "_listen_task", None)
        )
        self.client = client
        self.connects += 1
        try:
            await client.connect()
        except Exception as exc:
            if gen == self.generation:
                self.feed(ConnectFailed(describe_exception(exc)))
            else:
                await client.close()
            return
        if gen != self.generation:
            await client.close()
            return
        listen_task = getattr(client, "_listen_task", None)
        _logs.own(listen_task, self.name)  # ... and its socket losses in these two
        _logs.own(getattr(client, "_heartbeat_task", None), self.name)
        if listen_task is not None:
            listen_task.add_done_callback(lambda t: self._on_listen_done(gen, t))
        self.feed(SocketOpen())
        self._hb_task = self._spawn(self._heartbeat_loop(gen, client))
        channel = self._build_channel(client, gen)
        self.channel = channel
        try:
            await channel.subscribe(
                lambda state, err: self._guarded(self._on_subscribe_state, gen, state, err)
            )
        except Exception as exc:
            if gen == self.generation:
                self.feed(JoinFailed(describe_exception(exc)))

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        """Run one of our realtime-py callbacks; never let an exception reach its listener loop."""
        try:
            fn(*args)
        except Exception:
            logger.exception("channel %r: handling a realtime-py callback failed", self.name)

    def _on_rx(self, gen: int) -> None:
        if gen == self.generation:
            clock = self.host.clock
            self._rx_mono = clock.monotonic()
            self._rx_wall = clock.now()

    def last_rx(self) -> datetime | None:
        """When this channel last provably received data from the server (None: never).

        The earlier of the wall time stamped then and "now minus the monotonic time elapsed since":
        the first is right after a suspend (the monotonic clock stood still), the second after the
        wall clock was stepped back.
        """
        if self._rx_mono is None or self._rx_wall is None:
            return None
        clock = self.host.clock
        elapsed = max(0.0, clock.monotonic() - self._rx_mono)
        return min(self._rx_wall, clock.now() - timedelta(seconds=elapsed))

    def _on_listen_done(self, gen: int, task: asyncio.Task[Any]) -> None:
        if gen != self.generation or task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.feed(
                Closed(
                    f"listener stopped: {describe_exception(exc)}",
                    code=_close_code(exc),
                    last_rx=self.last_rx(),
                )
            )
        elif self.client is not None and not self.client.is_connected:
            self.feed(Closed("socket closed", last_rx=self.last_rx()))

    def _build_channel(self, client: AsyncRealtimeClient, gen: int) -> AsyncRealtimeChannel:
        spec = self.spec
        presence_on = spec.presence_key is not None
        broadcast: dict[str, Any] = {"ack": False, "self": False}
        replay = self.replays.join_config()
        if replay is not None:
            broadcast["replay"] = replay
        params: Any = {
            "config": {
                "broadcast": broadcast,
                "presence": {"key": spec.presence_key or "", "enabled": presence_on},
                "private": spec.private,
            }
        }
        channel = client.channel(spec.topic or self.name, params)
        for sub in spec.tables:
            channel.on_postgres_changes(
                sub.event,  # type: ignore[arg-type]
                lambda payload: self._guarded(self._on_pg, gen, payload),
                table=sub.table,
                schema=sub.schema,
                filter=sub.filter if isinstance(sub.filter, str) else None,
            )
        if spec.broadcast:
            channel.on_broadcast("*", lambda payload: self._guarded(self._on_broadcast, gen, payload))
        channel.on_system(lambda payload: self._guarded(self._on_system_ok, gen, payload))
        if presence_on:
            channel.on_presence_sync(lambda: self._guarded(self._on_presence, gen, "sync", None))
            channel.on_presence_join(
                lambda key, cur, new: self._guarded(
                    self._on_presence, gen, "join", {"key": key, "current": cur, "new": new}
                )
            )
            channel.on_presence_leave(
                lambda key, cur, left: self._guarded(
                    self._on_presence, gen, "leave", {"key": key, "current": cur, "left": left}
                )
            )
        return channel

    # ---------------------------------------------------------------------------------- liveness
    async def _heartbeat_loop(self, gen: int, client: AsyncRealtimeClient) -> None:
        clock = self.host.clock
        interval = self.host.settings.heartbeat_interval
        self.clock_watch.reset()
        self.clock_watch.observe(clock.monotonic(), clock.now().timestamp())
        while gen == self.generation:
            tick = self.heartbeats.tick(clock.monotonic(), self._rx_mono)
            if tick.stalled:
                silent = f"for {tick.silent:.1f} s" if tick.silent is not None else "received yet"
                self.host.emit(
                    kind=EventKind.HEARTBEAT,
                    channel=self.name,
                    payload={"timeout": True, "waited_s": tick.waited, "silent_s": tick.silent},
                )
                self.feed(
                    StallDetected(
                        f"no heartbeat reply for {tick.waited:.1f} s and no frame {silent} "
                        f"(heartbeat interval {interval:g} s)",
                        last_rx=self.last_rx(),
                    )
                )
                return
            if not client.is_connected:
                return
            assert tick.ref is not None
            await client.send(Message(topic="phoenix", event="heartbeat", payload={}, ref=tick.ref))
            await asyncio.sleep(interval)
            delta = self.clock_watch.observe(clock.monotonic(), clock.now().timestamp())
            if delta is not None and gen == self.generation:
                self.feed(ClockJump(delta, last_rx=self.last_rx()))
                return

    def _on_heartbeat_reply(self, gen: int, ref: str | None) -> None:
        if gen != self.generation:
            return
        rtt = self.heartbeats.reply(ref, self.host.clock.monotonic())
        if rtt is None:
            return
        self.host.emit(kind=EventKind.HEARTBEAT, channel=self.name, payload={"rtt_ms": rtt * 1000})
        self.feed(HeartbeatOk(rtt))

    # ------------------------------------------------------------------------------ subscribe state
    def _on_subscribe_state(self, gen: int, state: RealtimeSubscribeStates, err: Exception | None) -> None:
        if gen != self.generation:
            return
        if state is RealtimeSubscribeStates.SUBSCRIBED:
            self.replays.joined()
            self.feed(Joined(postgres=self.spec.postgres))
            if self.presence is not None and self.machine.joined:
                self.presence._on_joined()
            return
        if state is RealtimeSubscribeStates.TIMED_OUT:
            self.feed(JoinFailed(f"join timed out after {self.host.settings.join_timeout:g} s"))
            return
        if state is RealtimeSubscribeStates.CLOSED:
            self.feed(Closed("channel closed by the server (phx_close)", last_rx=self.last_rx()))
            return
        # CHANNEL_ERROR
        if isinstance(err, websockets.exceptions.ConnectionClosed):
            frame = err.rcvd or err.sent
            self.feed(
                Closed(
                    (frame.reason if frame else "") or "connection closed",
                    code=_close_code(err),
                    last_rx=self.last_rx(),
                )
            )
            return
        detail: Any = None
        if err is not None:
            try:
                detail = json.loads(str(err))
            except ValueError:
                detail = None
        if isinstance(detail, dict) and "extension" in detail:
            self.host.emit(
                kind=EventKind.SYSTEM,
                channel=self.name,
                topic=self.topic,
                payload=detail,
                reason=str(detail.get("message")),
            )
            message = str(detail.get("message", ""))
            if detail.get("extension") == "postgres_changes" and message.startswith(_FATAL_PG_PREFIXES):
                self.feed(JoinFailed(f"postgres_changes: {message} ({self._doctor_hint()})", fatal=True))
            elif message.startswith(_REVOKED_PREFIXES):
                self.feed(Refused(message))
            else:
                self.feed(Closed(f"server system error: {message}", last_rx=self.last_rx()))
        elif isinstance(detail, dict) and "reason" in detail:
            reason = str(detail["reason"])
            if reason.startswith(_REFUSED_PREFIXES):
                self.feed(Refused(reason))
            else:
                self.feed(JoinFailed(reason))
        elif isinstance(detail, dict) and not detail:
            self.feed(Closed("channel crashed on the server (phx_error)", last_rx=self.last_rx()))
        else:
            text = str(err) if err is not None else "unknown channel error"
            fatal = "mismatch between server and client bindings" in text
            self.feed(JoinFailed(text, fatal=fatal))

    def _doctor_hint(self) -> str:
        """What to do when the server refuses a postgres_changes subscription."""
        tables = [f"{t.schema}.{t.table}" for t in self.spec.tables]
        if not tables:
            return "check the subscription's table, filter and columns"
        first = self.spec.tables[0]
        call = f"{first.table!r}" if first.schema == "public" else f"{first.table!r}, schema={first.schema!r}"
        return (
            f"check that {', '.join(tables)} exists, is in the supabase_realtime publication and has "
            f"the filter's columns; `await manager.doctor({call})` checks publication, replica identity, "
            "grants and RLS"
        )

    def _on_system_ok(self, gen: int, payload: Any) -> None:
        if gen != self.generation:
            return
        data = payload.model_dump() if hasattr(payload, "model_dump") else dict(payload)
        self.host.emit(
            kind=EventKind.SYSTEM,
            channel=self.name,
            topic=self.topic,
            payload=data,
            reason=str(data.get("message")),
        )
        if data.get("extension") == "postgres_changes" and "Subscribed to PostgreSQL" in str(
            data.get("message")
        ):
            self.feed(PostgresSubscribed())

    # ------------------------------------------------------------------------------------ delivery
    def _touch(self) -> None:
        self.events_received += 1
        self.last_event_at = self.host.clock.now()

    def _matching(self, payload: Any) -> list[int]:
        """Positions in ``spec.tables`` of the bindings the server matched (its ``ids``)."""
        ids = set(payload.get("ids") or ())
        op = str(getattr(payload["data"].get("type"), "value", payload["data"].get("type")))
        channel = self.channel
        if channel is None:
            return list(range(len(self.spec.tables)))
        bindings = channel.postgres_changes_callbacks
        return [
            i
            for i, (sub, binding) in enumerate(zip(self.spec.tables, bindings, strict=False))
            if binding.id in ids and sub.event in ("*", op)
        ]

    def _resolve_pk(self, fields: dict[str, Any]) -> tuple[str, ...] | None:
        key = (fields["schema"], fields["table"])
        pk = self.pk.get(key)
        if pk is not None:
            return pk
        guessed = guess_primary_key(fields["columns"], fields["op"], fields["old"])
        if guessed is not None and (fields["op"] == "DELETE" or guessed == ("id",)):
            self.pk[key] = guessed
        return guessed

    def _on_pg(self, gen: int, payload: Any) -> None:
        if gen != self.generation or payload is self._last_pg_payload:
            return
        self._last_pg_payload = payload
        self._touch()
        fields = change_fields(payload)
        pk_cols = self._resolve_pk(fields)
        pk = pk_of(pk_cols, fields["new"], fields["old"])
        matched = self._matching(payload)
        subs = [self.spec.tables[i] for i in matched]
        if self.book.enabled:
            old_pk = pk_of(pk_cols, fields["old"]) if fields["op"] == "UPDATE" else None
            if not self.book.live(matched, fields["op"], pk, old_pk, fields["new"]):
                return  # repeats a row the backfill just delivered
        ev = self.host.make_event(kind=EventKind.CHANGE, channel=self.name, topic=self.topic, pk=pk, **fields)
        self._deliver_change(ev, subs)

    def _on_broadcast(self, gen: int, payload: Any) -> None:
        if gen != self.generation:
            return
        self._touch()
        meta = payload.get("meta")
        if not self.replays.deliver(meta):
            return  # a stored message already delivered (replayed and live, or replayed twice)
        event = str(payload.get("event"))
        ev = self.host.make_event(
            kind=EventKind.BROADCAST,
            channel=self.name,
            topic=self.topic,
            op=event,
            payload=payload.get("payload"),
            backfilled=isinstance(meta, dict) and meta.get("replayed") is True,
        )
        targets = list(self.broadcast_callbacks.get("*", ())) + [
            cb
            for name, cbs in self.broadcast_callbacks.items()
            if name != "*" and name.lower() == event.lower()
            for cb in cbs
        ]
        self.host.deliver(ev, [*self.callbacks, *targets])

    def _on_presence(self, gen: int, op: str, detail: dict[str, Any] | None) -> None:
        if gen != self.generation or self.channel is None:
            return
        self._touch()
        if op == "sync":
            payload: Any = {k: list(v) for k, v in self.channel.presence_state().items()}
        else:
            payload = detail
        ev = self.host.make_event(
            kind=EventKind.PRESENCE, channel=self.name, topic=self.topic, op=op, payload=payload
        )
        if self.presence is not None and op == "sync":
            self.presence._on_sync(self.channel.presence_state(), ev)
        self.host.deliver(ev, self.callbacks)

    # ------------------------------------------------------------------------------------ backfill
    @property
    def backfilling(self) -> bool:
        """Whether a gap's backfill is queued or running (``ChannelState.backfilling``)."""
        return self._bf_task is not None and not self._bf_task.done()

    def state(self) -> ChannelState:
        """The machine's snapshot with what only the runner knows (a backfill in flight): what callers
        of the manager are handed."""
        state = self.machine.snapshot()
        return dataclasses.replace(state, backfilling=True) if self.backfilling else state

    def _schedule_backfill(self, gap: GapEnd) -> None:
        """Queue a backfill for ``gap``; one runs at a time (see ``_backfill.py``)."""
        self._bf_queue.append((gap, self.book.begin()))
        if self._bf_task is None or self._bf_task.done():
            self._bf_task = self._spawn(self._backfill_worker())

    def _cancel_backfill(self) -> None:
        self._bf_queue.clear()
        task, self._bf_task = self._bf_task, None
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
        self.book.finish()

    async def _backfill_worker(self) -> None:
        try:
            while self._bf_queue:
                # gaps that closed while a backfill ran are merged: from the earliest start, and only
                # live events since the latest reconnect win (earlier ones may predate the last gap)
                batch, self._bf_queue = self._bf_queue, []
                start = min(gap.start for gap, _ in batch)
                mark = max(mark for _, mark in batch)
                await self._backfill(start, batch[-1][0].end, mark)
        finally:
            if not self._bf_queue:
                self.book.finish()

    async def _backfill(self, start: datetime, end: datetime, mark: int) -> None:
        for index, sub in enumerate(self.spec.tables):
            if sub.backfill is None:
                continue
            key_cols = self.pk.get((sub.schema, sub.table))
            known = self.book.known(index) if key_cols else None
            try:
                fetch = await self.host.fetch_gap(sub, start, key_cols, known)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.error(
                    "channel %r: backfill of %s failed: %s", self.name, sub.describe(), exc, exc_info=exc
                )
                self.host.emit(
                    kind=EventKind.SYSTEM,
                    channel=self.name,
                    reason="backfill_failed",
                    payload={"table": sub.table, "error": f"{type(exc).__name__}: {exc}"},
                )
                continue
            if key_cols is None and fetch.rows:
                key_cols = ("id",) if "id" in fetch.rows[0] else None
            planned, stats = self.book.plan(
                index, fetch.rows, key_cols, mark, asked=known, still_present=fetch.still_present
            )
            window = {"gap_start": start.isoformat(), "gap_end": end.isoformat()}
            for change in planned:
                ev = self.host.make_event(
                    kind=EventKind.CHANGE,
                    channel=self.name,
                    topic=self.topic,
                    schema=sub.schema,
                    table=sub.table,
                    op=change.op,
                    new=change.row,
                    old=change.pk if change.op == "DELETE" else None,
                    pk=change.pk,
                    columns=fetch.columns,
                    backfilled=True,
                    payload=window,
                )
                self._deliver_change(ev, [sub])
            self.backfilled += len(planned)
            self.host.emit(
                kind=EventKind.SYSTEM,
                channel=self.name,
                reason="backfill",
                payload={
                    "table": sub.table,
                    "rows": stats.rows,
                    "delivered": stats.delivered,
                    "skipped": stats.duplicates,
                    "superseded": stats.superseded,
                    "deleted": stats.deleted,
                    "keys_checked": stats.checked,
                    **window,
                },
            )

    # --------------------------------------------------------------------------------- debug info
    def debug(self) -> dict[str, Any]:
        state = self.machine.snapshot()
        client = self.client
        return {
            "status": str(state.status),
            "reason": state.reason,
            "attempts": state.attempt,
            "since": state.since,
            "last_connected_at": state.last_connected_at,
            "last_error": state.last_error,
            "last_error_at": state.last_error_at,
            "gap_open_since": state.gap_open_since,
            "last_event_at": self.last_event_at,
            "events_received": self.events_received,
            "bindings": self.spec.bindings(),
            "heartbeat": self.heartbeats.summary(),
            "connects": self.connects,
            "backfilled": self.backfilled,
            "duplicates_skipped": self.book.duplicates,
            "backfill_superseded": self.book.superseded,
            "backfill_deleted": self.book.deleted,
            "backfill_pending": self.backfilling,
            "replay": dict(self.replays.stats) if self.spec.replay is not None else None,
            "socket": {
                "connected": bool(client is not None and client.is_connected),
                "channel_state": self.channel.state.value if self.channel is not None else None,
            },
        }

    def __repr__(self) -> str:
        return f"<ChannelRunner {self.name!r} {self.machine.status}>"
