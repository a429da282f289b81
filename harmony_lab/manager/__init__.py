"""The resilient connection manager: named Realtime subscriptions over the official realtime-py client.

Public names: :class:`RealtimeConnectionManager`, :class:`BackoffPolicy`, :class:`TableSubscription`,
:class:`Backfill`, :class:`BroadcastReplay`, and (re-exported from :mod:`harmony_lab.events`)
:class:`RealtimeEvent`, :class:`ChannelStatus`, :class:`PresenceStatus`. Everything in ``_modules`` is
private.
"""

from harmony_lab.events import ChannelStatus, PresenceStatus, RealtimeEvent
from harmony_lab.manager._backoff import BackoffPolicy
from harmony_lab.manager._manager import RealtimeConnectionManager
from harmony_lab.manager._specs import Backfill, BroadcastReplay, TableSubscription

__all__ = [
    "Backfill",
    "BackoffPolicy",
    "BroadcastReplay",
    "ChannelStatus",
    "PresenceStatus",
    "RealtimeConnectionManager",
    "RealtimeEvent",
    "TableSubscription",
]
