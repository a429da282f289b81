"""Server limits (defaults = Supabase Free plan) and a pure sliding-window rate counter."""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = ["RateWindow", "ServerLimits"]

KB = 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class ServerLimits:
    """What one embedded server allows. Defaults follow Supabase's Free plan / self-host defaults.

    Rates are averages over ``rate_window_s`` (the real server averages over a minute, so short bursts
    pass): a limit of 100/s with a 10 s window trips at the 1001st event within 10 s.

    * ``max_connections`` — concurrent websockets (HTTP 429 ``Too many connected users`` beyond).
    * ``max_channels_per_connection`` — join error ``ChannelRateLimitReached: Too many channels``.
    * ``max_joins_per_second`` — per socket; join error ``ClientJoinRateLimitReached: Too many joins per
      second`` and the socket is closed.
    * ``max_events_per_second`` — client pushes (broadcast, presence, access_token…) per socket; beyond it
      the channel gets ``system`` "Too many messages per second" and ``phx_close``.
    * ``max_presence_calls`` per ``presence_window_s`` — track/untrack per channel; beyond it ``system``
      "Client presence rate limit exceeded" and ``phx_close``.
    * ``max_presence_events_per_second`` — presence pushes per socket ("Too many presence messages per
      second" + ``phx_close``).
    * ``max_broadcast_bytes`` — broadcast payload (256 KB on Free); larger ones are dropped (error reply
      ``payload_size_exceeded`` only with ``ack``).
    * ``max_track_bytes`` — presence payload ("Track message size exceeded" + ``phx_close``).
    * ``max_frame_bytes`` — inbound websocket frame size (the real server's 5 000 000); larger frames
      close the socket with 1009.
    * ``max_v1_outbound_bytes`` — never send a V1 (realtime-py) frame above 1 MiB: python-websockets
      closes the client socket on larger frames (its default max_size); such frames are dropped and logged.
    * ``max_outbound_bytes`` — frames queued for one socket and not yet written (a client that reads
      slower than it is sent to); beyond it the queue is dropped and the socket closed with 1008
      ``slow consumer``. Binary frames count their bytes, text frames their length.
    * ``max_postgres_changes_per_channel`` — postgres_changes bindings in one join; each is checked in
      the database, so more are refused at once (``system`` error, nothing checked). Supabase sets no
      such limit; the embedded server's 100 is its own.
    * ``max_topic_bytes`` — a join's topic (``realtime:`` included, UTF-8); a longer one is refused with
      ``TopicNameTooLong`` and nothing of it is kept.
    * ``max_rest_events_per_second`` — messages sent through REST broadcast, server-wide, averaged over
      ``rate_window_s``; beyond it HTTP 429 ``You have exceeded your rate limit`` (or ``Too many messages
      to broadcast, please reduce the batch size`` for a batch that would not fit).
    * ``max_http_head_bytes`` — request line plus headers (HTTP 431 beyond).
    * ``max_http_body_bytes`` — a request body, judged by its ``Content-Length`` before any of it is
      read (HTTP 413 beyond).
    * ``max_http_buffered_bytes`` — request bodies held at once by all connections together; a request
      whose declared body does not fit gets HTTP 503 and is told to retry.
    * ``max_pending_connections`` — connections whose HTTP request is not answered yet (a websocket
      before its handshake is accepted, any REST call); more are answered HTTP 503 at once.
    * ``http_read_timeout_s`` — a request's head and body must arrive within this (HTTP 408 beyond).
    * ``idle_timeout_s`` — close a socket that sent nothing for this long (``None`` = never).
    * ``connect_error_delay_s`` / ``join_error_delay_s`` — the real server waits 2 s / 5 s before
      answering a rejected handshake / join; the embedded default is 0 (fast tests, no client timeouts).
    """

    max_connections: int = 200
    max_channels_per_connection: int = 100
    max_joins_per_second: float = 100.0
    max_events_per_second: float = 100.0
    max_presence_calls: int = 5
    presence_window_s: float = 30.0
    max_presence_events_per_second: float = 20.0
    max_broadcast_bytes: int = 256 * KB
    max_track_bytes: int = 256 * KB
    max_frame_bytes: int = 5_000_000
    max_v1_outbound_bytes: int = MIB
    max_outbound_bytes: int = 16 * MIB
    max_topic_bytes: int = 1024
    max_postgres_changes_per_channel: int = 100
    max_rest_events_per_second: float = 100.0
    max_http_head_bytes: int = 32 * KB
    max_http_body_bytes: int = 8 * MIB
    max_http_buffered_bytes: int = 64 * MIB
    max_pending_connections: int = 128
    http_read_timeout_s: float = 10.0
    rate_window_s: float = 10.0
    idle_timeout_s: float | None = 60.0
    connect_error_delay_s: float = 0.0
    join_error_delay_s: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "idle_timeout_s":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"ServerLimits.{f.name} must be a non-negative number; got {value!r}")
        for name in ("rate_window_s", "presence_window_s", "http_read_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ServerLimits.{name} must be positive; got {getattr(self, name)!r}")

    @classmethod
    def unlimited(cls, **overrides: Any) -> ServerLimits:
        """Limits high enough never to trip (fuzzing, benchmarks); ``overrides`` still apply."""
        big = 10**9
        base: dict[str, Any] = {
            "max_connections": big, "max_channels_per_connection": big, "max_joins_per_second": big,
            "max_events_per_second": big, "max_presence_calls": big, "max_presence_events_per_second": big,
            "max_rest_events_per_second": big, "max_pending_connections": big,
        }  # fmt: skip
        base.update(overrides)
        return cls(**base)

    def replace(self, **changes: Any) -> ServerLimits:
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - valid)
        if unknown:
            raise TypeError(f"unknown ServerLimits field(s) {unknown}; valid: {', '.join(sorted(valid))}")
        return dataclasses.replace(self, **changes)


class RateWindow:
    """Counts events in a sliding window; :meth:`hit` says whether the window is full.

    At most ``capacity`` events in any ``window`` seconds. :meth:`per_second` builds one from an average
    rate. ``count`` is how many events are in the window now.
    """

    __slots__ = ("_times", "capacity", "window")

    def __init__(self, capacity: int, window: float) -> None:
        if window <= 0:
            raise ValueError(f"window must be positive; got {window!r}")
        self.window = float(window)
        self.capacity = max(1, int(capacity))
        self._times: deque[float] = deque()

    @classmethod
    def per_second(cls, limit: float, window: float) -> RateWindow:
        """``limit`` events per second on average over ``window`` seconds."""
        return cls(max(1, round(limit * window)), window)

    def hit(self, now: float) -> bool:
        """Record one event at ``now``; True when this event goes over the limit (it is not counted)."""
        horizon = now - self.window
        times = self._times
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) >= self.capacity:
            return True
        times.append(now)
        return False

    @property
    def count(self) -> int:
        return len(self._times)
