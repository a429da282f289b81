"""Reading part files that may be damaged: a truncated or corrupt part is skipped, named and counted.

A recording directory can hold a part that cannot be read: a disk filled up during a copy, a file
was cut short by a transfer, or someone put foreign bytes there. Recorder itself never leaves such
a file behind (it renames complete files into place), so a damaged part is always outside damage;
losing the whole recording to it would be worse than losing that one file. Every reader therefore
checks each part's footer before reading, reads all parts together when they are all healthy, and
falls back to reading them one by one (to find the culprit) when a read fails in a data page.
Every skipped file produces one :class:`CorruptPartWarning` naming it and saying why.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from harmony_lab.recording._codec import SCHEMA
from harmony_lab.recording._layout import PartFile, iter_parts

logger = logging.getLogger(__name__)

__all__ = ["CorruptPartWarning", "SkippedPart", "part_files", "read_parts", "readable_parts", "warn_skipped"]

_REQUIRED = ("seq", "received_at", "kind", "channel")


class CorruptPartWarning(UserWarning):
    """A part file of a recording could not be read and was skipped (the message names it)."""


@dataclass(frozen=True, slots=True)
class SkippedPart:
    path: Path
    reason: str

    def message(self) -> str:
        return (
            f"skipping unreadable recording part {self.path}: {self.reason} (the other parts are read; "
            "move or delete this file to silence this warning)"
        )


OnSkip = Callable[[SkippedPart], None]


def warn_skipped(skipped: SkippedPart) -> None:
    """The default reaction to a damaged part: one warning naming it (stacklevel points at the caller)."""
    warnings.warn(skipped.message(), CorruptPartWarning, stacklevel=4)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"


def readable_parts(parts: Sequence[PartFile], on_skip: OnSkip = warn_skipped) -> list[PartFile]:
    """The parts whose Parquet footer reads and that have the recording's key columns."""
    out = []
    for part in parts:
        try:
            names = pq.read_schema(part.path).names
        except (pa.ArrowException, OSError) as exc:
            on_skip(SkippedPart(part.path, _reason(exc)))
            continue
        missing = [c for c in _REQUIRED if c not in names]
        if missing:
            on_skip(SkippedPart(part.path, f"not a recording part (no column {missing[0]!r})"))
            continue
        out.append(part)
    return out


def read_parts(
    parts: Sequence[PartFile],
    *,
    columns: Sequence[str] | None = None,
    filter: ds.Expression | None = None,
    on_skip: OnSkip = warn_skipped,
) -> pa.Table:
    """The selected rows and columns of every readable part, as one table (schema :data:`SCHEMA`)."""
    good = readable_parts(parts, on_skip)
    cols = None if columns is None else list(columns)
    if not good:
        empty = SCHEMA.empty_table()
        return empty if cols is None else empty.select(cols)
    try:
        return ds.dataset([str(p.path) for p in good], schema=SCHEMA, format="parquet").to_table(
            columns=cols, filter=filter
        )
    except (pa.ArrowException, OSError):
        logger.debug("reading %d parts together failed; reading them one by one", len(good), exc_info=True)
    tables = []
    for part in good:
        try:
            tables.append(
                ds.dataset(str(part.path), schema=SCHEMA, format="parquet").to_table(
                    columns=cols, filter=filter
                )
            )
        except (pa.ArrowException, OSError) as exc:
            on_skip(SkippedPart(part.path, _reason(exc)))
    if not tables:
        empty = SCHEMA.empty_table()
        return empty if cols is None else empty.select(cols)
    return pa.concat_tables(tables)


def part_files(recording: str | os.PathLike[str]) -> list[str]:
    """The readable part files of a recording in order (damaged ones skipped, each with a warning)."""
    root = Path(recording)
    if not root.exists():
        raise FileNotFoundError(f"no recording at {root} (expected a directory written by Recorder)")
    parts = sorted(iter_parts(root), key=lambda p: p.sort_key)
    return [str(p.path) for p in readable_parts(parts)]
