"""The Recorder: RealtimeEvents → hive-partitioned zstd Parquet, without ever blocking the event loop.

How a recording stays safe
--------------------------
A Parquet file is only readable once its footer is written, so nothing is ever appended to a
visible file. Each channel has one *open part*: its rows live in memory (as Arrow record batches)
and, at every flush that has new data (every ``flush_seconds``), the whole part is written again
as a complete file under a hidden temporary name and atomically renamed over the previous version
(``os.replace``). A reader therefore always sees complete files that only ever grow, never a
half-written one, never the same row twice. A part is closed (fsynced, never touched again) when it
reaches ``rotate_rows`` rows, when it has been open ``rotate_seconds``, at a UTC date boundary and
at stop; the next event of the channel opens a new part.

A SIGKILL loses only what arrived since the last completed flush: at most ``flush_seconds`` plus the
time one flush takes. The price is write amplification while a part is open (each flush rewrites
the part so far): per active channel, one flush writes at most ``rotate_rows`` rows. Lower
``rotate_rows``/``rotate_seconds`` to trade file count for less rewriting.

Threads: :meth:`Recorder.write` only appends to a bounded in-memory queue (O(1), safe from any
thread). A daemon writer thread converts events to Arrow, writes files and the manifest. If the
queue is full the event is dropped, counted, logged at ERROR, and a ``gap`` event
(``reason="recorder_overflow: …"``) is recorded for the hole, so the loss is visible in the data.
Active recorders are flushed and closed at interpreter exit (``atexit``: a Jupyter kernel shutdown
or restart) and on SIGTERM (the previous SIGTERM handler, or the default action, runs afterwards).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import importlib.metadata
import json
import logging
import os
import platform
import secrets
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harmony_lab._feed import pump, source_kind
from harmony_lab._strict import unknown_kwargs_error
from harmony_lab.events import EventKind, RealtimeEvent
from harmony_lab.recording._codec import SCHEMA, RowBuffer
from harmony_lab.recording._layout import part_name, partition_dir, temp_name
from harmony_lab.recording._manifest import read_manifest, update_manifest

logger = logging.getLogger(__name__)

__all__ = ["Recorder", "RecordingError", "read_manifest"]

_COMPRESSIONS = ("zstd", "snappy", "gzip", "brotli", "lz4", "none")
_BATCH_ROWS = 8192
_MAX_MANIFEST_GAPS = 1000
_STOP_TIMEOUT_S = 120.0
_DICTIONARY_COLUMNS = ["session_id", "kind", "channel", "topic", "schema", "table", "op", "status", "reason"]


class RecordingError(RuntimeError):
    """The recorder's writer failed (disk full, permissions…); the cause is chained."""


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).isoformat()


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for dist in ("harmony-lab", "pyarrow", "pandas", "realtime", "supabase", "websockets"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _new_session_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _normalize_kinds(
    kinds: Iterable[str | EventKind] | str | EventKind | None,
) -> frozenset[EventKind] | None:
    if kinds is None:
        return None
    if isinstance(kinds, str):
        kinds = [kinds]
    out = set()
    for k in kinds:
        try:
            out.add(EventKind(k))
        except ValueError:
            valid = ", ".join(repr(v.value) for v in EventKind)
            raise ValueError(f"unknown event kind {k!r}; valid kinds: {valid}") from None
    return frozenset(out)


# --------------------------------------------------------------------------- the writer thread


@dataclass
class _PublishedStats:
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
    published: _PublishedStats = field(default_factory=_PublishedStats)


def _stats_of(table: pa.Table, nbytes: int) -> _PublishedStats:
    st = _PublishedStats(rows=table.num_rows, nbytes=nbytes)
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
                    "start": _iso(row["gap_start"]),
                    "end": _iso(row["gap_end"]),
                    "reason": row["reason"],
                }
            )
    return st


def _merge_into(c: _PublishedStats, st: _PublishedStats) -> None:
    c.rows += st.rows
    c.kinds.update(st.kinds)
    c.nbytes += st.nbytes
    c.gaps.extend(st.gaps)
    for attr, pick in (("first_at", min), ("last_at", max), ("first_seq", min), ("last_seq", max)):
        mine, theirs = getattr(c, attr), getattr(st, attr)
        if theirs is not None:
            setattr(c, attr, theirs if mine is None else pick(mine, theirs))


