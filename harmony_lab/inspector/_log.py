"""The Inspector's message log: a bounded ring buffer of everything observed, with filters and pause.

Pure Python (no I/O, no widgets): the widget streams from it and ``Inspector.log`` reads it.

Each entry is one observed message: an increasing ``id``, the UTC ``time`` it arrived, the ``channel``,
its ``kind`` (one of :data:`KINDS`), the ``event`` (the broadcast event, INSERT/UPDATE/DELETE, the
presence op, the status…), a one-line ``summary`` and the whole message as JSON text (``detail``).

Memory is bounded twice: at most ``capacity`` entries and at most ``max_bytes`` of summary and detail
text; the oldest entries go first. A detail larger than ``max_detail_bytes`` is kept as a preview
(``{"truncated": true, "bytes": N, "preview": "…"}``) so that one huge message cannot evict the log.

Filters (the same rules the front end applies): ``kind`` and ``channel`` match exactly (a string or a
collection of strings), ``event`` matches exactly ignoring case, ``text`` is a case-insensitive plain
substring (no patterns) of the channel, event or summary.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Collection, Iterator
from datetime import datetime
from typing import Any

__all__ = ["KINDS", "LogEntry", "LogFilter", "MessageLog"]

KINDS = ("postgres_changes", "broadcast", "presence", "system", "status")

_MAX_FILTER_TEXT = 200


@dataclasses.dataclass(frozen=True, slots=True)
class LogEntry:
    """One observed message."""

    id: int
    time: datetime
    channel: str
    kind: str
    event: str
    summary: str
    detail: str  # JSON text

    @property
    def size(self) -> int:
        return len(self.summary) + len(self.detail) + len(self.channel) + len(self.event)

    def data(self) -> Any:
        """The detail, parsed."""
        return json.loads(self.detail)


def _names(owner: str, value: str | Collection[str] | None) -> frozenset[str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return frozenset((value,))
    items = list(value)
    if not all(isinstance(v, str) for v in items):
        raise TypeError(f"{owner} filter takes a string or a collection of strings; got {value!r}")
    return frozenset(items) or None


@dataclasses.dataclass(frozen=True, slots=True)
class LogFilter:
    """Which entries to show; ``None`` (or empty) means no restriction on that field."""

    kind: frozenset[str] | None = None
    channel: frozenset[str] | None = None
    event: frozenset[str] | None = None
    text: str = ""

    @classmethod
    def of(
        cls,
        *,
        kind: str | Collection[str] | None = None,
        channel: str | Collection[str] | None = None,
        event: str | Collection[str] | None = None,
        text: str | None = None,
    ) -> LogFilter:
        kinds = _names("kind", kind)
        if kinds is not None:
            unknown = sorted(kinds - set(KINDS))
            if unknown:
                raise ValueError(
                    f"unknown kind(s) {', '.join(map(repr, unknown))}; kinds are {', '.join(KINDS)}"
                )
        events = _names("event", event)
        if text is not None and not isinstance(text, str):
            raise TypeError(f"text filter must be a string; got {type(text).__name__}")
        text = (text or "").strip()
        if len(text) > _MAX_FILTER_TEXT:
            raise ValueError(f"text filter is {len(text)} characters; at most {_MAX_FILTER_TEXT}")
        return cls(
            kind=kinds,
            channel=_names("channel", channel),
            event=frozenset(e.lower() for e in events) if events is not None else None,
            text=text.lower(),
        )

    @property
    def active(self) -> bool:
        return bool(self.kind or self.channel or self.event or self.text)

    def __call__(self, entry: LogEntry) -> bool:
        if self.kind is not None and entry.kind not in self.kind:
            return False
        if self.channel is not None and entry.channel not in self.channel:
            return False
        if self.event is not None and entry.event.lower() not in self.event:
            return False
        if self.text:
            t = self.text
            return t in entry.summary.lower() or t in entry.channel.lower() or t in entry.event.lower()
        return True

    def as_dict(self) -> dict[str, Any]:
        """The JSON form the front end uses (lists, sorted)."""
        return {
            "kind": sorted(self.kind or ()),
            "channel": sorted(self.channel or ()),
            "event": sorted(self.event or ()),
            "text": self.text,
        }


def _check_positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


class MessageLog:
    """A ring buffer of :class:`LogEntry` (see the module docstring)."""

    def __init__(
        self,
        capacity: int = 100_000,
        *,
        max_bytes: int = 100_000_000,
        max_detail_bytes: int = 65_536,
        max_summary_chars: int = 160,
    ) -> None:
        self.capacity = _check_positive("capacity", capacity)
        self.max_bytes = _check_positive("max_bytes", max_bytes)
        self.max_detail_bytes = _check_positive("max_detail_bytes", max_detail_bytes)
        self.max_summary_chars = _check_positive("max_summary_chars", max_summary_chars)
        self._entries: collections.deque[LogEntry] = collections.deque()
        self._bytes = 0
        self._next_id = 1
        self.evicted = 0
        self.truncated = 0
        self._paused_at: int | None = None  # the id of the last entry before the pause

    # ------------------------------------------------------------------ writing

    def append(
        self, *, time: datetime, channel: str, kind: str, event: str, summary: str, detail: Any
    ) -> LogEntry:
        """Add one message; ``detail`` is any JSON-able value (non-JSON values become strings)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
        if time.tzinfo is None:
            raise ValueError("time must be timezone-aware (UTC)")
        text = json.dumps(detail, default=str, ensure_ascii=False, separators=(",", ":"))
        if len(text) > self.max_detail_bytes:
            self.truncated += 1
            text = json.dumps(
                {"truncated": True, "bytes": len(text), "preview": text[: self.max_detail_bytes // 2]},
                ensure_ascii=False,
            )
        line = " ".join(str(summary).split())
        if len(line) > self.max_summary_chars:
            line = line[: self.max_summary_chars - 1] + "…"
        entry = LogEntry(
            id=self._next_id,
            time=time,
            channel=str(channel)[:200],
            kind=kind,
            event=str(event)[:200],
            summary=line,
            detail=text,
        )
        self._next_id += 1
        self._entries.append(entry)
        self._bytes += entry.size
        while len(self._entries) > self.capacity or (self._bytes > self.max_bytes and len(self._entries) > 1):
            old = self._entries.popleft()
            self._bytes -= old.size
            self.evicted += 1
        return entry

    def clear(self) -> None:
        """Forget every entry (ids keep increasing)."""
        self.evicted += len(self._entries)
        self._entries.clear()
        self._bytes = 0
        if self._paused_at is not None:
            self._paused_at = self.last_id

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[LogEntry]:
        return iter(list(self._entries))

    @property
    def nbytes(self) -> int:
        """Text held (summaries, details, channels, events), in characters."""
        return self._bytes

    @property
    def total(self) -> int:
        """Entries ever appended."""
        return self._next_id - 1

    @property
    def first_id(self) -> int:
        """The id of the oldest entry held (``last_id + 1`` when empty)."""
        return self._entries[0].id if self._entries else self._next_id

    @property
    def last_id(self) -> int:
        return self._next_id - 1

    def get(self, entry_id: int) -> LogEntry | None:
        """The entry with ``entry_id``, or None once evicted (O(1))."""
        if not self._entries:
            return None
        i = entry_id - self._entries[0].id
        if 0 <= i < len(self._entries):
            return self._entries[i]
        return None

    def since(self, entry_id: int, limit: int | None = None) -> list[LogEntry]:
        """Entries with an id greater than ``entry_id`` (oldest first), at most ``limit``."""
        if not self._entries:
            return []
        start = max(0, entry_id + 1 - self._entries[0].id)
        stop = len(self._entries) if limit is None else min(len(self._entries), start + limit)
        return [self._entries[i] for i in range(start, stop)]

    def select(
        self,
        flt: LogFilter | None = None,
        *,
        kind: str | Collection[str] | None = None,
        channel: str | Collection[str] | None = None,
        event: str | Collection[str] | None = None,
        text: str | None = None,
    ) -> list[LogEntry]:
        """Entries matching ``flt`` (or the keyword filters), oldest first."""
        if flt is None:
            flt = LogFilter.of(kind=kind, channel=channel, event=event, text=text)
        if not flt.active:
            return list(self._entries)
        return [e for e in self._entries if flt(e)]

    # ------------------------------------------------------------------ pause

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def pause(self) -> None:
        """Freeze the view: entries keep arriving (and count as new) but the view shows up to here."""
        if self._paused_at is None:
            self._paused_at = self.last_id

    def resume(self) -> int:
        """Unfreeze; returns how many entries arrived while paused."""
        n = self.new_count
        self._paused_at = None
        return n

    @property
    def new_count(self) -> int:
        """Entries appended since :meth:`pause` (0 when not paused)."""
        return 0 if self._paused_at is None else self.last_id - self._paused_at

    @property
    def visible_last_id(self) -> int:
        """The newest id the view shows: the pause point while paused, else the newest entry."""
        return self.last_id if self._paused_at is None else self._paused_at

    # ------------------------------------------------------------------ pandas

    def to_frame(self, entries: list[LogEntry] | None = None) -> Any:
        """A DataFrame with columns id, time, channel, kind, event, summary, detail (JSON text)."""
        import pandas as pd

        rows = list(self._entries) if entries is None else entries
        cols = ("id", "time", "channel", "kind", "event", "summary", "detail")
        frame = pd.DataFrame([dataclasses.astuple(e) for e in rows], columns=list(cols))
        frame["id"] = frame["id"].astype("int64")
        frame["time"] = pd.to_datetime(frame["time"], utc=True)
        for c in ("channel", "kind", "event", "summary", "detail"):
            frame[c] = frame[c].astype("string")
        return frame

    def __repr__(self) -> str:
        paused = f" paused ({self.new_count} new)" if self.paused else ""
        return f"<MessageLog {len(self)}/{self.capacity} entries, {self.evicted} evicted{paused}>"
