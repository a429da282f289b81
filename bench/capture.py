"""Change-capture benchmark: decode rate, commit→decoded latency, and LocalPostgres start-up.

Measured in one run, on one embedded PostgreSQL:

* decode rate — changes/s through :class:`PgOutputDecoder` alone on recorded pgoutput bytes
  (parse only, and parse + to_jsonb-like conversion), end-to-end through :class:`ChangeStream`
  (commit of one big transaction → last change decoded), and, as the baseline, one
  ``poll_changes`` call draining the same amount;
* latency — single-row autocommit INSERTs from a writer thread, spaced a few ms apart; for each
  change the time from the INSERT's commit acknowledgement (and from sending it) to its decoded
  ``Change`` in the consumer. Streaming (ChangeStream) vs the baseline: polling
  ``pg_logical_slot_get_binary_changes`` every 50 ms (``poll_changes``);
* cold start — ``LocalPostgres().start()`` to ready (initdb + start), warm restart of a persistent
  cluster, and Debian's system PostgreSQL (when present) as the baseline.

Usage: ``python bench/capture.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from _table import parse_quick, print_table

from harmony_lab.capture import ChangeStream, PgOutputDecoder, poll_changes
from harmony_lab.capture.pgoutput import parse_message
from harmony_lab.local import LocalPostgres

PUB = "bench_pub"
DDL = f"""
CREATE TABLE IF NOT EXISTS bench_events (
  id bigint PRIMARY KEY,
  channel_id bigint NOT NULL,
  user_id uuid NOT NULL,
  content text NOT NULL,
  payload jsonb NOT NULL,
  tags text[],
  created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE bench_events REPLICA IDENTITY FULL;
DROP PUBLICATION IF EXISTS {PUB};
CREATE PUBLICATION {PUB} FOR TABLE bench_events;
"""
INSERT_MANY = """
INSERT INTO bench_events (id, channel_id, user_id, content, payload, tags)
SELECT g, g %% 5, '00000000-0000-4000-a000-000000000001', 'message number ' || g,
       jsonb_build_object('n', g, 'kind', 'chat', 'mentions', jsonb_build_array(g %% 7)),
       ARRAY['a', 'b', g::text]
FROM generate_series(%s::bigint, %s::bigint) g
"""
INSERT_ONE = """
INSERT INTO bench_events (id, channel_id, user_id, content, payload, tags)
VALUES (%s, 1, '00000000-0000-4000-a000-000000000002', 'hello', '{"n": 1}', '{x}')
"""


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def _rate(metric: str, per_s: float, n: int, **extra: Any) -> dict[str, Any]:
    return {"metric": metric, "value": round(per_s), "unit": "changes/s", "n": n, **extra}


def _seconds(metric: str, samples: list[float]) -> dict[str, Any]:
    return {"metric": metric, "value": round(statistics.median(samples), 3), "unit": "s", "n": len(samples)}


class _Ids:
    """Hands out fresh primary keys across phases."""

    def __init__(self) -> None:
        self.next = 1

    def take(self, n: int) -> tuple[int, int]:
        lo = self.next
        self.next += n
        return lo, lo + n - 1


# ---------------------------------------------------------------------------------------------


def bench_decoder(pg: LocalPostgres, ids: _Ids, n: int) -> list[dict[str, Any]]:
    with pg.connect() as c:
        c.execute("SELECT pg_create_logical_replication_slot('bench_rec', 'pgoutput', true)")
        batch = 500
        for start in range(0, n, batch):
            lo, hi = ids.take(min(batch, n - start))
            c.execute(INSERT_MANY, [lo, hi])
        rows = c.execute(
            "SELECT data FROM pg_logical_slot_get_binary_changes('bench_rec', NULL, NULL, "
            "'proto_version', '1', 'publication_names', %s)",
            [PUB],
        ).fetchall()
    recorded = [bytes(r[0]) for r in rows]
    volume = sum(len(b) for b in recorded)

    def parse_only() -> float:
        t = time.perf_counter()
        for data in recorded:
            parse_message(data)
        return time.perf_counter() - t

    def full() -> float:
        decoder = PgOutputDecoder()
        t = time.perf_counter()
        count = 0
        for data in recorded:
            count += len(decoder.feed(data))
        dt = time.perf_counter() - t
        assert count == n, (count, n)
        return dt

    t_parse = min(parse_only() for _ in range(3))
    t_full = min(full() for _ in range(3))
    mb = round(volume / 1e6, 2)
    return [
        _rate("decode rate: parse only (recorded bytes)", n / t_parse, n, MB=mb),
        _rate("decode rate: decoder + conversion (recorded bytes)", n / t_full, n, MB=mb),
    ]


async def bench_stream_throughput(pg: LocalPostgres, ids: _Ids, n: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with ChangeStream(pg.dsn, publication=PUB) as stream:
        it = aiter(stream)
        lo, hi = ids.take(n)

        def write() -> float:
            with pg.connect() as c:
                c.execute(INSERT_MANY, [lo, hi])
                return time.perf_counter()

        t_ack = await asyncio.to_thread(write)
        got = 0
        async with asyncio.timeout(120):
            async for _change in it:
                got += 1
                if got == n:
                    break
        dt = time.perf_counter() - t_ack
    rows.append(_rate("decode rate: ChangeStream end-to-end (1 tx)", n / dt, n))

    # baseline: one poll draining the same volume
    with pg.connect() as c:
        c.execute("SELECT pg_create_logical_replication_slot('bench_bulk', 'pgoutput', true)")
        lo, hi = ids.take(n)
        c.execute(INSERT_MANY, [lo, hi])
        t = time.perf_counter()
        changes = poll_changes(c, "bench_bulk", PUB)
        dt = time.perf_counter() - t
        assert len(changes) == n
    rows.append(_rate("decode rate: poll_changes end-to-end (baseline)", n / dt, n))
    return rows


def _writer(
    dsn: str, first_id: int, n: int, gap_s: float, sent: dict[int, float], acked: dict[int, float]
) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        for i in range(first_id, first_id + n):
            sent[i] = time.perf_counter()
            c.execute(INSERT_ONE, [i])
            acked[i] = time.perf_counter()
            time.sleep(gap_s)


def _latency_row(
    metric: str, sent: dict[int, float], acked: dict[int, float], recv: dict[int, float]
) -> dict[str, Any]:
    after_ack = [(recv[i] - acked[i]) * 1000 for i in recv if i in acked]
    after_sent = [(recv[i] - sent[i]) * 1000 for i in recv if i in sent]
    return {
        "metric": metric,
        "p50_ms": round(_pct(after_ack, 50), 3),
        "p99_ms": round(_pct(after_ack, 99), 3),
        "max_ms": round(max(after_ack), 3) if after_ack else None,
        "p50_after_send_ms": round(_pct(after_sent, 50), 3),
        "p99_after_send_ms": round(_pct(after_sent, 99), 3),
        "n": len(after_ack),
    }


async def bench_stream_latency(pg: LocalPostgres, ids: _Ids, n: int, gap_s: float) -> dict[str, Any]:
    sent: dict[int, float] = {}
    acked: dict[int, float] = {}
    recv: dict[int, float] = {}
    async with ChangeStream(pg.dsn, publication=PUB) as stream:
        lo, _ = ids.take(n)
        writer = asyncio.create_task(asyncio.to_thread(_writer, pg.dsn, lo, n, gap_s, sent, acked))
        async with asyncio.timeout(60 + n * gap_s * 2):
            async for change in stream:
                recv[change.new["id"]] = time.perf_counter()
                if len(recv) == n:
                    break
        await writer
    return _latency_row("commit→decoded latency: ChangeStream (streaming)", sent, acked, recv)


def bench_poll_latency(pg: LocalPostgres, ids: _Ids, n: int, gap_s: float, interval: float) -> dict[str, Any]:
    sent: dict[int, float] = {}
    acked: dict[int, float] = {}
    recv: dict[int, float] = {}
    polls = 0
    with pg.connect() as c:
        c.execute("SELECT pg_create_logical_replication_slot('bench_poll', 'pgoutput', true)")
        lo, _ = ids.take(n)
        writer = threading.Thread(target=_writer, args=(pg.dsn, lo, n, gap_s, sent, acked))
        writer.start()
        deadline = time.monotonic() + 60 + n * gap_s
        next_poll = time.perf_counter()
        while len(recv) < n and time.monotonic() < deadline:
            for change in poll_changes(c, "bench_poll", PUB):
                recv[change.new["id"]] = time.perf_counter()
            polls += 1
            next_poll += interval
            time.sleep(max(0.0, next_poll - time.perf_counter()))
        writer.join()
    row = _latency_row(
        f"commit→decoded latency: polling every {interval * 1000:g} ms (baseline)", sent, acked, recv
    )
    row["polls"] = polls
    return row


def bench_start(quick: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    repeats = 1 if quick else 3

    def timed(make: Any) -> list[float]:
        out = []
        for _ in range(repeats):
            pg = make()
            t = time.perf_counter()
            pg.start()
            out.append(time.perf_counter() - t)
            pg.stop()
        return out

    cold = timed(LocalPostgres)
    rows.append(_seconds("LocalPostgres cold start (initdb + start), embedded", cold))
    base = Path(tempfile.mkdtemp(prefix="hl-bench-", dir="/tmp"))
    base.chmod(0o755)
    try:
        LocalPostgres(base / "warm").start().stop()
        warm = timed(lambda: LocalPostgres(base / "warm"))
        rows.append(_seconds("LocalPostgres warm start (existing cluster), embedded", warm))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if Path("/usr/lib/postgresql/15/bin/postgres").exists():
        system = timed(lambda: LocalPostgres(backend="system"))
        rows.append(_seconds("LocalPostgres cold start, system PostgreSQL 15 (baseline)", system))
    return rows


async def run(quick: bool) -> list[dict[str, Any]]:
    n_decode = 5_000 if quick else 50_000
    n_latency = 200 if quick else 1_000
    gap = 0.005 if quick else 0.01
    rows: list[dict[str, Any]] = []
    with LocalPostgres() as pg:
        with pg.connect() as c:
            c.execute(DDL)
        ids = _Ids()
        rows += await asyncio.to_thread(bench_decoder, pg, ids, n_decode)
        rows += await bench_stream_throughput(pg, ids, n_decode)
        rows.append(await bench_stream_latency(pg, ids, n_latency, gap))
        rows.append(await asyncio.to_thread(bench_poll_latency, pg, ids, n_latency, gap, 0.05))
    rows += await asyncio.to_thread(bench_start, quick)
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    quick = parse_quick(__doc__, argv)
    rows = asyncio.run(run(quick))
    print_table(rows)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