class _Writer:
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
        self.closed = _PublishedStats()
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
        append = self._append
        for _ in range(len(q)):  # bounded: a fast producer must not starve the flush deadline
            append(q.popleft())
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
        day = ev.received_at.astimezone(UTC).date()
        part = self.parts.get(ev.channel)
        if part is not None and part.day != day:
            self._close_part(part)
            part = None
        if part is None:
            part = self._open_part(ev.channel, day, ev.seq)
        part.buffer.append(ev)
        part.rows += 1
        if part.buffer.rows >= _BATCH_ROWS:
            part.batches.append(part.buffer.to_batch(self.session_id))
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

    def _merge_closed(self, st: _PublishedStats) -> None:
        _merge_into(self.closed, st)

    # ---- manifest

    def totals(self) -> tuple[_PublishedStats, Counter[str]]:
        total = _PublishedStats()
        by_channel: Counter[str] = Counter(self.closed_by_channel)
        _merge_into(total, self.closed)
        for part in list(self.parts.values()):
            _merge_into(total, part.published)
            by_channel[part.channel] += part.published.rows
        return total, by_channel

    def manifest_entry(self, *, final: bool) -> dict[str, Any]:
        rec = self.rec
        total, by_channel = self.totals()
        gaps = sorted(total.gaps, key=lambda g: (g["start"] or "", g["seq"]))
        return {
            "session_id": self.session_id,
            "status": ("failed" if self.error else "stopped") if final else "recording",
            "started_at": _iso(rec.started_at),
            "ended_at": _iso(datetime.now(UTC)) if final else None,
            "last_flush_at": _iso(self.last_flush_at),
            "pid": os.getpid(),
            "source": rec.source_description,
            "settings": {
                "kinds": sorted(rec.kinds) if rec.kinds is not None else None,
                "rotate_rows": rec.rotate_rows,
                "rotate_seconds": rec.rotate_seconds,
                "flush_seconds": rec.flush_seconds,
                "compression": rec.compression,
                "max_queue": rec.max_queue,
            },
            "versions": rec.versions,
            "bindings": rec.bindings,
            "events": total.rows,
            "files": self.files,
            "bytes": total.nbytes,
            "first_seq": total.first_seq,
            "last_seq": total.last_seq,
            "first_received_at": _iso(total.first_at),
            "last_received_at": _iso(total.last_at),
            "counts": {
                "kind": dict(sorted(total.kinds.items())),
                "channel": dict(sorted(by_channel.items())),
            },
            "gaps_total": len(gaps),
            "gaps": gaps[:_MAX_MANIFEST_GAPS],
            "dropped": self.dropped,
            "dropped_by_channel": dict(self.dropped_by_channel),
        }

    def _write_manifest(self, *, final: bool = False) -> None:
        entry = self.manifest_entry(final=final)
        update_manifest(self.root, self.session_id, entry)
        if final:
            self.final_manifest_written = True


# --------------------------------------------------------------------------- exit and SIGTERM

_ACTIVE: set[Recorder] = set()
_ACTIVE_LOCK = threading.Lock()
_atexit_installed = False
_previous_sigterm: Any = signal.SIG_DFL


def _stop_all(reason: str) -> None:
    with _ACTIVE_LOCK:
        active = list(_ACTIVE)
    if active:
        logger.warning("%s: flushing %d active recording(s)", reason, len(active))
    for rec in active:
        try:
            rec._stop_now(reason)
        except Exception:
            logger.exception("%s: could not close recording %s at %s", reason, rec.session_id, rec.path)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _stop_all("SIGTERM")
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _install_exit_handlers() -> None:
    global _atexit_installed, _previous_sigterm
    if not _atexit_installed:
        atexit.register(_stop_all, "interpreter exit")
        _atexit_installed = True
    if threading.current_thread() is not threading.main_thread():
        logger.debug("not on the main thread: SIGTERM flushing is not installed (atexit still is)")
        return
    current = signal.getsignal(signal.SIGTERM)
    if current is not _on_sigterm:
        _previous_sigterm = current
        signal.signal(signal.SIGTERM, _on_sigterm)


# --------------------------------------------------------------------------- the public class

_OPTIONS = ("kinds", "rotate_rows", "rotate_seconds", "flush_seconds", "compression", "max_queue")


def _unknown_kwargs(unknown: dict[str, Any]) -> TypeError:
    return unknown_kwargs_error("Recorder", unknown, ("source", "path", *_OPTIONS))


