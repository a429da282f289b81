"""Soak: a sustained change stream into manager + LiveFrame + Recorder; RSS stays flat, no change is lost.

What runs (one process; ``LocalRealtime`` on its own thread, so this process's RSS includes the server):
the paced writers of ``bench/chaos.py`` (INSERT/UPDATE/DELETE, ``rate`` changes/s, ids reused within a
fixed key space so every structure has a bounded steady state) → Postgres → the embedded server →
``RealtimeConnectionManager`` (defaults, ``Backfill(column="updated_at")``) → a ``LiveFrame`` and a
``Recorder`` (zstd Parquet in a temporary directory, parts rotated every 10 s). No faults are injected.

**Memory.** Every ``--sample`` seconds (default 10) the RSS of this process and, separately, the sum
over its Postgres processes are sampled. Samples taken before ``--warmup`` seconds (default 25 % of the
run, at least 20 s) are warm-up (imports, caches filling, first Parquet parts). Of the remaining *n*
samples, ``w = max(3, n // 4)``: the **baseline** is the median of the first ``w``, the **end** is the
median of the last ``w``; ``growth = end / baseline - 1`` must stay under 5 % for this process. Medians
over windows make one-off spikes (a Parquet rewrite, a GC pass) irrelevant; comparing two windows of
the same steady state is what a leak would break. Postgres' RSS is reported, not bounded (shared
buffers fill by design).

**Loss.** Each change has a name: INSERT/UPDATE ``(writer, version)`` (every write sets a fresh
per-writer version), DELETE ``(writer, version the row had)`` (the table has ``REPLICA IDENTITY FULL`` so a
DELETE carries it). A ledger keeps the changes committed in the last ``horizon`` seconds and settles
older ones against what the manager delivered (live or backfilled):

* ``received`` — delivered live, or by a backfill carrying that exact version;
* ``superseded in a gap`` — missed while a gap was open (± lookback), but a later version of the same row
  was delivered (the backfill's job: the state was recovered, the intermediate event cannot be);
* ``lost`` — everything else: missed outside any gap, or a DELETE missed in a gap (a backfill cannot
  deliver deletes), or an INSERT/UPDATE in a gap whose row state never arrived.

The run passes when ``lost == 0``, the growth bound holds and, after the writers stop, the LiveFrame
equals the table row for row.

    python bench/soak.py                          # 30 minutes at 1 000 changes/s
    python bench/soak.py --quick                  # 45 s at 300 changes/s, samples every 3 s
    python bench/soak.py --duration 600 --rate 2000 --sample 5
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import importlib.util
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

logger = logging.getLogger("bench.soak")

TABLE = "soak_rows"
CHANNEL = "soak"
GROWTH_BOUND = 0.05


def _chaos() -> ModuleType:
    """``bench/chaos.py`` (the writers and the frame comparison), imported by path."""
    name = "bench_chaos"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / "chaos.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------- memory


def growth(samples: list[tuple[float, float]], warmup_s: float) -> dict[str, Any]:
    """Baseline/end medians and growth of ``(t, rss)`` samples (see the module docstring)."""
    post = [rss for t, rss in samples if t >= warmup_s]
    if len(post) < 6:
        raise ValueError(
            f"only {len(post)} samples after the {warmup_s:g} s warm-up; need at least 6 "
            "(run longer or sample more often)"
        )
    w = max(3, len(post) // 4)
    base = statistics.median(post[:w])
    end = statistics.median(post[-w:])
    rel = end / base - 1.0 if base > 0 else float("nan")
    return {"samples": len(post), "window": w, "baseline": base, "end": end, "growth": rel}


class RssSampler:
    """Samples this process's RSS and the summed RSS of its Postgres child processes."""

    def __init__(self, interval_s: float, postmaster_pid: int | None = None) -> None:
        import psutil

        self.interval_s = interval_s
        self.proc = psutil.Process()
        self.postmaster = psutil.Process(postmaster_pid) if postmaster_pid else None
        self.samples: list[tuple[float, float, float]] = []  # (t, self MB, postgres MB)
        self._task: asyncio.Task[None] | None = None
        self.t0 = time.monotonic()

    def sample(self) -> tuple[float, float]:
        import psutil

        own = self.proc.memory_info().rss / 2**20
        pg = 0.0
        if self.postmaster is not None:
            for p in [self.postmaster, *self.postmaster.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a backend may exit while we look
                    pg += p.memory_info().rss / 2**20
        return own, pg

    def start(self) -> None:
        self.t0 = time.monotonic()
        self._task = asyncio.create_task(self._run(), name="soak-rss")

    async def _run(self) -> None:
        # on a fixed schedule (t0, t0 + interval, ...): the time a sample takes on a busy machine does
        # not stretch the interval; a sample that is late by whole intervals skips them
        due = self.t0
        while True:
            own, pg = await asyncio.to_thread(self.sample)
            self.samples.append((time.monotonic() - self.t0, own, pg))
            logger.info("rss t=%.0fs self=%.1f MB postgres=%.1f MB", self.samples[-1][0], own, pg)
            now = time.monotonic()
            due += self.interval_s
            if due < now:
                due += (now - due) // self.interval_s * self.interval_s + self.interval_s
            await asyncio.sleep(due - now)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# --------------------------------------------------------------------------------------------- ledger


@dataclasses.dataclass
class _Tx:
    at: float  # wall-clock commit time (POSIX seconds)
    writer: int
    writes: list[tuple[int, int]]  # (id, version) of INSERTs and UPDATEs
    deletes: list[tuple[int, int]]  # (id, version the row had)


class Ledger:
    """What was written vs what the manager delivered, settled ``horizon_s`` after each commit."""

    def __init__(self, *, horizon_s: float, lookback_s: float, table: str = TABLE) -> None:
        self.horizon_s = horizon_s
        self.lookback_s = lookback_s
        self.table = table
        self.pending: collections.deque[_Tx] = collections.deque()
        self.got_writes: dict[int, set[int]] = collections.defaultdict(set)
        self.got_deletes: dict[int, set[int]] = collections.defaultdict(set)
        self.latest: dict[int, int] = {}  # id -> highest version delivered (live or backfill)
        self.gaps: list[tuple[float, float]] = []
        self.gap_open_since: float | None = None
        self.written = collections.Counter[str]()
        self.live = collections.Counter[str]()
        self.backfilled = 0
        self.received = 0
        self.superseded = 0
        self.lost = collections.Counter[str]()
        self.lost_examples: list[str] = []
        self.unparsed = 0

    # the writers' hook
    def on_commit(self, w: int, ins: list, upd: list, dels: list, at: float) -> None:
        self.pending.append(_Tx(at, w, [*ins, *upd], list(dels)))
        self.written["INSERT"] += len(ins)
        self.written["UPDATE"] += len(upd)
        self.written["DELETE"] += len(dels)

    # the manager's listener
    def on_event(self, ev: Any) -> None:
        kind = str(ev.kind)
        if kind == "gap" and ev.gap_start is not None and ev.gap_end is not None:
            self.gaps.append((ev.gap_start.timestamp(), ev.gap_end.timestamp()))
            self.gap_open_since = None
            return
        if kind == "status":
            if str(ev.status) == "connected":
                self.gap_open_since = None
            elif str(ev.status) in ("reconnecting", "error") and self.gap_open_since is None:
                self.gap_open_since = ev.received_at.timestamp()
            return
        if kind != "change" or ev.table != self.table:
            return
        op = str(ev.op)
        row = ev.old if op == "DELETE" else ev.new
        try:
            w, v, i = int(row["writer"]), int(row["version"]), int(row["id"])
        except (KeyError, TypeError, ValueError):
            self.unparsed += 1
            logger.warning("soak: a %s event without writer/version/id: %r", op, row)
            return
        if ev.backfilled:
            self.backfilled += 1
        else:
            self.live[op] += 1
        if op == "DELETE":
            self.got_deletes[w].add(v)
        else:
            self.got_writes[w].add(v)
            if v > self.latest.get(i, -1):
                self.latest[i] = v

    def _in_gap(self, at: float) -> bool:
        lo, hi = self.lookback_s + 2.0, 2.0
        if self.gap_open_since is not None and at >= self.gap_open_since - lo:
            return True
        return any(start - lo <= at <= end + hi for start, end in self.gaps)

    def settle(self, now: float, *, final: bool = False) -> None:
        """Account every commit older than the horizon (all of them when ``final``)."""
        while self.pending and (final or self.pending[0].at < now - self.horizon_s):
            if not final and self.gap_open_since is not None:
                return  # a gap is open: its backfill may still deliver these
            tx = self.pending.popleft()
            got_w, got_d = self.got_writes[tx.writer], self.got_deletes[tx.writer]
            gap = self._in_gap(tx.at)
            for i, v in tx.writes:
                if v in got_w:
                    got_w.discard(v)
                    self.received += 1
                elif gap and self.latest.get(i, -1) > v:
                    self.superseded += 1
                else:
                    self._lose("in a gap" if gap else "outside any gap", f"write id={i} v={v}", tx)
            for i, v in tx.deletes:
                if v in got_d:
                    got_d.discard(v)
                    self.received += 1
                else:
                    self._lose("delete in a gap" if gap else "outside any gap", f"delete id={i} v={v}", tx)
        if not final and self.pending:
            # drop deliveries of versions older than anything still pending (late duplicates, backfills)
            floors: dict[int, int] = {}
            for tx in self.pending:
                for _, v in tx.writes:
                    floors[tx.writer] = min(floors.get(tx.writer, v), v)
            for w, got in self.got_writes.items():
                floor = floors.get(w)
                if floor is not None and got and min(got) < floor:
                    got.difference_update([v for v in got if v < floor])

    def _lose(self, where: str, what: str, tx: _Tx) -> None:
        self.lost[where] += 1
        if len(self.lost_examples) < 10:
            at = datetime.fromtimestamp(tx.at, UTC).isoformat()
            self.lost_examples.append(f"{what} (writer {tx.writer}, committed {at}) lost {where}")

    @property
    def lost_total(self) -> int:
        return sum(self.lost.values())


# ---------------------------------------------------------------------------------------------- result


@dataclasses.dataclass
class SoakResult:
    duration_s: float
    rate: float
    written: dict[str, int]
    write_seconds: float
    live: dict[str, int]
    backfilled: int
    received: int
    superseded: int
    lost: dict[str, int]
    lost_examples: list[str]
    gaps: list[dict[str, Any]]
    samples: list[tuple[float, float, float]]
    idle_rss: tuple[float, float]
    warmup_s: float
    memory: dict[str, Any]
    postgres_memory: dict[str, Any]
    frame_equal: bool
    frame_summary: str
    final_status: str
    recorder: dict[str, Any]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def lost_total(self) -> int:
        return sum(self.lost.values())

    def summary(self) -> str:
        m, p = self.memory, self.postgres_memory
        total = sum(self.written.values())
        lines = [
            f"soak {self.duration_s:g} s target {self.rate:g}/s: wrote {total} changes "
            f"({total / self.write_seconds:.0f}/s) {dict(self.written)}; live {dict(self.live)}, "
            f"backfilled {self.backfilled}; received {self.received}, superseded in gaps "
            f"{self.superseded}, lost {self.lost_total} {dict(self.lost)}; gaps {len(self.gaps)}; "
            f"final status {self.final_status}",
            f"  RSS this process: idle {self.idle_rss[0]:.1f} MB, baseline {m['baseline']:.1f} MB (median of "
            f"the first {m['window']} of {m['samples']} samples after {self.warmup_s:g} s), end "
            f"{m['end']:.1f} MB (median of the last {m['window']}): growth {m['growth'] * 100:+.2f} % "
            f"(bound +{GROWTH_BOUND * 100:.0f} %)",
            f"  RSS postgres (reported, not bounded): idle {self.idle_rss[1]:.1f} MB, baseline "
            f"{p['baseline']:.1f} MB, end {p['end']:.1f} MB: {p['growth'] * 100:+.2f} %",
            f"  frame vs table: {self.frame_summary}; recorder {self.recorder}",
        ]
        lines += [f"  lost: {x}" for x in self.lost_examples]
        lines += [f"  PROBLEM: {x}" for x in self.problems] or ["  OK"]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- run


async def run_soak(
    duration_s: float = 1800.0,
    rate: float = 1000.0,
    *,
    sample_s: float = 10.0,
    warmup_s: float | None = None,
    writers: int = 4,
    target_rows: int = 4000,
    horizon_s: float = 30.0,
    settle_s: float = 60.0,
    record: bool = True,
    seed: int = 1,
) -> SoakResult:
    """Run one soak (see the module docstring) on the running loop; check ``result.ok``/``problems``."""
    from harmony_lab.frames import LiveFrame
    from harmony_lab.local import LocalRealtime
    from harmony_lab.manager import Backfill, RealtimeConnectionManager
    from harmony_lab.recording import Recorder

    chaos = _chaos()
    warm = warmup_s if warmup_s is not None else max(20.0, 0.25 * duration_s)
    if duration_s - warm < 6 * sample_s:
        raise ValueError(
            f"duration {duration_s:g} s leaves {duration_s - warm:g} s after the {warm:g} s warm-up: "
            f"fewer than 6 samples every {sample_s:g} s"
        )
    lookback = 2.0
    problems: list[str] = []
    tmp = tempfile.TemporaryDirectory(prefix="harmony-soak-")
    rt = await asyncio.to_thread(LocalRealtime(seed=False).start)
    try:
        sampler = RssSampler(sample_s, rt.postgres.pid)
        await rt.execute(chaos.table_sql(TABLE, replica_full=True))
        idle_rss = await asyncio.to_thread(sampler.sample)
        mgr = RealtimeConnectionManager(rt.url, rt.anon_key, dsn=rt.dsn)
        ledger = Ledger(horizon_s=horizon_s, lookback_s=lookback)
        mgr.add_listener(ledger.on_event)
        lf = LiveFrame(None, TABLE, max_rows=None)
        recorder = Recorder(mgr, tmp.name, rotate_seconds=10, flush_seconds=1.0) if record else None
        if recorder is not None:
            recorder.start()
        w = chaos.Writers(
            rt.dsn, rate=rate, n=writers, seed=seed, target_rows=target_rows, table=TABLE, reuse_ids=True
        )
        w.on_commit = ledger.on_commit
        try:
            await mgr.subscribe_to_table(
                CHANNEL, TABLE, callback=lf.apply, backfill=Backfill(column="updated_at", lookback=lookback)
            )
            await mgr.wait_for_status(CHANNEL, "connected", timeout=30)
            await w.start()
            sampler.start()
            t0 = time.monotonic()
            while time.monotonic() < t0 + duration_s:
                await asyncio.sleep(max(0.0, min(1.0, t0 + duration_s - time.monotonic())))
                w.check()
                ledger.settle(time.time())
            await sampler.stop()
            await w.stop()
            # settle: the frame converges to the table and deliveries stop
            table = None
            deadline = time.monotonic() + settle_s
            diff = None
            while time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                if str(mgr.get_status(CHANNEL).status) != "connected":
                    continue
                table = await chaos._fetch_table(rt.dsn, TABLE)
                frame, extra = chaos._frame_normalised(lf)
                diff = chaos.diff_frames(table, frame, extra)
                if diff.equal:
                    break
            ledger.settle(time.time(), final=True)
            final_status = str(mgr.get_status(CHANNEL).status)
        finally:
            await sampler.stop()
            if not w._stop.is_set():  # the run failed early: stop the writers, keep the first error
                try:
                    await w.stop()
                except Exception:
                    logger.exception("stopping the writers after a failed run failed too")
            await mgr.cleanup()
            if recorder is not None:
                await asyncio.to_thread(recorder.stop)
        rec_stats = dict(recorder.stats) if recorder is not None else {}
        own = [(t, a) for t, a, _ in sampler.samples]
        pgs = [(t, b) for t, _, b in sampler.samples]
        memory = growth(own, warm)
        pg_memory = growth(pgs, warm)
        if memory["growth"] >= GROWTH_BOUND:
            problems.append(
                f"RSS grew {memory['growth'] * 100:.2f} % (baseline {memory['baseline']:.1f} MB → end "
                f"{memory['end']:.1f} MB); bound {GROWTH_BOUND * 100:.0f} %"
            )
        if ledger.lost_total:
            problems.append(f"{ledger.lost_total} changes lost: {dict(ledger.lost)}")
        if ledger.unparsed:
            problems.append(f"{ledger.unparsed} change events could not be attributed")
        if final_status != "connected":
            problems.append(f"final status {final_status}")
        if diff is None or not diff.equal:
            problems.append(f"LiveFrame != table: {diff.summary() if diff else 'never connected to compare'}")
        if rec_stats.get("dropped"):
            problems.append(f"the recorder dropped {rec_stats['dropped']} events")
        gaps = [
            {
                "start": datetime.fromtimestamp(s, UTC).isoformat(),
                "end": datetime.fromtimestamp(e, UTC).isoformat(),
                "seconds": round(e - s, 2),
            }
            for s, e in ledger.gaps
        ]
        return SoakResult(
            duration_s=duration_s,
            rate=rate,
            written=dict(ledger.written),
            write_seconds=w.elapsed,
            live=dict(ledger.live),
            backfilled=ledger.backfilled,
            received=ledger.received,
            superseded=ledger.superseded,
            lost=dict(ledger.lost),
            lost_examples=ledger.lost_examples,
            gaps=gaps,
            samples=sampler.samples,
            idle_rss=idle_rss,
            warmup_s=warm,
            memory=memory,
            postgres_memory=pg_memory,
            frame_equal=bool(diff and diff.equal),
            frame_summary=diff.summary() if diff else "not compared",
            final_status=final_status,
            recorder=rec_stats,
            problems=problems,
        )
    finally:
        await asyncio.to_thread(rt.stop)
        tmp.cleanup()


def rows_of(r: SoakResult) -> list[dict[str, Any]]:
    """Benchmark rows: the pipeline (loss and this process's RSS) and Postgres' RSS (reported)."""
    total = sum(r.written.values())
    m, p = r.memory, r.postgres_memory
    window = f"{m['samples']} samples after {r.warmup_s:g} s; medians of first/last {m['window']}"
    return [
        {
            "row": "harmony_lab: manager (backfill) → LiveFrame + Recorder; RSS of this process",
            "run": f"{r.duration_s:g} s, target {r.rate:g}/s",
            "written/s": round(total / r.write_seconds) if r.write_seconds else "",
            "written": total,
            "received / superseded / lost": f"{r.received} / {r.superseded} / {r.lost_total}",
            "gaps": len(r.gaps),
            "frame == table": "yes" if r.frame_equal else "NO",
            "RSS idle MB": round(r.idle_rss[0], 1),
            "RSS baseline MB": round(m["baseline"], 1),
            "RSS end MB": round(m["end"], 1),
            "growth %": round(m["growth"] * 100, 2),
            "bound %": f"< {GROWTH_BOUND * 100:g}",
            "samples": window,
        },
        {
            "row": "Postgres processes (reported, not bounded)",
            "run": "",
            "written/s": "",
            "written": "",
            "received / superseded / lost": "",
            "gaps": "",
            "frame == table": "",
            "RSS idle MB": round(r.idle_rss[1], 1),
            "RSS baseline MB": round(p["baseline"], 1),
            "RSS end MB": round(p["end"], 1),
            "growth %": round(p["growth"] * 100, 2),
            "bound %": "",
            "samples": window,
        },
    ]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="45 s at 300 changes/s, RSS every 3 s")
    ap.add_argument("--duration", type=float, default=None, help="seconds of writing (default 1800)")
    ap.add_argument("--rate", type=float, default=None, help="changes/s (default 1000)")
    ap.add_argument("--sample", type=float, default=None, help="RSS sampling interval, s (default 10)")
    ap.add_argument("--warmup", type=float, default=None, help="warm-up seconds (default 25 %%, >= 20)")
    ap.add_argument("--no-record", action="store_true", help="no Recorder in the pipeline")
    ap.add_argument("--json", default=None, help="also write the samples and the result here")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    warnings.filterwarnings("ignore", message="ConnectionClosed.(code|reason) is deprecated")
    duration = args.duration or (45.0 if args.quick else 1800.0)
    rate = args.rate or (300.0 if args.quick else 1000.0)
    sample = args.sample or (3.0 if args.quick else 10.0)
    result = asyncio.run(
        run_soak(
            duration,
            rate,
            sample_s=sample,
            warmup_s=args.warmup,
            record=not args.no_record,
            settle_s=20.0 if args.quick else 60.0,
        )
    )
    print(result.summary())
    from _table import print_table  # bench/ is on sys.path when run as a script or by run_all.py

    rows = rows_of(result)
    print_table(rows)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rows": rows, "samples": result.samples, "problems": result.problems}, indent=1)
        )
    return rows


if __name__ == "__main__":
    main()
