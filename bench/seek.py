"""Seek latency on a generated recording: ``SeekIndex.at``, ``LiveFrame.at`` and ``Player.seek``.

The seek rows of ``bench/recording.py`` on their own (the same function, :func:`recording.seek_rows`),
for iterating on seeking without the Recorder and analysis runs. ``HARMONY_BENCH_SEEK_EVENTS`` sets
the recording's size (default 300 000; the published table uses 10 000 000)::

    HARMONY_BENCH_SEEK_EVENTS=10000000 python bench/seek.py
    python bench/seek.py --quick          # 200 000 events
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from _table import parse_quick, print_table
from recording import seek_rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    quick = parse_quick(__doc__, argv)
    total = 200_000 if quick else int(os.environ.get("HARMONY_BENCH_SEEK_EVENTS", "300000"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-seek-"))
    try:
        rows = seek_rows(total, tmp, seeks=int(os.environ.get("HARMONY_BENCH_SEEKS", "20")))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
