"""RealtimeConnectionManager: the seed's resilient manager, over the official realtime-py client."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, ClassVar, TypeVar

from realtime import AsyncRealtimeClient

from harmony_lab.events import ChannelStatus, EventKind, PresenceStatus, RealtimeEvent
from harmony_lab.filters import Condition, Filter
from harmony_lab.manager import _logs
from harmony_lab.manager._backoff import BackoffPolicy
from harmony_lab.manager._bus import CallbackGuard, EventBus, EventStream
from harmony_lab.manager._clock import Clock, SystemClock
from harmony_lab.manager._convert import jwt_claims
from harmony_lab.manager._host import RunnerSettings
from harmony_lab.manager._machine import (
    ChannelState,
    HealthTick,
    MachineConfig,
    Stop,
    TokenRefreshed,
)
from harmony_lab.manager._presence import PresenceHandle
from harmony_lab.manager._runner import ChannelRunner, TokenUnavailableError
from harmony_lab.manager._snapshot import TableSnapshot
from harmony_lab.manager._specs import (
    Backfill,
    BroadcastReplay,
    ChannelSpec,
    TableSubscription,
    strict_kwargs,
)

__all__ = ["RealtimeConnectionManager"]

T = TypeVar("T")

logger = logging.getLogger("harmony_lab.manager")

_TOKEN_EVENTS = {"SIGNED_IN", "TOKEN_REFRESHED", "USER_UPDATED", "MFA_CHALLENGE_VERIFIED", "INITIAL_SESSION"}
_TABLE_OPS = ("INSERT", "UPDATE", "DELETE")


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
    return float(value)


def realtime_url(url: str) -> str:
    """The realtime endpoint for a Supabase-style project URL (``http://host`` → ``http://host/realtime/v1``).

    URLs that already point at a socket (``/realtime/v1``, ``/socket``, or a ``ws(s)://`` URL with a
    path) are kept; realtime-py appends ``/websocket``.
    """
    if not isinstance(url, str) or not url.startswith(("http://", "https://", "ws://", "wss://")):
        raise ValueError(f"url must start with http://, https://, ws:// or wss://; got {url!r}")
    base = url.rstrip("/")
    if base.endswith("/websocket"):
        base = base[: -len("/websocket")]
    scheme_end = base.index("://") + 3
    path = base[scheme_end:].partition("/")[2]
    if path.endswith(("realtime/v1", "socket")) or (url.startswith("ws") and path):
        return base
    return base + "/realtime/v1"


class RealtimeConnectionManager:
    """Named Realtime subscriptions that survive anything a network or a server can do.

    Every named subscription has its own status (``disconnected``, ``connecting``, ``connected``,
    ``reconnecting``, ``error``) driven by a pure state machine (see ``_machine.py``) and its own
    WebSocket via the official ``realtime.AsyncRealtimeClient``. Everything observed becomes a
    :class:`~harmony_lab.events.RealtimeEvent` with a per-manager increasing ``seq``.

    Runs on the running event loop (Jupyter's, or your script's ``asyncio.run(main())``); it never
    starts a loop or a thread of its own, and it is bound to that loop: when the loop ends (the end of
    ``asyncio.run()``) the manager closes its sockets and marks its channels ``error``; using it from
    another loop while it has channels raises a RuntimeError saying what to do; ``cleanup()`` works
    from any loop and lets the manager bind to the next one.

    One owner per channel name: calls on a name run one at a time and the last call wins. A call
    still in progress when a later call on the same name arrives returns at once a ``ChannelState``
    with ``superseded=True`` (``join_presence``: a closed handle with ``superseded=True``); nothing it
    started survives on the server unless the later call keeps it.

    Reconnection: ``backoff`` retries ``max_retries`` times after a failure (the failure after the last
    retry means ``error``); 3 closes within ``rapid_close_window`` s wait ``rapid_close_cooldown`` s; the
    attempt count resets after two heartbeat replies on a connected channel; every
    ``health_interval`` s a channel in ``error`` for ``error_reset_after`` s is reset and reconnected.
    Heartbeats (with refs, every ``heartbeat_interval`` s) detect a silent stall within two intervals:
    a heartbeat unanswered while no frame of any kind arrived for a whole interval (a busy socket whose
    replies queue behind a backlog of changes is alive); a wall-clock jump forces a reconnect. Any
    interval without delivery becomes a ``gap`` event (emitted once delivery resumes, or when the
    channel is stopped with ``recovered=False``).

    Primary keys (``RealtimeEvent.pk``; Realtime payloads do not mark PK columns), per table:
    ``primary_key=`` on the subscription → ``pg_index`` via ``dsn`` → PostgREST's OpenAPI description
    (``from_supabase``) → the keys of a DELETE's ``old_record`` (default replica identity carries
    exactly the PK) → ``id`` if the table has such a column → None.

    Subscribing (``subscribe_to_table``, ``subscribe_to_multiple_tables``, ``subscribe``,
    ``join_presence``) returns once the channel's *first attempt* has settled, never raising for
    connection problems: the returned :class:`ChannelState` is ``connected`` (events flow),
    ``error`` (retrying cannot help — e.g. the table is not in the publication — or no retry left),
    or ``reconnecting`` (the first attempt failed and the manager keeps retrying in the background).
    Code that needs events to flow before it goes on — a test writing rows right after — awaits
    ``await manager.wait_for_status(name, "connected")``.

    Delivery: the channel's callback and the binding's ``TableSubscription.callback`` first, then
    every ``add_listener`` function, then every ``events()`` stream. A callback that raises (or a
    coroutine callback that fails) is logged and counted (``get_debug_info()["callback_errors"]``)
    and never stops delivery.

    Logging: realtime-py's connection-loss ERROR lines ("WebSocket connection closed with code …",
    "Auto-reconnect disabled …", "Connection attempt failed …") of the connections the manager owns
    are dropped and re-emitted at DEBUG on the ``harmony_lab.manager`` logger with the channel's name
    (the manager reports those losses as status events); every other realtime-py line, and those of
    realtime clients you use directly, keep their level (see ``_logs.py``).

    >>> mgr = RealtimeConnectionManager(rt.url, rt.anon_key, dsn=rt.dsn)          # doctest: +SKIP
    >>> await mgr.subscribe_to_table("msgs", "messages", filter="channel_id=eq.1",  # doctest: +SKIP
    ...                              callback=print, backfill=Backfill("created_at"))
    """

    _instance: ClassVar[RealtimeConnectionManager | None] = None

    @strict_kwargs
    def __init__(
        self,
        url: str,
        key: str,
        *,
        backoff: BackoffPolicy | None = None,
        heartbeat_interval: float = 25.0,
        rapid_close_window: float = 10.0,
        rapid_close_cooldown: float = 30.0,
        health_interval: float = 60.0,
        error_reset_after: float = 180.0,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        access_token: str | None = None,
        dsn: str | None = None,
        join_timeout: float = 10.0,
        token_wait: float = 10.0,
        presence_limit: tuple[int, float] = (5, 30.0),
    ) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError("key must be the project's API key (anon or service_role), a non-empty string")
        if backoff is not None and not isinstance(backoff, BackoffPolicy):
            raise TypeError(f"backoff must be a BackoffPolicy(...), got {backoff!r}")
        self.url = url
        self._realtime_url = realtime_url(url)
        self._key = key
        self.heartbeat_interval = _positive("heartbeat_interval", heartbeat_interval)
        self.health_interval = _positive("health_interval", health_interval)
        self.join_timeout = _positive("join_timeout", join_timeout)
        self.token_wait = float(token_wait) if token_wait == 0 else _positive("token_wait", token_wait)
        self.backoff = backoff or BackoffPolicy()
        if (
            not isinstance(presence_limit, tuple)
            or len(presence_limit) != 2
            or isinstance(presence_limit[0], bool)
            or not isinstance(presence_limit[0], int)
            or presence_limit[0] < 1
        ):
            raise ValueError(f"presence_limit must be (max_calls, window_seconds), got {presence_limit!r}")
        self.presence_limit = (presence_limit[0], _positive("presence_limit window", presence_limit[1]))
        self._machine_config = MachineConfig(
            backoff=self.backoff,
            rapid_close_window=rapid_close_window,
            rapid_close_cooldown=rapid_close_cooldown,
            error_reset_after=error_reset_after,
        )
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._access_token = access_token
        self.dsn = dsn
        self._seq = itertools.count(1)
        self._guard = CallbackGuard()
        self._bus = EventBus(self._make, self._guard)
        self._runners: dict[str, ChannelRunner] = {}
        self._presence: dict[str, PresenceHandle] = {}
        self._status_callbacks: dict[str, list[tuple[Callable[[ChannelState], Any], bool]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._health_task: asyncio.Task[None] | None = None
        self._token_changed: asyncio.Event | None = None
        self._auth: Any = None
        self._auth_subscription: Any = None
        self._session_checked = False
        self._supabase: Any = None
        self._closed = False
        self.suppressed = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: dict[str, _Slot] = {}
        self._stopping_health: asyncio.Task[None] | None = None
        self._host = _ManagerHost(self)
        _logs.install()

    # ------------------------------------------------------------------------------- construction
    @classmethod
    def from_supabase(cls, client: Any, **options: Any) -> RealtimeConnectionManager:
        """A manager for a ``supabase.AsyncClient``: same URL and key, its auth attached, its PostgREST
        client used for backfills when no ``dsn`` is given."""
        url = getattr(client, "supabase_url", None)
        key = getattr(client, "supabase_key", None)
        if url is None or key is None or not hasattr(client, "auth"):
            raise TypeError(
                "from_supabase takes a supabase AsyncClient (await supabase.acreate_client(url, key)); "
                f"got {type(client).__name__}"
            )
        manager = cls(str(url), key, **options)
        manager._supabase = client
        manager.attach_auth(client.auth)
        return manager

    @classmethod
    def get_instance(cls, *args: Any, **kwargs: Any) -> RealtimeConnectionManager:
        """The process-wide manager (the seed's singleton). Created by the first call, which needs
        ``url`` and ``key``; later calls return it (arguments, if given, must match)."""
        if cls._instance is None:
            if not args and "url" not in kwargs:
                raise RuntimeError(
                    "get_instance() needs url and key the first time: get_instance(url, key, ...)"
                )
            cls._instance = cls(*args, **kwargs)
            return cls._instance
        inst = cls._instance
        url = args[0] if args else kwargs.get("url")
        key = args[1] if len(args) > 1 else kwargs.get("key")
        if (url is not None and url != inst.url) or (key is not None and key != inst._key):
            raise ValueError(
                f"get_instance(): the manager already exists for {inst.url!r}; "
                "call RealtimeConnectionManager.reset_instance() first to start another"
            )
        return inst

    @classmethod
    def reset_instance(cls) -> None:
        """Forget the singleton (tests). If it still has live channels, its ``cleanup()`` is scheduled
        on the running loop; without a running loop, call ``await manager.cleanup()`` first."""
        inst = cls._instance
        cls._instance = None
        if inst is None or inst._closed or not inst._runners:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "reset_instance(): the manager still has channels and no event loop is running; "
                "await manager.cleanup() before resetting"
            ) from None
        task = loop.create_task(inst.cleanup())
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    # ------------------------------------------------------------------------------- subscriptions
    async def subscribe_to_table(
        self,
        name: str,
        table: str,
        *,
        schema: str = "public",
        event: str = "*",
        filter: str | Condition | Filter | None = None,
        callback: Callable[[RealtimeEvent], Any] | None = None,
        backfill: Backfill | None = None,
        primary_key: tuple[str, ...] | str | None = None,
    ) -> ChannelState:
        """Subscribe channel ``name`` to postgres changes of ``schema.table``.

        Returns the channel's state once the first attempt settled: ``connected``, ``error``, or
        ``reconnecting`` while retries continue in the background — so it may return before events
        flow; ``await manager.wait_for_status(name, "connected")`` waits for that (see the class
        docstring). ``filter`` (a string or ``F`` expression) is validated before anything is sent;
        ``backfill=Backfill(...)`` fetches what changed during gaps."""
        sub = TableSubscription(
            table, schema=schema, event=event, filter=filter, backfill=backfill, primary_key=primary_key
        )
        return await self._subscribe(ChannelSpec(name, tables=(sub,)), callback)

    async def subscribe_to_multiple_tables(
        self,
        name: str,
        subscriptions: Iterable[TableSubscription],
        callback: Callable[[RealtimeEvent], Any] | None = None,
    ) -> ChannelState:
        """One channel, several postgres_changes bindings (``TableSubscription`` each); returns like
        :meth:`subscribe_to_table`."""
        subs = tuple(subscriptions)
        if not subs:
            raise ValueError("subscribe_to_multiple_tables needs at least one TableSubscription")
        for sub in subs:
            if not isinstance(sub, TableSubscription):
                raise TypeError(f"expected TableSubscription(...) items, got {sub!r}")
        return await self._subscribe(ChannelSpec(name, tables=subs), callback)

    async def subscribe(
        self, name: str, event: str, callback: Callable[[RealtimeEvent], Any]
    ) -> ChannelState:
        """The seed's legacy form: broadcast ``event`` (``"*"`` for all) on channel ``name``; returns like
        :meth:`subscribe_to_table`.

        It means broadcast events only. Table operations (``"INSERT"``, ``"UPDATE"``, ``"DELETE"``) are
        refused with a ValueError pointing to :meth:`subscribe_to_table`, and so is a name that already
        has a table subscription (it is never replaced behind your back): unsubscribe it first or pick
        another name. Calls on one broadcast channel add up: each adds its ``event`` and ``callback``
        (no rejoin while the channel is up). :meth:`subscribe_to_broadcast` is the explicit form.
        """
        if not isinstance(event, str) or not event:
            raise ValueError(f"event must be a broadcast event name (or '*'), got {event!r}")
        if event.upper() in _TABLE_OPS:
            raise ValueError(
                f"subscribe({name!r}, {event!r}, ...) listens to broadcast events, and {event!r} is a table "
                f"operation: use subscribe_to_table({name!r}, <table>, event={event.upper()!r}, "
                "callback=...) for row changes"
            )
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        spec = ChannelSpec(name)
        self._refuse_table_name(name)
        current = self._runners.get(name)
        adding = current is not None and current.spec == spec and self._is_live(current)
        return await self._subscribe(spec, None, broadcast=(event, callback, False), supersede=not adding)

    async def subscribe_to_broadcast(
        self,
        name: str,
        topic: str,
        *,
        event: str = "*",
        private: bool = False,
        callback: Callable[[RealtimeEvent], Any] | None = None,
        replay: BroadcastReplay | None = None,
    ) -> ChannelState:
        """Channel ``name`` receives the broadcasts on Realtime topic ``topic`` (``"room:1"``; the
        ``realtime:`` prefix is added on the wire); returns like :meth:`subscribe_to_table`.

        ``event`` selects which broadcast events reach ``callback`` (``"*"``: all); listeners and
        ``events()`` streams see every broadcast of the channel. ``private=True`` joins as a private
        channel (realtime-py's ``config: {"private": True}``): the server admits the join only if a
        SELECT policy on ``realtime.messages`` lets the token's role read the topic. A refusal puts
        the channel in ``error`` with the server's reason and is not retried in a loop: the manager
        tries again after a new access token (SIGNED_IN / TOKEN_REFRESHED) or when the health check
        resets it. Broadcasts sent with :meth:`broadcast` go to the same topic (sending into a private
        topic needs an INSERT policy). Calling it again on ``name`` replaces the subscription (the
        last call wins; the same topic and privacy keep the connection and take the new callback).

        ``replay=BroadcastReplay(since=timedelta(hours=1))`` (private channels only) asks the server
        for the broadcasts the topic has stored (``realtime.send`` / ``broadcast_changes``): the newest
        (at most 25) since ``since`` on the first join, and after every gap those stored since the gap
        began; they arrive with ``backfilled=True`` and never twice (see :class:`BroadcastReplay`).
        """
        if not isinstance(event, str) or not event:
            raise ValueError(f"event must be a broadcast event name (or '*'), got {event!r}")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        spec = ChannelSpec(name, topic=topic, private=private, replay=replay)
        listen = (event, callback, True) if callback is not None else None
        return await self._subscribe(spec, None, broadcast=listen, clear_broadcast=callback is None)

    def _refuse_table_name(self, name: str) -> None:
        runner = self._runners.get(name)
        if runner is not None and runner.spec.tables:
            tables = ", ".join(t.describe() for t in runner.spec.tables)
            raise ValueError(
                f"channel {name!r} is a table subscription ({tables}); subscribe() listens to broadcast "
                f"events and would replace it. Use another name for broadcasts, or "
                f"`await manager.unsubscribe({name!r})` first"
            )

    async def _subscribe(
        self,
        spec: ChannelSpec,
        callback: Callable[[RealtimeEvent], Any] | None,
        *,
        broadcast: tuple[str, Callable[[RealtimeEvent], Any], bool] | None = None,
        clear_broadcast: bool = False,
        presence: tuple[str, PresenceStatus, Mapping[str, Any] | None] | None = None,
        supersede: bool = True,
    ) -> ChannelState:
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")

        async def op(slot: _Slot, ticket: int) -> ChannelState | None:
            return await self._subscribe_owned(
                slot, ticket, spec, callback, broadcast, clear_broadcast, presence
            )

        result = await self._owned(spec.name, op, supersede=supersede)
        if result is None:
            return _superseded_state(spec.name, self._clock)
        return result

    async def _subscribe_owned(
        self,
        slot: _Slot,
        ticket: int,
        spec: ChannelSpec,
        callback: Callable[[RealtimeEvent], Any] | None,
        broadcast: tuple[str, Callable[[RealtimeEvent], Any], bool] | None,
        clear_broadcast: bool,
        presence: tuple[str, PresenceStatus, Mapping[str, Any] | None] | None,
    ) -> ChannelState | None:
        """The body of a subscribe, run as the owner of ``spec.name``; None: superseded."""
        existing = self._runners.get(spec.name)
        if broadcast is not None and not broadcast[2]:
            self._refuse_table_name(spec.name)  # again: a table subscription may have won meanwhile
        if existing is not None and existing.spec == spec and presence is None:
            # the same subscription: keep the connection, take the newest callbacks; restart it if it
            # is in error or was stopped (e.g. after SIGNED_OUT) — the user is asking for it again
            if callback is not None:
                existing.callbacks[:] = [callback]
            if clear_broadcast:
                existing.broadcast_callbacks.clear()
            if broadcast is not None:
                event, cb, replace = broadcast
                if replace:
                    existing.broadcast_callbacks.clear()
                cbs = existing.broadcast_callbacks.setdefault(event, [])
                if cb not in cbs:
                    cbs.append(cb)
            existing.spec = spec
            if existing.machine.status in (ChannelStatus.ERROR, ChannelStatus.DISCONNECTED):
                existing.start()
            if not await self._unless_superseded(slot, ticket, self._wait_first_attempt(existing)):
                return None
            return existing.state()
        if existing is not None:
            await self._remove(spec.name, reason="replaced")
        runner = ChannelRunner(self._host, spec)
        if callback is not None:
            runner.callbacks.append(callback)
        if broadcast is not None:
            runner.broadcast_callbacks.setdefault(broadcast[0], []).append(broadcast[1])
        if not await self._unless_superseded(slot, ticket, self._resolve_primary_keys(runner)):
            return None  # nothing was registered or sent
        if presence is not None:
            user_id, status, meta = presence
            handle = PresenceHandle(
                self._host,
                runner,
                spec.name,
                user_id,
                status,
                meta,
                max_calls=self.presence_limit[0],
                window=self.presence_limit[1],
            )
            runner.presence = handle
            self._presence[spec.name] = handle
        self._runners[spec.name] = runner
        self._ensure_health_loop()
        runner.start()
        if not await self._unless_superseded(slot, ticket, self._wait_first_attempt(runner)):
            return None
        return runner.state()

    # ------------------------------------------------------------------------- one owner per name
    async def _owned(
        self, name: str, op: Callable[[_Slot, int], Awaitable[T]], *, supersede: bool = True
    ) -> T | None:
        """Run ``op`` as the only operation on channel ``name``; None when a later call superseded it.

        Operations on one name run one at a time, in call order. A superseding call (every subscribe,
        re-subscribe, unsubscribe and cleanup; not a legacy ``subscribe`` that only adds an event to
        a channel that is up) makes every earlier one that has not finished return at once: a waiting
        one without running, a running one as soon as it is at a wait (it leaves nothing half done:
        what it started belongs to the channel, which the later call then keeps or replaces).
        """
        self._check_open()
        self._bind_loop()
        slot = self._slots.get(name)
        if slot is None:
            slot = self._slots[name] = _Slot()
        ticket = slot.take(supersede=supersede)
        slot.pending += 1
        try:
            async with slot.lock:
                if slot.ticket != ticket:
                    return None
                return await op(slot, ticket)
        finally:
            slot.pending -= 1
            if slot.pending == 0 and self._slots.get(name) is slot:
                del self._slots[name]

    @staticmethod
    async def _unless_superseded(slot: _Slot, ticket: int, aw: Coroutine[Any, Any, Any]) -> bool:
        """Await ``aw`` unless a later call on the name supersedes this one first (then cancel it)."""
        if slot.ticket != ticket:
            aw.close()
            return False
        task = asyncio.ensure_future(aw)
        waker = slot.waker()
        try:
            await asyncio.wait({task, waker}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            slot.forget(waker)
        if slot.ticket == ticket:
            task.result()  # re-raise what it raised
            return True
        # superseded while waiting (even if the wait ended at the same moment): the later call decides
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elif not task.cancelled():
            task.exception()  # retrieved: a superseded call's failure is the later call's business
        return False

    async def _wait_first_attempt(self, runner: ChannelRunner) -> None:
        """Until connected, in error, stopped, or the first failure (then retries continue in the
        background)."""
        try:
            await runner.wait(
                lambda status, attempt: (
                    status in (ChannelStatus.CONNECTED, ChannelStatus.ERROR, ChannelStatus.DISCONNECTED)
                    or attempt > 0
                ),
                timeout=self.join_timeout + self.token_wait + 5.0,
            )
        except TimeoutError:
            logger.warning(
                "channel %r: still %s after the first attempt's time budget",
                runner.name,
                runner.machine.status,
            )

    @staticmethod
    def _is_live(runner: ChannelRunner) -> bool:
        return runner.machine.status not in (ChannelStatus.DISCONNECTED, ChannelStatus.ERROR)

    async def unsubscribe(self, name: str) -> None:
        """Leave channel ``name`` and forget it (no error if unknown). Supersedes every earlier call
        on ``name`` that is still in progress."""

        async def op(_slot: _Slot, _ticket: int) -> bool:
            await self._remove(name, reason="unsubscribed")
            return True

        await self._owned(name, op)

    async def _remove(self, name: str, *, reason: str) -> None:
        runner = self._runners.pop(name, None)
        handle = self._presence.pop(name, None)
        if handle is not None:
            handle._close()
        if runner is not None:
            await runner.stop(reason)
            await runner.settle()

    async def cleanup(self) -> None:
        """Leave every channel, stop background tasks, end every ``events()`` stream.

        Works from any event loop: called from another loop than the channels' (the notebook helper
        or script that ran ``asyncio.run()`` twice), it releases what the old loop left (its sockets
        are closed when that loop ended, or here if it can still be), and the manager can be used on
        the new loop afterwards."""
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            self._release_foreign_loop()
        else:
            for name in sorted(set(self._runners) | set(self._slots)):

                async def op(_slot: _Slot, _ticket: int, name: str = name) -> bool:
                    await self._remove(name, reason="cleanup")
                    return True

                await self._owned(name, op)
            self._stop_health_loop()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            await self._guard.drain()
        self.detach_auth()
        self._bus.close()
        if RealtimeConnectionManager._instance is self:
            RealtimeConnectionManager._instance = None

    async def aclose(self) -> None:
        await self.cleanup()
        self._closed = True

    async def __aenter__(self) -> RealtimeConnectionManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this RealtimeConnectionManager was closed; create a new one")

    # ------------------------------------------------------------------------------- event loop
    def _bind_loop(self) -> None:
        """The manager is bound to the loop its channels run on (see the class docstring)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._loop is not None and (self._runners or self._slots):
            ended = " (it has ended: asyncio.run() returned)" if self._loop.is_closed() else ""
            raise RuntimeError(
                "this RealtimeConnectionManager's channels run on another event loop"
                f"{ended}; a manager is bound to the loop it first ran on. Use one manager per "
                "asyncio.run(), or `await manager.cleanup()` (from any loop) to release the old "
                "channels, then subscribe again on this loop"
            )
        self._loop = loop
        self._slots = {}
        self._token_changed = None
        self._health_task = None
        self._tasks = set()

    def _loop_gone(self) -> bool:
        """The loop the channels ran on is closed (nothing can drive them any more)."""
        return self._loop is not None and self._loop.is_closed()

    def _abandon_all(self, reason: str) -> None:
        for handle in self._presence.values():
            handle._close()
        for runner in list(self._runners.values()):
            try:
                runner.abandon(reason)
            except Exception:
                logger.exception("channel %r: releasing it failed", runner.name)

    def _release_foreign_loop(self) -> None:
        """cleanup() from another loop: drop everything the old loop owned, synchronously."""
        old = self._loop
        if old is not None and old.is_running():
            raise RuntimeError(
                "cleanup() was called from another event loop while the manager's loop is still "
                "running (another thread?); run it there: "
                "asyncio.run_coroutine_threadsafe(manager.cleanup(), loop)"
            )
        self._abandon_all("cleanup() from another event loop")
        self._runners.clear()
        self._presence.clear()
        self._slots = {}
        self._tasks = set()
        self._health_task = None
        self._token_changed = None
        self._loop = None

    # ------------------------------------------------------------------------------------ broadcast
    async def broadcast(self, name: str, event: str, payload: Mapping[str, Any]) -> None:
        """Send broadcast ``event`` with ``payload`` (a JSON object) on the connected channel ``name``
        (to its topic; into a private topic only if the token's role may write it)."""
        self._bind_loop()
        runner = self._runner(name)
        if not isinstance(payload, Mapping):
            raise TypeError(
                "broadcast payload must be a mapping (realtime-py drops non-object payloads), "
                f"got {type(payload).__name__}"
            )
        channel = runner.channel
        if channel is None or runner.machine.status is not ChannelStatus.CONNECTED:
            raise RuntimeError(
                f"channel {name!r} is {runner.machine.status} ({runner.machine.reason}); "
                "broadcast not sent — "
                f"await manager.wait_for_status({name!r}, 'connected') first"
            )
        await channel.send_broadcast(event, dict(payload))

    # ------------------------------------------------------------------------------------- presence
    async def join_presence(
        self,
        name: str,
        user_id: Any,
        status: PresenceStatus | str = PresenceStatus.ONLINE,
        meta: Mapping[str, Any] | None = None,
        *,
        topic: str | None = None,
        private: bool = False,
    ) -> PresenceHandle:
        """Join presence on channel ``name`` (Realtime topic ``topic``, default ``name``) as ``user_id``
        (the presence key); returns a handle once the first attempt settled (see
        :meth:`subscribe_to_table`; ``wait_for_status`` to be sure). ``private=True`` joins a private
        channel (see :meth:`subscribe_to_broadcast`; tracking needs an INSERT policy).

        A join superseded by a later call on ``name`` returns a closed handle with
        ``superseded=True``."""
        user = str(user_id)
        if not user:
            raise ValueError("user_id must be non-empty")
        st = PresenceStatus.coerce(status)
        spec = ChannelSpec(name, presence_key=user, topic=topic, private=private)
        state = await self._subscribe(spec, None, presence=(user, st, meta))
        handle = self._presence.get(name)
        if state.superseded or handle is None:
            return PresenceHandle(self._host, None, name, user, st, meta)
        return handle

    async def join_channel(
        self,
        name: str,
        *,
        tables: Iterable[TableSubscription] = (),
        presence_key: str | None = None,
        presence_status: PresenceStatus | str = PresenceStatus.ONLINE,
        topic: str | None = None,
        private: bool = False,
    ) -> ChannelState:
        """Join channel ``name`` with postgres_changes ``tables``, broadcast and (with ``presence_key``)
        presence at once, in one join; returns the state once the first attempt settled (see
        :meth:`subscribe_to_table`). Events go to the listeners and each table's callback; the presence
        handle is :meth:`presence_handle`. The single-purpose calls (``subscribe_to_multiple_tables``,
        ``subscribe_to_broadcast``, ``join_presence``) cover the common cases."""
        if presence_key is not None and (not isinstance(presence_key, str) or not presence_key):
            raise ValueError(f"presence_key must be a non-empty string or None, got {presence_key!r}")
        spec = ChannelSpec(
            name, tables=tuple(tables), presence_key=presence_key, topic=topic, private=private
        )
        presence = None
        if presence_key is not None:
            presence = (presence_key, PresenceStatus.coerce(presence_status), None)
        return await self._subscribe(spec, None, presence=presence)

    def presence_handle(self, name: str) -> PresenceHandle | None:
        """The presence handle of channel ``name`` when it was joined with presence, else None."""
        return self._presence.get(name)

    def _dnd(self) -> bool:
        return any(h.status is PresenceStatus.DND and not h.closed for h in self._presence.values())

    # --------------------------------------------------------------------------------------- status
    def _runner(self, name: str) -> ChannelRunner:
        runner = self._runners.get(name)
        if runner is None:
            known = ", ".join(sorted(self._runners)) or "none"
            raise KeyError(f"no channel named {name!r}; channels: {known}")
        return runner

    def get_status(self, name: str) -> ChannelState:
        """Status, reason, attempt count and timestamps of channel ``name``.

        A name that is not subscribed (never, or no longer) is ``disconnected`` with reason
        ``"not subscribed"``: in the seed, ``disconnected`` means exactly that."""
        runner = self._runners.get(name)
        if runner is None:
            return ChannelState(
                name=name, status=ChannelStatus.DISCONNECTED, reason="not subscribed", attempt=0,
                since=self._clock.now(),
            )  # fmt: skip
        return self._state(runner)

    def _state(self, runner: ChannelRunner) -> ChannelState:
        state = runner.state()
        if self._loop_gone() and state.status is not ChannelStatus.DISCONNECTED:
            # nothing can drive a channel whose loop is closed: never report it as alive
            return dataclasses.replace(
                state,
                status=ChannelStatus.ERROR,
                reason="its event loop is closed; await manager.cleanup() and subscribe again",
            )
        return state

    @property
    def channels(self) -> dict[str, ChannelState]:
        return {name: self._state(r) for name, r in self._runners.items()}

    async def wait_for_status(
        self,
        name: str,
        *statuses: ChannelStatus | str,
        timeout: float | None = 30.0,  # noqa: ASYNC109 - a deadline for the status, like asyncio.wait_for
    ) -> ChannelState:
        """Wait until channel ``name`` is in one of ``statuses``; TimeoutError names where it is instead."""
        wanted = {ChannelStatus(s) for s in statuses} or {ChannelStatus.CONNECTED}
        self._bind_loop()
        runner = self._runner(name)
        try:
            await runner.wait(lambda status, _attempt: status in wanted, timeout)
        except TimeoutError:
            state = runner.state()
            raise TimeoutError(
                f"channel {name!r} not {'/'.join(sorted(wanted))} after {timeout} s; it is {state!r}"
            ) from None
        return runner.state()

    def on_status_change(
        self, name: str, callback: Callable[[ChannelState], Any], *, reasons: bool = False
    ) -> Callable[[], None]:
        """``callback(state)`` whenever the status of channel ``name`` changes (``"*"``: all channels).

        Only real changes (``connecting`` → ``connected``, …) call it. With ``reasons=True`` it is also
        called when only the reason is updated within one status (``connecting`` "joined; waiting for
        'Subscribed to PostgreSQL'", ``connected`` "attempts reset", …) — every ``status`` event.
        Returns a function that removes the callback."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        if not isinstance(reasons, bool):
            raise TypeError(f"reasons must be True or False, got {reasons!r}")
        entry = (callback, reasons)
        self._status_callbacks.setdefault(name, []).append(entry)

        def remove() -> None:
            cbs = self._status_callbacks.get(name, [])
            if entry in cbs:
                cbs.remove(entry)

        return remove

    def get_debug_info(self) -> dict[str, Any]:
        """Per channel: status, attempts, last error, last event time, events received, bindings,
        heartbeat RTT, socket state; plus manager-wide counters."""
        token = self._access_token
        claims = jwt_claims(token) if token else None
        return {
            "url": self._realtime_url,
            "channels": {name: r.debug() for name, r in self._runners.items()},
            "presence": {name: repr(h) for name, h in self._presence.items()},
            "events_published": self._last_seq,
            "listeners": len(self._bus._listeners),
            "streams": self._bus.streams,
            "callback_errors": dict(self._guard.errors),
            "last_callback_error": dict(self._guard.last_error),
            "suppressed": self.suppressed,
            "auth": {
                "token": "user JWT" if token else "API key",
                "role": (claims or {}).get("role"),
                "exp": (claims or {}).get("exp"),
                "attached": self._auth is not None,
            },
            "config": {
                "backoff": self.backoff,
                "heartbeat_interval": self.heartbeat_interval,
                "rapid_close_window": self._machine_config.rapid_close_window,
                "rapid_close_cooldown": self._machine_config.rapid_close_cooldown,
                "health_interval": self.health_interval,
                "error_reset_after": self._machine_config.error_reset_after,
            },
        }

    # --------------------------------------------------------------------------------------- events
    _last_seq = 0

    def _make(self, **fields: Any) -> RealtimeEvent:
        seq = next(self._seq)
        self._last_seq = seq
        return RealtimeEvent(
            seq=seq, received_at=self._clock.now(), received_mono_ns=time.monotonic_ns(), **fields
        )

    def _emit(self, **fields: Any) -> RealtimeEvent:
        ev = self._make(**fields)
        self._bus.publish(ev)
        return ev

    def _deliver(self, ev: RealtimeEvent, callbacks: Iterable[Callable[[RealtimeEvent], Any]]) -> None:
        seen: list[Callable[..., Any]] = []
        for cb in callbacks:
            if cb in seen:
                continue
            seen.append(cb)
            self._guard.call(f"channel {ev.channel!r}", cb, ev)
        self._bus.publish(ev)

    def _deliver_change(self, ev: RealtimeEvent, callbacks: Iterable[Callable[[RealtimeEvent], Any]]) -> None:
        if ev.table == "notifications" and self._dnd():
            self.suppressed += 1
            self._bus.publish(ev.replace(suppressed=True))
            return
        self._deliver(ev, callbacks)

    def _status_changed(self, state: ChannelState, *, changed: bool) -> None:
        entries = [*self._status_callbacks.get(state.name, ()), *self._status_callbacks.get("*", ())]
        for cb, reasons in entries:
            if changed or reasons:
                self._guard.call("status callback", cb, state)

    def add_listener(self, fn: Callable[[RealtimeEvent], Any]) -> Callable[[], None]:
        """``fn(event)`` for every event of every channel; returns a function that removes it."""
        return self._bus.add_listener(fn)

    def events(
        self,
        *,
        maxsize: int = 10_000,
        kinds: Iterable[EventKind | str] | None = None,
        channels: Iterable[str] | None = None,
    ) -> EventStream:
        """``async for ev in manager.events():`` — a bounded stream (overflow: see ``EventStream``)."""
        return EventStream(self._bus, maxsize=maxsize, kinds=kinds, channels=channels)

    # -------------------------------------------------------------------------------------- health
    def _ensure_health_loop(self) -> None:
        if self._health_task is None or self._health_task.done():
            self._health_task = asyncio.ensure_future(self._health_loop())

    def _stop_health_loop(self) -> None:
        task, self._health_task = self._health_task, None
        if task is not None and not task.done():
            self._stopping_health = task
            task.cancel()

    async def _health_loop(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.health_interval)
                for runner in list(self._runners.values()):
                    try:
                        runner.feed(HealthTick())
                    except Exception:
                        logger.exception("health check of channel %r failed", runner.name)
        except asyncio.CancelledError:
            if self._stopping_health is not asyncio.current_task():
                # not cancelled by cleanup(): the loop is shutting down (the end of asyncio.run()
                # cancels every task). Release the sockets now, while the loop still runs, and say so.
                self._abandon_all(
                    "its event loop ended (asyncio.run() returned?); await manager.cleanup() and "
                    "subscribe again on the running loop"
                )
            raise

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                logger.error("manager task failed: %r", t.exception(), exc_info=t.exception())

        task.add_done_callback(done)
        return task

    # ----------------------------------------------------------------------------------------- auth
    def attach_auth(self, auth: Any) -> Callable[[], None]:
        """Follow a supabase-py auth client (``client.auth``): tokens on SIGNED_IN/TOKEN_REFRESHED,
        teardown on SIGNED_OUT. Returns a function that detaches."""
        if not hasattr(auth, "on_auth_state_change"):
            raise TypeError(
                f"attach_auth takes a supabase auth client (client.auth), got {type(auth).__name__}"
            )
        self.detach_auth()
        self._auth = auth
        self._session_checked = False
        self._auth_subscription = auth.on_auth_state_change(self._on_auth_state_change)
        return self.detach_auth

    def detach_auth(self) -> None:
        sub, self._auth_subscription = self._auth_subscription, None
        if sub is not None:
            try:
                sub.unsubscribe()
            except Exception:
                logger.exception("detaching from the auth client failed")
        self._auth = None

    def _on_auth_state_change(self, event: Any, session: Any) -> None:
        """supabase-py calls this synchronously inside the auth call."""
        pending = self._apply_auth_event(event, session)
        if pending is not None:
            self._spawn(pending)

    async def handle_auth_event(self, event: Any, session: Any) -> None:
        """Apply an auth event (``"SIGNED_IN"``, ``"TOKEN_REFRESHED"``, ``"SIGNED_OUT"``, …) by hand."""
        self._bind_loop()
        pending = self._apply_auth_event(event, session)
        if pending is not None:
            await pending

    def _apply_auth_event(self, event: Any, session: Any) -> Any:
        name = str(getattr(event, "value", event))
        if name == "SIGNED_OUT":
            self._access_token = None
            self._session_checked = True
            for handle in self._presence.values():
                handle._close()
            for runner in list(self._runners.values()):
                runner.feed(Stop("signed_out"))
            return self._settle_all()
        if name in _TOKEN_EVENTS:
            token = getattr(session, "access_token", None) if session is not None else None
            if not token:
                logger.warning("auth event %s without a session token; ignored", name)
                return None
            self._access_token = token
            self._session_checked = True
            if self._token_changed is not None:
                self._token_changed.set()
            return self._push_token(token)
        logger.debug("auth event %s does not concern realtime", name)
        return None

    async def _settle_all(self) -> None:
        for runner in list(self._runners.values()):
            await runner.settle()

    async def _push_token(self, token: str) -> None:
        for runner in list(self._runners.values()):
            client = runner.client
            if client is not None and client.is_connected:
                try:
                    await client.set_auth(token)
                except Exception as exc:
                    logger.warning("channel %r: pushing the new access token failed: %s", runner.name, exc)
            runner.feed(TokenRefreshed())

    async def _token_for_join(self) -> str:
        """The token to join with; waits up to ``token_wait`` for a refresh if it has expired."""
        if self._auth is not None and not self._session_checked and self._access_token is None:
            self._session_checked = True
            try:
                session = await self._auth.get_session()
            except Exception as exc:
                logger.warning(
                    "reading the persisted auth session failed (%s); joining with the API key", exc
                )
                session = None
            if session is not None and getattr(session, "access_token", None) and self._access_token is None:
                self._access_token = session.access_token
        if self._token_changed is None:
            self._token_changed = asyncio.Event()
        deadline = self._clock.monotonic() + self.token_wait
        while True:
            token = self._access_token or self._key
            exp = (jwt_claims(token) or {}).get("exp")
            now = self._clock.now().timestamp()
            if not isinstance(exp, int | float) or exp > now + 1.0:
                return token
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                raise TokenUnavailableError(
                    f"access token expired {now - exp:.0f} s ago and no refreshed token arrived within "
                    f"{self.token_wait:g} s; refresh the session (await client.auth.refresh_session()) or "
                    "sign in again — the channel reconnects as soon as a new token arrives"
                )
            self._token_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._token_changed.wait(), remaining)

    async def _new_client(self, token: str) -> AsyncRealtimeClient:
        client = AsyncRealtimeClient(
            self._realtime_url,
            token=self._key,
            auto_reconnect=False,
            hb_interval=3600,
            max_retries=1,
            timeout=self.join_timeout,  # type: ignore[arg-type]
        )
        if token != self._key:
            await client.set_auth(token)
        return client

    # ------------------------------------------------------------------------------ PKs and backfill
    async def _resolve_primary_keys(self, runner: ChannelRunner) -> None:
        for sub in runner.spec.tables:
            key = (sub.schema, sub.table)
            if key in runner.pk:
                continue
            pk = None
            try:
                if self.dsn:
                    from harmony_lab.manager._db import primary_key_via_dsn

                    pk = await primary_key_via_dsn(self.dsn, sub.schema, sub.table)
                elif self._supabase is not None:
                    from harmony_lab.manager._db import primary_key_via_openapi

                    pk = await primary_key_via_openapi(str(self._supabase.rest_url), self._key, sub.table)
            except Exception as exc:
                logger.warning(
                    "primary key of %s.%s could not be introspected (%s); falling back to DELETE old "
                    "records / an 'id' column — pass primary_key= to be explicit",
                    sub.schema,
                    sub.table,
                    exc,
                )
            if pk:
                runner.pk[key] = pk

    async def _fetch_gap(
        self,
        sub: TableSubscription,
        since: Any,
        key_columns: tuple[str, ...] | None,
        known: list[dict[str, Any]] | None,
    ) -> Any:
        from harmony_lab.manager import _db

        if self.dsn:
            claims = jwt_claims(self._access_token) if self._access_token else jwt_claims(self._key)
            return await _db.gap_fetch_via_dsn(
                self.dsn, sub, since, claims=claims, key_columns=key_columns, known=known
            )
        if self._supabase is not None:
            return await _db.gap_fetch_via_postgrest(
                self._supabase, sub, since, key_columns=key_columns, known=known
            )
        raise RuntimeError(
            "backfill needs a database: pass dsn= (LocalRealtime: rt.dsn) or build the manager with "
            "RealtimeConnectionManager.from_supabase(client) to use PostgREST"
        )

    async def snapshot(
        self,
        table: str,
        *,
        schema: str = "public",
        filter: str | Condition | Filter | None = None,
        order_by: str | tuple[str, ...] | None = None,
        limit: int | None = 1000,
    ) -> TableSnapshot:
        """The newest ``limit`` rows of ``schema.table`` that match ``filter``, read as this manager's
        subscriber (the access token's role and claims, else the key's; ``anon`` when the role is
        unknown — never the DSN's superuser), with the table's key and visible column types.

        Through ``dsn`` when given (one consistent read), else through PostgREST for a manager made
        by :meth:`from_supabase`. ``LiveFrame`` starts from this, then follows the change stream."""
        from harmony_lab.manager import _snapshot

        conditions = TableSubscription(table, schema=schema, filter=filter).conditions
        if self.dsn:
            claims = jwt_claims(self._access_token or self._key)
            return await _snapshot.snapshot_via_dsn(
                self.dsn, schema, table, claims=claims, conditions=conditions, order_by=order_by, limit=limit
            )
        if self._supabase is not None:
            from harmony_lab.manager._db import primary_key_via_openapi

            key = await primary_key_via_openapi(str(self._supabase.rest_url), self._key, table)
            return await _snapshot.snapshot_via_postgrest(
                self._supabase, schema, table, key=key, conditions=conditions, order_by=order_by, limit=limit
            )
        raise RuntimeError(
            f"snapshot of {schema}.{table} needs a database: create the manager with dsn= (LocalRealtime: "
            "rt.dsn) or with RealtimeConnectionManager.from_supabase(client) to read through PostgREST"
        )

    # ---------------------------------------------------------------------------------------- doctor
    async def doctor(
        self,
        table: str | None = None,
        *,
        topic: str | None = None,
        schema: str = "public",
        role: str | None = None,
        user_id: Any = None,
        token: str | None = None,
    ) -> Any:
        """Check that ``schema.table`` can stream changes to ``role`` (default: the token's role):
        publication membership, replica identity, primary key, grants and RLS.

        ``doctor(topic="dm:alice-bob", user_id=... or token=...)`` answers for a private
        Broadcast/Presence topic instead: row level security on ``realtime.messages``, the policies
        that apply to the role, and whether it may read and write broadcast and presence there,
        evaluated as the Realtime server does (rolled back). Without ``user_id``/``token`` the
        manager's own token is used. Needs ``dsn`` (a role that may write ``realtime.messages``
        past its policies, as the server's own connection does)."""
        from harmony_lab.manager._doctor import check_topic, run_doctor, run_topic_doctor

        if (table is None) == (topic is None):
            raise TypeError(
                "doctor() checks one thing: pass a table (doctor('messages')) or topic= "
                "(doctor(topic='dm:alice-bob')), not both and not neither"
            )
        if table is not None and (user_id is not None or token is not None):
            raise TypeError("user_id= and token= are for doctor(topic=...); a table check takes role=")
        if topic is not None and schema != "public":
            raise TypeError("schema= is for doctor(table); a topic's policies are on realtime.messages")
        if user_id is not None and token is not None:
            raise TypeError("pass user_id= or token=, not both (a token already names its user)")
        if topic is not None:
            check_topic(topic)  # a bad topic is refused before anything connects
        if not self.dsn:
            raise RuntimeError(
                "doctor() reads the database catalog: create the manager with dsn= (LocalRealtime: rt.dsn)"
            )
        if table is not None:
            if role is None:
                claims = jwt_claims(self._access_token or self._key) or {}
                role = str(claims.get("role") or "anon")
            return await run_doctor(self.dsn, table, schema=schema, role=role)
        if token is not None:
            if not isinstance(token, str) or jwt_claims(token) is None:
                raise ValueError("token= must be a JWT (an access token or the project's API key)")
            claims = dict(jwt_claims(token) or {})
        elif user_id is not None:
            if not isinstance(user_id, str | uuid.UUID):
                raise TypeError(f"user_id must be a uuid or its string; got {type(user_id).__name__}")
            try:
                sub = str(uuid.UUID(str(user_id)))
            except ValueError:
                raise ValueError(f"user_id must be a uuid (auth.users.id); got {user_id!r}") from None
            claims = {"sub": sub, "role": role or "authenticated", "aud": "authenticated"}
        else:
            claims = dict(jwt_claims(self._access_token or self._key) or {})
        if role is None:
            role = str(claims.get("role") or "anon")
        return await run_topic_doctor(self.dsn, topic or "", role=role, claims=claims)

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for r in self._runners.values():
            counts[str(r.machine.status)] = counts.get(str(r.machine.status), 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no channels"
        return f"<RealtimeConnectionManager {self._realtime_url} {summary}>"

    def _repr_markdown_(self) -> str:
        lines = [
            f"**RealtimeConnectionManager** `{self._realtime_url}`",
            "",
            "| channel | status | reason | attempt | events |",
            "|---|---|---|---|---|",
        ]
        for name, r in self._runners.items():
            s = r.machine.snapshot()
            lines.append(f"| {name} | {s.status} | {s.reason} | {s.attempt} | {r.events_received} |")
        return "\n".join(lines)


_BACKGROUND: set[asyncio.Task[Any]] = set()


class _Slot:
    """The owner of one channel name: its operations run one at a time; the latest supersedes."""

    __slots__ = ("_wakers", "lock", "pending", "ticket")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.ticket = 0
        self.pending = 0
        self._wakers: list[asyncio.Future[None]] = []

    def take(self, *, supersede: bool) -> int:
        """A ticket for a new call; a superseding one wakes every earlier call still waiting."""
        if supersede:
            self.ticket += 1
            for waker in self._wakers:
                if not waker.done():
                    waker.set_result(None)
            self._wakers.clear()
        return self.ticket

    def waker(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wakers.append(fut)
        return fut

    def forget(self, waker: asyncio.Future[None]) -> None:
        if waker in self._wakers:
            self._wakers.remove(waker)
        if not waker.done():
            waker.cancel()


def _superseded_state(name: str, clock: Clock) -> ChannelState:
    return ChannelState(
        name=name,
        status=ChannelStatus.DISCONNECTED,
        reason="superseded: a later call on this channel name took over before this one settled",
        attempt=0,
        since=clock.now(),
        superseded=True,
    )


class _ManagerHost:
    """The manager as its runners' and presence handles' host (see ``_host.py``)."""

    __slots__ = ("_m", "settings")

    def __init__(self, manager: RealtimeConnectionManager) -> None:
        self._m = manager
        self.settings = RunnerSettings(
            machine=manager._machine_config,
            heartbeat_interval=manager.heartbeat_interval,
            join_timeout=manager.join_timeout,
            rng=manager._rng,
        )

    @property
    def clock(self) -> Clock:
        return self._m._clock

    def make_event(self, **fields: Any) -> RealtimeEvent:
        return self._m._make(**fields)

    def emit(self, **fields: Any) -> RealtimeEvent:
        return self._m._emit(**fields)

    def deliver(self, ev: RealtimeEvent, callbacks: Iterable[Callable[[RealtimeEvent], Any]]) -> None:
        self._m._deliver(ev, callbacks)

    def deliver_change(self, ev: RealtimeEvent, callbacks: Iterable[Callable[[RealtimeEvent], Any]]) -> None:
        self._m._deliver_change(ev, callbacks)

    def status_changed(self, state: ChannelState, *, changed: bool) -> None:
        self._m._status_changed(state, changed=changed)

    async def token_for_join(self) -> str:
        return await self._m._token_for_join()

    async def new_client(self, token: str) -> AsyncRealtimeClient:
        return await self._m._new_client(token)

    async def fetch_gap(
        self,
        sub: TableSubscription,
        since: Any,
        key_columns: tuple[str, ...] | None,
        known: list[dict[str, Any]] | None,
    ) -> Any:
        return await self._m._fetch_gap(sub, since, key_columns, known)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self._m._spawn(coro)

    def call_guarded(self, where: str, fn: Callable[..., Any], *args: Any) -> None:
        self._m._guard.call(where, fn, *args)

    async def leave(self, name: str) -> None:
        await self._m.unsubscribe(name)
