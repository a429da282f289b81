"""Player: scrub through a recording and see the tables, roster and status timeline as they were.

The player holds one :class:`~harmony_lab.frames.LiveFrame` per recorded table, a
:class:`PresenceRosterWidget` and a :class:`StatusTimelineWidget`, and keeps all of them at one
instant of the recording, the *position*:

* **seek** to an instant: every frame takes the table's state there from a
  :class:`~harmony_lab.frames.SeekIndex` (the same frame as :meth:`LiveFrame.at
  <harmony_lab.frames.LiveFrame.at>`), and the roster and timeline are rebuilt from the recording's
  presence, status, gap, heartbeat and typing events up to it (the newest 5 000 of them, found in a
  time index of those events). The indexes are built on a worker thread when the player opens
  (status reason ``indexing…``); a seek waits for them and runs on a worker thread too;
* **play**: the events after the position stream from DuckDB in arrival order and are applied at their
  recorded pace divided by ``speed`` (0.1× to 100×); the position advances with the clock;
* at the end of the recording playing stops (``status`` becomes ``finished``).

Seeking while playing goes on playing from the new position. Seeks from the scrubber coalesce: while
one is computed only the latest request waits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import traitlets

from harmony_lab._strict import strict_kwargs
from harmony_lab.events import EventKind, RealtimeEvent
from harmony_lab.frames import Instant, LiveFrame, SeekIndex, adopt, connect, instant_us, parse_instant
from harmony_lab.recording import events_from_table, part_files
from harmony_lab.widgets import _assets
from harmony_lab.widgets._base import StateWidget
from harmony_lab.widgets._roster import PresenceRosterWidget
from harmony_lab.widgets._timeline import StatusTimelineWidget

logger = logging.getLogger(__name__)

__all__ = ["Player"]

MIN_SPEED = 0.1
MAX_SPEED = 100.0
MAX_TABLES = 20
"""Tables a player drives at most (pass ``tables=`` to choose them)."""
MAX_SIDE_EVENTS = 5_000
"""Presence, status, gap and heartbeat events before a seek's instant that rebuild the roster and
timeline (the newest ones; the timeline shows the last minutes anyway)."""
MAX_TRACK_EVENTS = 100_000
"""Status events read for the scrubber's track."""
_TYPING_TABLE = "typing_indicators"
MAX_TRACK_SPANS = 2_000
"""Status spans drawn on the scrubber's track (the longest are kept)."""
_SIDE_KINDS = ("status", "presence", "gap", "heartbeat")
_ORDER = "received_at, session_id, received_mono_ns, seq"
_BATCH = 2048
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(milliseconds=1)


def _from_ms(ms: float) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class _Cursor:
    """The recording's events after an instant, in arrival order, read by a worker thread.

    At most a few batches wait for the loop (the thread blocks meanwhile); ``close()`` stops it.
    """

    _AHEAD = 4

    def __init__(self, parts: list[str], after: datetime, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[list[RealtimeEvent] | BaseException | None] = asyncio.Queue()
        self._room = threading.Semaphore(self._AHEAD)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(parts, after), daemon=True, name="Player")
        self._thread.start()

    def _read(self, parts: list[str], after: datetime) -> None:
        try:
            con = connect()
            try:
                files = "[" + ", ".join(_lit(p) for p in parts) + "]"
                reader = con.sql(
                    f"SELECT * FROM read_parquet({files}, hive_partitioning = false) "
                    f"WHERE received_at > {_lit(after.isoformat())}::TIMESTAMPTZ ORDER BY {_ORDER}"
                ).to_arrow_reader(_BATCH)
                for batch in reader:
                    if self._stop.is_set():
                        return
                    self._put(list(events_from_table(batch)))
            finally:
                con.close()
            self._put(None)
        except Exception as exc:  # handed to the loop, which raises it
            self._put(exc)

    def _put(self, item: list[RealtimeEvent] | BaseException | None) -> None:
        while not self._stop.is_set():
            if self._room.acquire(timeout=0.1):
                try:
                    self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
                except RuntimeError:  # the loop is closed: nobody is reading any more
                    self._stop.set()
                return

    async def next(self) -> list[RealtimeEvent] | None:
        item = await self._queue.get()
        self._room.release()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()