class Recorder:
    """Record :class:`~harmony_lab.RealtimeEvent` streams to hive-partitioned Parquet.

    ``source`` is a ``RealtimeConnectionManager`` (recorded through ``add_listener``), any async
    iterable of events (consumed by a task on the running loop), or ``None`` (call :meth:`write`).
    Files go to ``path/date=YYYY-MM-DD/channel=<name>/part-<session>-<first seq>.parquet`` next to
    a ``_session.json`` manifest. See the module docstring for the durability design.

    In a notebook, keep recording across cells (a manager source needs no ``async with``)::

        rec = Recorder(manager, "recordings/today").start()
        ...                         # later cells: rec, rec.stats, read_recording(...) while it runs
        await rec.aclose()          # flush + close off the event loop (or rec.stop(), which blocks)

    In a coroutine::

        async with Recorder(manager.events(), "recordings/today") as rec:
            await asyncio.sleep(60)

    From a plain script (no event loop needed with a manual source)::

        rec = Recorder(None, "out")
        rec.start()               # or: with Recorder(None, "out") as rec: ...
        for ev in events:
            rec.write(ev)
        rec.stop()                # flushes, closes the files, finalises the manifest

    ``kinds`` keeps only those event kinds. ``max_queue`` bounds the events waiting for the writer
    thread (overflow is counted, logged and recorded as a gap, never silent). Restarting the kernel
    or exiting the interpreter flushes and closes a running recorder (``atexit``), as does SIGTERM.
    """

    def __init__(
        self,
        source: Any,
        path: str | os.PathLike[str],
        *,
        kinds: Iterable[str | EventKind] | str | None = None,
        rotate_rows: int = 50_000,
        rotate_seconds: float = 60,
        flush_seconds: float = 1.0,
        compression: str = "zstd",
        max_queue: int = 200_000,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise _unknown_kwargs(unknown)
        kind = source_kind(source, "Recorder")
        self._source_kind = {"none": "manual", "listener": "manager", "stream": "aiter"}[kind]
        if isinstance(rotate_rows, bool) or not isinstance(rotate_rows, int) or rotate_rows < 1:
            raise ValueError(f"rotate_rows must be a positive int; got {rotate_rows!r}")
        for name, value in (("rotate_seconds", rotate_seconds), ("flush_seconds", flush_seconds)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds; got {value!r}")
        comp = str(compression).lower() if compression is not None else "none"
        if comp not in _COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(_COMPRESSIONS)}; got {compression!r}")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError(f"max_queue must be a positive int; got {max_queue!r}")
        self.source = source
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(
                f"Recorder path {str(self.path)!r} is a file; a recording is a directory (created when "
                "missing): pass a folder such as 'recordings/'"
            )
        self.kinds = _normalize_kinds(kinds)
        self.rotate_rows = rotate_rows
        self.rotate_seconds = float(rotate_seconds)
        self.flush_seconds = float(flush_seconds)
        self.compression = comp
        self.max_queue = max_queue
        self.session_id = _new_session_id()
        self.started_at: datetime | None = None
        self.versions = _versions()
        self.bindings: Any = None
        self._state = "new"
        self._accepted = 0
        self._writer = _Writer(self)
        self._remove_listener: Callable[[], Any] | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._wake_at = max(1, min(4096, max_queue // 4))  # wake the writer well before overflow

    # ---- descriptions

    @property
    def source_description(self) -> str:
        if self._source_kind == "manual":
            return "manual (Recorder.write)"
        return f"{self._source_kind}: {type(self.source).__module__}.{type(self.source).__qualname__}"

    @property
    def state(self) -> str:
        """``new``, ``recording``, ``stopped`` or ``failed``."""
        if self._writer.error is not None:
            return "failed"
        return self._state

    @property
    def pending(self) -> int:
        """Events accepted but not yet taken by the writer thread."""
        return len(self._writer.queue)

    @property
    def stats(self) -> dict[str, Any]:
        """Live counters: events accepted, rows written to visible files, files, gaps, dropped."""
        w = self._writer
        written = w.closed.rows + sum(p.published_rows for p in list(w.parts.values()))
        gaps = len(w.closed.gaps) + sum(len(p.published.gaps) for p in list(w.parts.values()))
        return {
            "events": self._accepted,
            "written": written,
            "pending": len(w.queue),
            "files": w.files,
            "gaps": gaps,
            "dropped": w.dropped,
        }

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<Recorder {self.state} session={self.session_id} path={str(self.path)!r} "
            f"events={s['events']} written={s['written']} files={s['files']} gaps={s['gaps']} "
            f"dropped={s['dropped']}>"
        )

    def _snapshot_bindings(self) -> None:
        if self._source_kind != "manager":
            return
        get = getattr(self.source, "get_debug_info", None)
        if not callable(get):
            return
        try:
            info = get()
            json.dumps(info, default=str)
        except Exception as exc:
            logger.warning(
                "recording %s: get_debug_info() failed; bindings not recorded", self.session_id, exc_info=True
            )
            self.bindings = {"error": f"get_debug_info() failed: {exc!r}"}
        else:
            # channels unsubscribed since an earlier snapshot keep their last known entry
            old = self.bindings if isinstance(self.bindings, dict) else {}
            if isinstance(info, dict) and isinstance(info.get("channels"), dict):
                info = {**info, "channels": {**old.get("channels", {}), **info["channels"]}}
            self.bindings = info

    # ---- lifecycle

    def start(self) -> Self:
        """Start recording. An async-iterable source needs a running event loop (use ``async with``)."""
        if self._state != "new":
            raise RuntimeError(f"this Recorder is {self._state}; a Recorder records once, create a new one")
        loop: asyncio.AbstractEventLoop | None = None
        if self._source_kind == "aiter":
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(
                    "Recorder with an async-iterable source must start inside a running event loop: "
                    "use `async with Recorder(...)` or call start() from a coroutine"
                ) from None
        self.path.mkdir(parents=True, exist_ok=True)
        self.started_at = datetime.now(UTC)
        self._snapshot_bindings()
        self._state = "recording"
        self._writer.thread.start()
        with _ACTIVE_LOCK:
            _ACTIVE.add(self)
        _install_exit_handlers()
        try:
            if self._source_kind == "manager":
                self._remove_listener = self.source.add_listener(self.write)
            elif loop is not None:
                self._pump_task = loop.create_task(self._pump(), name=f"recorder-pump-{self.session_id}")
        except BaseException:
            self._stop_now("source attach failed")
            raise
        logger.info("recording session %s into %s (%s)", self.session_id, self.path, self.source_description)
        return self

    async def _pump(self) -> None:
        await pump(self.source, self.write, until=lambda: self._state != "recording")

    def write(self, event: RealtimeEvent) -> None:
        """Queue one event for writing. O(1), never blocks, safe from any thread."""
        if not isinstance(event, RealtimeEvent):
            raise TypeError(f"Recorder.write expects a RealtimeEvent; got {type(event).__name__}")
        if self._state != "recording":
            raise RuntimeError(f"Recorder is {self._state}: call start() first (or use `with`/`async with`)")
        w = self._writer
        if w.error is not None:
            raise RecordingError(f"recording {self.session_id} failed: {w.error!r}") from w.error
        if event.kind is EventKind.STATUS and self._source_kind == "manager":
            self._snapshot_bindings()  # subscriptions change with statuses (we are on the loop thread)
        if self.kinds is not None and event.kind not in self.kinds:
            return
        q = w.queue
        if len(q) >= self.max_queue:
            w.note_overflow(event)
            return
        q.append(event)
        self._accepted += 1
        if len(q) >= self._wake_at and not w.wake.is_set():
            w.wake.set()

    def flush(self, timeout: float | None = 30.0) -> None:
        """Write everything queued so far to visible files now (blocks until done)."""
        if self._state != "recording":
            return
        if not self._writer.request_flush(timeout):
            raise TimeoutError(f"recording {self.session_id}: flush did not finish within {timeout} s")
        self._raise_if_failed()

    async def wait(self) -> None:
        """Wait until an async-iterable source is exhausted (then :meth:`stop` or leave ``async with``)."""
        if self._pump_task is None:
            raise RuntimeError(
                "wait() needs an async-iterable source (a manager or manual source never ends)"
            )
        await asyncio.shield(self._pump_task)

    def _detach_source(self) -> None:
        remove, self._remove_listener = self._remove_listener, None
        if remove is not None:
            try:
                remove()
            except Exception:
                logger.exception("recording %s: removing the manager listener failed", self.session_id)

    def _stop_now(self, reason: str) -> None:
        """Synchronous stop used by stop(), atexit and SIGTERM."""
        if self._state != "recording":
            return
        self._detach_source()
        self._state = "stopping"
        self._writer.stop(_STOP_TIMEOUT_S)
        self._state = "stopped"
        with _ACTIVE_LOCK:
            _ACTIVE.discard(self)
        s = self.stats
        logger.info(
            "recording %s stopped (%s): %d events in %d files, %d dropped",
            self.session_id,
            reason,
            s["written"],
            s["files"],
            s["dropped"],
        )

    def _raise_if_failed(self) -> None:
        if self._writer.error is not None:
            raise RecordingError(
                f"recording {self.session_id} into {self.path} failed: {self._writer.error!r}"
            ) from self._writer.error

    def stop(self) -> None:
        """Flush, close every file and finalise the manifest. Blocks until written; idempotent.

        From a coroutine prefer ``await recorder.aclose()``, which does the same off the loop.
        """
        task, self._pump_task = self._pump_task, None
        if task is not None and not task.done():
            task.cancel()
        if self._state == "recording":
            self._snapshot_bindings()
        self._stop_now("stop()")
        self._raise_if_failed()

    async def aclose(self) -> None:
        """Stop the source, then flush and close the files on a worker thread."""
        task, self._pump_task = self._pump_task, None
        if task is not None:
            if not task.done():
                task.cancel()
            await asyncio.wait([task])
        if self._state == "recording":
            self._detach_source()
            self._snapshot_bindings()
            await asyncio.to_thread(self._stop_now, "aclose()")
        self._raise_if_failed()
        if task is not None and not task.cancelled() and task.exception() is not None:
            raise RecordingError(
                f"recording {self.session_id}: the source raised; events up to the failure were written"
            ) from task.exception()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
