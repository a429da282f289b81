"""``harmony-lab record | replay | inspect``: recordings from the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "record",
        help="record a table's realtime events to Parquet",
        description="Subscribe to postgres changes of one or more tables through the resilient "
        "connection manager and record every event (changes, statuses, gaps, heartbeats…) to "
        "hive-partitioned Parquet under --out. Stops after --duration seconds, or on Ctrl-C / SIGTERM "
        "(the recording is flushed and closed either way). A live progress line goes to stderr.",
    )
    p.add_argument("--url", default=os.environ.get("SUPABASE_URL"), help="project URL (env SUPABASE_URL)")
    p.add_argument(
        "--key",
        default=None,
        help="API key; prefer the environment (SUPABASE_ANON_KEY or SUPABASE_KEY): a value given here "
        "is visible to every local user in the process list",
    )
    p.add_argument("--table", action="append", required=True, help="table to record (repeatable)")
    p.add_argument("--schema", default="public", help="schema of the tables (default public)")
    p.add_argument("--event", default="*", help="INSERT, UPDATE, DELETE or * (default)")
    p.add_argument("--filter", default=None, help="postgres_changes filter, e.g. channel_id=eq.1")
    p.add_argument("--out", default="recordings", help="recording directory (default ./recordings)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--flush-seconds", type=float, default=1.0, help="max data at risk (default 1 s)")
    p.set_defaults(func=_record)

    p = subparsers.add_parser(
        "replay",
        help="print the events of a recording with their original timing",
        description="Replay a recording directory: one event per line on stdout, paced like the "
        "original stream (scaled by --speed).",
    )
    p.add_argument("dir", help="recording directory")
    p.add_argument(
        "--speed", default="1", help="time scale: 2 = twice as fast; 'max' or 0 = as fast as possible"
    )
    p.add_argument("--kind", action="append", dest="kinds", help="only this kind (repeatable)")
    p.add_argument("--channel", action="append", dest="channels", help="only this channel (repeatable)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of one repr per line")
    p.set_defaults(func=_replay)

    p = subparsers.add_parser(
        "inspect",
        help="summarise a recording directory",
        description="Sessions (from _session.json), events per channel and kind, time range, files, "
        "gaps and leftovers of interrupted writes.",
    )
    p.add_argument("dir", help="recording directory")
    p.set_defaults(func=_inspect)


# --------------------------------------------------------------------------- record


class _Progress:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last_events = 0
        self.last_t = time.monotonic()
        self.last_line = 0.0
        self.width = 0

    def update(self, stats: dict[str, Any], status: str, *, final: bool = False) -> None:
        now = time.monotonic()
        dt = max(now - self.last_t, 1e-9)
        rate = (stats["events"] - self.last_events) / dt
        self.last_events, self.last_t = stats["events"], now
        line = (
            f"events {stats['events']:,} | {rate:,.1f}/s | written {stats['written']:,} | "
            f"files {stats['files']} | gaps {stats['gaps']} | dropped {stats['dropped']} | {status}"
        )
        if self.tty:
            self.stream.write("\r" + line.ljust(self.width) + ("\n" if final else ""))
            self.width = len(line)
        elif final or now - self.last_line >= 5.0:
            self.stream.write(line + "\n")
            self.last_line = now
        self.stream.flush()


def _record(args: argparse.Namespace) -> int:
    if args.key is not None:
        logger.warning(
            "record: --key puts the API key in this process's command line, which every local user "
            "can read; set SUPABASE_ANON_KEY (or SUPABASE_KEY) in the environment instead"
        )
    else:
        args.key = os.environ.get("SUPABASE_ANON_KEY") or os.environ.get("SUPABASE_KEY")
    if not args.url or not args.key:
        sys.stderr.write(
            "harmony-lab record: a URL and a key are required: set SUPABASE_URL and SUPABASE_ANON_KEY "
            "(or SUPABASE_KEY) in the environment, or pass --url\n"
        )
        return 2
    if args.duration is not None and not args.duration > 0:
        sys.stderr.write(f"harmony-lab record: --duration must be positive; got {args.duration}\n")
        return 2
    from harmony_lab.manager import TableSubscription

    # validated before anything starts: a bad table, event or filter leaves no recording behind
    specs = [
        TableSubscription(table, schema=args.schema, event=args.event, filter=args.filter)
        for table in args.table
    ]
    return asyncio.run(_record_async(args, specs))


async def _record_async(args: argparse.Namespace, specs: list[Any]) -> int:
    from harmony_lab._lifetime import async_stop_signals
    from harmony_lab.manager import RealtimeConnectionManager
    from harmony_lab.recording._recorder import Recorder

    loop = asyncio.get_running_loop()
    progress = _Progress(sys.stderr)
    names = [f"record:{spec.schema}.{spec.table}" for spec in specs]
    async with RealtimeConnectionManager(args.url, args.key) as manager:
        rec = Recorder(manager, args.out, flush_seconds=args.flush_seconds)
        async with rec:
            # SIGINT/SIGTERM ask for a graceful stop that also records the channels' final statuses
            # (instead of the recorder's flush on SIGTERM)
            with async_stop_signals() as stop:
                sys.stderr.write(f"recording session {rec.session_id} into {rec.path}\n")
                for name, spec in zip(names, specs, strict=True):
                    await manager.subscribe_to_multiple_tables(name, [spec])
                deadline = None if args.duration is None else loop.time() + args.duration
                while not stop.is_set():
                    timeout = 0.5 if deadline is None else min(0.5, deadline - loop.time())
                    if timeout <= 0:
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout)
                    progress.update(rec.stats, _statuses(manager, names))
                await manager.cleanup()  # leave the channels: their final statuses are recorded too
        progress.update(rec.stats, "stopped", final=True)
    stats = rec.stats
    sys.stderr.write(
        f"recorded {stats['written']:,} events in {stats['files']} files under {rec.path} "
        f"(session {rec.session_id}, {stats['dropped']} dropped)\n"
    )
    return 0


def _statuses(manager: Any, names: list[str], reason_chars: int = 90) -> str:
    """Each channel's status; the first one not connected also says why (shortened)."""
    out = []
    why = ""
    for name in names:
        try:
            state = manager.get_status(name)
        except KeyError:
            out.append("?")
            continue
        out.append(str(state.status))
        if not why and str(state.status) != "connected" and state.reason:
            reason = str(state.reason)
            why = reason if len(reason) <= reason_chars else reason[: reason_chars - 1] + "…"
    return ",".join(out) + (f" ({why})" if why else "")


