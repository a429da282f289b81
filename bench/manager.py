"""The connection manager's cost and recovery, each against bare realtime-py in the same run.

Rows (one LocalRealtime, server limits off):

* ``throughput bare``      — broadcasts/s one bare ``realtime.AsyncRealtimeClient`` channel delivers to a
                             callback (the baseline)
* ``throughput manager``   — the same broadcasts through ``RealtimeConnectionManager.subscribe`` to a
                             callback (envelope, seq, listener fan-out included); ``overhead`` = bare
                             rate / manager rate
* ``recovery drop+refuse`` — the server drops every socket and refuses handshakes for R s: time from the
                             end of the refusal to ``connected`` (manager with defaults, and with a fast
                             backoff that gives up early plus a fast health check) vs to ``SUBSCRIBED``
                             again (realtime-py ``auto_reconnect=True``, which gives up after 5 attempts;
                             ``never`` when it did)
* ``recovery stall``       — every socket stalls for S s: manager (heartbeat 1 s) reconnects; realtime-py
                             alone keeps the stalled socket (its detection is the 20 s websockets ping)

    python bench/manager.py            # full (about three minutes)
    python bench/manager.py --quick    # small sizes (< 60 s)
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import time
from typing import Any

from _table import parse_quick, print_table

N_FULL = 20_000
N_QUICK = 3_000


async def _blast(rt: Any, topic: str, n: int, done: asyncio.Event, counter: list[int]) -> float:
    """Server-side broadcasts to ``topic``; returns seconds until the receiver counted ``n``."""
    t0 = time.perf_counter()
    for i in range(n):
        rt.server.broadcast(topic, "tick", {"i": i})
        if i % 500 == 499:
            await asyncio.sleep(0)  # let the server flush its writes
    await asyncio.wait_for(done.wait(), 120)
    return time.perf_counter() - t0


async def _bare_rate(rt: Any, n: int, topic: str) -> float:
    from realtime import AsyncRealtimeClient

    count = [0]
    done = asyncio.Event()

    def bare_cb(payload: Any) -> None:
        count[0] += 1
        if count[0] == n:
            done.set()

    client = AsyncRealtimeClient(rt.ws_url, token=rt.anon_key)
    await client.connect()
    channel = client.channel(topic)
    channel.on_broadcast("*", bare_cb)
    await channel.subscribe()
    seconds = await _blast(rt, topic, n, done, count)
    await client.close()
    return n / seconds


async def _manager_rate(rt: Any, n: int, topic: str) -> float:
    from harmony_lab.manager import RealtimeConnectionManager

    mgr = RealtimeConnectionManager(rt.url, rt.anon_key)
    count = [0]
    done = asyncio.Event()

    def mgr_cb(ev: Any) -> None:
        count[0] += 1
        if count[0] == n:
            done.set()

    listened = [0]
    mgr.add_listener(lambda ev: listened.__setitem__(0, listened[0] + 1))  # as a LiveFrame would
    await mgr.subscribe(topic, "*", mgr_cb)
    seconds = await _blast(rt, topic, n, done, count)
    await mgr.cleanup()
    return n / seconds


async def throughput(rt: Any, n: int, rounds: int = 3) -> list[dict[str, Any]]:
    """Alternating rounds (bare, manager, bare, ...); medians, so machine noise hits both alike."""
    bare, managed = [], []
    for r in range(rounds):
        bare.append(await _bare_rate(rt, n, f"bench-bare-{r}"))
        managed.append(await _manager_rate(rt, n, f"bench-mgr-{r}"))
    bare_rate, mgr_rate = statistics.median(bare), statistics.median(managed)
    return [
        {
            "metric": "throughput bare realtime-py",
            "events": n,
            "rounds": rounds,
            "events_per_s": round(bare_rate),
        },
        {
            "metric": "throughput manager (callback + 1 listener)",
            "events": n,
            "rounds": rounds,
            "events_per_s": round(mgr_rate),
            "overhead": f"{bare_rate / mgr_rate:.2f}x",
        },
    ]


async def recovery_drop(rt: Any, refuse_s: float) -> list[dict[str, Any]]:
    from realtime import AsyncRealtimeClient, RealtimeSubscribeStates

    from harmony_lab.manager import BackoffPolicy, RealtimeConnectionManager

    rows = []
    configs: list[tuple[str, dict[str, Any]]] = [
        ("manager, defaults", {}),
        (
            # gives up after ~7.5 s of refusals; the health check (5 s, reset after 10 s) revives it
            "manager, backoff 0.1 s cap 1 s, health 5 s/10 s",
            {
                "backoff": BackoffPolicy(base=0.1, max_delay=1.0),
                "health_interval": 5.0,
                "error_reset_after": 10.0,
            },
        ),
    ]
    for label, options in configs:
        mgr = RealtimeConnectionManager(rt.url, rt.anon_key, **options)
        await mgr.subscribe("bench-recover", "*", lambda ev: None)
        rt.faults.refuse(refuse_s)
        rt.faults.drop_all(1001)
        fault_end = time.perf_counter() + refuse_s
        await mgr.wait_for_status("bench-recover", "reconnecting", timeout=10)
        await mgr.wait_for_status("bench-recover", "connected", timeout=300)
        took = time.perf_counter() - fault_end
        rows.append(
            {
                "metric": f"recovery drop+refuse {refuse_s:g} s: {label}",
                "s_after_fault_end": round(took, 2),
                "attempts": mgr.get_status("bench-recover").attempt,
            }
        )
        await mgr.cleanup()
        rt.faults.clear()
        await asyncio.sleep(0.2)

    # bare realtime-py with its own reconnection
    subscribed = asyncio.Event()
    states: list[str] = []

    def on_state(state: Any, err: Any) -> None:
        states.append(str(state))
        if state is RealtimeSubscribeStates.SUBSCRIBED:
            subscribed.set()

    client = AsyncRealtimeClient(rt.ws_url, token=rt.anon_key, auto_reconnect=True)
    await client.connect()
    channel = client.channel("bench-bare-recover")
    await channel.subscribe(on_state)
    subscribed.clear()
    rt.faults.refuse(refuse_s)
    rt.faults.drop_all(1001)
    fault_end = time.perf_counter() + refuse_s
    try:
        await asyncio.wait_for(subscribed.wait(), refuse_s + 30)
        took: Any = round(time.perf_counter() - fault_end, 2)
    except TimeoutError:
        took = "never (gave up)"
    rows.append(
        {"metric": f"recovery drop+refuse {refuse_s:g} s: bare realtime-py", "s_after_fault_end": took}
    )
    await client.close()
    rt.faults.clear()
    return rows


async def recovery_stall(rt: Any, stall_s: float) -> list[dict[str, Any]]:
    from harmony_lab.manager import RealtimeConnectionManager

    mgr = RealtimeConnectionManager(rt.url, rt.anon_key, heartbeat_interval=1.0)
    await mgr.subscribe("bench-stall", "*", lambda ev: None)
    await asyncio.sleep(1.2)
    t0 = time.perf_counter()
    rt.faults.stall(stall_s)
    await mgr.wait_for_status("bench-stall", "reconnecting", timeout=10)
    detected = time.perf_counter() - t0
    await mgr.wait_for_status("bench-stall", "connected", timeout=60)
    took = time.perf_counter() - (t0 + stall_s)
    await mgr.cleanup()
    return [
        {
            "metric": f"recovery stall {stall_s:g} s: manager (heartbeat 1 s)",
            "detected_after_s": round(detected, 2),
            "s_after_fault_end": round(took, 2),
        },
        {
            "metric": f"recovery stall {stall_s:g} s: bare realtime-py",
            "detected_after_s": "not detected (websockets ping: 20 s + 20 s)",
        },
    ]


async def run(quick: bool) -> list[dict[str, Any]]:
    from harmony_lab.local import LocalRealtime
    from harmony_lab.server import ServerLimits

    n = N_QUICK if quick else N_FULL
    async with LocalRealtime(limits=ServerLimits.unlimited()) as rt:
        rows = await throughput(rt, n)
        for refuse_s in [1.0] if quick else [3.0, 20.0]:  # 20 s: longer than realtime-py's 5 tries
            rows += await recovery_drop(rt, refuse_s)
        rows += await recovery_stall(rt, 2.0 if quick else 5.0)
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    quick = parse_quick(__doc__, argv, log_level=logging.ERROR)
    logging.getLogger("realtime").setLevel(logging.CRITICAL)
    rows = asyncio.run(run(quick))
    print_table(rows)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
