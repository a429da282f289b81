"""The embedded Supabase-Realtime-compatible server.

``RealtimeServer`` speaks the Phoenix channel protocol (V1 JSON objects, V2 arrays and binary broadcast
frames) on ``/realtime/v1/websocket`` and ``/socket/websocket``; ``ServerLimits`` configures its limits
(Supabase Free plan by default); ``Faults`` / ``RemoteFaults`` inject failures. Most users start the
whole stack with :class:`harmony_lab.LocalRealtime` instead of using this package directly.
"""

from __future__ import annotations

from harmony_lab.server._limits import ServerLimits
from harmony_lab.server._server import RealtimeServer
from harmony_lab.server.faults import FaultError, Faults, RemoteFaults

__all__ = ["FaultError", "Faults", "RealtimeServer", "RemoteFaults", "ServerLimits"]
