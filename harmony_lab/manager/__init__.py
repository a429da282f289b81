"""The resilient connection manager: named Realtime subscriptions over the official realtime-py client.

Public names: :class:`RealtimeConnectionManager`, :class:`BackoffPolicy`, :class:`TableSubscription`,
:class:`Backfill`, :class:`BroadcastReplay`, and (re-exported from :mod:`harmony_lab.events`)
:class:`RealtimeEvent`, :class:`ChannelStatus`, :class:`PresenceStatus`; :func:`realtime_url` (a
project URL checked and turned into the Realtime endpoint). Everything in ``_modules`` is private.
"""

from harmony_lab.events import ChannelStatus, PresenceStatus, RealtimeEvent
from harmony_lab.manager._backoff import BackoffPolicy
from harmony_lab.manager._manager import RealtimeConnectionManager, realtime_url
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
    "realtime_url",
]
