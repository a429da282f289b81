"""What every benchmark shares: its ``--quick`` command line and one way to print its rows, an aligned
text table (columns = the union of the rows' keys).

Bench scripts run as ``python bench/<name>.py`` (this folder is then on ``sys.path``) or through
``bench/run_all.py``, which puts this folder on ``sys.path`` the same way.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else ("yes" if value else "no")
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def columns(rows: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        cols += [c for c in row if c not in cols]
    return cols


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)"
    cols = columns(rows)
    cells = [[fmt(row.get(c)) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def print_table(rows: list[dict[str, Any]]) -> None:
    print(format_table(rows))


def parse_quick(doc: str | None, argv: list[str] | None, *, log_level: int = logging.WARNING) -> bool:
    """Parse the common command line (``--quick``: small sizes) and set up logging; True when quick."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (< 60 s)")
    quick: bool = parser.parse_args(argv).quick
    logging.basicConfig(level=log_level)
    return quick
