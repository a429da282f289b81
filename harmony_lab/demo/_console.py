"""``harmony-lab demo``: a terminal-only live summary of the embedded stack with demo traffic.

A :class:`~harmony_lab.manager.RealtimeConnectionManager` (service-role key: it sees every row)
subscribes one channel to every Harmony table and joins the presence channel *invisibly* (it
receives the roster without appearing in it). Every ``interval`` seconds the summary shows events/s
and totals per table, presence counts by status, and each channel's status. On a terminal the
summary redraws in place; otherwise one block per refresh is appended.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from typing import Any, TextIO

from harmony_lab.events import EventKind, RealtimeEvent

__all__ = ["Summary", "run_demo"]

_STATUSES = ("online", "away", "dnd", "offline")
_OBSERVER_ID = "harmony-lab-demo-observer"


class Summary:
    """Counts events per table; renders the text block (pure: feed events, ask for text)."""

    def __init__(self, tables: tuple[str, ...]) -> None:
        self.tables = tables
        self.totals: Counter[str] = Counter()
        self._window: Counter[str] = Counter()
        self._window_start = time.monotonic()
        self.rates: dict[str, float] = dict.fromkeys(tables, 0.0)
        self.gaps = 0
        self.started = time.monotonic()

    def feed(self, ev: RealtimeEvent) -> None:
        if ev.kind is EventKind.CHANGE and ev.table:
            self.totals[ev.table] += 1
            self._window[ev.table] += 1
        elif ev.kind is EventKind.GAP:
            self.gaps += 1

    def tick(self) -> None:
        now = time.monotonic()
        span = max(now - self._window_start, 1e-6)
        self.rates = {t: self._window[t] / span for t in self.tables}
        self._window.clear()
        self._window_start = now

    def render(
        self,
        *,
        header: str,
        roster: dict[str, dict[str, Any]],
        channels: dict[str, Any],
        simulator: Any,
    ) -> str:
        elapsed = time.monotonic() - self.started
        lines = [f"{header}   t={elapsed:5.0f}s", ""]
        lines.append(f"  {'table':<24}{'events/s':>10}{'total':>10}")
        for t in self.tables:
            lines.append(f"  {t:<24}{self.rates.get(t, 0.0):>10.1f}{self.totals[t]:>10}")
        all_rate = sum(self.rates.values())
        lines.append(f"  {'(all tables)':<24}{all_rate:>10.1f}{sum(self.totals.values()):>10}")
        counts = Counter(
            entry.get("status", "offline") for user, entry in roster.items() if user != _OBSERVER_ID
        )
        shown = "  ".join(f"{s} {counts.get(s, 0)}" for s in _STATUSES)
        lines += ["", f"  presence: {shown}   (invisible users count as offline)"]
        status = "  ".join(
            f"{name}: {st.status}" + (f" ({st.reason})" if st.reason else "") for name, st in channels.items()
        )
        lines.append(f"  channels: {status}   gaps: {self.gaps}")
        if simulator is not None:
            st = simulator.stats
            lines.append(
                f"  simulator: {st['actions']} actions ({st['actions_per_s']:.1f}/s), "
                f"errors {st['errors']}, by status {st['presence']}"
            )
        return "\n".join(lines) + "\n"


async def _demo(
    duration: float | None, interval: float, rate: float, users: int, seed: int | None, out: TextIO
) -> int:
    from harmony_lab._lifetime import async_stop_signals
    from harmony_lab.demo._simulator import PRESENCE_CHANNEL, Simulator
    from harmony_lab.local import LocalRealtime
    from harmony_lab.local.schema import TABLES
    from harmony_lab.manager import PresenceStatus, RealtimeConnectionManager, TableSubscription

    tty = out.isatty()
    with async_stop_signals() as stop:
        async with LocalRealtime() as rt:
            summary = Summary(tuple(TABLES))
            mgr = RealtimeConnectionManager(rt.url, rt.service_role_key, dsn=rt.dsn)
            mgr.add_listener(summary.feed)
            sim = Simulator(rt, users=users, rate=rate, seed=seed)
            try:
                await mgr.subscribe_to_multiple_tables("harmony", [TableSubscription(t) for t in TABLES])
                presence = await mgr.join_presence(
                    PRESENCE_CHANNEL, _OBSERVER_ID, status=PresenceStatus.INVISIBLE
                )
                await sim.start()
                header = (
                    f"harmony-lab demo — embedded Realtime at {rt.url} — {users} simulated users, "
                    f"{rate:g} actions/s (Ctrl-C to stop)"
                )
                deadline = None if duration is None else time.monotonic() + duration
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), interval)
                    summary.tick()
                    block = summary.render(
                        header=header, roster=presence.roster, channels=mgr.channels, simulator=sim
                    )
                    out.write(("\x1b[H\x1b[J" + block) if tty else block + "\n")
                    out.flush()
                    if deadline is not None and time.monotonic() >= deadline:
                        break
            finally:
                await sim.aclose()
                await mgr.cleanup()
        out.write("harmony-lab demo: stopped.\n")
        out.flush()
        return 0


def run_demo(
    *,
    duration: float | None,
    interval: float,
    rate: float,
    users: int,
    seed: int | None,
    out: TextIO = sys.stdout,
) -> int:
    return asyncio.run(_demo(duration, interval, rate, users, seed, out))
