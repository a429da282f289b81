"""What a channel runner and a presence handle need from their owner: two small explicit interfaces.

A :class:`~harmony_lab.manager._runner.ChannelRunner` drives one channel; it does not know the
manager. It gets the clock and its settings, hands every observation back as an event, reports its
status, asks for a token, a client and gap rows, and starts its background work, all through a
:class:`RunnerHost`. A :class:`~harmony_lab.manager._presence.PresenceHandle` likewise talks to a
:class:`PresenceHost`. The manager implements both (``_manager._ManagerHost``); tests drive a runner
or a handle with a host of their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from harmony_lab.events import RealtimeEvent
from harmony_lab.manager._clock import Clock
from harmony_lab.manager._machine import ChannelState, MachineConfig

if TYPE_CHECKING:
    from realtime import AsyncRealtimeChannel, AsyncRealtimeClient

    from harmony_lab.manager._specs import TableSubscription

__all__ = ["PresenceChannel", "PresenceHost", "RunnerHost", "RunnerSettings"]


@dataclasses.dataclass(frozen=True, slots=True)
class RunnerSettings:
    """The numbers a runner works with (fixed for its lifetime)."""

    machine: MachineConfig = dataclasses.field(default_factory=MachineConfig)
    heartbeat_interval: float = 25.0
    join_timeout: float = 10.0
    rng: random.Random = dataclasses.field(default_factory=random.Random)


class RunnerHost(Protocol):
    """The owner of channel runners."""

    @property
    def clock(self) -> Clock:
        """The clock every reading of time goes through."""
        ...

    @property
    def settings(self) -> RunnerSettings: ...

    def make_event(self, **fields: Any) -> RealtimeEvent:
        """A numbered event (``seq``, ``received_at``) with these fields, not yet published."""
        ...

    def emit(self, **fields: Any) -> RealtimeEvent:
        """Make an event and publish it to listeners and streams."""
        ...

    def deliver(self, ev: RealtimeEvent, callbacks: Iterable[Callable[[RealtimeEvent], Any]]) -> None:
        """Call ``callbacks`` (guarded, each once) with ``ev``, then publish it."""
        ...

    def deliver_change(self, ev: RealtimeEvent, callbacks: Iterable[Callable[[RealtimeEvent], Any]]) -> None:
        """Like :meth:`deliver` for a row change (the host may suppress it, e.g. do-not-disturb)."""
        ...

    def status_changed(self, state: ChannelState, *, changed: bool) -> None:
        """The runner announced ``state`` (its status event is already emitted); ``changed``: the
        status differs from the previous one (False: only the reason changed)."""
        ...

    async def token_for_join(self) -> str:
        """The access token to join with (raises ``TokenUnavailableError`` when there is none)."""
        ...

    async def new_client(self, token: str) -> AsyncRealtimeClient:
        """A fresh, unconnected realtime-py client for one connection."""
        ...

    async def fetch_gap(
        self,
        sub: TableSubscription,
        since: Any,
        key_columns: tuple[str, ...] | None,
        known: list[dict[str, Any]] | None,
    ) -> Any:
        """Rows of ``sub`` changed since ``since`` (and which ``known`` keys are still present)."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a background task the host tracks (and cancels when it shuts down)."""
        ...


class PresenceChannel(Protocol):
    """The channel a presence handle tracks on (a runner)."""

    @property
    def name(self) -> str: ...

    @property
    def channel(self) -> AsyncRealtimeChannel | None:
        """The realtime-py channel of the current connection (None while there is none)."""
        ...

    @property
    def joined(self) -> bool:
        """The current connection's join was accepted."""
        ...


class PresenceHost(Protocol):
    """The owner of presence handles."""

    @property
    def clock(self) -> Clock: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    def call_guarded(self, where: str, fn: Callable[..., Any], *args: Any) -> None:
        """Call a user callback; an exception is logged and counted, never raised."""
        ...

    async def leave(self, name: str) -> None:
        """Unsubscribe channel ``name``."""
        ...
