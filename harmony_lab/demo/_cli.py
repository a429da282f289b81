"""Subcommands ``lab``, ``demo`` and ``stack`` (registered by :mod:`harmony_lab.cli`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]

logger = logging.getLogger(__name__)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _users(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"at least 2 users, got {value}")
    return value


def _traffic_args(p: argparse.ArgumentParser, rate: float) -> None:
    p.add_argument("--rate", type=_positive_float, default=rate, help=f"demo actions per second ({rate:g})")
    p.add_argument("--users", type=_users, default=12, help="simulated users (12)")
    p.add_argument("--seed", type=int, default=None, help="seed for a reproducible sequence of actions")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "lab",
        help="JupyterLab on the notebooks with the embedded Realtime stack and demo traffic",
        description=(
            "Start the embedded Realtime stack (PostgreSQL + Realtime-compatible server) and the demo "
            "traffic simulator in the background, then JupyterLab on the notebooks with HARMONY_LAB_* set "
            "so the notebooks use that stack. Ctrl-C stops everything."
        ),
    )
    p.add_argument(
        "--port", type=int, default=None, help="JupyterLab port (default: 8888 if free; 0: any free port)"
    )
    p.add_argument("--ip", default="127.0.0.1", help="JupyterLab address (127.0.0.1)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument(
        "--notebooks",
        default=None,
        metavar="DIR",
        help="folder to serve (default: the checkout's notebooks/, else a copy of the shipped notebooks)",
    )
    p.add_argument(
        "--lab-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra JupyterLab argument, e.g. --lab-arg=--LabApp.expose_app_in_browser=True (repeatable)",
    )
    _traffic_args(p, 2.0)
    p.set_defaults(func=_cmd_lab)

    p = subparsers.add_parser(
        "demo",
        help="a live terminal summary of the embedded stack with demo traffic",
        description=(
            "Start the embedded stack and the simulator, subscribe a RealtimeConnectionManager to every "
            "Harmony table and the presence channel, and print events/s per table, presence counts and "
            "channel statuses."
        ),
    )
    p.add_argument("--duration", type=_positive_float, default=None, metavar="S", help="stop after S seconds")
    p.add_argument("--interval", type=_positive_float, default=1.0, metavar="S", help="refresh every S s (1)")
    _traffic_args(p, 5.0)
    p.set_defaults(func=_cmd_demo)

    p = subparsers.add_parser(
        "stack",
        help="run the embedded stack (and demo traffic) in the foreground; write its environment to a file",
        description=(
            "Run the embedded stack and the demo traffic until interrupted. With --env-file, write "
            "`export HARMONY_LAB_...` lines there once ready (Binder's start script sources it)."
        ),
    )
    p.add_argument("--env-file", type=Path, default=None, metavar="PATH", help="write the environment here")
    p.add_argument("--parent-pid", type=int, default=None, metavar="PID", help="stop when PID exits")
    p.add_argument("--no-traffic", action="store_true", help="no simulator, just the stack")
    _traffic_args(p, 2.0)
    p.set_defaults(func=_cmd_stack)


def _cmd_lab(args: argparse.Namespace) -> int:
    from harmony_lab.demo._lab import run_lab

    try:
        return run_lab(
            port=args.port,
            open_browser=not args.no_browser,
            notebooks=args.notebooks,
            rate=args.rate,
            users=args.users,
            seed=args.seed,
            ip=args.ip,
            extra=args.lab_arg,
        )
    except (RuntimeError, FileNotFoundError) as exc:
        sys.stderr.write(f"harmony-lab lab: {exc}\n")
        return 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from harmony_lab.demo._console import run_demo

    return run_demo(
        duration=args.duration, interval=args.interval, rate=args.rate, users=args.users, seed=args.seed
    )


def _cmd_stack(args: argparse.Namespace) -> int:
    from harmony_lab.demo._serve import run_stack

    return run_stack(
        env_file=args.env_file,
        parent_pid=args.parent_pid,
        rate=args.rate,
        users=args.users,
        seed=args.seed,
        traffic=not args.no_traffic,
    )
