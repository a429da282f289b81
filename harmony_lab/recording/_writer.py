"""The recorder's writer thread: it owns the open parts, writes and publishes files, counts what is written.

Everything in :class:`Writer` runs on its own thread except the entry points marked as such
(:meth:`~Writer.request_flush`, :meth:`~Writer.stop`, :meth:`~Writer.note_overflow`). Events arrive
through a deque the producer appends to; batches of :data:`BATCH_ROWS` become Arrow record batches
(:class:`~harmony_lab.recording._codec.RowBuffer`), and a part is rewritten whole under a temporary
name and renamed into place at each flush (see :mod:`harmony_lab.recording._recorder`).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harmony_lab.events import EventKind, RealtimeEvent
from harmony_lab.recording._codec import SCHEMA, RowBuffer
from harmony_lab.recording._layout import part_name, partition_dir, temp_name
from harmony_lab.recording._manifest import iso, session_entry, update_manifest

if TYPE_CHECKING:
    from harmony_lab.recording._recorder import Recorder

logger = logging.getLogger(__name__)

__all__ = ["BATCH_ROWS", "PublishedStats", "Writer"]

BATCH_ROWS = 8192
_DICTIONARY_COLUMNS = ["session_id", "kind", "channel", "topic", "schema", "table", "op", "status", "reason"]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class PublishedStats:
    rows: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    first_at: datetime | None = None
    last_at: datetime | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    gaps: list[dict[str, Any]] = field(default_factory=list)
    nbytes: int = 0


@dataclass
class _Part:
    channel: str
    day: date
    path: Path
    first_seq: int
    opened: float
    buffer: RowBuffer = field(default_factory=RowBuffer)
    batches: list[pa.RecordBatch] = field(default_factory=list)
    rows: int = 0
    published_rows: int = 0
    published: PublishedStats = field(default_factory=PublishedStats)
    day_start: datetime = field(init=False)
    day_end: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.day_start = datetime(self.day.year, self.day.month, self.day.day, tzinfo=UTC)
        self.day_end = self.day_start + timedelta(days=1)


def _stats_of(table: pa.Table, nbytes: int) -> PublishedStats:
    st = PublishedStats(rows=table.num_rows, nbytes=nbytes)
    if table.num_rows == 0:
        return st
    for item in pc.value_counts(table.column("kind")).to_pylist():
        st.kinds[item["values"]] += item["counts"]
    mm = pc.min_max(table.column("received_at")).as_py()
    st.first_at, st.last_at = mm["min"], mm["max"]
    sm = pc.min_max(table.column("seq")).as_py()
    st.first_seq, st.last_seq = sm["min"], sm["max"]
    if st.kinds.get("gap"):
        gap_rows = table.filter(pc.equal(table.column("kind"), "gap")).select(
            ["seq", "channel", "gap_start", "gap_end", "reason"]
        )
        for row in gap_rows.to_pylist():
            st.gaps.append(
                {
                    "seq": row["seq"],
                    "channel": row["channel"],
                    "start": iso(row["gap_start"]),
                    "end": iso(row["gap_end"]),
                    "reason": row["reason"],
                }
            )
    return st


def _merge_into(c: PublishedStats, st: PublishedStats) -> None:
    c.rows += st.rows
    c.kinds.update(st.kinds)
    c.nbytes += st.nbytes
    c.gaps.extend(st.gaps)
    for attr, pick in (("first_at", min), ("last_at", max), ("first_seq", min), ("last_seq", max)):
        mine, theirs = getattr(c, attr), getattr(st, attr)
        if theirs is not None:
            setattr(c, attr, theirs if mine is None else pick(mine, theirs))


class Writer:
    """Owns the files. Everything here runs on the writer thread except the marked entry points."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.root = rec.path
        self.session_id = rec.session_id
        self.queue: collections.deque[RealtimeEvent] = collections.deque()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.flush_cond = threading.Condition()
        self.flush_requested = 0
        self.flush_done = 0
        self.error: BaseException | None = None
        self.parts: dict[str, _Part] = {}
        self.used_names: set[Path] = set()
        # totals over closed parts
        self.closed = PublishedStats()
        self.closed_by_channel: Counter[str] = Counter()
        self.files = 0
        self.last_flush_at: datetime | None = None
        self.final_manifest_written = False
        # overflow bookkeeping, shared with producers (guarded by ovf_lock)
        self.ovf_lock = threading.Lock()
        self.overflow: dict[str, list[Any]] = {}
        self.dropped = 0
        self.dropped_by_channel: Counter[str] = Counter()
        self.thread = threading.Thread(
            target=self._run, name=f"harmony_lab-recorder-{self.session_id}", daemon=True
        )

    # ---- entry points called from other threads

    def request_flush(self, timeout: float | None) -> bool:
        with self.flush_cond:
            self.flush_requested += 1
            target = self.flush_requested
        self.wake.set()
        with self.flush_cond:
            return self.flush_cond.wait_for(
                lambda: self.flush_done >= target or self.error is not None or not self.thread.is_alive(),
                timeout,
            )

    def stop(self, timeout: float) -> None:
        self.stopping.set()
        self.wake.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout)
            if self.thread.is_alive():
                logger.error(
                    "recording %s: the writer did not finish within %.0f s; files under %s may miss "
                    "the last %.1f s of events",
                    self.session_id,
                    timeout,
                    self.root,
                    self.rec.flush_seconds,
                )

    def note_overflow(self, ev: RealtimeEvent) -> None:
        with self.ovf_lock:
            self.dropped += 1
            self.dropped_by_channel[ev.channel] += 1
            entry = self.overflow.get(ev.channel)
            first_in_episode = not self.overflow
            if entry is None:
                self.overflow[ev.channel] = [ev.seq, ev.received_at, ev.received_mono_ns, ev.received_at, 1]
            else:
                entry[3] = ev.received_at
                entry[4] += 1
        if first_in_episode:
            logger.error(
                "recording %s: the queue is full (%d events waiting): DROPPING events (first: %r). The "
                "writer cannot keep up with the event rate or the disk is stalled; the hole is recorded "
                "as a gap event (reason 'recorder_overflow'). Raise max_queue or reduce the stream.",
                self.session_id,
                len(self.queue),
                ev,
            )

    # ---- the thread

    def _run(self) -> None:
        try:
            self._write_manifest()
            flush_s = self.rec.flush_seconds
            next_flush = time.monotonic() + flush_s
            while True:
                self.wake.wait(max(0.0, next_flush - time.monotonic()))
                self.wake.clear()
                stopping = self.stopping.is_set()
                with self.flush_cond:
                    requested = self.flush_requested
                self._drain()
                if stopping:
                    self._drain()
                    for part in list(self.parts.values()):
                        self._close_part(part, write_manifest=False)
                    self.last_flush_at = datetime.now(UTC)
                    self._write_manifest(final=True)
                    self._mark_flushed(requested)
                    return
                now = time.monotonic()
                if now >= next_flush or requested > self.flush_done:
                    self._flush(now)
                    self._mark_flushed(requested)
                    next_flush = time.monotonic() + flush_s
        except BaseException as exc:
            self.error = exc
            logger.exception(
                "recording %s into %s failed; events are no longer written (stop() raises RecordingError)",
                self.session_id,
                self.root,
            )
            try:
                self._write_manifest(final=True)
            except Exception:
                logger.exception("recording %s: could not mark the manifest as failed", self.session_id)
            with self.flush_cond:
                self.flush_cond.notify_all()

    def _mark_flushed(self, requested: int) -> None:
        with self.flush_cond:
            self.flush_done = max(self.flush_done, requested)
            self.flush_cond.notify_all()

    def _drain(self) -> None:
        q = self.queue
        popleft = q.popleft
        parts = self.parts
        rotate_rows = self.rec.rotate_rows
        append = self._append
        for _ in range(len(q)):  # bounded: a fast producer must not starve the flush deadline
            ev = popleft()
            part = parts.get(ev.channel)
            # the common case inline: the channel's open part takes the event and needs nothing else
            if part is not None and part.day_start <= ev.received_at < part.day_end:
                events = part.buffer.events
                if len(events) < BATCH_ROWS - 1 and part.rows < rotate_rows - 1:
                    events.append(ev)
                    part.rows += 1
                    continue
            append(ev)
        if self.overflow:
            with self.ovf_lock:
                episode, self.overflow = self.overflow, {}
            for channel, (seq, start, mono, end, n) in episode.items():
                logger.error(
                    "recording %s: dropped %d events of channel %r between %s and %s (queue full)",
                    self.session_id,
                    n,
                    channel,
                    start,
                    end,
                )
                self._append(
                    RealtimeEvent(
                        kind=EventKind.GAP,
                        channel=channel,
                        seq=seq,
                        received_at=start,
                        received_mono_ns=mono,
                        gap_start=start,
                        gap_end=end,
                        reason=f"recorder_overflow: {n} events dropped because the recorder queue was full",
                    )
                )

    def _append(self, ev: RealtimeEvent) -> None:
        part = self.parts.get(ev.channel)
        # the UTC day is checked against the open part's bounds: no conversion per event
        if part is None or not part.day_start <= ev.received_at < part.day_end:
            if part is not None:
                self._close_part(part)
            part = self._open_part(ev.channel, ev.received_at.astimezone(UTC).date(), ev.seq)
        buffer = part.buffer
        buffer.events.append(ev)
        part.rows += 1
        if len(buffer.events) >= BATCH_ROWS:
            part.batches.append(buffer.to_batch(self.session_id))
        if part.rows >= self.rec.rotate_rows:
            self._close_part(part)

    def _open_part(self, channel: str, day: date, first_seq: int) -> _Part:
        directory = partition_dir(self.root, day, channel)
        dup = 0
        while True:
            path = directory / part_name(self.session_id, first_seq, dup)
            if path not in self.used_names and not path.exists():
                break
            dup += 1
        self.used_names.add(path)
        part = _Part(channel=channel, day=day, path=path, first_seq=first_seq, opened=time.monotonic())
        self.parts[channel] = part
        return part

    def _flush(self, now: float) -> None:
        wrote = False
        for part in list(self.parts.values()):
            if now - part.opened >= self.rec.rotate_seconds:
                self._close_part(part)
                wrote = True
            elif part.rows > part.published_rows:
                self._publish(part, final=False)
                wrote = True
        if wrote:
            self.last_flush_at = datetime.now(UTC)
            self._write_manifest()

    def _publish(self, part: _Part, *, final: bool) -> None:
        if part.buffer.rows:
            part.batches.append(part.buffer.to_batch(self.session_id))
        table = pa.Table.from_batches(part.batches, schema=SCHEMA)
        if len(part.batches) > 32:  # keep memory contiguous for long-open parts
            table = table.combine_chunks()
            part.batches = table.to_batches()
        part.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_name(part.path)
        compression = self.rec.compression
        pq.write_table(
            table,
            tmp,
            compression=None if compression == "none" else compression,
            row_group_size=max(self.rec.rotate_rows, 1),
            # dictionary-encode only the low-cardinality columns: on the JSON text columns it costs
            # twice the time and doubles the file size (measured in bench/recording.py)
            use_dictionary=_DICTIONARY_COLUMNS,
        )
        if final:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        nbytes = tmp.stat().st_size
        if part.published_rows == 0:
            self.files += 1
        os.replace(tmp, part.path)
        if final:
            _fsync_dir(part.path.parent)
        part.published_rows = part.rows
        part.published = _stats_of(table, nbytes)

    def _close_part(self, part: _Part, *, write_manifest: bool = True) -> None:
        if part.rows > part.published_rows or part.buffer.rows:
            self._publish(part, final=True)
        elif part.rows:
            with open(part.path, "rb+") as fh:
                os.fsync(fh.fileno())
        del self.parts[part.channel]
        self._merge_closed(part.published)
        self.closed_by_channel[part.channel] += part.published.rows
        if write_manifest:
            self._write_manifest()

    def _merge_closed(self, st: PublishedStats) -> None:
        _merge_into(self.closed, st)

    # ---- manifest

    def totals(self) -> tuple[PublishedStats, Counter[str]]:
        total = PublishedStats()
        by_channel: Counter[str] = Counter(self.closed_by_channel)
        _merge_into(total, self.closed)
        for part in list(self.parts.values()):
            _merge_into(total, part.published)
            by_channel[part.channel] += part.published.rows
        return total, by_channel

    def _write_manifest(self, *, final: bool = False) -> None:
        entry = session_entry(self, final=final)
        update_manifest(self.root, self.session_id, entry)
        if final:
            self.final_manifest_written = True
