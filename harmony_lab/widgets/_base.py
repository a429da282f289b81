"""What every harmony_lab widget shares: front-end readiness, a coalescing UI tick, a byte budget.

Traffic discipline (see ``docs`` in the widget classes):

* Nothing streams until a front end said ``{"type": "ready"}`` (sent by each view after it rendered);
  each ``ready`` gets a full snapshot, so a newly rendered view starts from the current state.
* Changes only mark the widget dirty. A timer on the kernel's event loop (``loop.call_later``, never a
  thread) flushes at most ``max_hz`` (≤ 10) times per second, consecutive flushes at least
  ``1/max_hz`` s apart. A 10 000 events/s stream therefore costs ≤ ``max_hz`` data messages per second
  per widget, plus one statistics update per second and a state update when the columns change —
  about 1 % of Jupyter's iopub limit of 1000 messages per second.
* A token bucket keeps the average below ``max_bytes_per_s``: when a flush would overdraw it, the
  changes keep accumulating (they coalesce by row) until the budget refills.
* ``{"type": "bye"}`` (a view went away) and ``{"type": "resync"}`` (a view found itself inconsistent)
  are also understood.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import anywidget
import traitlets

logger = logging.getLogger(__name__)

__all__ = ["StateWidget", "StreamingWidget"]


class StreamingWidget(anywidget.AnyWidget):
    """Base class: subclasses implement :meth:`_snapshot` and :meth:`_flush_changes`."""

    # the status line: one word, and why in one line when it is not a healthy one (empty otherwise)
    status = traitlets.Unicode("waiting").tag(sync=True)
    reason = traitlets.Unicode("").tag(sync=True)
    views = traitlets.Int(0).tag(sync=True)  # front ends that said ready (and not bye)

    # defaults so that close() works even when a subclass __init__ failed half-way
    _timer: asyncio.TimerHandle | None = None
    _stats_timer: asyncio.TimerHandle | None = None
    _closed = False
    _streaming = False

    @staticmethod
    def _check_rates(max_hz: float, max_bytes_per_s: float) -> None:
        if not 0 < max_hz <= 10:
            raise ValueError(
                f"max_hz must be in (0, 10] (widgets update at most 10 times a second); got {max_hz}"
            )
        if max_bytes_per_s <= 0:
            raise ValueError(f"max_bytes_per_s must be positive; got {max_bytes_per_s}")

    def _init_stream(
        self,
        *,
        max_hz: float,
        max_bytes_per_s: float,
        stats_interval_s: float | None = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < max_hz <= 10:
            raise ValueError(
                f"max_hz must be in (0, 10] (widgets update at most 10 times a second); got {max_hz}"
            )
        if max_bytes_per_s <= 0:
            raise ValueError(f"max_bytes_per_s must be positive; got {max_bytes_per_s}")
        self._interval = 1.0 / max_hz
        self._budget = float(max_bytes_per_s)
        self._tokens = float(max_bytes_per_s)
        self._clock = clock
        self._last_refill = clock()
        self._last_flush = -1e18
        self._streaming = False
        self._timer: asyncio.TimerHandle | None = None
        self._stats_timer: asyncio.TimerHandle | None = None
        self._stats_interval = stats_interval_s
        self._dirty = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._grab_loop()
        self.messages_sent = 0
        self.bytes_sent = 0
        self.on_msg(self._on_front_msg)

    # ------------------------------------------------------------------ loop

    def _grab_loop(self) -> asyncio.AbstractEventLoop | None:
        if self._loop is None or self._loop.is_closed():
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                self._loop = None
                return None
            self._loop_thread = threading.get_ident()
        return self._loop

    # ------------------------------------------------------------------ front-end messages

    def _on_front_msg(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "ready":
            self._grab_loop()
            self.views += 1
            self._streaming = True
            self._refresh_status()
            self._snapshot()
            self._dirty = False
            self._last_flush = self._clock()
            self._arm_stats()
        elif kind == "resync":
            logger.info("%s: a view asked for a resync (%s)", type(self).__name__, content.get("reason"))
            if self._streaming:
                self._snapshot()
        elif kind == "bye":
            self.views = max(0, self.views - 1)
            if self.views == 0:
                self._streaming = False
                self._cancel_timers()
        else:
            self._on_other_msg(content, buffers)

    def _on_other_msg(self, content: dict[str, Any], buffers: list[Any]) -> None:
        if content.get("kind") != "anywidget-command":  # anywidget's own RPC messages
            logger.debug("%s: ignoring front-end message %r", type(self).__name__, content.get("type"))

    def _live_status(self) -> str:
        return "live"

    def _live_reason(self) -> str:
        """Why :meth:`_live_status` is not healthy (subclasses ask their source); empty by default."""
        return ""

    def _refresh_status(self) -> None:
        """Set the status line traits (on every ready and every statistics tick)."""
        status, reason = self._live_status(), self._live_reason()
        if status != self.status or reason != self.reason:
            with self.hold_sync():
                self.status = status
                self.reason = reason

    # ------------------------------------------------------------------ the tick

    def _mark_dirty(self) -> None:
        """Something changed: flush within one tick (coalescing everything until then)."""
        self._dirty = True
        if not self._streaming or self._closed:
            return
        if self._timer is not None:
            return
        loop = self._grab_loop() or self._loop
        if loop is None:
            return  # no event loop: call flush() yourself
        if self._loop_thread is not None and threading.get_ident() != self._loop_thread:
            loop.call_soon_threadsafe(self._schedule)
        else:
            self._schedule()

    def _schedule(self, extra_delay: float = 0.0) -> None:
        if self._timer is not None or self._closed or self._loop is None:
            return
        delay = max(0.0, self._last_flush + self._interval - self._clock(), extra_delay)
        self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._streaming or self._closed or not self._dirty:
            return
        self._refill()
        if self._tokens <= 0:
            wait = -self._tokens / self._budget
            self._schedule(extra_delay=wait)
            return
        self._flush()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._budget, self._tokens + (now - self._last_refill) * self._budget)
        self._last_refill = now

    def _flush(self) -> None:
        self._dirty = False
        try:
            more = self._flush_changes()
        except Exception:
            logger.exception("%s: sending an update failed; the view will be resynced", type(self).__name__)
            self._snapshot()
            more = False
        # measured from when the message left: consecutive messages are ≥ one interval apart
        self._last_flush = self._clock()
        if more:
            self._mark_dirty()

    def flush(self) -> None:
        """Send pending changes now (ignoring the tick); for scripts and tests without a running loop."""
        if self._streaming and self._dirty:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._refill()
            self._flush()

    def _arm_stats(self) -> None:
        if self._stats_interval is None or self._stats_timer is not None or self._loop is None:
            return
        self._stats_timer = self._loop.call_later(self._stats_interval, self._on_stats_timer)

    def _on_stats_timer(self) -> None:
        self._stats_timer = None
        if not self._streaming or self._closed:
            return
        try:
            self._refresh_status()
            self._send_stats()
        except Exception:
            logger.exception("%s: updating the statistics failed", type(self).__name__)
        self._arm_stats()

    def _cancel_timers(self) -> None:
        for handle in (self._timer, self._stats_timer):
            if handle is not None:
                handle.cancel()
        self._timer = None
        self._stats_timer = None

    # ------------------------------------------------------------------ sending

    def _send_custom(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> int:
        """``send`` with accounting (messages, bytes; the byte budget is charged)."""
        size = sum(len(b) for b in buffers or ())
        self.send(content, buffers=buffers or None)
        self.messages_sent += 1
        self.bytes_sent += size
        self._tokens -= size
        return size

    # ------------------------------------------------------------------ to implement

    def _snapshot(self) -> None:
        """Send the whole current state (after a ``ready``)."""
        raise NotImplementedError

    def _flush_changes(self) -> bool:
        """Send what changed since the last flush; return True when something was held back."""
        raise NotImplementedError

    def _send_stats(self) -> None:
        """Slow-moving statistics (≤ 1 per second)."""

    def close(self) -> None:
        self._closed = True
        self._streaming = False
        self._cancel_timers()
        super().close()


class StateWidget(StreamingWidget):
    """A widget whose whole state is a few small traits (roster, timeline): a snapshot and every flush
    re-send it through :meth:`_push`, which subclasses implement (inside ``hold_sync``)."""

    def _push(self) -> None:
        raise NotImplementedError

    def _snapshot(self) -> None:
        self._push()

    def _flush_changes(self) -> bool:
        self._push()
        return False
