"""The embedded Supabase-Realtime-compatible server.

``RealtimeServer`` speaks the Phoenix channel protocol (V1 JSON objects, V2 arrays and binary broadcast
frames) on ``/realtime/v1/websocket`` and ``/socket/websocket``; ``ServerLimits`` configures its limits
(Supabase Free plan by default); ``Faults`` / ``RemoteFaults`` inject failures; ``Authorizer`` decides
private channels from ``realtime.messages`` policies; ``make_token`` signs a JWT with the server's
secret. Most users start the whole stack with :class:`harmony_lab.LocalRealtime` instead of using this
package directly.

Deliberate differences from Supabase's server (all for the official clients' sake or local use):

* A duplicate ``phx_join`` over V1 does not send ``phx_close`` for the superseded channel: realtime-py
  routes by topic only and would close its *new* subscription. V2 follows
  Phoenix (``phx_close`` with the old join_ref, which phoenix.js ignores).
* Connect and join errors are answered at once (the real server waits 2 s / 5 s);
  ``ServerLimits.connect_error_delay_s`` / ``join_error_delay_s`` restore the delays.
* Rate limits count client pushes per socket over ``ServerLimits.rate_window_s``; the real server
  counts per tenant and also counts every message it delivers (postgres_changes included). REST
  broadcast messages are counted server-wide, on their own (``max_rest_events_per_second``).
* Topics are capped at ``max_topic_bytes`` (Supabase documents no limit).
* Private channels (``config.private``) are authorised through ``realtime.messages`` policies as on
  Supabase (``docs/authorization.md``); ``replay`` on a private channel is accepted and replays nothing.
* The ``payload_size_exceeded`` ack reply carries ``{"error": "payload_size_exceeded"}`` (an object, so
  realtime-py can parse it) rather than a bare string.
* V1 frames larger than 1 MiB are never sent (realtime-py would drop its connection); they are logged.
* Presence keys generated for ``key: ""`` are UUIDv4 (the real server uses v1); refs are opaque strings.
"""

from __future__ import annotations

from harmony_lab.server._auth import make_token
from harmony_lab.server._authz import Authorizer
from harmony_lab.server._limits import ServerLimits
from harmony_lab.server._server import RealtimeServer
from harmony_lab.server.faults import FaultError, Faults, RemoteFaults

__all__ = [
    "Authorizer",
    "FaultError",
    "Faults",
    "RealtimeServer",
    "RemoteFaults",
    "ServerLimits",
    "make_token",
]