class Player(StateWidget):
    """Play, pause and scrub a recording; its frames, roster and timeline follow the position.

    ``recording`` is a directory written by :class:`~harmony_lab.Recorder`. ``tables`` chooses the
    tables to show (default: every table with change events, at most 20), ``keys`` maps a table to
    its key column(s) when the recorded events carry no primary key. ``speed`` is 0.1 to 100.

    In a notebook::

        player = Player("recordings/today")
        player.view()                     # controls, scrubber, tables, roster and timeline
        await player.seek(player.start + timedelta(seconds=30))
        player.play(speed=10)

    :meth:`frame` gives a table's frame, ``roster`` and ``timeline`` the widgets.
    """

    _esm = _assets.esm("player.js")
    _css = _assets.css() + "\n" + _assets.css("player.css")

    title = traitlets.Unicode("Player").tag(sync=True)
    start_ms = traitlets.Int(0).tag(sync=True)
    end_ms = traitlets.Int(0).tag(sync=True)
    position_ms = traitlets.Int(0).tag(sync=True)
    playing = traitlets.Bool(False).tag(sync=True)
    speed = traitlets.Float(1.0).tag(sync=True)
    seeking = traitlets.Bool(False).tag(sync=True)
    track = traitlets.List().tag(sync=True)
    tables = traitlets.List().tag(sync=True)
    rows = traitlets.Dict().tag(sync=True)

    # defaults so that close() works when __init__ failed half-way
    _task: asyncio.Task[None] | None = None
    _seek_task: asyncio.Task[None] | None = None
    _anchor: tuple[float, datetime] | None = None
    _side_widgets: tuple[Any, ...] = ()

    @strict_kwargs
    def __init__(
        self,
        recording: str | os.PathLike[str],
        *,
        tables: Sequence[str] | None = None,
        keys: Mapping[str, str | Sequence[str]] | None = None,
        speed: float = 1.0,
        title: str = "Player",
        max_hz: float = 10.0,
        layout: Any = None,
    ) -> None:
        self._check_rates(max_hz, 200_000)
        kw: dict[str, Any] = {} if layout is None else {"layout": layout}
        super().__init__(title=title, speed=self._valid_speed(speed), **kw)
        self.recording = Path(recording)
        self._parts = part_files(self.recording)
        self._keys = dict(keys or {})
        self._task: asyncio.Task[None] | None = None
        self._seek_task: asyncio.Task[None] | None = None
        self._seek_target: datetime | None = None
        self._anchor: tuple[float, datetime] | None = None  # (loop time, position) while playing
        self._finished = False
        self._status_rows: list[tuple[int, str, str]] = []
        start, end, found = self._scan()
        self.start, self.end = start, end
        chosen = list(found if tables is None else tables)
        if tables is None and len(chosen) > MAX_TABLES:
            logger.warning(
                "Player: %d tables recorded; showing the first %d (pass tables=)", len(chosen), MAX_TABLES
            )
            chosen = chosen[:MAX_TABLES]
        for t in chosen:
            if not isinstance(t, str) or not t:
                raise TypeError(f"tables must be table names (str); got {t!r}")
        self._frames: dict[str, LiveFrame] = {
            t: LiveFrame(None, t, key=self._keys.get(t), max_rows=None) for t in chosen
        }
        self._position = start
        self._next_at: datetime | None = None  # while playing: no event not yet applied is earlier
        self.roster = PresenceRosterWidget(None, wall_clock=self._position_s)
        self.timeline = StatusTimelineWidget(None, wall_clock=self._position_s, title="Connection status")
        self._side_widgets = (self.roster, self.timeline)
        self._indexes: dict[str, SeekIndex] = {}
        self._side_index: tuple[np.ndarray, np.ndarray, np.ndarray, list[str]] | None = None
        self._index_lock = threading.RLock()
        self._init_stream(max_hz=max_hz, max_bytes_per_s=200_000, stats_interval_s=1.0)
        with self.hold_sync():
            self.start_ms, self.end_ms = _ms(start), _ms(end)
            self.position_ms = _ms(start)
            self.tables = chosen
            self.track = self._track()
            self._refresh_status()
        self._apply_state(start, *self._states_at(start, indexed=False))
        # seeks wait for the indexes (the status line says "indexing…" meanwhile)
        self._stop_indexing = threading.Event()
        self._indexing = threading.Thread(target=self._build_indexes, daemon=True, name="Player-index")
        self._indexing.start()

    # ------------------------------------------------------------------ opening

    def _scan(self) -> tuple[datetime, datetime, list[str]]:
        """The recording's time range, its tables and its status changes (for the track)."""
        if not self._parts:
            now = datetime.now(UTC)
            return now, now, []
        con = connect()
        try:
            files = "[" + ", ".join(_lit(p) for p in self._parts) + "]"
            con.execute(
                f"CREATE TEMP VIEW ev AS SELECT * FROM read_parquet({files}, hive_partitioning = false)"
            )
            lo, hi = con.execute("SELECT min(received_at), max(received_at) FROM ev").fetchall()[0]
            names = [
                r[0]
                for r in con.execute(
                    'SELECT "table" FROM ev WHERE kind = \'change\' AND "table" IS NOT NULL '
                    'GROUP BY "table" ORDER BY min(received_at) LIMIT 1000'
                ).fetchall()
            ]
            self._status_rows = [
                (int(t), str(ch), str(st))
                for t, ch, st in con.execute(
                    "SELECT epoch_ms(received_at), channel, status FROM ev WHERE kind = 'status' "
                    f"AND status IS NOT NULL ORDER BY {_ORDER} LIMIT {MAX_TRACK_EVENTS}"
                ).fetchall()
            ]
        finally:
            con.close()
        if lo is None:
            now = datetime.now(UTC)
            return now, now, names
        return lo.astimezone(UTC), hi.astimezone(UTC), names

    def _track(self) -> list[list[Any]]:
        """Status spans for the scrubber: ``[start_ms, end_ms, status, channel]``, the longest kept."""
        spans: list[list[Any]] = []
        open_: dict[str, list[Any]] = {}
        for t, channel, status in self._status_rows:
            prev = open_.get(channel)
            if prev is not None:
                prev[1] = t
            span = [t, None, status, channel]
            spans.append(span)
            open_[channel] = span
        end = _ms(self.end)
        for span in spans:
            if span[1] is None:
                span[1] = end
        if len(spans) > MAX_TRACK_SPANS:
            spans = sorted(sorted(spans, key=lambda s: s[0] - s[1])[:MAX_TRACK_SPANS], key=lambda s: s[0])
        return spans

    # ------------------------------------------------------------------ reading

    @property
    def position(self) -> datetime:
        """The instant of the recording the frames, roster and timeline show."""
        if self._anchor is not None and self._loop is not None:
            t0, p0 = self._anchor
            return min(self.end, p0 + timedelta(seconds=(self._loop.time() - t0) * self.speed))
        return self._position

    def _position_s(self) -> float:
        return self.position.timestamp()

    def frame(self, table: str) -> LiveFrame:
        """The frame of one table (it follows the position)."""
        try:
            return self._frames[table]
        except KeyError:
            raise KeyError(
                f"no table {table!r} in this player; its tables: {', '.join(self._frames)}"
            ) from None

    @property
    def frames(self) -> dict[str, LiveFrame]:
        return dict(self._frames)

    @property
    def finished(self) -> bool:
        """True once playing reached the end of the recording."""
        return self._finished

    def view(self) -> Any:
        """The controls, then each table's widget, the roster and the timeline, in one box."""
        import ipywidgets

        return ipywidgets.VBox(
            [self, *(f.widget() for f in self._frames.values()), self.roster, self.timeline]
        )

    # ------------------------------------------------------------------ control

    @staticmethod
    def _valid_speed(speed: Any) -> float:
        if (
            isinstance(speed, bool)
            or not isinstance(speed, int | float)
            or not MIN_SPEED <= speed <= MAX_SPEED
        ):
            raise ValueError(
                f"speed must be a number from {MIN_SPEED} to {MAX_SPEED:g} (× recorded pace); got {speed!r}"
            )
        return float(speed)

    def set_speed(self, speed: float) -> None:
        """Change the pace (0.1× to 100×); playing goes on from the current position."""
        value = self._valid_speed(speed)
        if self._anchor is not None and self._loop is not None:
            self._anchor = (self._loop.time(), self.position)
        self.speed = value
        self._mark_dirty()

    def play(self, *, speed: float | None = None) -> None:
        """Start (or go on) playing from the position; at the end of the recording it stops."""
        if speed is not None:
            self.set_speed(speed)
        if self._task is not None and not self._task.done():
            return
        loop = self._grab_loop()
        if loop is None:
            raise RuntimeError("Player.play() needs a running event loop (call it in a notebook cell)")
        if self._position >= self.end:
            self._position = self.start  # playing a finished recording starts it over
            self._seek_target = self.start
        self._finished = False
        self.playing = True
        self._task = loop.create_task(self._play(), name="Player.play")
        self._refresh_status()

    def pause(self) -> None:
        """Stop at the current position."""
        position = self.position
        if self._anchor is not None and self._next_at is not None:
            # the clock may have passed an event the playing loop has not applied yet: stop just before
            # it, so the frames show exactly the state at the position and playing resumes with it
            position = min(position, max(self._position, self._next_at - timedelta(microseconds=1)))
        self._position = position
        self._anchor = None
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
        self.playing = False
        self._refresh_status()
        self._mark_dirty()

    async def seek(self, instant: Instant | float) -> None:
        """Show the recording as it was at ``instant`` (a datetime, ``pandas.Timestamp``, ISO string, or
        seconds from the start as a number); playing goes on from there."""
        if isinstance(instant, int | float) and not isinstance(instant, bool):
            when = self.start + timedelta(seconds=float(instant))
        else:
            when = parse_instant(instant)
        self._seek_target = min(self.end, max(self.start, when))
        if self._seek_task is None or self._seek_task.done():
            self._seek_task = asyncio.get_running_loop().create_task(self._seek_loop(), name="Player.seek")
        task = self._seek_task
        await asyncio.shield(task)

    async def _seek_loop(self) -> None:
        self.seeking = True
        try:
            while self._seek_target is not None:
                when, self._seek_target = self._seek_target, None
                was_playing = self._task is not None and not self._task.done()
                if was_playing:
                    self.pause()
                self._apply_state(when, *await asyncio.to_thread(self._states_at, when))
                if was_playing and self._seek_target is None:
                    self.play()
        finally:
            self.seeking = False

    def _index(self, table: str) -> SeekIndex:
        """The table's seek index, built on first use (on the seeking worker thread)."""
        with self._index_lock:
            index = self._indexes.get(table)
            if index is None:
                index = self._indexes[table] = SeekIndex(
                    LiveFrame, self.recording, table, key=self._keys.get(table)
                )
            return index

    def _build_indexes(self) -> None:
        """Build every table's seek index and the side-event index (the opening worker thread)."""
        try:
            self._side()
            for t in list(self._frames):
                if self._stop_indexing.is_set():  # closed meanwhile
                    return
                self._index(t)
        except Exception:
            logger.exception("Player: indexing %s failed (seeks build what they need)", self.recording)

    def _side(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """The presence/status/gap/heartbeat/typing events in arrival order: time, file and row each."""
        with self._index_lock:
            if self._side_index is None:
                self._side_index = self._read_side()
            return self._side_index

    def _side_sql(self) -> tuple[str, str]:
        """The parts as a DuckDB list literal, and the condition selecting the side events."""
        files = "[" + ", ".join(_lit(p) for p in self._parts) + "]"
        kinds = ", ".join(_lit(k) for k in _SIDE_KINDS)
        return files, f"kind IN ({kinds}) OR (kind = 'change' AND \"table\" = {_lit(_TYPING_TABLE)})"

    def _read_side(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        if not self._parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), []
        con = connect()
        try:
            files, side = self._side_sql()
            got = con.sql(
                f"SELECT epoch_us(received_at) AS t, filename AS f, file_row_number AS r FROM read_parquet("
                f"{files}, filename = true, file_row_number = true, hive_partitioning = false) "
                f"WHERE {side} ORDER BY {_ORDER}"
            ).to_arrow_table()
        finally:
            con.close()
        names = got.column("f").combine_chunks()
        if pa.types.is_string_view(names.type):
            names = names.cast(pa.string())
        enc = pc.dictionary_encode(names)
        return (
            np.asarray(got.column("t").to_numpy(), dtype=np.int64),
            np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64),
            np.asarray(got.column("r").to_numpy(), dtype=np.int64),
            [str(x) for x in enc.dictionary.to_pylist()],
        )

    def _side_events(self, when: datetime) -> list[RealtimeEvent]:
        """The newest side events up to ``when``: a binary search, then their rows read by row group."""
        t, f, r, names = self._side()
        n = int(np.searchsorted(t, instant_us(when), side="right"))
        lo = max(0, n - MAX_SIDE_EVENTS)
        if n <= lo:
            return []
        sel_f, sel_r = f[lo:n], r[lo:n]
        pieces: list[pa.Table] = []
        where: list[np.ndarray] = []
        for fi in np.unique(sel_f).tolist():
            at = np.flatnonzero(sel_f == fi)
            want = sel_r[at]
            pf = pq.ParquetFile(names[fi])
            meta = pf.metadata
            bounds = np.concatenate(
                [[0], np.cumsum([meta.row_group(i).num_rows for i in range(meta.num_row_groups)])]
            ).astype(np.int64)
            group_of = np.searchsorted(bounds, want, side="right") - 1
            groups = np.unique(group_of)
            table = pf.read_row_groups(groups.tolist(), use_threads=False)
            starts = np.concatenate([[0], np.cumsum(bounds[groups + 1] - bounds[groups])])
            local = starts[np.searchsorted(groups, group_of)] + want - bounds[group_of]
            pieces.append(table.take(pa.array(local)))
            where.append(at)
        merged = pa.concat_tables(pieces, promote_options="permissive")
        order = np.argsort(np.concatenate(where), kind="stable")
        return list(events_from_table(merged.take(pa.array(order))))

    def _states_at(
        self, when: datetime, *, indexed: bool = True
    ) -> tuple[dict[str, LiveFrame], list[RealtimeEvent]]:
        """Each table at ``when`` and the newest presence/status/gap/heartbeat events up to it (blocking)."""
        if indexed:
            frames = {t: self._index(t).at(when) for t in self._frames}
            return frames, self._side_events(when)
        frames = {t: LiveFrame.at(self.recording, t, when, key=self._keys.get(t)) for t in self._frames}
        if not self._parts:
            return frames, []
        con = connect()
        try:
            files, side = self._side_sql()
            table = con.sql(
                f"SELECT * FROM (SELECT * FROM read_parquet({files}, hive_partitioning = false) "
                f"WHERE ({side}) AND received_at <= {_lit(when.isoformat())}::TIMESTAMPTZ "
                f"ORDER BY {_ORDER} DESC LIMIT {MAX_SIDE_EVENTS}) ORDER BY {_ORDER}"
            ).to_arrow_table()
        finally:
            con.close()
        return frames, list(events_from_table(table))

    def _apply_state(
        self, when: datetime, frames: Mapping[str, LiveFrame], side: list[RealtimeEvent]
    ) -> None:
        for table, state in frames.items():
            adopt(self._frames[table], state)
        self._position = when
        self._finished = False
        self.roster.reset()
        self.timeline.reset()
        for ev in side:
            self._side_apply(ev)
        self._mark_dirty()

    def _side_apply(self, ev: RealtimeEvent) -> None:
        if ev.kind is EventKind.PRESENCE or (ev.kind is EventKind.CHANGE and ev.table == _TYPING_TABLE):
            self.roster.apply(ev)
        if ev.kind in (EventKind.STATUS, EventKind.GAP, EventKind.HEARTBEAT):
            self.timeline.apply(ev)

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        if self._seek_target is not None:
            when, self._seek_target = self._seek_target, None
            self._apply_state(when, *await asyncio.to_thread(self._states_at, when))
        self._anchor = (loop.time(), self._position)
        cursor = _Cursor(self._parts, self._position, loop) if self._parts else None
        try:
            while cursor is not None:
                self._next_at = self._position  # the next batch may start at the last applied instant
                batch = await cursor.next()
                if batch is None:
                    break
                for ev in batch:
                    self._next_at = ev.received_at
                    await self._wait_for(ev.received_at)
                    self._apply(ev)
            self._next_at = None
            await self._wait_for(self.end)
            self._position = self.end
            self._anchor = None
            self._finished = True
            self.playing = False
            self._refresh_status()
            self._mark_dirty()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Player: playing %s failed", self.recording)
            self._anchor = None
            self.playing = False
            self.status, self.reason = "error", "playing the recording failed (see the log)"
        finally:
            if cursor is not None:
                cursor.close()

    async def _wait_for(self, when: datetime) -> None:
        """Sleep until the playing clock reaches ``when`` (the speed may change meanwhile)."""
        loop = asyncio.get_running_loop()
        while self._anchor is not None:
            t0, p0 = self._anchor
            due = t0 + (when - p0).total_seconds() / self.speed
            delay = due - loop.time()
            if delay <= 0:
                return
            self._mark_dirty()  # the position moved: the scrubber follows at the UI tick
            await asyncio.sleep(min(delay, 0.1))

    def _apply(self, ev: RealtimeEvent) -> None:
        if ev.kind is EventKind.CHANGE and ev.table in self._frames:
            self._frames[ev.table].apply(ev)
        self._side_apply(ev)
        self._position = ev.received_at

    # ------------------------------------------------------------------ widget plumbing

    def _on_other_msg(self, content: dict[str, Any], buffers: list[Any]) -> None:
        kind = content.get("type")
        if kind == "play":
            self.play()
        elif kind == "pause":
            self.pause()
        elif kind == "speed":
            try:
                self.set_speed(float(content.get("value")))  # type: ignore[arg-type]
            except (TypeError, ValueError) as exc:
                logger.info("Player: ignoring a speed from the view (%s)", exc)
        elif kind == "seek":
            ms = content.get("ms")
            if isinstance(ms, int | float) and not isinstance(ms, bool):
                when = _from_ms(min(max(float(ms), self.start_ms), self.end_ms))
                self._request_seek(when)
        else:
            super()._on_other_msg(content, buffers)

    def _request_seek(self, when: datetime) -> None:
        self._seek_target = when
        if self._seek_task is None or self._seek_task.done():
            loop = self._grab_loop()
            if loop is not None:
                self._seek_task = loop.create_task(self._seek_loop(), name="Player.seek")

    def _live_status(self) -> str:
        if self._finished:
            return "finished"
        return "playing" if self.playing else "paused"

    def _live_reason(self) -> str:
        indexing = getattr(self, "_indexing", None)
        return "indexing…" if indexing is not None and indexing.is_alive() else ""

    def _push(self) -> None:
        with self.hold_sync():
            self.position_ms = _ms(self.position)
            self.rows = {t: len(f) for t, f in self._frames.items()}
            self._refresh_status()

    def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        self._anchor = None
        if self._seek_task is not None:
            self._seek_task.cancel()
        stop = getattr(self, "_stop_indexing", None)
        if stop is not None:
            stop.set()
        for w in self._side_widgets:
            w.close()
        for index in getattr(self, "_indexes", {}).values():
            index.close()
        super().close()

    def __repr__(self) -> str:
        return (
            f"<Player {self.recording} {self.position.isoformat()} of {self.start.isoformat()}…"
            f"{self.end.isoformat()} {self._live_status()} speed={self.speed:g}× tables={list(self._frames)}>"
        )
