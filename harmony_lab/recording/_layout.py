"""The on-disk layout of a recording directory.

::

    <root>/_session.json                                  manifest of every session written here
    <root>/date=YYYY-MM-DD/channel=<escaped>/part-<session>-<first seq>.parquet

``<escaped>`` is the channel name percent-encoded (RFC 3986, every reserved character and ``~``
escaped), which pyarrow, duckdb and polars all decode back when reading hive partitions. Names whose
escaped form would exceed :data:`MAX_SEGMENT` bytes are shortened to ``<prefix>~<hash>``: the ``~``
marks them as not decodable, and the exact name is always in the files' ``channel`` column.
Files being written carry a leading ``.`` and a ``.tmp`` suffix, which every reader ignores.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import quote, unquote

MANIFEST_NAME = "_session.json"
LOCK_NAME = ".session.lock"
MAX_SEGMENT = 200
EMPTY_CHANNEL = "__HIVE_DEFAULT_PARTITION__"

_PART_RE = re.compile(r"^part-(?P<session>[^.]+?)-(?P<seq>-?\d+)(?:-(?P<dup>\d+))?\.parquet$")


def escape_channel(channel: str) -> str:
    """The directory-safe form of a channel name (see the module docstring)."""
    if channel == "":
        return EMPTY_CHANNEL
    escaped = quote(channel, safe="").replace("~", "%7E")
    if len(escaped) <= MAX_SEGMENT:
        return escaped
    digest = hashlib.sha256(channel.encode("utf-8")).hexdigest()[:16]
    prefix = escaped[: MAX_SEGMENT - 20]
    cut = prefix.rfind("%", len(prefix) - 2)  # never split a %XX escape
    if cut != -1:
        prefix = prefix[:cut]
    return f"{prefix}~{digest}"


def unescape_channel(segment: str) -> str | None:
    """The channel name for a directory segment, or None when it was shortened (not decodable)."""
    if segment == EMPTY_CHANNEL:
        return ""
    if "~" in segment:
        return None
    return unquote(segment)


def partition_dir(root: Path, day: date, channel: str) -> Path:
    return root / f"date={day.isoformat()}" / f"channel={escape_channel(channel)}"


def part_name(session_id: str, first_seq: int, dup: int = 0) -> str:
    suffix = f"-{dup}" if dup else ""
    return f"part-{session_id}-{first_seq}{suffix}.parquet"


def temp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


@dataclass(frozen=True, slots=True)
class PartFile:
    path: Path
    day: date | None
    channel: str | None
    """Decoded channel name; None when the directory name was shortened."""
    session_id: str
    first_seq: int
    dup: int

    @property
    def sort_key(self) -> tuple[object, ...]:
        return (self.day or date.min, self.session_id, self.first_seq, self.dup, str(self.path))


def _parse_segment(name: str, key: str) -> str | None:
    prefix = f"{key}="
    return name[len(prefix) :] if name.startswith(prefix) else None


def iter_parts(root: Path) -> Iterator[PartFile]:
    """Every visible part file under ``root`` (hidden, temporary and foreign files are skipped)."""
    root = Path(root)
    if root.is_file():
        m = _PART_RE.match(root.name)
        yield PartFile(root, None, None, m["session"] if m else "", int(m["seq"]) if m else 0, 0)
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        here = Path(dirpath)
        rel = here.relative_to(root).parts
        day: date | None = None
        channel: str | None = None
        for seg in rel:
            if (value := _parse_segment(seg, "date")) is not None:
                try:
                    day = date.fromisoformat(value)
                except ValueError:
                    day = None
            elif (value := _parse_segment(seg, "channel")) is not None:
                channel = unescape_channel(value)
        for fn in sorted(filenames):
            if fn.startswith((".", "_")) or not fn.endswith(".parquet"):
                continue
            m = _PART_RE.match(fn)
            if m is None:
                yield PartFile(here / fn, day, channel, "", 0, 0)
                continue
            yield PartFile(here / fn, day, channel, m["session"], int(m["seq"]), int(m["dup"] or 0))
