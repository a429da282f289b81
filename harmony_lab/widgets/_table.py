"""LiveTableWidget: a LiveFrame in the browser — virtualised rows, flashes, pause, sort, search.

Wire protocol (custom messages; rows are Arrow IPC stream buffers in each column's native Arrow type,
with the frame's row id in an ``__rid`` int64 column first — see :mod:`harmony_lab.widgets._wire`):

* front end → kernel: ``{"type": "ready"}`` after each view rendered, ``{"type": "bye"}`` when a view
  goes away, ``{"type": "resync", "reason": …}`` when a view's row count disagrees with the kernel's.
* kernel → front end:

  - ``{"type": "snapshot", "seq", "part", "parts", "nrows"}`` + one buffer per part (≤
    ``rows_per_message`` rows each); part 0 replaces the view's rows.
  - ``{"type": "delta", "seq", "deletes": [rid, …], "nrows", "events"}`` + zero or one buffer of
    upserted rows (inserted or updated since the last tick; a row inserted and deleted within one
    tick is never sent). ``nrows`` is the kernel's row count after the delta.

Small state lives in traits: ``title``, ``columns`` (``[name, postgres type, kind]``),
``key_columns``, ``mode``, ``paused`` (set by the pause button), ``pending`` (events held while
paused), and once a second ``counters``, ``rate`` and ``rate_history`` (the sparkline).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import traitlets

from harmony_lab._strict import strict_kwargs
from harmony_lab.frames import FrameChange, LiveFrame
from harmony_lab.widgets import _assets, _wire
from harmony_lab.widgets._base import StreamingWidget
from harmony_lab.widgets._sources import display_names

logger = logging.getLogger(__name__)

__all__ = ["LiveTableWidget"]


class LiveTableWidget(StreamingWidget):
    """The live table view of a :class:`~harmony_lab.LiveFrame`.

    ``LiveTableWidget(frame)``; ``max_hz`` (≤ 10) bounds updates per second, ``max_bytes_per_s`` the
    average bytes per second (changes coalesce while the budget refills), ``rows_per_message`` the rows
    in one message (larger deltas spread over ticks). ``height`` is the scroll area's height in px.
    """

    _esm = _assets.esm("live_table.js")
    _css = _assets.css()

    title = traitlets.Unicode("").tag(sync=True)
    columns = traitlets.List().tag(sync=True)
    key_columns = traitlets.List(traitlets.Unicode()).tag(sync=True)
    mode = traitlets.Unicode("upsert").tag(sync=True)
    height = traitlets.Int(360).tag(sync=True)
    paused = traitlets.Bool(False).tag(sync=True)
    pending = traitlets.Int(0).tag(sync=True)
    counters = traitlets.Dict().tag(sync=True)
    rate = traitlets.Float(0.0).tag(sync=True)
    rate_history = traitlets.List(traitlets.Int()).tag(sync=True)
    names = traitlets.Dict(traitlets.Unicode()).tag(sync=True)  # user id → display name

    @strict_kwargs
    def __init__(
        self,
        frame: LiveFrame,
        *,
        title: str | None = None,
        height: int = 360,
        max_hz: float = 10.0,
        max_bytes_per_s: float = 1_000_000,
        rows_per_message: int = 20_000,
        names: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        layout: Any = None,
    ) -> None:
        if not isinstance(frame, LiveFrame):
            raise TypeError(
                "LiveTableWidget shows a harmony_lab.LiveFrame; build one first, e.g. "
                f"LiveTableWidget(LiveFrame(manager, 'messages')); got {type(frame).__name__}"
            )
        self._check_rates(max_hz, max_bytes_per_s)
        if rows_per_message <= 0:
            raise ValueError(f"rows_per_message must be positive; got {rows_per_message}")
        kw: dict[str, Any] = {} if layout is None else {"layout": layout}
        super().__init__(
            title=title if title is not None else f"{frame.schema}.{frame.table}",
            height=int(height),
            mode=frame.mode,
            names=display_names(names, "LiveTableWidget"),
            **kw,
        )
        self.frame = frame
        self._rows_per_message = rows_per_message
        self._upserts: dict[int, None] = {}  # ordered set of rids to send
        self._fresh: set[int] = set()  # inserted since the last flush (unknown to the views)
        self._deletes: dict[int, None] = {}
        self._events = 0  # change events since the last flush
        self._seq = 0
        self._pending = 0
        self._init_stream(max_hz=max_hz, max_bytes_per_s=max_bytes_per_s, clock=clock)
        self._sync_columns()
        self._remove_listener = frame.on_change(self._on_change)
        self.observe(self._on_paused, names="paused")

    # ------------------------------------------------------------------ frame → pending changes

    def _on_change(self, change: FrameChange) -> None:
        if not self._streaming:
            return  # the next ready sends a snapshot
        op = change.op
        rid = change.rid
        if op == "insert" and rid is not None:
            self._upserts[rid] = None
            self._fresh.add(rid)
            self._events += 1
        elif op == "update" and rid is not None:
            self._upserts[rid] = None
            self._events += 1
        elif op in ("delete", "evict") and rid is not None:
            self._upserts.pop(rid, None)
            if rid in self._fresh:
                self._fresh.discard(rid)
            else:
                self._deletes[rid] = None
            if op == "delete":
                self._events += 1
        elif op == "schema":
            self._columns_dirty = True
        elif op == "reset":
            self._upserts.clear()
            self._fresh.clear()
            self._deletes.clear()
            self._needs_snapshot = True
        if self.paused and op in ("insert", "update", "delete"):
            self._pending += 1
        self._mark_dirty()

    _columns_dirty = False
    _needs_snapshot = False

    def _on_paused(self, change: dict[str, Any]) -> None:
        with self.hold_sync():
            if not change["new"]:
                self._pending = 0
                self.pending = 0
            self.status = self._live_status()
        if not change["new"]:
            self._mark_dirty()

    def _sync_columns(self) -> None:
        self.columns = _wire.wire_columns(self.frame)
        self.key_columns = list(self.frame.key or ())
        self._columns_dirty = False

    # ------------------------------------------------------------------ sending

    def _snapshot(self) -> None:
        self._upserts.clear()
        self._fresh.clear()
        self._deletes.clear()
        self._events = 0
        self._needs_snapshot = False
        with self.hold_sync():
            self._sync_columns()
            self._stats_traits()
        rids = self.frame.row_ids()
        size = self._rows_per_message
        parts = max(1, -(-len(rids) // size))
        self._seq += 1
        for part in range(parts):
            chunk = rids[part * size : (part + 1) * size]
            buf = _wire.ipc_bytes(_wire.wire_batch(self.frame, chunk))
            self._send_custom(
                {"type": "snapshot", "seq": self._seq, "part": part, "parts": parts, "nrows": len(rids)},
                [buf],
            )

    def _flush_changes(self) -> bool:
        if self._needs_snapshot:
            self._snapshot()
            return False
        if self.paused:
            if self.pending != self._pending:
                self.pending = self._pending
            return False
        if self._columns_dirty:
            with self.hold_sync():  # one state message for columns + key columns
                self._sync_columns()
        if not self._upserts and not self._deletes:
            return False
        take = self._rows_per_message
        rids = list(self._upserts)
        send, keep = rids[:take], rids[take:]
        deletes = list(self._deletes)
        dels, keep_dels = deletes[: take * 4], deletes[take * 4 :]
        buffers = [_wire.ipc_bytes(_wire.wire_batch(self.frame, send))] if send else []
        self._fresh.difference_update(send)
        self._seq += 1
        self._send_custom(
            {
                "type": "delta",
                "seq": self._seq,
                "deletes": dels,
                # the row count the view must reach once it has everything sent so far
                "nrows": len(self.frame) - sum(1 for r in keep if r in self._fresh) + len(keep_dels),
                "events": self._events,
            },
            buffers,
        )
        self._events = 0
        self._upserts = dict.fromkeys(keep)
        self._deletes = dict.fromkeys(keep_dels)
        return bool(keep or keep_dels)

    def _stats_traits(self) -> None:
        counters = self.frame.counters
        self.counters = {k: v for k, v in counters.items() if v or k in ("rows", "events_per_s")}
        self.rate = float(counters["events_per_s"])
        self.rate_history = self.frame.rate_history(60)
        self.status = self._live_status()
        if self.paused and self.pending != self._pending:
            self.pending = self._pending

    def _send_stats(self) -> None:
        with self.hold_sync():
            self._stats_traits()

    def _live_status(self) -> str:
        if self.paused:
            return "paused"
        st = self.frame.status
        return "live" if st in ("idle", "live") else st

    def _live_reason(self) -> str:
        return "" if self.paused else self.frame.status_reason

    def close(self) -> None:
        remove = getattr(self, "_remove_listener", None)
        if remove is not None:
            remove()
        super().close()

    def __repr__(self) -> str:
        return (
            f"<LiveTableWidget {self.title} rows={len(self.frame)} views={self.views} "
            f"messages={self.messages_sent} bytes={self.bytes_sent}>"
        )
