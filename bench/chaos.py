"""Chaos: a change stream into manager + LiveFrame + Recorder under seeded server faults; frame == table.

What runs (one process; ``LocalRealtime`` on its own thread, like a notebook's ``rt.start()``):

* **Writers** — ``writers`` asyncio tasks, each with its own Postgres connection, commit a batch every
  50 ms so that together they make ``rate`` row changes per second on ``public.chaos_rows``: INSERTs of
  fresh ids (never reused, so a missed DELETE can never be repaired by a later INSERT), UPDATEs
  (a new ``version`` — the writer's change counter — and payload) and DELETEs of rows the writer owns.
  ``updated_at`` is set to ``clock_timestamp()`` by every INSERT and UPDATE: it is the backfill column.
  The table size hovers around ``target_rows``.
* **Consumer** — ``RealtimeConnectionManager`` subscribed to the table with
  ``Backfill(column="updated_at")``; its channel callback feeds ``LiveFrame(None, "chaos_rows")``
  (``max_rows=None``) and a ``Recorder`` records every event (changes, statuses, gaps) to Parquet.
  (``LiveFrame(manager, ..., backfill=...)`` would do the same; the callback makes the frame see exactly
  what a user callback sees.) Manager settings, chosen
  so that 50 faults fit in minutes — each is a documented option: ``heartbeat_interval=1.5`` (default
  25: stall detection in 1.5–3 s instead of 25–50 s), ``BackoffPolicy(base=0.5, max_delay=5,
  max_retries=10)``, ``rapid_close_cooldown=5`` (default 30); the backfill uses the library defaults
  (``lookback=2``, ``limit=10 000``, ``deletes=True``).
* **Faults** — ``faults`` faults at seeded random times (the time between two faults is drawn from an
  exponential distribution with a 0.5 s floor, so some land while the manager is still recovering from
  the previous one), kinds drawn uniformly from ``kinds``:

  ========================  ====================================================  ==================
  kind                      what the server does                                  interrupts?
  ========================  ====================================================  ==================
  ``drop``                  ``drop_all(code)`` (1001/1011/1012/4000)              yes
  ``stall`` (long)          ``stall(s)``, s ≥ 2 heartbeat intervals + 1.5 s       yes (liveness)
  ``stall`` (short)         ``stall(s)``, s ≤ 0.3 heartbeat interval              no (delay only)
  ``refuse``                ``refuse(s, 429/500/503)`` then ``drop_all``          yes
  ``rapid_close``           ``rapid_close(1-3)`` then ``drop_all``                yes
  ``latency``               ``latency(50-400 ms, for 1-5 s)``                     no (delay only)
  ========================  ====================================================  ==================

  A fault *interrupts delivery* when it ends the connection the manager delivers from: a close (drop,
  and the drop that makes a refusal or a rapid close matter — on their own those two only affect *new*
  handshakes) or a stall long enough that the manager's liveness check must declare the socket dead
  (a heartbeat unanswered for one interval; detection within two). Latency and short stalls only delay
  frames — the socket stays healthy, every frame arrives, in order — so they cannot produce a gap: they
  are accounted separately, and the final equality proves they lost nothing.

Checks (``ChaosResult.problems`` lists every violation; ``ok`` means none):

1. after the writers stop and the faults are cleared the channel is ``connected``;
2. every interrupting fault is *covered* by a gap recorded in the Parquet recording: a gap that starts
   no later than the fault's detection slack after it (2 s for closes; 2 heartbeat intervals + 2 s for
   stalls) and ends after it. A gap *produced* by the fault (it starts at the fault) must name a
   matching cause (the drop's close reason ``chaos #N …``; ``stall`` for stalls); a fault that hit
   while a gap was already open is *absorbed* by it (counted separately). A gap covering a refusal or a
   stall must not end before that fault ends (no handshake can succeed meanwhile);
3. the LiveFrame equals ``SELECT * FROM chaos_rows`` row for row (same keys, same columns, same
   values; compared as DataFrames sorted by ``id``), waiting at most ``settle_s`` for in-flight events
   and backfills after the writers stopped;
4. the recording is complete: nothing dropped, and as many change events recorded as the frame
   applied.

Gaps that no injected fault opened (their cause names no ``chaos #N`` and no stall was injected just
before) are counted, not failed: under load the manager's liveness check can declare a healthy socket
stalled, because heartbeat replies queue behind a backlog of changes (seen at 2 000 changes/s).

Bugs this campaign found (now regression tests in ``tests/reliability/test_backfill_bugs.py``, fixed by the
manager's owner in bf04e4a and 2474a9b): DELETEs committed during a gap were never delivered (the frame
kept those rows); a backfill built from an older snapshot overwrote newer live UPDATEs or resurrected rows
deleted live; a stall's gap was dated from its detection, so rows committed early in the stall were lost.
When check 3 fails, the summary sorts the mismatched rows by cause and shows, for a few, every recorded
event and the gaps.

The baseline (``--no-baseline`` to skip; on by default): a bare ``realtime.AsyncRealtimeClient`` with its own
reconnection (``auto_reconnect=True``), subscribed to the same table in the same run, keeping rows in a
dict — what a user would write without harmony_lab. Its divergence from the table is reported.

    python bench/chaos.py                 # benchmark: 2 000 changes/s, 50 faults, 240 s (+ settling)
    python bench/chaos.py --quick         # 400 changes/s, 8 faults, 25 s (< 60 s in all)
    python bench/chaos.py --seed 7 --rate 1000 --faults 20 --duration 90
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import random
import statistics
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

logger = logging.getLogger("bench.chaos")

TABLE = "chaos_rows"
CHANNEL = "chaos"
KINDS = ("drop", "stall", "refuse", "rapid_close", "latency")
INTERRUPTING = ("drop", "stall", "refuse", "rapid_close")
DROP_CODES = (1001, 1011, 1012, 4000)
REFUSE_STATUSES = (429, 500, 503)


def table_sql(table: str = TABLE, *, replica_full: bool = False) -> str:
    """The benchmark table (``id`` PK, ``writer``, ``version``, ``payload``, ``updated_at``), published,
    readable by ``anon``, emptied. ``replica_full``: DELETEs carry the whole old row."""
    identity = "FULL" if replica_full else "DEFAULT"
    return f"""
