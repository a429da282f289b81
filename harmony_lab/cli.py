"""``harmony-lab`` command line. Each area contributes its subcommands from a private ``_cli`` module."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

logger = logging.getLogger(__name__)

# modules providing ``register(subparsers) -> None``; each subcommand sets ``func(args) -> int``
_AREAS = (
    "harmony_lab.local._cli",  # serve
    "harmony_lab.recording._cli",  # record, replay, inspect
    "harmony_lab.demo._cli",  # lab, demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harmony-lab", description="Explore Supabase Realtime from Jupyter."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _AREAS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as exc:  # bad input or an unusable path/port: say it, exit 2
        if args.verbose:
            raise
        sys.stderr.write(f"harmony-lab {args.command}: {exc}\n(run with -v to see the traceback)\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
