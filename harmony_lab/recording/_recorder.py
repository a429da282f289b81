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
Active recorders are flushed and closed at interpreter exit (a Jupyter kernel shutdown or restart)
and on SIGTERM, as :mod:`harmony_lab._lifetime` describes (the previous SIGTERM handler, or the
default action, runs afterwards). The writer thread lives in :mod:`~harmony_lab.recording._writer`,
the manifest in :mod:`~harmony_lab.recording._manifest`.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import os
import platform
import secrets
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from harmony_lab._feed import pump, source_kind
from harmony_lab._lifetime import on_exit
from harmony_lab._strict import strict_kwargs
from harmony_lab.events import EventKind, RealtimeEvent
from harmony_lab.recording._manifest import read_manifest
from harmony_lab.recording._writer import Writer

logger = logging.getLogger(__name__)

__all__ = ["Recorder", "RecordingError", "read_manifest"]

_COMPRESSIONS = ("zstd", "snappy", "gzip", "brotli", "lz4", "none")
_STOP_TIMEOUT_S = 120.0


class RecordingError(RuntimeError):
    """The recorder's writer failed (disk full, permissions…); the cause is chained."""


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


# --------------------------------------------------------------------------- the public class


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

    @strict_kwargs
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
    ) -> None:
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
        self._writer = Writer(self)
        self._remove_listener: Callable[[], Any] | None = None
        self._forget_exit: Callable[[], None] = lambda: None
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
        self._forget_exit = on_exit(f"recording {self.session_id} into {self.path}", self._stop_now)
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
        self._forget_exit()
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
