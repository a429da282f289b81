"""postgres_changes through the embedded server, measured with the official realtime-py client.

Rows (all in one run, on one LocalRealtime):

* ``cold start``              — ``async with LocalRealtime()`` (initdb, Postgres, schema, hub, server) → ready
* ``latency @ N/s``           — commit acknowledged → realtime-py callback, p50/p99, at a paced N changes/s
* ``max sustained``           — changes/s one realtime-py subscriber receives when rows are written as fast
                                as possible (multi-row INSERTs, every row a change)
* ``fan-out S × N/s``         — S subscriptions (channels spread over 10 sockets) × N changes/s: messages/s
                                delivered and p99 latency
* ``heartbeat RTT``           — a canary client's heartbeat round trip while rows of 10 to 10 000 characters
                                are inserted: first with no hostile subscribers (the baseline), then with
                                subscribers whose filters are ``content=match.^(a+)+$`` and
                                ``content=like.%a%a%a%a%a%a%b`` (p50/p99 per row length; goal p99 ≤ 50 ms)
* ``Broadcast from Database`` beside ``Postgres Changes`` — the same 100 realtime-py subscribers (one
                                socket each) of a row trigger's ``realtime.broadcast_changes`` topic, or of
                                the table's postgres_changes: commit → callback p50/p99 at a paced rate,
                                sustained messages/s, server-thread CPU per delivered message and
                                Postgres CPU per written row (trigger, WAL decoding); once with
                                realtime-py subscribers, once with minimal websocket subscribers
                                (realtime-py's parsing bounds the first)
* ``capture only`` (floor)    — bench/capture.py's figures when that script exists: the change stream alone,
                                without fan-out, JSON and websockets

    python bench/server.py            # full (about 2 minutes)
    python bench/server.py --quick    # small sizes (< 60 s)

The server runs with :meth:`ServerLimits.unlimited` (Supabase's Free-plan message rate would throttle
the fan-out rows); everything else is the default stack.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _table import parse_quick, print_table

HERE = Path(__file__).resolve().parent

TABLE_SQL = """
create table if not exists public.bench_events (id bigserial primary key, k int not null, note text);
grant select on public.bench_events to anon, authenticated, service_role;
do $$ begin
  if not exists (select 1 from pg_publication_tables
                 where pubname = 'supabase_realtime' and tablename = 'bench_events') then
    alter publication supabase_realtime add table public.bench_events;
  end if;
end $$;
"""


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Sink:
    """realtime-py callbacks: record arrival times by row id."""

    def __init__(self) -> None:
        self.arrivals: dict[int, int] = {}
        self.count = 0

    def __call__(self, payload: dict[str, Any]) -> None:
        self.count += 1
        rid = payload["data"]["record"]["id"]
        self.arrivals.setdefault(rid, time.perf_counter_ns())


async def subscribe(rt: Any, n_channels: int, sink: Sink, prefix: str) -> Any:
    from realtime import AsyncRealtimeClient

    client = AsyncRealtimeClient(rt.ws_url, token=rt.service_role_key, auto_reconnect=False)
    await client.connect()
    ready = asyncio.Event()
    systems = 0

    def on_system(_payload: Any) -> None:
        nonlocal systems
        systems += 1
        if systems >= n_channels:
            ready.set()

    for i in range(n_channels):
        ch = client.channel(f"{prefix}-{i}")
        ch.on_postgres_changes("INSERT", sink, table="bench_events")
        ch.on_system(on_system)
        await ch.subscribe()
    await asyncio.wait_for(ready.wait(), 30)
    return client


async def paced(conn: Any, rate: float, seconds: float, k: int) -> dict[int, int]:
    """Insert one row per tick at ``rate``/s; returns id → commit-acknowledged time."""
    sent: dict[int, int] = {}
    interval = 1.0 / rate
    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        target = start + i * interval
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        cur = await conn.execute("insert into public.bench_events (k) values (%s) returning id", (k,))
        row = await cur.fetchone()
        sent[int(row[0])] = time.perf_counter_ns()
    return sent


async def wait_for(sink: Sink, ids: set[int], within: float) -> None:
    """Poll until every id arrived or ``within`` seconds passed (missing ones are reported)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if ids.issubset(sink.arrivals.keys()):
            return
        await asyncio.sleep(0.02)


