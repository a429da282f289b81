"""One simulated user's presence, through a real ``realtime`` client (realtime-py ``AsyncRealtimeClient``).

Statuses map onto the protocol the way Harmony clients do it:

* ``online`` / ``away`` / ``dnd`` — connected, joined to the presence channel, tracked with
  ``{"user_id", "username", "display_name", "status", "online_at"}`` under presence key = user id;
* ``invisible`` — connected and joined (still receives) but untracked: others see the user offline;
* ``offline`` — the socket is closed.

realtime-py rejoins channels after a dropped socket but does not track again, and gives up for good
after a few failed connects; :class:`PresenceUser` re-tracks on every rejoin and rebuilds its client
when it has stayed unjoined for a while. Track/untrack calls of one user are spaced at least
``min_spacing`` seconds apart (the server allows 5 presence calls per 30 s per channel).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from realtime import AsyncRealtimeChannel, AsyncRealtimeClient, RealtimeSubscribeStates

from harmony_lab.demo._plan import Status, UserSpec
from harmony_lab.manager import realtime_url

__all__ = ["PresenceUser"]

logger = logging.getLogger(__name__)

_TRACKED: Final = frozenset({Status.ONLINE, Status.AWAY, Status.DND})
_JOIN_TIMEOUT_S: Final = 10.0


class PresenceUser:
    """Drives one user's presence on ``topic``. All methods must run on one event loop."""

    def __init__(
        self,
        user: UserSpec,
        *,
        url: str,
        apikey: str,
        token: Callable[[], str],
        topic: str,
        min_spacing: float = 6.5,
        on_error: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.user = user
        self.url = realtime_url(url)
        self.apikey = apikey
        self.topic = topic
        self.min_spacing = min_spacing
        self.status = Status.OFFLINE  # desired status
        self.tracked: Status | None = None  # what the server has for us, as far as we know
        self._token = token
        self._on_error = on_error
        self._client: AsyncRealtimeClient | None = None
        self._channel: AsyncRealtimeChannel | None = None
        self._lock = asyncio.Lock()
        self._last_call = -1e9
        self._joins = 0
        self._unjoined_since: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.presence_calls = 0
        self.reconnects = 0

    def __repr__(self) -> str:
        joined = bool(self._channel and self._channel.is_joined)
        return f"<PresenceUser {self.user.username} status={self.status} joined={joined}>"

    @property
    def joined(self) -> bool:
        return bool(self._channel is not None and self._channel.is_joined)

    # -- public ---------------------------------------------------------------------------------

    async def set_status(self, status: Status) -> None:
        """Make the server reflect ``status`` (connect, join, track, untrack or disconnect)."""
        async with self._lock:
            self.status = status
            if status is Status.OFFLINE:
                await self._disconnect()
                return
            await self._ensure_joined()
            await self._sync_tracking()

    async def refresh_token(self) -> None:
        """Send a fresh access token to the joined channel (before the old one expires)."""
        async with self._lock:
            if self._client is not None:
                await self._client.set_auth(self._token())

    async def supervise(self) -> None:
        """Called periodically: rebuild the client when it stays unjoined though it should be online."""
        if self.status is Status.OFFLINE or self._lock.locked():
            return
        if self.joined:
            self._unjoined_since = None
            return
        now = time.monotonic()
        if self._unjoined_since is None:
            self._unjoined_since = now
            return
        if now - self._unjoined_since < 15.0:
            return
        async with self._lock:
            if self.joined or self.status is Status.OFFLINE:
                return
            logger.info("presence for %s: not joined for 15 s, rebuilding the client", self.user.username)
            self.reconnects += 1
            self._unjoined_since = None
            await self._disconnect()
            await self._ensure_joined()
            await self._sync_tracking()

    async def close(self) -> None:
        async with self._lock:
            self.status = Status.OFFLINE
            await self._disconnect()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- internals ------------------------------------------------------------------------------

    def _payload(self) -> dict[str, Any]:
        return {
            "user_id": self.user.id,
            "username": self.user.username,
            "display_name": self.user.display_name,
            "status": str(self.status),
            "online_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }

    async def _ensure_joined(self) -> None:
        if self.joined:
            return
        if self._client is None:
            self._client = AsyncRealtimeClient(self.url, token=self.apikey, auto_reconnect=True)
            await self._client.set_auth(self._token())
        if self._channel is None or self._channel.is_closed:
            if self._channel is not None:
                self._client._remove_channel(self._channel)
            self._channel = self._client.channel(
                self.topic,
                {
                    "config": {
                        "broadcast": {"ack": False, "self": False},
                        "presence": {"key": self.user.id, "enabled": True},
                        "private": False,
                    }
                },
            )
            self.tracked = None
            self._joins = 0
            await asyncio.wait_for(self._channel.subscribe(self._on_subscribe), _JOIN_TIMEOUT_S)
        if not self.joined:
            raise ConnectionError(f"presence channel {self.topic!r} not joined for {self.user.username}")

    def _on_subscribe(self, state: RealtimeSubscribeStates, error: Exception | None) -> None:
        # runs inside realtime-py's listen loop: must never raise
        try:
            if state == RealtimeSubscribeStates.SUBSCRIBED:
                self._joins += 1
                if self._joins > 1:  # a rejoin after a dropped socket: the server forgot our track
                    self.tracked = None
                    self._spawn(self._retrack())
            elif error is not None:
                logger.debug("presence channel of %s: %s (%s)", self.user.username, state, error)
        except Exception:  # never let a callback kill the client's listener
            logger.exception("presence subscribe callback of %s failed", self.user.username)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retrack(self) -> None:
        try:
            async with self._lock:
                if self.status is not Status.OFFLINE and self.joined:
                    await self._sync_tracking()
        except Exception as exc:
            self._report("re-track after rejoin", exc)

    async def _sync_tracking(self) -> None:
        assert self._channel is not None
        want = self.status if self.status in _TRACKED else None
        if want == self.tracked:
            return
        wait = self._last_call + self.min_spacing - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_call = time.monotonic()
        self.presence_calls += 1
        if want is None:
            await self._channel.untrack()
        else:
            await self._channel.track(self._payload())
        self.tracked = want

    async def _disconnect(self) -> None:
        client, self._client, self._channel = self._client, None, None
        self.tracked = None
        if client is None:
            return
        try:
            await client.remove_all_channels()
        except Exception as exc:  # the socket may already be gone (faults, stack stopped)
            logger.debug("closing presence client of %s: %r", self.user.username, exc)
            try:
                await client.close()
            except Exception as close_exc:  # already closed by the failure above: say so, carry on
                logger.debug("presence client of %s was already closed: %r", self.user.username, close_exc)

    def _report(self, what: str, exc: BaseException) -> None:
        logger.warning("presence of %s: %s failed: %r", self.user.username, what, exc)
        if self._on_error is not None:
            self._on_error(what, exc)
