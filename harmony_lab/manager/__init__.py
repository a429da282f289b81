"""manager."""

from harmony_lab.events import ChannelStatus, PresenceStatus, RealtimeEvent
from harmony_lab.manager._backoff import BackoffPolicy

__all__ = ["BackoffPolicy", "ChannelStatus", "PresenceStatus", "RealtimeEvent"]