def latencies(sent: dict[int, int], sink: Sink) -> list[float]:
    return [(sink.arrivals[i] - t) / 1e6 for i, t in sent.items() if i in sink.arrivals]


async def run(quick: bool) -> list[dict[str, Any]]:
    import psycopg

    from harmony_lab.local.stack import LocalRealtime
    from harmony_lab.server import ServerLimits

    rows: list[dict[str, Any]] = []
    seconds = 3.0 if quick else 10.0
    burst = 2000 if quick else 10000
    fan_subs = 100
    fan_rate = 100.0

    t0 = time.perf_counter()
    async with LocalRealtime(seed=False, limits=ServerLimits.unlimited()) as rt:
        cold = time.perf_counter() - t0
        rows.append({"metric": "cold start LocalRealtime → ready", "value": round(cold, 2), "unit": "s"})
        await rt.execute(TABLE_SQL)
        async with await psycopg.AsyncConnection.connect(rt.dsn, autocommit=True) as conn:
            # 1. latency at 200 changes/s, one subscriber
            sink = Sink()
            client = await subscribe(rt, 1, sink, "lat")
            sent = await paced(conn, 200.0, seconds, 1)
            await wait_for(sink, set(sent), 10)
            lat = latencies(sent, sink)
            await client.close()
            rows.append(
                {
                    "metric": "commit → realtime-py callback @ 200/s",
                    "n": len(sent),
                    "received": len(lat),
                    "p50_ms": round(statistics.median(lat), 2) if lat else None,
                    "p99_ms": round(pct(lat, 0.99), 2),
                    "max_ms": round(max(lat), 2) if lat else None,
                }
            )

            # 2. maximum sustained rate to one subscriber
            sink = Sink()
            client = await subscribe(rt, 1, sink, "max")
            ids: list[int] = []
            t_start = time.perf_counter_ns()
            for _ in range(burst // 100):
                cur = await conn.execute(
                    "insert into public.bench_events (k) select 2 from generate_series(1, 100) returning id"
                )
                ids.extend(int(r[0]) for r in await cur.fetchall())
            t_written = time.perf_counter_ns()
            await wait_for(sink, set(ids), 120)
            t_last = max(sink.arrivals.get(i, 0) for i in ids)
            got = sum(1 for i in ids if i in sink.arrivals)
            await client.close()
            elapsed = (t_last - t_start) / 1e9
            rows.append(
                {
                    "metric": "max sustained changes/s, one realtime-py subscriber",
                    "n": len(ids),
                    "received": got,
                    "changes_per_s": round(got / elapsed) if elapsed > 0 else None,
                    "write_rate_per_s": round(len(ids) / ((t_written - t_start) / 1e9)),
                }
            )

            # 3. fan-out: 100 subscriptions × 100 changes/s
            sink = Sink()
            sinks: list[Sink] = []
            clients = []
            for c in range(10):
                s = Sink()
                sinks.append(s)
                clients.append(await subscribe(rt, fan_subs // 10, s, f"fan{c}"))
            t_fan = time.perf_counter()
            sent = await paced(conn, fan_rate, seconds, 3)
            await asyncio.gather(*(wait_for(s, set(sent), 30) for s in sinks))
            fan_elapsed = time.perf_counter() - t_fan
            delivered = sum(s.count for s in sinks)
            lat = [(s_arr - sent[i]) / 1e6 for s in sinks for i, s_arr in s.arrivals.items() if i in sent]
            for client in clients:
                await client.close()
            rows.append(
                {
                    "metric": f"fan-out {fan_subs} subscriptions × {fan_rate:g}/s",
                    "expected_msgs": len(sent) * fan_subs,
                    "delivered_msgs": delivered,
                    "msgs_per_s": round(delivered / fan_elapsed),
                    "p99_ms": round(pct(lat, 0.99), 2),
                }
            )
            hub_stats = rt.hub.stats if rt.hub is not None else {}
            rows.append(
                {
                    "metric": "hub counters",
                    "changes": hub_stats.get("changes"),
                    "batches": hub_stats.get("batches"),
                    "deliveries": hub_stats.get("deliveries"),
                    "errors": hub_stats.get("errors"),
                    "process_s": hub_stats.get("process_s"),
                    "max_batch": hub_stats.get("max_batch"),
                }
            )
    return rows


HOSTILE_FILTERS = ("content=match.^(a+)+$", "content=like.%a%a%a%a%a%a%b")
HEARTBEAT_GOAL_MS = 50.0


async def _canary(ws_url: str, key: str, stop: asyncio.Event, out: list[tuple[float, float]]) -> None:
    """Send a heartbeat every 20 ms and record (sent at, round trip in ms) until ``stop``."""
    import websockets

    async with websockets.connect(f"{ws_url}/websocket?apikey={key}&vsn=1.0.0") as ws:
        ref = 0
        while not stop.is_set():
            ref += 1
            sent = time.perf_counter()
            await ws.send(f'{{"topic":"phoenix","event":"heartbeat","payload":{{}},"ref":"{ref}"}}')
            while True:
                frame = await asyncio.wait_for(ws.recv(), 30)
                if f'"ref":"{ref}"' in frame:
                    break
            out.append((sent, (time.perf_counter() - sent) * 1000))
            await asyncio.sleep(0.02)


async def heartbeat_under_hostile_filters(quick: bool) -> list[dict[str, Any]]:
    """Heartbeat round trips while long rows are inserted, without and then with hostile subscribers.

    Every row is ``a`` repeated and one ``!``: the worst case for both patterns (neither matches, and a
    backtracking matcher tries every way to split the run of ``a``). The subscribers see the rows
    (Alice, channel general), so each insert is filtered for each of them.
    """
    from realtime import AsyncRealtimeClient

    from harmony_lab.local.schema import ALICE, GENERAL
    from harmony_lab.local.stack import LocalRealtime

    lengths = (10, 100, 1_000, 10_000)
    per_length = 10 if quick else 50
    rate = 20.0  # rows per second
    per_filter = 2 if quick else 5
    rows: list[dict[str, Any]] = []
    async with LocalRealtime() as rt:
        clients: list[Any] = []

        async def one_pass(label: str) -> None:
            samples: list[tuple[float, float]] = []
            windows: list[tuple[int, float, float]] = []
            stop = asyncio.Event()
            checks_before = rt.hub.stats.get("sql_filter_checks", 0) if rt.hub is not None else 0
            canary = asyncio.create_task(_canary(rt.ws_url, rt.anon_key, stop, samples))
            await asyncio.sleep(0.2)
            for n in lengths:
                content = "a" * (n - 1) + "!"
                start = time.perf_counter()
                for i in range(per_length):
                    delay = start + i / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await rt.execute(
                        "insert into public.messages (channel_id, user_id, content) values (%s, %s, %s)",
                        GENERAL, ALICE, content,
                    )  # fmt: skip
                await asyncio.sleep(0.5)  # the last rows' fan-out happens inside this row length's window
                windows.append((n, start, time.perf_counter()))
            stop.set()
            await canary
            checks = (rt.hub.stats.get("sql_filter_checks", 0) if rt.hub is not None else 0) - checks_before
            for n, t0, t1 in windows:
                rtt = [ms for sent, ms in samples if t0 <= sent < t1]
                p99 = pct(rtt, 0.99)
                rows.append(
                    {
                        "metric": f"heartbeat RTT, {label}, rows of {n:,} chars",
                        "n": len(rtt),
                        "p50_ms": round(statistics.median(rtt), 2) if rtt else None,
                        "p99_ms": round(p99, 2),
                        "max_ms": round(max(rtt), 2) if rtt else None,
                        "goal_p99_ms": HEARTBEAT_GOAL_MS,
                        "meets_goal": p99 <= HEARTBEAT_GOAL_MS,
                        "sql_filter_checks": checks if n == lengths[-1] else None,
                    }
                )

        await one_pass("baseline (no hostile subscribers)")
        systems: list[Any] = []
        subscribed = asyncio.Event()

        def on_system(payload: Any) -> None:
            systems.append(payload)
            if len(systems) == per_filter * len(HOSTILE_FILTERS):
                subscribed.set()

        try:
            for f in HOSTILE_FILTERS:
                for _ in range(per_filter):
                    client = AsyncRealtimeClient(rt.ws_url, token=rt.anon_key, auto_reconnect=False)
                    await client.connect()
                    clients.append(client)
                    await client.set_auth(rt.token_for(str(ALICE)))
                    ch = client.channel(f"hostile-{len(clients)}")
                    ch.on_postgres_changes(
                        "INSERT", schema="public", table="messages", filter=f, callback=lambda _p: None
                    )
                    ch.on_system(on_system)
                    await ch.subscribe()
            await asyncio.wait_for(subscribed.wait(), 30)
            refused = [s for s in systems if getattr(s, "status", "ok") != "ok"]
            if refused:
                raise RuntimeError(f"hostile subscriptions were refused: {refused}")
            await one_pass(f"{len(clients)} hostile subscribers")
        finally:
            for client in clients:
                await client.close()
    return rows


# -- Broadcast from Database beside Postgres Changes ---------------------------------------------

BFD_SQL = """
create table if not exists public.bench_pgc (id bigserial primary key, k int not null, note text);
create table if not exists public.bench_bfd (id bigserial primary key, k int not null, note text);
grant select on public.bench_pgc, public.bench_bfd to anon, authenticated, service_role;
do $$ begin
  if not exists (select 1 from pg_publication_tables
                 where pubname = 'supabase_realtime' and tablename = 'bench_pgc') then
    alter publication supabase_realtime add table public.bench_pgc;
  end if;
end $$;
create or replace function public.bench_bfd_broadcast() returns trigger language plpgsql as $$
begin
  perform realtime.broadcast_changes('bench-bfd', TG_OP, TG_OP, TG_TABLE_NAME, TG_TABLE_SCHEMA, NEW, OLD);
  return null;
end $$;
drop trigger if exists bench_bfd_broadcast on public.bench_bfd;
create trigger bench_bfd_broadcast after insert on public.bench_bfd
  for each row execute function public.bench_bfd_broadcast();
"""


class _PathSink:
    """Arrival time per row id on either path (``data.record`` / broadcast ``payload.record``)."""

    def __init__(self) -> None:
        self.arrivals: dict[int, int] = {}
        self.count = 0

    def __call__(self, message: dict[str, Any]) -> None:
        self.count += 1
        record = message["data"]["record"] if "data" in message else message["payload"]["record"]
        self.arrivals.setdefault(int(record["id"]), time.perf_counter_ns())


async def _bfd_subscribers(rt: Any, path: str, n: int) -> tuple[list[Any], list[_PathSink]]:
    """``n`` realtime-py sockets, one channel each: Postgres Changes on bench_pgc, or the private
    broadcast topic bench-bfd (every subscriber on the same topic, as a room would be)."""
    from realtime import AsyncRealtimeClient

    clients, sinks = [], []
    for i in range(n):
        client = AsyncRealtimeClient(rt.ws_url, token=rt.service_role_key, auto_reconnect=False)
        await client.connect()
        sink = _PathSink()
        joined = asyncio.Event()
        if path == "pgc":
            ch = client.channel(f"pgc-{i}")
            ch.on_postgres_changes("INSERT", sink, table="bench_pgc")
            ch.on_system(lambda _p, ev=joined: ev.set())
            await ch.subscribe()
        else:
            ch = client.channel("bench-bfd", {"config": {"private": True, "broadcast": {"self": False}}})
            ch.on_broadcast("INSERT", sink)
            await ch.subscribe(
                lambda state, _err, ev=joined: ev.set() if str(state).endswith("SUBSCRIBED") else None
            )
        await asyncio.wait_for(joined.wait(), 30)
        clients.append(client)
        sinks.append(sink)
    return clients, sinks


class _RawSubscriber:
    """A minimal V1 websocket subscriber (``json.loads`` per frame, no client library), so the
    sustained figures measure the server rather than a client's parsing."""

    def __init__(self, ws: Any, sink: _PathSink) -> None:
        self.ws, self.sink = ws, sink
        self.joined = asyncio.Event()
        self.subscribed = asyncio.Event()  # postgres_changes: the hub's "Subscribed to PostgreSQL"
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        import json

        async for frame in self.ws:
            msg = json.loads(frame)
            event = msg.get("event")
            if event == "phx_reply" and msg["payload"].get("status") == "ok":
                self.joined.set()
            elif event in ("postgres_changes", "broadcast"):
                self.sink(msg["payload"])
            elif event == "system" and msg["payload"].get("status") == "ok":
                self.subscribed.set()

    async def close(self) -> None:
        self.task.cancel()
        await self.ws.close()


async def _raw_subscribers(rt: Any, path: str, n: int) -> tuple[list[Any], list[_PathSink]]:
    import json

    import websockets

    subs, sinks = [], []
    for i in range(n):
        ws = await websockets.connect(f"{rt.ws_url}/websocket?apikey={rt.service_role_key}&vsn=1.0.0")
        sink = _PathSink()
        sub = _RawSubscriber(ws, sink)
        if path == "pgc":
            topic, config = (
                f"realtime:pgc-raw-{i}",
                {"postgres_changes": [{"event": "INSERT", "schema": "public", "table": "bench_pgc"}]},
            )
        else:
            topic, config = "realtime:bench-bfd", {"private": True}
        join = {"topic": topic, "event": "phx_join", "ref": "1", "join_ref": "1"}
        join["payload"] = {"config": config, "access_token": rt.service_role_key}
        await ws.send(json.dumps(join))
        await asyncio.wait_for((sub.subscribed if path == "pgc" else sub.joined).wait(), 30)
        subs.append(sub)
        sinks.append(sink)
    return subs, sinks


def _cpu_s(pids: list[int], server_tid: int | None) -> tuple[float, float]:
    """(Postgres processes' CPU s, the Realtime server thread's CPU s) so far."""
    import psutil

    pg = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            pg += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    srv = 0.0
    for th in psutil.Process().threads():
        if th.id == server_tid:
            srv = th.user_time + th.system_time
    return pg, srv


def _pg_pids(rt: Any) -> list[int]:
    import psutil

    root = psutil.Process(rt.postgres.pid)
    return [root.pid, *(c.pid for c in root.children(recursive=True))]


async def _bfd_path(
    rt: Any, conn: Any, path: str, client: str, n_subs: int, rate: float, seconds: float, burst: int
) -> list[dict[str, Any]]:
    table = "bench_pgc" if path == "pgc" else "bench_bfd"
    label = ("Postgres Changes" if path == "pgc" else "Broadcast from Database") + f" ({client})"
    make = _bfd_subscribers if client == "realtime-py" else _raw_subscribers
    clients, sinks = await make(rt, path, n_subs)
    tid = rt._thread.native_id if rt._thread is not None else None
    try:
        # paced: commit acknowledged → callback, over every subscriber
        sent: dict[int, int] = {}
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            cur = await conn.execute(f"insert into public.{table} (k) values (1) returning id")
            row = await cur.fetchone()
            sent[int(row[0])] = time.perf_counter_ns()
        await asyncio.gather(*(wait_for(s, set(sent), 30) for s in sinks))
        lat = [(s.arrivals[i] - t) / 1e6 for s in sinks for i, t in sent.items() if i in s.arrivals]
        # sustained: rows written as fast as possible (100-row statements), deliveries counted
        for s in sinks:
            s.arrivals.clear()
            s.count = 0
        pids = _pg_pids(rt)
        pg0, srv0 = _cpu_s(pids, tid)
        ids: list[int] = []
        t0 = time.perf_counter_ns()
        for _ in range(burst // 100):
            cur = await conn.execute(
                f"insert into public.{table} (k) select 2 from generate_series(1, 100) returning id"
            )
            ids.extend(int(r[0]) for r in await cur.fetchall())
        await asyncio.gather(*(wait_for(s, set(ids), 120) for s in sinks))
        pg1, srv1 = _cpu_s(pids, tid)
        last = max((max(s.arrivals.values(), default=0) for s in sinks), default=0)
        delivered = sum(sum(1 for i in ids if i in s.arrivals) for s in sinks)
        elapsed = (last - t0) / 1e9
    finally:
        for client in clients:
            await client.close()
    return [
        {
            "metric": f"{label}: commit → callback @ {rate:g}/s × {n_subs} subscribers",
            "expected": len(sent) * n_subs,
            "received": len(lat),
            "p50_ms": round(statistics.median(lat), 2) if lat else None,
            "p99_ms": round(pct(lat, 0.99), 2),
        },
        {
            "metric": f"{label}: sustained to {n_subs} subscribers",
            "expected": len(ids) * n_subs,
            "received": delivered,
            "msgs_per_s": round(delivered / elapsed) if elapsed > 0 else None,
            "rows_per_s": round(len(ids) / elapsed) if elapsed > 0 else None,
            "server_cpu_us_per_msg": round((srv1 - srv0) * 1e6 / delivered, 1) if delivered else None,
            "postgres_cpu_us_per_row": round((pg1 - pg0) * 1e6 / len(ids), 1) if ids else None,
        },
    ]


async def run_bfd(quick: bool) -> list[dict[str, Any]]:
    """Broadcast from Database and Postgres Changes, each to the same 100 realtime-py subscribers
    (one socket each), on one stack run in its own thread (so the server's CPU is its thread's)."""
    import psycopg

    from harmony_lab.local.stack import LocalRealtime
    from harmony_lab.server import ServerLimits

    n_subs, rate = 100, 10.0
    seconds = 3.0 if quick else 10.0
    burst = 300 if quick else 1000
    rt = LocalRealtime(seed=False, limits=ServerLimits.unlimited()).start()
    rows: list[dict[str, Any]] = []
    try:
        await rt.execute(BFD_SQL)
        async with await psycopg.AsyncConnection.connect(rt.dsn, autocommit=True) as conn:
            for client in ("realtime-py", "raw websocket"):
                for path in ("pgc", "bfd"):
                    rows += await _bfd_path(rt, conn, path, client, n_subs, rate, seconds, burst)
    finally:
        await asyncio.to_thread(rt.stop)
    return rows


def capture_floor(quick: bool) -> list[dict[str, Any]]:
    path = HERE / "capture.py"
    if not path.exists():
        return [{"metric": "capture only (floor)", "note": "bench/capture.py not present"}]
    spec = importlib.util.spec_from_file_location("bench_capture", path)
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
        rows = mod.main(["--quick"] if quick else [])
    except Exception as exc:  # the floor is informative only: report, don't lose our rows
        logging.getLogger(__name__).exception("bench/capture.py failed")
        return [{"metric": "capture only (floor)", "note": f"bench/capture.py failed: {exc}"}]
    return [{**r, "metric": f"capture only (floor): {r.get('metric', r.get('name', ''))}"} for r in rows]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    quick = parse_quick(__doc__, argv)
    rows = asyncio.run(run(quick))
    rows += asyncio.run(heartbeat_under_hostile_filters(quick))
    rows += asyncio.run(run_bfd(quick))
    rows += capture_floor(quick)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
