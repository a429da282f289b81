"""``_session.json``: the manifest of every recording session written into a directory.

The manifest is read by people and tools, and may come from anywhere (a recording copied off
another machine), so reading it is bounded: at most :data:`MAX_MANIFEST_BYTES`, nesting no deeper
than the JSON parser's recursion limit, and a fixed shape (an object with a ``sessions`` object
whose values are objects). Anything else raises :class:`ValueError` with one line saying why.
Writers replace one session's entry at a time under an ``flock`` and an atomic rename, so several
processes can record into the same directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harmony_lab.recording._layout import LOCK_NAME, MANIFEST_NAME

if TYPE_CHECKING:
    from harmony_lab.recording._writer import Writer

logger = logging.getLogger(__name__)

__all__ = ["MAX_MANIFEST_BYTES", "iso", "read_manifest", "session_entry", "update_manifest"]

MAX_MANIFEST_GAPS = 1000
"""A session entry lists at most this many gaps (``gaps_total`` counts them all)."""

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
"""A manifest holds one entry of a few KiB per session (at most 1000 gaps each): 64 MiB is thousands."""


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    with open(root / LOCK_NAME, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def read_manifest(root: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``_session.json`` of a recording directory (``{"format": 1, "sessions": {...}}``).

    Raises :class:`ValueError` (one line, naming the file) when it is too large, too deeply nested,
    not JSON or not shaped like a manifest; a missing manifest is an empty one.
    """
    path = Path(root) / MANIFEST_NAME
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below; open first so a missing file is one check
    except FileNotFoundError:
        return {"format": 1, "sessions": {}}
    with fh:
        raw = fh.read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ValueError(
            f"{path} is larger than {MAX_MANIFEST_BYTES // (1024 * 1024)} MiB: not a recording manifest "
            "(move it away to read the recording's files)"
        )
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ValueError(f"{path} is nested too deeply to be a recording manifest") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("sessions"), dict):
        raise ValueError(f"{path} is not a harmony_lab recording manifest (no 'sessions' object)")
    bad = [sid for sid, entry in data["sessions"].items() if not isinstance(entry, dict)]
    if bad:
        raise ValueError(
            f"{path} is not a harmony_lab recording manifest (session {bad[0]!r} is not an object)"
        )
    return data


def update_manifest(root: Path, session_id: str, entry: dict[str, Any]) -> None:
    """Replace one session's entry in ``_session.json`` atomically (safe across processes).

    An unreadable manifest is moved aside to ``_session.json.corrupt-<time>`` (logged) and a new one
    started, so a damaged file never stops a recording.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / MANIFEST_NAME
    with _locked(root):
        try:
            data = read_manifest(root)
        except ValueError:
            broken = path.with_name(f"{MANIFEST_NAME}.corrupt-{int(time.time())}")
            os.replace(path, broken)
            logger.exception("recording manifest %s was unreadable; moved it to %s", path, broken.name)
            data = {"format": 1, "sessions": {}}
        data["sessions"][session_id] = entry
        tmp = path.with_name(f".{MANIFEST_NAME}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def iso(dt: datetime | None) -> str | None:
    """An instant as the manifest writes it: ISO 8601 in UTC (None stays None)."""
    return None if dt is None else dt.astimezone(UTC).isoformat()


def session_entry(writer: Writer, *, final: bool) -> dict[str, Any]:
    """The manifest entry of the session ``writer`` records: settings, versions, counts, gaps, status."""
    rec = writer.rec
    total, by_channel = writer.totals()
    gaps = sorted(total.gaps, key=lambda g: (g["start"] or "", g["seq"]))
    return {
        "session_id": writer.session_id,
        "status": ("failed" if writer.error else "stopped") if final else "recording",
        "started_at": iso(rec.started_at),
        "ended_at": iso(datetime.now(UTC)) if final else None,
        "last_flush_at": iso(writer.last_flush_at),
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
        "files": writer.files,
        "bytes": total.nbytes,
        "first_seq": total.first_seq,
        "last_seq": total.last_seq,
        "first_received_at": iso(total.first_at),
        "last_received_at": iso(total.last_at),
        "counts": {
            "kind": dict(sorted(total.kinds.items())),
            "channel": dict(sorted(by_channel.items())),
        },
        "gaps_total": len(gaps),
        "gaps": gaps[:MAX_MANIFEST_GAPS],
        "dropped": writer.dropped,
        "dropped_by_channel": dict(writer.dropped_by_channel),
    }