CREATE TABLE IF NOT EXISTS public.{table} (
  id         bigint PRIMARY KEY,
  writer     integer NOT NULL,
  version    bigint NOT NULL,
  payload    text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS {table}_updated_at_idx ON public.{table} (updated_at);
ALTER TABLE public.{table} REPLICA IDENTITY {identity};
GRANT SELECT ON public.{table} TO anon, authenticated;
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_publication_tables
                 WHERE pubname = 'supabase_realtime' AND schemaname = 'public' AND tablename = '{table}')
  THEN
    ALTER PUBLICATION supabase_realtime ADD TABLE public.{table};
  END IF;
END
$$;
TRUNCATE public.{table};
"""


COLUMNS = ("id", "writer", "version", "payload", "updated_at")

# ------------------------------------------------------------------------------------------ the plan


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedFault:
    """One fault of the seeded schedule. ``at`` is seconds after the writers started."""

    index: int
    at: float
    kind: str
    params: dict[str, Any]
    interrupting: bool

    @property
    def label(self) -> str:
        variant = self.params.get("variant")
        return f"{self.kind} ({variant})" if variant else self.kind


def plan_faults(
    seed: int,
    count: int,
    *,
    start_s: float,
    end_s: float,
    kinds: Sequence[str] = KINDS,
    heartbeat_interval: float = 1.0,
) -> list[PlannedFault]:
    """A seeded, reproducible fault schedule: ``count`` faults between ``start_s`` and ``end_s``.

    Inter-fault times are exponential (mean ``(end_s - start_s) / count``) with a 0.5 s floor, rescaled
    to fit the window, so faults sometimes land on a recovery in progress.
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise ValueError(f"unknown fault kind(s) {unknown or kinds!r}; valid: {', '.join(KINDS)}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if count and end_s - start_s < 0.5 * count:
        raise ValueError(
            f"{count} faults need at least {0.5 * count:.0f} s of fault window; got {end_s - start_s:.1f} s"
        )
    rng = random.Random(seed)
    window = end_s - start_s
    raw = [0.5 + rng.expovariate(1.0) for _ in range(count)]
    scale = window / sum(raw) if raw else 1.0
    hb = heartbeat_interval
    out: list[PlannedFault] = []
    t = start_s
    for i, step in enumerate(raw):
        t_fault = t
        t += max(0.5, step * scale)
        kind = rng.choice(list(kinds))
        params: dict[str, Any]
        interrupting = kind in INTERRUPTING
        if kind == "drop":
            params = {"code": rng.choice(DROP_CODES)}
        elif kind == "stall":
            if rng.random() < 0.7:
                params = {"seconds": round(2 * hb + 1.5 + rng.uniform(0.0, 2.0), 2), "variant": "long"}
            else:
                params = {"seconds": round(rng.uniform(0.1, 0.3) * hb, 3), "variant": "short"}
                interrupting = False
        elif kind == "refuse":
            params = {"seconds": round(rng.uniform(1.0, 4.0), 2), "status": rng.choice(REFUSE_STATUSES)}
        elif kind == "rapid_close":
            params = {"count": rng.randint(1, 3), "code": rng.choice((1011, 1012, 4000))}
        else:  # latency
            params = {"ms": rng.randint(50, 400), "seconds": round(rng.uniform(1.0, 5.0), 2)}
        out.append(PlannedFault(i, round(min(t_fault, end_s), 3), kind, params, interrupting))
    return out


# ---------------------------------------------------------------------------------------- the writers


@dataclasses.dataclass
class WriterStats:
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    transactions: int = 0
    behind_max: int = 0  # the most changes one writer was behind its schedule (pacing quality)

    @property
    def changes(self) -> int:
        return self.inserts + self.updates + self.deletes


class Writers:
    """``n`` paced writer tasks producing ``rate`` row changes/s in total on ``table``.

    Each writer owns the ids ``writer * 10**9 + k``. ``reuse_ids=False``: inserts always take a fresh
    id. ``reuse_ids=True``: ids are drawn from a fixed key space of ``2 * target_rows`` ids per writer
    (bounded memory everywhere for long runs). Every INSERT and UPDATE writes ``version`` = the writer's
    next change number, so ``(writer, version)`` names one change. ``on_commit(writer, inserts, updates,
    deletes, wall_time)`` (optional) is called after each commit with ``(id, version)`` pairs (for
    deletes: the version the row had).
    """

    TICK_S = 0.05
    MAX_BATCH = 400

    def __init__(
        self,
        dsn: str,
        *,
        rate: float,
        n: int = 4,
        seed: int = 0,
        target_rows: int = 3000,
        table: str = TABLE,
        reuse_ids: bool = False,
        deletes: bool = True,
        payload_bytes: int = 48,
    ) -> None:
        if rate <= 0 or n < 1:
            raise ValueError(f"rate must be > 0 and n >= 1; got rate={rate}, n={n}")
        self.dsn = dsn
        self.rate = float(rate)
        self.n = n
        self.seed = seed
        self.table = table
        self.target_per_writer = max(10, target_rows // n)
        self.reuse_ids = reuse_ids
        self.deletes = deletes
        self.payload_bytes = payload_bytes
        self.on_commit: Callable[[int, list, list, list, float], None] | None = None
        self.stats = WriterStats()
        self.per_writer = [WriterStats() for _ in range(n)]
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.started_at: float | None = None
        self.stopped_at: float | None = None

    async def start(self) -> None:
        import psycopg

        conns = [await psycopg.AsyncConnection.connect(self.dsn) for _ in range(self.n)]
        self.started_at = time.monotonic()
        self._tasks = [
            asyncio.create_task(self._run(w, conns[w]), name=f"chaos-writer-{w}") for w in range(self.n)
        ]

    async def stop(self) -> None:
        self._stop.set()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        self.stopped_at = time.monotonic()
        for r in results:
            if isinstance(r, BaseException):
                raise RuntimeError(f"a writer failed: {r!r}") from r

    def check(self) -> None:
        """Raise if a writer died (call periodically while running)."""
        for t in self._tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                raise RuntimeError(f"writer {t.get_name()} failed: {t.exception()!r}") from t.exception()

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.stopped_at or time.monotonic()) - self.started_at

    def _payload(self, rng: random.Random) -> str:
        return rng.randbytes(self.payload_bytes // 2).hex()

    async def _run(self, w: int, conn: Any) -> None:
        rng = random.Random(self.seed * 1_000_003 + w)
        base = w * 10**9
        live: list[int] = []
        position: dict[int, int] = {}
        version: dict[int, int] = {}
        seq = 0  # this writer's change counter: every INSERT/UPDATE writes a fresh version
        next_id = 0
        free: list[int] = list(range(2 * self.target_per_writer)) if self.reuse_ids else []
        rate = self.rate / self.n
        st = self.per_writer[w]
        t0 = time.monotonic()
        done = 0
        tbl = self.table

        def take(i: int) -> None:
            j = position.pop(i)
            last = live.pop()
            if last != i:
                live[j] = last
                position[last] = j

        try:
            while not self._stop.is_set():
                due = int(rate * (time.monotonic() - t0)) - done
                st.behind_max = max(st.behind_max, due)
                k = min(due, self.MAX_BATCH)
                if k <= 0:
                    await asyncio.sleep(self.TICK_S)
                    continue
                ins: list[int] = []
                upd: list[int] = []
                dels: list[int] = []
                touched: set[int] = set()
                big = len(live) > self.target_per_writer
                for _ in range(k):
                    r = rng.random()
                    if len(live) - len(dels) < 5 or r < (0.25 if big else 0.40):
                        op = "i"
                    elif r < 0.70 or not self.deletes:
                        op = "u"
                    else:
                        op = "d"
                    if op == "i":
                        if self.reuse_ids:
                            if not free:
                                op = "u"
                            else:
                                ins.append(base + free.pop(rng.randrange(len(free))))
                                continue
                        else:
                            ins.append(base + next_id)
                            next_id += 1
                            continue
                    # update or delete an existing row not yet touched in this batch
                    for _attempt in range(4):
                        cand = live[rng.randrange(len(live))]
                        if cand not in touched:
                            touched.add(cand)
                            (upd if op == "u" else dels).append(cand)
                            break
                ins_v = list(range(seq + 1, seq + 1 + len(ins)))
                seq += len(ins)
                upd_v = list(range(seq + 1, seq + 1 + len(upd)))
                seq += len(upd)
                del_v = [version[i] for i in dels]
                payloads = [self._payload(rng) for _ in ins]
                upd_payloads = [self._payload(rng) for _ in upd]
                async with conn.transaction():
                    if ins:
                        cur = await conn.execute(
                            f"INSERT INTO public.{tbl} (id, writer, version, payload, updated_at) "
                            "SELECT i, %s, v, p, clock_timestamp() "
                            "FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS x(i, v, p)",
                            (w, ins, ins_v, payloads),
                        )
                        assert cur.rowcount == len(ins), (cur.rowcount, len(ins))
                    if upd:
                        cur = await conn.execute(
                            f"UPDATE public.{tbl} t SET version = x.v, payload = x.p, "
                            "updated_at = clock_timestamp() "
                            "FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS x(i, v, p) "
                            "WHERE t.id = x.i",
                            (upd, upd_v, upd_payloads),
                        )
                        assert cur.rowcount == len(upd), (cur.rowcount, len(upd))
                    if dels:
                        cur = await conn.execute(f"DELETE FROM public.{tbl} WHERE id = ANY(%s)", (dels,))
                        assert cur.rowcount == len(dels), (cur.rowcount, len(dels))
                committed = time.time()
                for i, v in zip(ins, ins_v, strict=True):
                    position[i] = len(live)
                    live.append(i)
                    version[i] = v
                for i, v in zip(upd, upd_v, strict=True):
                    version[i] = v
                for i in dels:
                    take(i)
                    del version[i]
                    if self.reuse_ids:
                        free.append(i - base)
                if self.on_commit is not None:
                    self.on_commit(
                        w,
                        list(zip(ins, ins_v, strict=True)),
                        list(zip(upd, upd_v, strict=True)),
                        list(zip(dels, del_v, strict=True)),
                        committed,
                    )
                done += k  # picks that collided (rare) count as done: the pace stays the plan's
                st.inserts += len(ins)
                st.updates += len(upd)
                st.deletes += len(dels)
                st.transactions += 1
                self.stats.inserts += len(ins)
                self.stats.updates += len(upd)
                self.stats.deletes += len(dels)
                self.stats.transactions += 1
                self.stats.behind_max = max(self.stats.behind_max, due)
                await asyncio.sleep(0)
        finally:
            await conn.close()


# ------------------------------------------------------------------------------------- fault driver


@dataclasses.dataclass
class FaultRecord:
    """One injected fault and how it was accounted."""

    index: int
    kind: str
    label: str
    params: dict[str, Any]
    interrupting: bool
    at: datetime  # wall clock (UTC) just before the server call
    status_before: str  # the channel's status when the fault hit
    sockets_closed: int | None = None  # drop_all's answer
    outcome: str = ""  # produced | absorbed | uncovered | delay | delay+gap
    gap_index: int | None = None
    gap_cause: str | None = None
    recovery_s: float | None = None  # gap end - fault time, for produced gaps
    note: str = ""

    @property
    def ends_at(self) -> datetime:
        seconds = self.params.get("seconds")
        return self.at + timedelta(seconds=float(seconds or 0.0))


def _inject(rt: Any, fault: PlannedFault) -> int | None:
    faults = rt.faults
    p = fault.params
    reason = f"chaos #{fault.index} {fault.kind}"
    if fault.kind == "drop":
        return int(faults.drop_all(code=p["code"], reason=reason))
    if fault.kind == "stall":
        faults.stall(p["seconds"])
        return None
    if fault.kind == "refuse":
        faults.refuse(p["seconds"], status=p["status"])
        return int(faults.drop_all(code=1001, reason=reason))
    if fault.kind == "rapid_close":
        faults.rapid_close(p["count"], code=p["code"])
        return int(faults.drop_all(code=1001, reason=reason))
    if fault.kind == "latency":
        faults.latency(p["ms"], seconds=p["seconds"])
        return None
    raise ValueError(f"unknown fault kind {fault.kind!r}")


async def _drive_faults(
    rt: Any,
    plan: list[PlannedFault],
    t0: float,
    status: Callable[[], str],
    records: list[FaultRecord],
    check: Callable[[], None],
) -> None:
    for fault in plan:
        delay = t0 + fault.at - time.monotonic()
        while delay > 0:
            await asyncio.sleep(min(delay, 0.5))
            check()
            delay = t0 + fault.at - time.monotonic()
        rec = FaultRecord(
            index=fault.index,
            kind=fault.kind,
            label=fault.label,
            params=dict(fault.params),
            interrupting=fault.interrupting,
            at=datetime.now(UTC),
            status_before=status(),
        )
        rec.sockets_closed = _inject(rt, fault)
        records.append(rec)
        logger.info(
            "fault #%d %s %s (channel was %s)", fault.index, fault.label, fault.params, rec.status_before
        )


# ------------------------------------------------------------------------------------------ baseline


class BareBaseline:
    """realtime-py on its own (``auto_reconnect=True``), rows kept in a dict: what users write unaided."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.rows: dict[int, dict[str, Any]] = {}
        self.events = 0
        self.client: Any = None
        self.states: list[str] = []

    def _on_change(self, payload: Any) -> None:
        data = payload.get("data") or {}
        op = str(getattr(data.get("type"), "value", data.get("type")))
        self.events += 1
        if op == "DELETE":
            old = data.get("old_record") or {}
            self.rows.pop(old.get("id"), None)
        else:
            rec = data.get("record") or {}
            self.rows[rec.get("id")] = dict(rec)

    async def start(self) -> None:
        from realtime import AsyncRealtimeClient

        self.client = AsyncRealtimeClient(self.rt.ws_url, token=self.rt.anon_key, auto_reconnect=True)
        await self.client.connect()
        channel = self.client.channel("chaos-bare")
        channel.on_postgres_changes("*", self._on_change, table=TABLE, schema="public")
        subscribed = asyncio.Event()

        def on_state(state: Any, err: Any) -> None:
            self.states.append(str(getattr(state, "value", state)))
            if str(getattr(state, "value", state)) == "SUBSCRIBED":
                subscribed.set()

        await channel.subscribe(on_state)
        await asyncio.wait_for(subscribed.wait(), 15)

    @property
    def connected(self) -> bool:
        return bool(self.client is not None and self.client.is_connected)

    async def close(self) -> None:
        if self.client is not None:
            try:
                await self.client.close()
            except Exception as exc:  # the baseline may be in any state after the faults
                logger.info("closing the baseline client raised %r (ignored: it is being discarded)", exc)


# ------------------------------------------------------------------------------------------ compare


def table_frame(rows: Iterable[Sequence[Any]]) -> Any:
    """Rows ``(id, writer, version, payload, updated_at)`` → a normalised DataFrame sorted by id."""
    import pandas as pd

    df = pd.DataFrame(list(rows), columns=list(COLUMNS))
    return normalise(df)


def normalise(df: Any) -> Any:
    """Same dtypes on both sides: int64 keys/counters, str payload, UTC microsecond timestamps."""
    import pandas as pd

    out = pd.DataFrame(
        {
            "id": df["id"].astype("int64"),
            "writer": df["writer"].astype("int64"),
            "version": df["version"].astype("int64"),
            "payload": df["payload"].astype(str).astype(object),
            "updated_at": pd.to_datetime(df["updated_at"], utc=True).astype("datetime64[us, UTC]"),
        }
    )
    return out.sort_values("id", kind="stable").reset_index(drop=True)


@dataclasses.dataclass
class Diff:
    table_rows: int
    frame_rows: int
    missing: list[int]  # in the table, not in the frame
    extra: list[int]  # in the frame, not in the table (e.g. a DELETE that never arrived)
    differing: list[int]  # same id, other values (e.g. a missed or stale UPDATE)
    extra_columns: list[str]
    examples: list[str]

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.differing or self.extra_columns)

    def summary(self) -> str:
        if self.equal:
            return f"equal ({self.table_rows} rows)"
        return (
            f"table {self.table_rows} rows, frame {self.frame_rows}: {len(self.missing)} missing, "
            f"{len(self.extra)} extra, {len(self.differing)} differing"
            + (f", extra columns {self.extra_columns}" if self.extra_columns else "")
            + ("; e.g. " + "; ".join(self.examples[:5]) if self.examples else "")
        )


def diff_frames(table: Any, frame: Any, extra_columns: Iterable[str] = ()) -> Diff:
    """Row-for-row comparison of two normalised frames (by ``id``)."""
    t = table.set_index("id")
    f = frame.set_index("id")
    missing = sorted(set(t.index) - set(f.index))
    extra = sorted(set(f.index) - set(t.index))
    common = t.index.intersection(f.index)
    tc, fc = t.loc[common], f.loc[common, t.columns]
    neq = (tc != fc).any(axis=1)
    differing = sorted(int(i) for i in neq[neq].index)
    examples = [f"id {i} missing" for i in missing[:2]] + [f"id {i} extra" for i in extra[:2]]
    for i in differing[:3]:
        examples.append(f"id {i}: table {tuple(t.loc[i])} frame {tuple(f.loc[i, t.columns])}")
    return Diff(len(t), len(f), missing, extra, differing, sorted(extra_columns), examples)


# ------------------------------------------------------------------------------------------- result


@dataclasses.dataclass
class ChaosResult:
    seed: int
    duration_s: float
    rate: float
    writers: WriterStats
    write_seconds: float
    faults: list[FaultRecord]
    gaps: list[dict[str, Any]]  # from the recording: start, end, reason, seconds
    final_status: str
    diff: Diff | None
    settle_s: float
    live_events: int
    backfilled_events: int
    duplicates_skipped: int
    recorded_changes: int
    frame_events: int
    recorder_dropped: int
    status_changes: int
    baseline: dict[str, Any] | None
    problems: list[str]
    config: dict[str, Any]
    forensics: list[str] = dataclasses.field(default_factory=list)
    unexplained_gaps: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    mismatch_causes: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problems_of(self, category: str) -> list[str]:
        """Problems of one category: ``status``, ``faults``, ``data`` or ``recording``."""
        return [p for p in self.problems if p.startswith(f"[{category}]")]

    @property
    def achieved_rate(self) -> float:
        return self.writers.changes / self.write_seconds if self.write_seconds else 0.0

    def by_kind(self) -> list[dict[str, Any]]:
        rows = []
        for label in sorted({f.label for f in self.faults}):
            fs = [f for f in self.faults if f.label == label]
            outcomes = Counter(f.outcome for f in fs)
            rec = [f.recovery_s for f in fs if f.recovery_s is not None]
            rows.append(
                {
                    "fault": label,
                    "injected": len(fs),
                    "interrupting": sum(f.interrupting for f in fs),
                    "gap produced": outcomes["produced"],
                    "absorbed": outcomes["absorbed"],
                    "uncovered": outcomes["uncovered"],
                    "delay only": outcomes["delay"],
                    "delay, gap anyway": outcomes["delay+gap"],
                    "recovery p50 s": round(statistics.median(rec), 2) if rec else None,
                    "recovery max s": round(max(rec), 2) if rec else None,
                }
            )
        return rows

    def summary(self) -> str:
        lines = [
            f"chaos seed={self.seed} {self.duration_s:g} s target {self.rate:g} changes/s: wrote "
            f"{self.writers.changes} changes ({self.writers.inserts} ins, {self.writers.updates} upd, "
            f"{self.writers.deletes} del) at {self.achieved_rate:.0f}/s; {len(self.faults)} faults; "
            f"{len(self.gaps)} gaps recorded ({len(self.unexplained_gaps)} not opened by an injected fault); "
            f"final status {self.final_status}",
            "  config: " + ", ".join(f"{k}={v}" for k, v in self.config.items()),
            f"  delivered live {self.live_events}, backfilled {self.backfilled_events}, duplicates skipped "
            f"{self.duplicates_skipped}; recorded changes {self.recorded_changes}; frame events "
            f"{self.frame_events}; recorder dropped {self.recorder_dropped}",
            f"  frame vs table: {self.diff.summary() if self.diff else 'not compared'} "
            f"(settled in {self.settle_s:.1f} s)",
        ]
        for row in self.by_kind():
            lines.append("  " + ", ".join(f"{k}={v}" for k, v in row.items()))
        if self.baseline:
            pairs = ", ".join(f"{k}={v}" for k, v in self.baseline.items())
            lines.append(f"  baseline (bare realtime-py): {pairs}")
        if self.problems:
            lines.append(f"  PROBLEMS ({len(self.problems)}):")
            lines += [f"   - {p}" for p in self.problems]
        if self.mismatch_causes:
            causes = ", ".join(f"{k}: {v}" for k, v in self.mismatch_causes.items())
            lines.append(f"  mismatched rows by cause: {causes}")
        if self.forensics:
            lines.append("  mismatched rows, what was recorded for them:")
            lines += [f"   {x}" for x in self.forensics]
        else:
            lines.append("  OK")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ the run


def _producer(gap: dict[str, Any], faults: list[FaultRecord], heartbeat_interval: float) -> int | None:
    """The index of the fault that opened ``gap``: the one its cause names (``chaos #N``), or for a
    ``stall`` cause the latest long stall injected within detection time after the gap started — or up
    to one heartbeat interval before: a gap is dated from the last data the channel received."""
    cause = str(gap["reason"] or "")
    for f in faults:
        if f"chaos #{f.index} " in cause:
            return f.index
    if cause.startswith("stall"):
        horizon = timedelta(seconds=2 * heartbeat_interval + 2.0)
        before = timedelta(seconds=heartbeat_interval + 0.5)
        stalls = [
            f
            for f in faults
            if f.kind == "stall" and f.interrupting and f.at - before <= gap["start"] <= f.at + horizon
        ]
        if stalls:
            return stalls[-1].index
    return None


def _account(faults: list[FaultRecord], gaps: list[dict[str, Any]], heartbeat_interval: float) -> list[str]:
    """Classify every fault against the recorded gaps (see the module docstring); returns problems.

    * interrupting fault: ``produced`` (the gap covering it was opened by it: the cause names it),
      ``absorbed`` (it hit while a gap opened by an earlier fault was still open) or ``uncovered``
      (no recorded gap covers it: a problem);
    * delay-only fault (latency, short stall): ``delay``, or ``delay+gap`` when a gap no interrupting
      fault explains opened while it was active (allowed — the data must still be complete — but shown).
    """
    problems: list[str] = []
    producers = [_producer(g, faults, heartbeat_interval) for g in gaps]
    for i, (g, who) in enumerate(zip(gaps, producers, strict=True)):
        if not g["reason"]:
            problems.append(f"gap #{i} {g['start'].isoformat()} has no cause")
        elif who is None:
            logger.info("gap #%d (%s) names no injected fault", i, g["reason"])
    for f in faults:
        if not f.interrupting:
            active_until = f.ends_at + timedelta(seconds=2 * heartbeat_interval + 1.0)
            during = [
                i for i, g in enumerate(gaps) if producers[i] is None and f.at <= g["start"] <= active_until
            ]
            f.outcome = "delay+gap" if during else "delay"
            if during:
                f.gap_index = during[0]
                f.gap_cause = gaps[during[0]]["reason"]
                f.note = "a gap no injected fault explains opened while this delay was active"
            continue
        slack = 2.0 if f.kind != "stall" else 2 * heartbeat_interval + 2.0
        window_end = f.at + timedelta(seconds=slack)
        covering = [i for i, g in enumerate(gaps) if g["start"] <= window_end and g["end"] >= f.at]
        if not covering:
            f.outcome = "uncovered"
            problems.append(
                f"fault #{f.index} {f.label} {f.params} at {f.at.isoformat()} (channel {f.status_before}) "
                "is not covered by any recorded gap"
            )
            continue
        mine = [i for i in covering if producers[i] == f.index]
        i = mine[0] if mine else covering[0]
        g = gaps[i]
        f.gap_index, f.gap_cause = i, g["reason"]
        if mine:
            f.outcome = "produced"
            f.recovery_s = (g["end"] - f.at).total_seconds()
        else:
            f.outcome = "absorbed"
            if producers[i] is None:
                f.note = "the covering gap's cause names no injected fault"
        if f.kind in ("refuse", "stall") and g["end"] < f.ends_at - timedelta(seconds=0.05):
            problems.append(
                f"fault #{f.index} {f.label}: the gap ended at {g['end'].isoformat()} before the fault "
                f"ended at {f.ends_at.isoformat()} (a handshake succeeded during the fault)"
            )
    return problems


def classify_mismatches(
    diff: Diff,
    deleted_at: dict[int, float],
    gaps: list[dict[str, Any]],
    recording: Any,
    lookback_s: float,
) -> dict[str, int]:
    """Sort every mismatched row into a cause, from the writers' delete log and the recording.

    * ``delete during a gap`` — an extra row whose DELETE committed while a gap was open (± lookback):
      the backfill cannot deliver it;
    * ``resurrected by backfill`` — an extra row whose last recorded event is a backfill that arrived
      after its DELETE committed (the backfill's snapshot predates the delete);
    * ``stale backfill overwrite`` — a differing row whose last recorded event is a backfilled version
      older than a version delivered live before it;
    * ``unexplained`` — anything else (missing rows, other differences).
    """
    import json

    windows = [(g["start"].timestamp() - lookback_s - 1.0, g["end"].timestamp() + 1.0) for g in gaps]
    wanted = {*diff.extra, *diff.differing}
    history: dict[int, list[tuple[float, bool, int]]] = {}  # id -> (received, backfilled, version)
    if wanted and len(recording):
        changes = recording[recording["kind"] == "change"]
        for pk, new, backfilled, received in zip(
            changes["pk"], changes["new"], changes["backfilled"], changes["received_at"], strict=True
        ):
            if not isinstance(pk, str):
                continue
            i = int(json.loads(pk)["id"])
            if i in wanted and isinstance(new, str):
                version = int(json.loads(new).get("version", -1))
                history.setdefault(i, []).append((received.timestamp(), bool(backfilled), version))
    causes: Counter[str] = Counter()
    for i in diff.extra:
        at = deleted_at.get(i)
        events = history.get(i, [])
        if at is not None and any(lo <= at <= hi for lo, hi in windows):
            causes["delete during a gap"] += 1
        elif at is not None and events and events[-1][1] and events[-1][0] > at:
            causes["resurrected by backfill"] += 1
        else:
            causes["unexplained"] += 1
    for i in diff.differing:
        events = history.get(i, [])
        last = events[-1] if events else None
        live_max = max((v for _, b, v in events[:-1] if not b), default=-1)
        if last is not None and last[1] and last[2] < live_max:
            causes["stale backfill overwrite"] += 1
        else:
            causes["unexplained"] += 1
    causes["unexplained"] += len(diff.missing)
    if not causes["unexplained"]:
        del causes["unexplained"]
    return dict(causes)


def explain_rows(
    ids: Iterable[int], table: Any, recording: Any, gaps: list[dict[str, Any]], limit: int = 8
) -> list[str]:
    """For mismatched rows: the table's row, every recorded change event of the id, nearby gaps."""
    import json

    t = table.set_index("id")
    changes = recording[recording["kind"] == "change"]
    out: list[str] = []
    for i in list(ids)[:limit]:
        if i in t.index:
            row = t.loc[i]
            out.append(f"id {i}: table version {row['version']} updated_at {row['updated_at'].isoformat()}")
        else:
            out.append(f"id {i}: not in the table (deleted)")
        mine = changes[changes["pk"] == json.dumps({"id": int(i)}, separators=(",", ":"))]
        for ev in mine.itertuples():
            new = json.loads(ev.new) if isinstance(ev.new, str) else {}
            out.append(
                f"    {ev.received_at.isoformat()} {ev.op:<6} v{new.get('version', '-')} "
                f"updated_at {new.get('updated_at', '-')} commit {ev.commit_ts}"
                + (" BACKFILLED" if ev.backfilled else "")
            )
    for g in gaps:
        out.append(f"gap {g['start'].isoformat()} → {g['end'].isoformat()} cause {g['reason']!r}")
    return out


async def _fetch_table(dsn: str, table: str = TABLE) -> Any:
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(f"SELECT {', '.join(COLUMNS)} FROM public.{table} ORDER BY id")
        return table_frame(await cur.fetchall())


def _frame_normalised(lf: Any) -> tuple[Any, list[str]]:
    import pandas as pd

    df = lf.df
    extra_cols = [c for c in df.columns if c not in COLUMNS]
    if len(df) == 0:
        return table_frame([]), extra_cols
    missing_cols = [c for c in COLUMNS if c not in df.columns]
    if missing_cols:
        df = df.assign(**{c: pd.NA for c in missing_cols})
    return normalise(df), extra_cols


async def _run(
    *,
    seed: int,
    duration_s: float,
    rate: float,
    faults: int,
    kinds: Sequence[str],
    writers: int,
    target_rows: int,
    heartbeat_interval: float,
    settle_s: float,
    warmup_s: float,
    baseline: bool,
    lookback_s: float | None,
    record_dir: str | None,
    deletes: bool,
) -> ChaosResult:
    from harmony_lab import analysis
    from harmony_lab.events import EventKind
    from harmony_lab.frames import LiveFrame
    from harmony_lab.local import LocalRealtime
    from harmony_lab.manager import Backfill, BackoffPolicy, RealtimeConnectionManager
    from harmony_lab.recording import Recorder, read_recording

    backfill = (
        Backfill(column="updated_at")
        if lookback_s is None
        else Backfill(column="updated_at", lookback=lookback_s)
    )
    fault_end = max(warmup_s + 0.5 * faults, duration_s - 3.0)
    plan = plan_faults(
        seed, faults, start_s=warmup_s, end_s=fault_end, kinds=kinds, heartbeat_interval=heartbeat_interval
    )
    config = {
        "heartbeat_interval": heartbeat_interval,
        "backoff": "BackoffPolicy(base=0.5, max_delay=5.0, max_retries=10)",
        "rapid_close_cooldown": 5.0,
        "backfill": repr(backfill),
        "writers": writers,
        "deletes": deletes,
        "target_rows": target_rows,
        "warmup_s": warmup_s,
        "settle_s": settle_s,
    }
    problems: list[str] = []
    tmp = tempfile.TemporaryDirectory(prefix="harmony-chaos-") if record_dir is None else None
    rec_path = Path(record_dir or tmp.name)  # type: ignore[union-attr]
    rt = await asyncio.to_thread(LocalRealtime(seed=False).start)
    try:
        await rt.execute(table_sql())
        mgr = RealtimeConnectionManager(
            rt.url,
            rt.anon_key,
            dsn=rt.dsn,
            heartbeat_interval=heartbeat_interval,
            backoff=BackoffPolicy(base=0.5, max_delay=5.0, max_retries=10),
            rapid_close_cooldown=5.0,
            rng=random.Random(seed),
        )
        lf = LiveFrame(None, TABLE, max_rows=None)
        events: list[Any] = []
        counts: Counter[str] = Counter()

        def listen(ev: Any) -> None:
            if ev.kind is EventKind.CHANGE:
                counts["backfilled" if ev.backfilled else "live"] += 1
            else:
                events.append(ev)

        mgr.add_listener(listen)
        recorder = Recorder(mgr, rec_path, flush_seconds=1.0)
        recorder.start()
        bare = BareBaseline(rt) if baseline else None
        w = Writers(rt.dsn, rate=rate, n=writers, seed=seed, target_rows=target_rows, deletes=deletes)
        deleted_at: dict[int, float] = {}

        def log_deletes(_w: int, _ins: list, _upd: list, dels: list, at: float) -> None:
            for i, _v in dels:
                deleted_at[i] = at

        w.on_commit = log_deletes
        records: list[FaultRecord] = []
        try:
            await mgr.subscribe_to_table(
                CHANNEL,
                TABLE,
                callback=lf.apply,
                backfill=backfill,
            )
            await mgr.wait_for_status(CHANNEL, "connected", timeout=30)
            if bare is not None:
                await bare.start()
            await w.start()
            t0 = w.started_at or time.monotonic()
            driver = asyncio.create_task(
                _drive_faults(rt, plan, t0, lambda: str(mgr.get_status(CHANNEL).status), records, w.check)
            )
            while time.monotonic() < t0 + duration_s:
                await asyncio.sleep(0.5)
                w.check()
                if driver.done():
                    driver.result()  # re-raise a driver failure
            if not driver.done():
                problems.append(
                    f"[faults] only {len(records)} of {len(plan)} faults ran within {duration_s:g} s"
                )
                driver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await driver
            else:
                driver.result()
            await w.stop()
            rt.faults.clear()
            logger.info("writers stopped: %s; settling", w.stats)

            # settle: connected, then the frame converges to the table (or settle_s runs out)
            t_settle = time.monotonic()
            deadline = t_settle + settle_s
            diff: Diff | None = None
            table = await _fetch_table(rt.dsn)
            while True:
                st = mgr.get_status(CHANNEL)
                if str(st.status) == "connected":
                    frame, extra_cols = _frame_normalised(lf)
                    diff = diff_frames(table, frame, extra_cols)
                    if diff.equal:
                        break
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            settled = time.monotonic() - t_settle
            # one more look after a quiet second: nothing may arrive late and break the equality
            await asyncio.sleep(1.0)
            frame, extra_cols = _frame_normalised(lf)
            diff = diff_frames(table, frame, extra_cols)
            if diff.equal:
                import pandas.testing as pdt

                pdt.assert_frame_equal(table, frame, check_exact=True)
            final_status = str(mgr.get_status(CHANNEL).status)
            if final_status != "connected":
                state = mgr.get_status(CHANNEL)
                problems.append(f"[status] final status is {final_status}, not connected: {state!r}")
            if not diff.equal:
                problems.append(
                    f"[data] LiveFrame != table after {settle_s:g} s of settling: {diff.summary()}"
                )
            baseline_row = None
            if bare is not None:
                import pandas as pd

                bare_df = normalise(pd.DataFrame(list(bare.rows.values()))) if bare.rows else table_frame([])
                bd = diff_frames(table, bare_df)
                baseline_row = {
                    "connected": bare.connected,
                    "events": bare.events,
                    "rows missing": len(bd.missing),
                    "rows extra": len(bd.extra),
                    "rows stale": len(bd.differing),
                    "equal": bd.equal,
                }
            debug = mgr.get_debug_info()["channels"][CHANNEL]
        finally:
            if not w._stop.is_set():  # the run failed early: stop the writers, keep the first error
                try:
                    await w.stop()
                except Exception:
                    logger.exception("stopping the writers after a failed run failed too")
            rt.faults.clear()
            if bare is not None:
                await bare.close()
            await mgr.cleanup()
            await asyncio.to_thread(recorder.stop)

        # what the recording says
        df = read_recording(rec_path)
        gdf = analysis.gaps(df)
        gaps = [
            {
                "start": r.gap_start.to_pydatetime(),
                "end": r.gap_end.to_pydatetime(),
                "reason": r.reason,
                "seconds": (r.gap_end - r.gap_start).total_seconds(),
            }
            for r in gdf.itertuples()
            if r.channel == CHANNEL
        ]
        manager_gaps = [e for e in events if e.kind is EventKind.GAP and e.channel == CHANNEL]
        if len(manager_gaps) != len(gaps):
            problems.append(
                f"[recording] the manager emitted {len(manager_gaps)} gaps but {len(gaps)} were recorded"
            )
        recorded_changes = int((df["kind"] == "change").sum()) if len(df) else 0
        problems += [f"[faults] {p}" for p in _account(records, gaps, heartbeat_interval)]
        unexplained = [g for g in gaps if _producer(g, records, heartbeat_interval) is None]
        rstats = recorder.stats
        if rstats["dropped"]:
            problems.append(f"[recording] the recorder dropped {rstats['dropped']} events")
        frame_events = int(lf.counters["events"])
        if recorded_changes != frame_events:
            problems.append(
                f"[recording] the recording holds {recorded_changes} change events but the frame "
                f"applied {frame_events}"
            )
        status_changes = sum(1 for e in events if e.kind is EventKind.STATUS and e.channel == CHANNEL)
        forensics: list[str] = []
        if diff is not None and not diff.equal and len(df):
            bad = [*diff.missing[:3], *diff.extra[:3], *diff.differing[:4]]
            forensics = explain_rows(bad, table, df, gaps)
        causes = (
            classify_mismatches(diff, deleted_at, gaps, df, backfill.lookback) if diff is not None else {}
        )
        return ChaosResult(
            seed=seed,
            duration_s=duration_s,
            rate=rate,
            writers=w.stats,
            write_seconds=w.elapsed,
            faults=records,
            gaps=gaps,
            final_status=final_status,
            diff=diff,
            settle_s=settled,
            live_events=counts["live"],
            backfilled_events=counts["backfilled"],
            duplicates_skipped=int(debug.get("duplicates_skipped", 0)),
            recorded_changes=recorded_changes,
            frame_events=frame_events,
            recorder_dropped=int(rstats["dropped"]),
            status_changes=status_changes,
            baseline=baseline_row,
            problems=problems,
            config=config,
            forensics=forensics,
            mismatch_causes=causes,
            unexplained_gaps=unexplained,
        )
    finally:
        await asyncio.to_thread(rt.stop)
        if tmp is not None:
            tmp.cleanup()


async def run_chaos(
    seed: int = 1,
    duration_s: float = 240.0,
    rate: float = 2000.0,
    faults: int = 50,
    *,
    kinds: Sequence[str] = KINDS,
    writers: int = 4,
    target_rows: int = 3000,
    heartbeat_interval: float = 1.5,
    settle_s: float = 60.0,
    warmup_s: float = 3.0,
    baseline: bool = False,
    lookback_s: float | None = None,
    record_dir: str | None = None,
    deletes: bool = True,
) -> ChaosResult:
    """Run one chaos campaign (see the module docstring) on the running event loop; never raises for a
    failed check — inspect ``result.ok`` / ``result.problems`` (it raises only if the harness breaks).

    Bounded in time: at most ``duration_s + settle_s + 90`` seconds (asyncio.timeout).
    ``lookback_s=None`` keeps ``Backfill``'s default lookback.
    """
    if duration_s <= warmup_s + 1:
        raise ValueError(f"duration_s must exceed warmup_s + 1 ({warmup_s + 1:g} s); got {duration_s}")
    budget = duration_s + settle_s + 90.0
    async with asyncio.timeout(budget):
        return await _run(
            seed=seed,
            duration_s=duration_s,
            rate=rate,
            faults=faults,
            kinds=kinds,
            writers=writers,
            target_rows=target_rows,
            heartbeat_interval=heartbeat_interval,
            settle_s=settle_s,
            warmup_s=warmup_s,
            baseline=baseline,
            lookback_s=lookback_s,
            record_dir=record_dir,
            deletes=deletes,
        )


# ------------------------------------------------------------------------------------------- the CLI


LAST_RESULT: ChaosResult | None = None  # the last main() run (its exit status as a script)


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def rows_of(result: ChaosResult) -> list[dict[str, Any]]:
    """Benchmark rows (one column set): the pipeline, the bare baseline, then one row per fault kind."""
    d = result.diff
    rows: list[dict[str, Any]] = [
        {
            "row": "harmony_lab: manager (backfill) → LiveFrame + Recorder",
            "run": f"seed {result.seed}, {result.duration_s:g} s, target {result.rate:g}/s",
            "written/s": round(result.achieved_rate),
            "changes": result.writers.changes,
            "faults / gaps": f"{len(result.faults)} / {len(result.gaps)}"
            + (f" ({len(result.unexplained_gaps)} not opened by a fault)" if result.unexplained_gaps else ""),
            "delivered": f"{result.live_events} live + {result.backfilled_events} backfilled",
            "final status": result.final_status,
            "frame == table": _yes(bool(d and d.equal)),
            "missing / extra / stale rows": f"{len(d.missing)} / {len(d.extra)} / {len(d.differing)}"
            if d
            else "",
            "notes": "; ".join(f"{k}: {v}" for k, v in result.mismatch_causes.items())
            or f"settled in {result.settle_s:.1f} s",
        }
    ]
    if result.baseline is not None:
        b = result.baseline
        bad = f"{b['rows missing']} / {b['rows extra']} / {b['rows stale']}"
        rows.append(
            {
                "row": "baseline: bare realtime-py (auto_reconnect=True) → dict",
                "run": "same stream, same faults",
                "written/s": round(result.achieved_rate),
                "changes": result.writers.changes,
                "faults / gaps": f"{len(result.faults)} / not reported",
                "delivered": f"{b['events']} live",
                "final status": "connected" if b["connected"] else "gave up",
                "frame == table": _yes(bool(b["equal"])),
                "missing / extra / stale rows": bad,
                "notes": "no gap events, no backfill",
            }
        )
    for r in result.by_kind():
        recovery = (
            f"gap until recovered: p50 {r['recovery p50 s']} s, max {r['recovery max s']} s"
            if r["recovery p50 s"] is not None
            else ""
        )
        if r["interrupting"]:
            gaps = f"{r['gap produced']} produced, {r['absorbed']} absorbed, {r['uncovered']} uncovered"
        else:
            gaps = f"delay only ({r['delay only']}); gap anyway {r['delay, gap anyway']}"
        rows.append(
            {
                "row": f"fault: {r['fault']}",
                "run": "",
                "written/s": "",
                "changes": "",
                "faults / gaps": f"{r['injected']} / {gaps}",
                "delivered": "",
                "final status": "",
                "frame == table": "",
                "missing / extra / stale rows": "",
                "notes": recovery,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="400 changes/s, 8 faults, 25 s, 10 s to settle")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--duration", type=float, default=None, help="seconds of writing (default 240)")
    ap.add_argument("--rate", type=float, default=None, help="changes/s (default 2000)")
    ap.add_argument("--faults", type=int, default=None, help="number of faults (default 50)")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    ap.add_argument("--no-baseline", action="store_true", help="skip the bare realtime-py baseline")
    ap.add_argument("--lookback", type=float, default=None, help="Backfill.lookback s (default: Backfill's)")
    ap.add_argument("--record-dir", default=None, help="keep the recording here (default: a temp dir)")
    ap.add_argument("--no-deletes", action="store_true", help="writers only insert and update")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    warnings.filterwarnings("ignore", message="ConnectionClosed.(code|reason) is deprecated")
    if not args.verbose:  # realtime-py logs every socket loss at ERROR; the result shows them
        logging.getLogger("realtime").setLevel(logging.CRITICAL)
    quick = args.quick
    duration = args.duration or (25.0 if quick else 240.0)
    rate = args.rate or (400.0 if quick else 2000.0)
    n_faults = args.faults if args.faults is not None else (8 if quick else 50)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    result = asyncio.run(
        run_chaos(
            args.seed,
            duration,
            rate,
            n_faults,
            kinds=kinds,
            settle_s=10.0 if quick else 60.0,
            baseline=not args.no_baseline,
            lookback_s=args.lookback,
            record_dir=args.record_dir,
            deletes=not args.no_deletes,
        )
    )
    global LAST_RESULT
    LAST_RESULT = result
    print(result.summary())
    for f in result.faults:
        print(
            f"  #{f.index:<3} {f.at:%H:%M:%S.%f}"[:-3]
            + f" {f.label:<18} {f.params} before={f.status_before} -> {f.outcome}"
            + (f" gap={f.gap_index} cause={f.gap_cause!r}" if f.gap_index is not None else "")
            + (f" recovery={f.recovery_s:.2f}s" if f.recovery_s is not None else "")
            + (f" ({f.note})" if f.note else "")
        )
    from _table import print_table  # bench/ is on sys.path when run as a script or by run_all.py

    rows = rows_of(result)
    print()
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
    raise SystemExit(0 if LAST_RESULT is not None and LAST_RESULT.ok else 1)
