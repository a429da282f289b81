"""StatusTimelineWidget: one swimlane per channel showing statuses, retries, gaps and heartbeat RTT."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import traitlets

from harmony_lab._feed import EventFeed
from harmony_lab._strict import strict_kwargs
from harmony_lab.events import EventKind, RealtimeEvent
from harmony_lab.widgets import _assets
from harmony_lab.widgets._base import StateWidget
from harmony_lab.widgets._sources import Feed, to_ms

logger = logging.getLogger(__name__)

__all__ = ["StatusTimelineWidget"]

_RETRYING = ("connecting", "reconnecting")
_TROUBLE = ("error", "reconnecting", "connecting")  # unhealthy statuses, worst first


class _Lane:
    __slots__ = ("events", "gaps", "hb_timeouts", "last_event_ms", "retries", "rtt", "spans")

    def __init__(self) -> None:
        self.spans: list[list[Any]] = []  # [start_ms, end_ms|None, status, reason, attempt]
        self.retries: list[list[Any]] = []  # [t_ms, attempt, reason]
        self.gaps: list[list[Any]] = []  # [start_ms, end_ms, reason]
        self.rtt: list[float] = []  # recent heartbeat round trips (ms)
        self.hb_timeouts = 0
        self.events = 0
        self.last_event_ms: int | None = None


class StatusTimelineWidget(StateWidget):
    """Channel statuses over time: coloured spans, retry markers with attempt numbers, gap spans,
    hover details, a live "now" edge and the latest heartbeat RTT per channel.

    ``source`` is a manager (every event it observes; current statuses are read from
    ``get_debug_info()`` when available), an async iterable of events (a replay) or None (call
    :meth:`apply`). ``channels`` limits the lanes; ``window_s`` is the visible time span.
    """

    _esm = _assets.esm("status_timeline.js")
    _css = _assets.css()

    title = traitlets.Unicode("Connection status").tag(sync=True)
    lanes = traitlets.List().tag(sync=True)
    now_ms = traitlets.Int(0).tag(sync=True)
    window_s = traitlets.Float(300.0).tag(sync=True)

    @strict_kwargs
    def __init__(
        self,
        source: EventFeed | None = None,
        *,
        channels: Iterable[str] | None = None,
        window_s: float = 300.0,
        max_spans: int = 200,
        title: str = "Connection status",
        max_hz: float = 10.0,
        wall_clock: Callable[[], float] = time.time,
        layout: Any = None,
    ) -> None:
        self._check_rates(max_hz, 200_000)
        if window_s <= 0:
            raise ValueError(f"window_s must be positive; got {window_s}")
        kw: dict[str, Any] = {} if layout is None else {"layout": layout}
        super().__init__(title=title, window_s=float(window_s), **kw)
        self._only = set(channels) if channels is not None else None
        self._max_spans = max_spans
        self._wall = wall_clock
        self._lanes: dict[str, _Lane] = {}
        self._init_stream(max_hz=max_hz, max_bytes_per_s=200_000, stats_interval_s=1.0)
        self._seed_from(source)
        self._feed = Feed(source, self.apply, "StatusTimelineWidget")

    def _seed_from(self, source: Any) -> None:
        info_fn = getattr(source, "get_debug_info", None)
        if not callable(info_fn):
            return
        info = info_fn()
        channels = info.get("channels", {}) if isinstance(info, dict) else {}
        now = int(self._wall() * 1000)
        items = channels.items() if isinstance(channels, dict) else ((c.get("name"), c) for c in channels)
        for name, ch in items:
            status = (ch or {}).get("status") if isinstance(ch, dict) else None
            if name and status and self._wanted(str(name)):
                self._lane(str(name)).spans.append(
                    [now, None, str(status), "current status", ch.get("attempts")]
                )

    def _wanted(self, channel: str) -> bool:
        return self._only is None or channel in self._only

    def _lane(self, channel: str) -> _Lane:
        lane = self._lanes.get(channel)
        if lane is None:
            lane = self._lanes[channel] = _Lane()
        return lane

    def reset(self) -> None:
        """Forget every lane and status seen so far (the view empties)."""
        self._lanes.clear()
        self._latest_ms = 0
        self._mark_dirty()

    def apply(self, event: RealtimeEvent) -> bool:
        """Apply a status, gap or heartbeat event (other kinds only count as traffic)."""
        if not event.channel or not self._wanted(event.channel):
            return False
        t = to_ms(event.received_at) or int(self._wall() * 1000)
        if t > self._latest_ms:
            self._latest_ms = t
        kind = event.kind
        if kind is EventKind.STATUS and event.status is not None:
            lane = self._lane(event.channel)
            status = str(event.status)
            if lane.spans and lane.spans[-1][1] is None:
                if lane.spans[-1][2] == status and lane.spans[-1][4] == event.attempt:
                    return False  # a repeat of the current status
                lane.spans[-1][1] = t
            details = event.reason
            if isinstance(event.payload, dict) and event.payload.get("delay") is not None:
                details = f"{details or ''} (next try in {event.payload['delay']:.1f} s)".strip()
            lane.spans.append([t, None, status, details, event.attempt])
            if status in _RETRYING and event.attempt:
                lane.retries.append([t, int(event.attempt), event.reason])
            self._trim(lane, t)
        elif kind is EventKind.GAP:
            lane = self._lane(event.channel)
            start = to_ms(event.gap_start) or t
            end = to_ms(event.gap_end) or t
            lane.gaps.append([start, end, event.reason])
            self._trim(lane, t)
        elif kind is EventKind.HEARTBEAT:
            lane = self._lane(event.channel)
            payload = event.payload if isinstance(event.payload, dict) else {}
            if payload.get("timeout"):
                lane.hb_timeouts += 1
            elif payload.get("rtt_ms") is not None:
                lane.rtt.append(round(float(payload["rtt_ms"]), 2))
                del lane.rtt[:-30]
        else:
            lane = self._lanes.get(event.channel)
            if lane is not None:
                lane.events += 1
                lane.last_event_ms = t
            return False  # traffic shows at the next stats tick, not per event
        self._mark_dirty()
        return True

    _latest_ms = 0

    def now_ms_for_display(self) -> int:
        """The wall clock, or the newest event's time when replaying history older than the window."""
        wall = int(self._wall() * 1000)
        if self._latest_ms and wall - self._latest_ms > self.window_s * 1000:
            return self._latest_ms
        return wall

    def _trim(self, lane: _Lane, now: int) -> None:
        now = max(now, self._latest_ms)
        horizon = now - int(self.window_s * 1000) * 2
        for items in (lane.spans, lane.retries, lane.gaps):
            drop = 0
            for item in items[:-1]:
                end = item[1] if items is not lane.retries else item[0]
                if end is not None and end < horizon:
                    drop += 1
                else:
                    break
            drop = max(drop, len(items) - self._max_spans)
            if drop > 0:
                del items[:drop]

    def state(self) -> list[dict[str, Any]]:
        """The lanes as the widget shows them."""
        out = []
        for name, lane in self._lanes.items():
            current = lane.spans[-1][2] if lane.spans else None
            out.append(
                {
                    "channel": name,
                    "status": current,
                    "spans": [list(s) for s in lane.spans],
                    "retries": [list(r) for r in lane.retries],
                    "gaps": [list(g) for g in lane.gaps],
                    "rtt_ms": lane.rtt[-1] if lane.rtt else None,
                    "rtt_history": list(lane.rtt),
                    "hb_timeouts": lane.hb_timeouts,
                    "events": lane.events,
                    "last_event_ms": lane.last_event_ms,
                }
            )
        return out

    def _troubled(self) -> list[tuple[str, list[Any]]]:
        """Lanes whose current status is unhealthy, worst first: (channel, its open span)."""
        out = []
        for name, lane in self._lanes.items():
            if lane.spans and lane.spans[-1][1] is None and lane.spans[-1][2] in _TROUBLE:
                out.append((name, lane.spans[-1]))
        out.sort(key=lambda item: _TROUBLE.index(item[1][2]))
        return out

    def _live_status(self) -> str:
        troubled = self._troubled()
        return str(troubled[0][1][2]) if troubled else "live"

    def _live_reason(self) -> str:
        """The worst channel and why (``feed: connect failed … · attempt 3``), and how many more."""
        troubled = self._troubled()
        if not troubled:
            return ""
        name, span = troubled[0]
        why = f"{name}: {span[3] or span[2]}"
        if span[4]:
            why += f" · attempt {span[4]}"
        if len(troubled) > 1:
            why += f" (+{len(troubled) - 1} more)"
        return why

    def _push(self) -> None:
        with self.hold_sync():
            self.lanes = self.state()
            self.now_ms = self.now_ms_for_display()

    def _send_stats(self) -> None:
        traffic = sum(lane.events for lane in self._lanes.values())
        if traffic != self._traffic_pushed:
            self._traffic_pushed = traffic
            self._push()

    _traffic_pushed = 0

    def close(self) -> None:
        self._feed.close()
        super().close()

    def __repr__(self) -> str:
        lanes = ", ".join(f"{n}={s['status']}" for n, s in ((x["channel"], x) for x in self.state()))
        return f"<StatusTimelineWidget {lanes or 'no channels yet'}>"