# --------------------------------------------------------------------------- replay


def _event_json(ev: Any) -> str:
    from harmony_lab.recording._codec import events_to_table

    row = events_to_table([ev]).to_pylist()[0]
    return json.dumps(row, default=str, ensure_ascii=False)


def _replay(args: argparse.Namespace) -> int:
    text = str(args.speed).strip().lower()
    try:
        speed: float | None = None if text in ("max", "none", "0", "inf") else float(text)
    except ValueError:
        sys.stderr.write(f"harmony-lab replay: --speed must be a number or 'max'; got {args.speed!r}\n")
        return 2
    if speed is not None and not (speed > 0 and math.isfinite(speed)):
        sys.stderr.write(f"harmony-lab replay: --speed must be positive; got {args.speed!r}\n")
        return 2
    try:
        return asyncio.run(_replay_async(args, speed))
    except BrokenPipeError:  # e.g. `harmony-lab replay DIR | head`
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the interpreter's final flush
        return 0


async def _replay_async(args: argparse.Namespace, speed: float | None) -> int:
    from harmony_lab.recording._reader import replay

    try:
        events = replay(args.dir, speed=speed, kinds=args.kinds, channels=args.channels)
    except (FileNotFoundError, ValueError) as exc:
        sys.stderr.write(f"harmony-lab replay: {exc}\n")
        return 2
    out = sys.stdout
    n = 0
    async for ev in events:
        out.write((_event_json(ev) if args.json else repr(ev)) + "\n")
        out.flush()
        n += 1
    sys.stderr.write(f"{n} events\n")
    return 0


# --------------------------------------------------------------------------- inspect


def _inspect(args: argparse.Namespace) -> int:
    import pandas as pd

    from harmony_lab.recording._layout import iter_parts
    from harmony_lab.recording._manifest import read_manifest
    from harmony_lab.recording._parts import SkippedPart, read_parts

    root = Path(args.dir)
    if not root.is_dir():
        sys.stderr.write(f"harmony-lab inspect: {root} is not a recording directory\n")
        return 2
    out = sys.stdout
    try:
        manifest = read_manifest(root)
    except ValueError as exc:
        sys.stderr.write(f"harmony-lab inspect: unreadable manifest: {exc}\n")
        return 2
    parts = list(iter_parts(root))
    nbytes = sum(p.path.stat().st_size for p in parts)
    leftovers = [p for p in root.rglob(".*.tmp")]
    skipped: list[SkippedPart] = []
    table = read_parts(parts, columns=["channel", "kind", "received_at"], on_skip=skipped.append)
    for item in skipped:
        sys.stderr.write(f"harmony-lab inspect: {item.message()}\n")
    out.write(f"Recording {root}\n")
    out.write(f"  files: {len(parts)} ({nbytes / 1e6:.2f} MB)")
    out.write(f"; leftovers of interrupted writes: {len(leftovers)}\n" if leftovers else "\n")
    if skipped:
        out.write(f"  unreadable parts skipped: {len(skipped)}\n")
        for item in skipped:
            out.write(f"    {item.path.relative_to(root) if item.path.is_relative_to(root) else item.path}\n")
    sessions = manifest["sessions"]
    if sessions:
        rows = [
            {
                "session": sid,
                "status": s.get("status"),
                "started_at": s.get("started_at"),
                "ended_at": s.get("ended_at"),
                "events": s.get("events"),
                "files": s.get("files"),
                "gaps": s.get("gaps_total"),
                "dropped": s.get("dropped"),
                "source": s.get("source"),
            }
            for sid, s in sorted(sessions.items())
        ]
        out.write("\nSessions (_session.json)\n")
        out.write(pd.DataFrame(rows).to_string(index=False) + "\n")
    if table.num_rows == 0:
        out.write("\nno events\n")
        return 0
    df = table.to_pandas()
    summary = (
        df.groupby(["channel", "kind"])
        .agg(events=("kind", "size"), first=("received_at", "min"), last=("received_at", "max"))
        .reset_index()
    )
    out.write("\nEvents per channel and kind (visible files)\n")
    out.write(summary.to_string(index=False) + "\n")
    out.write(
        f"\n{len(df):,} events from {df['received_at'].min()} to {df['received_at'].max()} "
        f"({(df['received_at'].max() - df['received_at'].min()).total_seconds():.1f} s)\n"
    )
    return 0
