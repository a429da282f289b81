"""Broadcast replay bookkeeping of one private channel (no I/O): what the next join asks the server to
replay, and which stored messages were already delivered.

The Realtime server replays, on a private join whose ``config.broadcast.replay`` is ``{"since": <epoch
ms>, "limit": n}``, the newest ``n`` (at most 25) private broadcasts of the topic stored since then, each
with ``meta: {"replayed": true, "id": …}``; live messages stored in ``realtime.messages`` carry
``meta.id`` too. The first join asks from :attr:`BroadcastReplay.since`; a rejoin after a gap asks from
the gap's start minus the lookback. A message id delivered once is never delivered again (live after
replayed, replayed after live, or replayed twice by overlapping catch-ups).
"""

from __future__ import annotations

import collections
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from harmony_lab.manager._specs import BroadcastReplay

logger = logging.getLogger(__name__)

__all__ = ["SEEN_IDS", "ReplayBook"]

SEEN_IDS: Final = 4096
"""Message ids remembered to drop repeats (the newest; a replay returns at most 25)."""
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_ms(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(milliseconds=1)


class ReplayBook:
    """The replay state of one channel subscription (created when it is subscribed, at ``now``)."""

    def __init__(self, name: str, replay: BroadcastReplay | None, now: datetime) -> None:
        self.name = name
        self.replay = replay
        since = replay.since if replay is not None else None
        self._first: datetime | None = now - since if isinstance(since, timedelta) else since
        self._gap: datetime | None = None
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._join_limit = 0
        self._join_catch_up = False
        self._replayed = 0
        self.stats = {"replayed": 0, "duplicates": 0, "truncated_catch_ups": 0}

    def gap_started(self, at: datetime) -> None:
        """Delivery stopped at ``at``: the next join catches up from there (the earliest of open gaps)."""
        if self.replay is not None and self.replay.catch_up:
            self._gap = at if self._gap is None else min(self._gap, at)

    def join_config(self) -> dict[str, Any] | None:
        """The ``replay`` object of the next join's ``config.broadcast`` (None: no replay)."""
        self._replayed = 0
        self._join_catch_up = False
        if self.replay is None:
            return None
        if self._gap is not None:
            since = self._gap - timedelta(seconds=self.replay.lookback)
            self._join_catch_up = True
        elif self._first is not None:
            since = self._first
        else:
            return None
        self._join_limit = self.replay.limit
        return {"since": _epoch_ms(since), "limit": self.replay.limit}

    def joined(self) -> None:
        """The join was admitted: what it asked for is being replayed."""
        self._first = None
        self._gap = None

    def deliver(self, meta: Any) -> bool:
        """Whether a broadcast with this ``meta`` is new (deliver it) or a repeat of a delivered id."""
        message_id = meta.get("id") if isinstance(meta, dict) else None
        if not isinstance(message_id, str) or not message_id:
            return True  # a plain broadcast: nothing to match it with
        if message_id in self._seen:
            self._seen.move_to_end(message_id)
            self.stats["duplicates"] += 1
            return False
        self._seen[message_id] = None
        if len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        if meta.get("replayed") is True:
            self.stats["replayed"] += 1
            self._replayed += 1
            if self._join_catch_up and self._replayed == self._join_limit:
                self.stats["truncated_catch_ups"] += 1
                logger.warning(
                    "channel %r: the catch-up replay after a gap returned its limit (%d messages); "
                    "older messages stored during the gap are not recovered (the server replays at most "
                    "25 per join)",
                    self.name,
                    self._join_limit,
                )
        return True
