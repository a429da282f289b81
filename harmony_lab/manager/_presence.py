"""Presence with the seed's semantics: online / away / dnd visible, invisible = untracked."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from harmony_lab._presence import PresenceState, metas_of
from harmony_lab.events import PresenceStatus, RealtimeEvent
from harmony_lab.manager._ratelimit import CallWindow

if TYPE_CHECKING:
    from harmony_lab.manager._host import PresenceChannel, PresenceHost

__all__ = ["PresenceHandle"]

logger = logging.getLogger("harmony_lab.manager")

OFFLINE = "offline"
_RESERVED = {"user_id", "status", "online_at", "presence_ref"}


class PresenceHandle:
    """What ``join_presence`` returns: your status, the roster as others see it, change callbacks.

    * ``online``/``away``/``dnd``: tracked with that status; others see it.
    * ``invisible``: not tracked at all, so others see you offline; you still receive the roster.
    * ``dnd``: change events of table ``notifications`` are delivered to listeners marked
      ``suppressed=True`` instead of to the notification subscription's callback.
    * Status changes are coalesced to respect the server's 5 presence calls per 30 s per channel:
      the latest wanted state is sent as soon as the budget allows (intermediate states are skipped).
    """

    def __init__(
        self,
        host: PresenceHost,
        link: PresenceChannel | None,
        name: str,
        user_id: str,
        status: PresenceStatus,
        meta: Mapping[str, Any] | None,
        *,
        max_calls: int = 5,
        window: float = 30.0,
    ) -> None:
        self._host = host
        self._link = link
        self._name = name
        self.user_id = user_id
        self.status = status
        self.meta: dict[str, Any] = dict(meta or {})
        self._window = CallWindow(max_calls, window)
        self._sent: dict[str, Any] | None = None  # what the server has for us on the current join
        self._flush_task: asyncio.Task[None] | None = None
        self._roster: dict[str, dict[str, Any]] = {}
        self._state = PresenceState()
        self._callbacks: list[Callable[[RealtimeEvent], Any]] = []
        self.calls_sent = 0
        self.calls_coalesced = 0
        self.closed = link is None
        self.superseded = link is None

    @property
    def name(self) -> str:
        return self._name

    @property
    def roster(self) -> dict[str, dict[str, Any]]:
        """user → {"status", "last_seen", "meta"}; users who left stay listed as ``offline``."""
        return {user: dict(entry) for user, entry in self._roster.items()}

    def on_change(self, callback: Callable[[RealtimeEvent], Any]) -> Callable[[], None]:
        """``callback(event)`` after every roster change (a ``presence`` sync event); returns a remover."""
        if not callable(callback):
            raise TypeError(f"on_change takes a callable, got {callback!r}")
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    async def set_status(self, status: PresenceStatus | str, meta: Mapping[str, Any] | None = None) -> None:
        if self.closed:
            raise RuntimeError(f"presence {self.name!r} was left (or signed out); join_presence again")
        self.status = PresenceStatus.coerce(status)
        if meta is not None:
            self.meta = dict(meta)
        await self._sync()

    async def leave(self) -> None:
        await self._host.leave(self.name)

    # ------------------------------------------------------------------------------------ internals
    def _wanted(self) -> dict[str, Any] | None:
        if self.status is PresenceStatus.INVISIBLE:
            return None
        extra = {k: v for k, v in self.meta.items() if k not in _RESERVED}
        return {"user_id": self.user_id, "status": self.status.value, **extra}

    def _on_joined(self) -> None:
        """A fresh join: the server holds nothing for us yet."""
        self._sent = None
        self._host.spawn(self._sync())

    async def _sync(self) -> None:
        link = self._link
        if self.closed or link is None or link.channel is None or not link.joined:
            return  # sent after the next join
        wanted = self._wanted()
        if wanted == self._sent:
            return
        wait = self._window.wait_time(self._host.clock.monotonic())
        if wait > 0:
            self.calls_coalesced += 1
            if self._flush_task is None or self._flush_task.done():
                self._flush_task = self._host.spawn(self._flush_later(wait))
            return
        await self._send(wanted)

    async def _flush_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self._flush_task = None
        await self._sync()

    async def _send(self, wanted: dict[str, Any] | None) -> None:
        channel = self._link.channel if self._link is not None else None
        if channel is None:
            return
        self._window.record(self._host.clock.monotonic())
        self.calls_sent += 1
        if wanted is None:
            if self._sent is not None:
                await channel.untrack()
        else:
            await channel.track({**wanted, "online_at": self._host.clock.now().isoformat()})
        self._sent = wanted

    def _on_sync(self, state: Mapping[str, list[Mapping[str, Any]]], ev: RealtimeEvent) -> None:
        now: datetime = ev.received_at
        self._state.replace({str(key): metas_of(metas) for key, metas in state.items()})
        present = set()
        for user, latest in self._state.users().items():
            meta = dict(latest)
            present.add(user)
            status = str(meta.get("status", PresenceStatus.ONLINE.value))
            extra = {k: v for k, v in meta.items() if k not in _RESERVED}
            self._roster[user] = {
                "status": status,
                "last_seen": now,
                "meta": extra,
                "online_at": meta.get("online_at"),
            }
        for user, entry in self._roster.items():
            if user not in present and entry["status"] != OFFLINE:
                entry["status"] = OFFLINE
                entry["last_seen"] = now
        for cb in list(self._callbacks):
            self._host.call_guarded(f"presence {self.name!r}", cb, ev)

    def _close(self) -> None:
        self.closed = True
        if self._flush_task is not None:
            self._flush_task.cancel()
            self._flush_task = None

    def __repr__(self) -> str:
        online = sum(1 for e in self._roster.values() if e["status"] != OFFLINE)
        return (
            f"<PresenceHandle {self.name!r} user={self.user_id} status={self.status.value} "
            f"roster={online} present/{len(self._roster)} known>"
        )
