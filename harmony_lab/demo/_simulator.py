"""``Simulator``: realistic Harmony traffic against a running stack.

Table writes go through Postgres (psycopg 3 on ``stack.dsn``), presence through one real realtime-py
client per simulated user (``stack.token_for(user)`` as access token). The sequence of actions comes
from the pure :class:`~harmony_lab.demo._plan.Planner`, so one seed always gives the same actions.

Where it runs
-------------
The simulator is an asyncio object. ``await sim.start()`` runs it on the *current* event loop — in a
notebook that is the kernel's loop, where it keeps running between cells. ``sim.start_in_thread()``
runs it on a private event loop in a daemon thread instead (scripts, or a notebook that wants the
traffic to continue while a cell blocks). Either way ``await sim.aclose()`` / ``pause()`` /
``resume()`` work from any loop, and ``sim.stop_in_thread()`` is the blocking variant for code
without a loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
import warnings
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, Protocol, TypeVar, runtime_checkable

from harmony_lab._aio import close_loop
from harmony_lab.demo._plan import Action, ActionKind, Planner, Status, UserSpec, build_world
from harmony_lab.demo._presence import PresenceUser
from harmony_lab.demo._writer import PgWriter

__all__ = ["PRESENCE_CHANNEL", "Simulator", "StackLike"]

logger = logging.getLogger(__name__)

PRESENCE_CHANNEL: Final = "presence:lobby"
"""The presence channel (realtime topic ``realtime:presence:lobby``) the simulated users track on."""

_T = TypeVar("_T")
_TOKEN_TTL_S: Final = 4 * 3600
_TOKEN_REFRESH_S: Final = 3600.0
_MAX_LAG_S: Final = 2.0


@runtime_checkable
class StackLike(Protocol):
    """What the simulator needs from a stack: ``LocalRealtime`` or :func:`harmony_lab.demo.stack`."""

    @property
    def url(self) -> str: ...
    @property
    def anon_key(self) -> str: ...
    @property
    def dsn(self) -> str: ...
    def token_for(self, user_id: str, role: str = ..., expires_in: int = ...) -> str: ...


_VALID_ARGS: Final = (
    "rt",
    "users",
    "rate",
    "seed",
    "presence_channel",
    "exclude",
    "presence",
    "statuses",
    "log_size",
)


class Simulator:
    """Realistic Harmony traffic: messages, DMs, edits, soft deletes, reactions, typing, notifications,
    megolm key shares and presence (online, away, dnd, invisible, offline).

    Parameters
    ----------
    rt:
        The stack (``LocalRealtime`` or anything with ``url``, ``anon_key``, ``dsn``, ``token_for``).
    users:
        How many users act (the six seed users first, then generated ones, created in ``auth.users``
        and ``profiles`` on start), or a list of seed usernames.
    rate:
        Mean actions per second (Poisson arrivals drawn from the seeded RNG).
    seed:
        Same seed → same sequence of actions (see :attr:`log`). ``None`` draws a fresh one.
    presence_channel:
        The realtime channel the users track presence on (default ``"presence:lobby"``).
    exclude:
        Seed users (username or id) that must not be simulated — e.g. the notebook's own user; they
        still get mentions, DMs and notifications.
    presence:
        ``False`` skips the realtime clients (tables only, presence only in ``profiles.status``).
    statuses:
        ``False`` leaves ``profiles.status`` alone too: another simulator on the same stack owns who
        is online (``traffic()`` tops up the lab's background traffic this way).
    log_size:
        How many recent actions :attr:`log` keeps.
    """

    def __init__(
        self,
        rt: StackLike,
        users: int | Sequence[str] = 12,
        rate: float = 5.0,
        seed: int | None = None,
        *,
        presence_channel: str = PRESENCE_CHANNEL,
        exclude: Iterable[str] = (),
        presence: bool = True,
        statuses: bool = True,
        log_size: int = 10_000,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise TypeError(
                f"Simulator() got unexpected argument(s) {sorted(unknown)}; valid: {', '.join(_VALID_ARGS)}"
            )
        missing = [name for name in ("url", "anon_key", "dsn", "token_for") if not hasattr(rt, name)]
        if missing:
            raise TypeError(
                "Simulator(rt=...) needs a stack with url, anon_key, dsn and token_for (e.g. LocalRealtime "
                f"or harmony_lab.demo.stack()); {type(rt).__name__} lacks {missing}"
            )
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
            raise ValueError(f"rate must be a positive number of actions per second; got {rate!r}")
        self.rt = rt
        self.rate = float(rate)
        self.background_rate = 0.0
        """Actions/s another process adds on the same stack (set by ``traffic()`` when it tops that up)."""
        self.seed = seed
        self.presence_channel = presence_channel
        self.presence_enabled = presence
        simulated, bystanders, channels = build_world(users, seed=seed, exclude=exclude)
        self.users: tuple[UserSpec, ...] = tuple(simulated)
        self.bystanders: tuple[UserSpec, ...] = tuple(bystanders)
        self._channels = channels
        self.planner = Planner(simulated, channels, rate=self.rate, seed=seed, bystanders=bystanders)
        self.log: deque[Action] = deque(maxlen=log_size)
        self._writer = PgWriter(rt.dsn, statuses=statuses)
        self._presence: dict[str, PresenceUser] = {}
        self._presence_tail: dict[str, asyncio.Task[None]] = {}
        self._listeners: list[Callable[[Action], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._state = "created"
        self._started_at: float | None = None
        self._stopped_at: float | None = None
        self._paused_total = 0.0
        self._paused_at: float | None = None
        self._kinds: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._last_error: str | None = None
        self._skipped = 0
        self._lag = 0.0
        self._done = asyncio.Event()

    # -- inspection -----------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``created``, ``starting``, ``running``, ``paused``, ``stopped`` or ``failed``."""
        return self._state

    @property
    def running(self) -> bool:
        return self._state in ("running", "paused")

    @property
    def actions(self) -> int:
        return sum(self._kinds.values())

    def action_log(self) -> list[dict[str, Any]]:
        """The recent actions as JSON-friendly dicts (equal for two runs with the same seed)."""
        return [a.to_dict() for a in self.log]

    def presence_counts(self) -> dict[str, int]:
        """Simulated users per status (``online``, ``away``, ``dnd``, ``invisible``, ``offline``)."""
        if self._state in ("stopped", "failed"):
            return {str(s): (len(self.users) if s is Status.OFFLINE else 0) for s in Status}
        return self.planner.presence_counts()

    @property
    def stats(self) -> dict[str, Any]:
        elapsed = self._elapsed()
        return {
            "state": self._state,
            "seed": self.seed,
            "users": len(self.users),
            "rate": self.rate,
            "elapsed_s": round(elapsed, 3),
            "actions": self.actions,
            "actions_per_s": round(self.actions / elapsed, 3) if elapsed > 0 else 0.0,
            "by_kind": dict(sorted(self._kinds.items())),
            "rows": dict(sorted(self._writer.rows.items())),
            "presence": self.presence_counts(),
            "presence_calls": sum(p.presence_calls for p in self._presence.values()),
            "errors": sum(self._errors.values()),
            "errors_by_kind": dict(self._errors),
            "last_error": self._last_error,
            "skipped": self._skipped,
            "lag_s": round(self._lag, 3),
        }

    def __repr__(self) -> str:
        if self.presence_enabled:
            counts = self.presence_counts()
            presence = "presence[" + " ".join(f"{k}={v}" for k, v in counts.items() if v) + "]"
        else:
            presence = "presence not simulated here"
        errors = sum(self._errors.values())
        rate = f"rate={self.rate:g}/s"
        if self.background_rate:
            rate += f" + {self.background_rate:g}/s in the background"
        return (
            f"<Simulator {self._state} users={len(self.users)} {rate} seed={self.seed} "
            f"actions={self.actions} errors={errors} {presence}>"
        )

    def _elapsed(self) -> float:
        if self._started_at is None:
            return 0.0
        end = self._stopped_at or time.monotonic()
        paused = self._paused_total + ((end - self._paused_at) if self._paused_at is not None else 0.0)
        return max(0.0, end - self._started_at - paused)

    def on_action(self, callback: Callable[[Action], None]) -> Callable[[], None]:
        """Call ``callback(action)`` after each applied action; returns an unsubscribe function."""
        self._listeners.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return remove

    # -- lifecycle (async, any loop) ----------------------------------------------------------------

    async def start(self) -> Simulator:
        """Create missing users and memberships, then start the traffic on the running event loop."""
        if self._state not in ("created",):
            raise RuntimeError(
                f"Simulator.start(): already {self._state}; create a new Simulator to run again"
            )
        self._loop = asyncio.get_running_loop()
        self._state = "starting"
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._done = asyncio.Event()
        try:
            await self._writer.open()
            await self._writer.setup([*self.users, *self.bystanders], self._channels)
        except Exception:
            self._state = "failed"
            await self._writer.close()
            raise
        if self.presence_enabled:
            for user in self.users:
                self._presence[user.id] = PresenceUser(
                    user,
                    url=self.rt.url,
                    apikey=self.rt.anon_key,
                    token=self._token_factory(user.id),
                    topic=self.presence_channel,
                    on_error=self._presence_error,
                )
        self._started_at = time.monotonic()
        self._state = "running"
        self._task = self._loop.create_task(self._run(), name="harmony-lab-simulator")
        logger.info("simulator started: %r", self)
        return self

    async def stop(self) -> None:
        """Deprecated spelling of :meth:`aclose` (async work is closed with ``aclose`` everywhere)."""
        warnings.warn("Simulator.stop() is now `await sim.aclose()`", DeprecationWarning, stacklevel=2)
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the traffic; every simulated user goes offline (presence closed, profiles updated)."""
        if self._loop is not None and self._loop is not _running_loop():
            await self._on_own_loop(self.aclose)
            return
        if self._state in ("created", "stopped", "failed") and self._task is None:
            self._state = "stopped" if self._state == "created" else self._state
            return
        task, self._task = self._task, None
        self._resumed.set()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._paused_at is not None:
            self._paused_total += time.monotonic() - self._paused_at
            self._paused_at = None
        tails = list(self._presence_tail.values())
        for t in tails:
            t.cancel()
        for t in tails:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        users = list(self._presence.values())
        results = await asyncio.gather(*(p.close() for p in users), return_exceptions=True)
        for p, r in zip(users, results, strict=True):
            if isinstance(r, BaseException):
                logger.warning("closing presence of %s failed: %r", p.user.username, r)
        try:
            await self._writer.teardown(u.id for u in self.users)
        except Exception as exc:  # the stack may already be gone
            logger.warning("simulator: could not mark users offline on stop: %r", exc)
        await self._writer.close()
        self._stopped_at = time.monotonic()
        if self._state != "failed":
            self._state = "stopped"
        self._done.set()
        logger.info("simulator stopped: %r", self)

    async def pause(self) -> None:
        """Hold the traffic (presence stays as it is) until :meth:`resume`."""
        if self._loop is not None and self._loop is not _running_loop():
            await self._on_own_loop(self.pause)
            return
        if self._state != "running":
            raise RuntimeError(f"Simulator.pause(): the simulator is {self._state}, not running")
        self._resumed.clear()
        self._paused_at = time.monotonic()
        self._state = "paused"

    async def resume(self) -> None:
        if self._loop is not None and self._loop is not _running_loop():
            await self._on_own_loop(self.resume)
            return
        if self._state != "paused":
            raise RuntimeError(f"Simulator.resume(): the simulator is {self._state}, not paused")
        assert self._paused_at is not None
        self._paused_total += time.monotonic() - self._paused_at
        self._paused_at = None
        self._state = "running"
        self._resumed.set()

    async def wait_for(
        self,
        predicate: Callable[[Simulator], bool],
        timeout: float = 30.0,  # noqa: ASYNC109 - mirrors asyncio.wait_for
    ) -> None:
        """Wait (event-driven, polling after each action) until ``predicate(sim)`` holds."""
        if predicate(self):
            return
        ready = asyncio.Event()
        loop = asyncio.get_running_loop()

        def check(_: Action) -> None:
            if predicate(self):
                loop.call_soon_threadsafe(ready.set)

        remove = self.on_action(check)
        try:
            await asyncio.wait_for(ready.wait(), timeout)
        finally:
            remove()

    async def __aenter__(self) -> Simulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- lifecycle in a thread ----------------------------------------------------------------------

    def start_in_thread(self, timeout: float = 60.0) -> Simulator:
        """Run the simulator on its own event loop in a daemon thread; returns once it is running."""
        if self._thread is not None:
            raise RuntimeError("Simulator.start_in_thread(): already started in a thread")
        loop = asyncio.new_event_loop()
        started: concurrent.futures.Future[None] = concurrent.futures.Future()

        def main() -> None:
            asyncio.set_event_loop(loop)

            async def body() -> None:
                try:
                    await self.start()
                except BaseException as exc:
                    started.set_exception(exc)
                    return
                started.set_result(None)
                await self._done.wait()

            try:
                loop.run_until_complete(body())
            finally:
                close_loop(loop)

        self._thread = threading.Thread(target=main, name="harmony-lab-simulator", daemon=True)
        self._thread.start()
        started.result(timeout)
        return self

    def stop_in_thread(self, timeout: float = 30.0) -> None:
        """Blocking :meth:`aclose` for a simulator started with :meth:`start_in_thread`."""
        if self._thread is None or self._loop is None:
            raise RuntimeError("Simulator.stop_in_thread(): not started with start_in_thread()")
        if not self._loop.is_closed():
            fut = asyncio.run_coroutine_threadsafe(self.aclose(), self._loop)
            fut.result(timeout)
        self._thread.join(timeout)
        self._thread = None

    async def _on_own_loop(self, method: Callable[[], Awaitable[None]]) -> None:
        assert self._loop is not None
        fut = asyncio.run_coroutine_threadsafe(method(), self._loop)  # type: ignore[arg-type]
        await asyncio.wrap_future(fut)

    # -- the loop -----------------------------------------------------------------------------------

    def _token_factory(self, user_id: str) -> Callable[[], str]:
        def make() -> str:
            return self.rt.token_for(user_id, expires_in=_TOKEN_TTL_S)

        return make

    def _presence_error(self, what: str, exc: BaseException) -> None:
        self._errors["presence"] += 1
        self._last_error = f"presence {what}: {exc!r}"

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        origin = loop.time()
        paused_seen = 0.0
        last_refresh = loop.time()
        last_supervise = loop.time()
        try:
            for action in self.planner:
                await self._resumed.wait()
                if self._paused_total != paused_seen:  # shift the schedule by the pause
                    origin += self._paused_total - paused_seen
                    paused_seen = self._paused_total
                delay = origin + action.at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                    await self._resumed.wait()
                elif -delay > _MAX_LAG_S:  # fell behind (slow machine, long pause): don't burst
                    origin += -delay
                self._lag = max(0.0, -delay)
                await self._apply(action)
                now = loop.time()
                if self._presence and now - last_supervise > 3.0:
                    last_supervise = now
                    for p in self._presence.values():
                        self._chain(p, p.supervise)
                if self._presence and now - last_refresh > _TOKEN_REFRESH_S:
                    last_refresh = now
                    for p in self._presence.values():
                        self._chain(p, p.refresh_token)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._state = "failed"
            self._last_error = repr(exc)
            logger.exception("simulator stopped by an unexpected error")
            raise

    async def _apply(self, action: Action) -> None:
        self.log.append(action)
        self._kinds[str(action.kind)] += 1
        try:
            if not await self._write_with_retry(action):
                self._skipped += 1
        except Exception as exc:
            self._errors[str(action.kind)] += 1
            self._last_error = f"{action!r}: {exc!r}"
            logger.warning("simulator: %r failed: %r", action, exc)
        if action.kind is ActionKind.PRESENCE and action.status is not None and self._presence:
            user = self._presence[action.actor]
            status = action.status
            self._chain(user, lambda: self._set_presence(user, status))
        for listener in list(self._listeners):
            try:
                listener(action)
            except Exception:
                logger.exception("simulator on_action callback %r raised", listener)

    async def _write_with_retry(self, action: Action) -> bool:
        import psycopg

        try:
            return await self._writer.apply(action)
        except psycopg.OperationalError as exc:  # connection lost (stack restarted?): reconnect once
            logger.info("simulator: Postgres connection lost (%r); reconnecting", exc)
            await self._writer.close()
            await self._writer.open()
            return await self._writer.apply(action)

    async def _set_presence(self, user: PresenceUser, status: Status) -> None:
        try:
            await user.set_status(status)
        except Exception as exc:
            self._presence_error(f"set {status}", exc)
            logger.warning("simulator: presence of %s → %s failed: %r", user.user.username, status, exc)

    def _chain(self, user: PresenceUser, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` after the user's previous presence step (per-user order, users concurrent)."""
        prev = self._presence_tail.get(user.user.id)

        async def run() -> None:
            if prev is not None and not prev.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(prev)
            try:
                await step()
            except Exception as exc:
                self._presence_error("step", exc)

        task = asyncio.get_running_loop().create_task(run())
        self._presence_tail[user.user.id] = task


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
