"""harmony_lab — explore Supabase Realtime from Jupyter.

The public API is exactly ``__all__``. Names are imported lazily so ``import harmony_lab`` stays
cheap (pandas, pyarrow and the widgets load only when first used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harmony_lab._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # the envelope
    "RealtimeEvent": "harmony_lab.events",
    "EventKind": "harmony_lab.events",
    "ChannelStatus": "harmony_lab.events",
    "PresenceStatus": "harmony_lab.events",
    # the embedded default
    "LocalRealtime": "harmony_lab.local",
    "LocalPostgres": "harmony_lab.local",
    # the manager
    "RealtimeConnectionManager": "harmony_lab.manager",
    "BackoffPolicy": "harmony_lab.manager",
    "TableSubscription": "harmony_lab.manager",
    "Backfill": "harmony_lab.manager",
    "BroadcastReplay": "harmony_lab.manager",
    # frames and widgets
    "LiveFrame": "harmony_lab.frames",
    "FrameChange": "harmony_lab.frames",
    "LiveTableWidget": "harmony_lab.widgets",
    "PresenceRosterWidget": "harmony_lab.widgets",
    "StatusTimelineWidget": "harmony_lab.widgets",
    "dashboard": "harmony_lab.widgets",
    "Dashboard": "harmony_lab.widgets",
    "Player": "harmony_lab.widgets",
    "Inspector": "harmony_lab.inspector",
    # recordings
    "Recorder": "harmony_lab.recording",
    "read_recording": "harmony_lab.recording",
    "connect_recording": "harmony_lab.recording",
    "replay": "harmony_lab.recording",
    # demo traffic
    "Simulator": "harmony_lab.demo",
}

__all__ = [
    "Backfill",
    "BackoffPolicy",
    "BroadcastReplay",
    "ChannelStatus",
    "Dashboard",
    "EventKind",
    "FrameChange",
    "Inspector",
    "LiveFrame",
    "LiveTableWidget",
    "LocalPostgres",
    "LocalRealtime",
    "Player",
    "PresenceRosterWidget",
    "PresenceStatus",
    "RealtimeConnectionManager",
    "RealtimeEvent",
    "Recorder",
    "Simulator",
    "StatusTimelineWidget",
    "TableSubscription",
    "__version__",
    "connect_recording",
    "dashboard",
    "read_recording",
    "replay",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from harmony_lab.demo import Simulator
    from harmony_lab.events import ChannelStatus, EventKind, PresenceStatus, RealtimeEvent
    from harmony_lab.frames import FrameChange, LiveFrame
    from harmony_lab.inspector import Inspector
    from harmony_lab.local import LocalPostgres, LocalRealtime
    from harmony_lab.manager import (
        Backfill,
        BackoffPolicy,
        BroadcastReplay,
        RealtimeConnectionManager,
        TableSubscription,
    )
    from harmony_lab.recording import Recorder, connect_recording, read_recording, replay
    from harmony_lab.widgets import (
        Dashboard,
        LiveTableWidget,
        Player,
        PresenceRosterWidget,
        StatusTimelineWidget,
        dashboard,
    )


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
