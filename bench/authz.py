"""What Realtime Authorization costs on the embedded server, measured over raw websockets (V1 frames).

Rows (one LocalRealtime, one run):

* ``join public`` (baseline)   — ``phx_join`` → ``phx_reply`` of a public channel, p50/p99
* ``join private admitted``    — the same for a private channel a Harmony member may read (one rolled-back
                                 read check per join)
* ``join private refused``     — a non-member's private join (the refusal reply)
* ``broadcast public`` (baseline) / ``broadcast private`` — a sender's broadcast → the receiver's frame,
                                 p50/p99; the private sender's first broadcast pays one write check,
                                 reported separately as ``first private broadcast``

    python bench/authz.py            # 200 joins / broadcasts per row
    python bench/authz.py --quick    # 40
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from typing import Any

import websockets
from _table import parse_quick, print_table

from harmony_lab.local import LocalRealtime
from harmony_lab.local.schema import ALICE, BOB, CAROL

TOPIC = "realtime:dm:alice-bob"
_refs = itertools.count(1)


def _ms(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    return {"p50 ms": statistics.median(samples) * 1000, "p99 ms": p99 * 1000, "n": len(samples)}


async def _reply(ws: Any, ref: str) -> dict[str, Any]:
    while True:
        msg = json.loads(await ws.recv())
        if msg.get("ref") == ref:
            return msg


async def _join(ws: Any, topic: str, payload: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    ref = str(next(_refs))
    t0 = time.perf_counter()
    await ws.send(
        json.dumps({"topic": topic, "event": "phx_join", "payload": payload, "ref": ref, "join_ref": ref})
    )
    msg = await _reply(ws, ref)
    return time.perf_counter() - t0, msg


async def _leave(ws: Any, topic: str) -> None:
    ref = str(next(_refs))
    await ws.send(json.dumps({"topic": topic, "event": "phx_leave", "payload": {}, "ref": ref}))
    await _reply(ws, ref)


async def _joins(rt: LocalRealtime, n: int, *, private: bool, user: Any) -> list[float]:
    payload = {"config": {"private": private}, "access_token": rt.token_for(str(user))}
    out = []
    async with websockets.connect(f"{rt.ws_url}/websocket?apikey={rt.anon_key}&vsn=1.0.0") as ws:
        for _ in range(n):
            took, msg = await _join(ws, TOPIC, payload)
            out.append(took)
            if msg["payload"]["status"] == "ok":
                await _leave(ws, TOPIC)
    return out


async def _broadcasts(rt: LocalRealtime, n: int, *, private: bool) -> tuple[list[float], float]:
    url = f"{rt.ws_url}/websocket?apikey={rt.anon_key}&vsn=1.0.0"
    async with websockets.connect(url) as tx, websockets.connect(url) as rx:
        for ws, user in ((tx, ALICE), (rx, BOB)):
            _, msg = await _join(
                ws, TOPIC, {"config": {"private": private}, "access_token": rt.token_for(str(user))}
            )
            assert msg["payload"]["status"] == "ok", msg
        samples = []
        for i in range(n + 1):
            t0 = time.perf_counter()
            body = {"type": "broadcast", "event": "b", "payload": {"i": i}}
            await tx.send(json.dumps({"topic": TOPIC, "event": "broadcast", "payload": body, "ref": None}))
            while True:
                msg = json.loads(await rx.recv())
                if msg.get("event") == "broadcast" and msg["payload"]["payload"] == {"i": i}:
                    break
            samples.append(time.perf_counter() - t0)
    return samples[1:], samples[0]


async def _run(n: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with LocalRealtime() as rt:
        await _joins(rt, 5, private=True, user=ALICE)  # warm the pool
        rows.append({"row": "join public (baseline)", **_ms(await _joins(rt, n, private=False, user=ALICE))})
        rows.append({"row": "join private admitted", **_ms(await _joins(rt, n, private=True, user=ALICE))})
        rows.append({"row": "join private refused", **_ms(await _joins(rt, n, private=True, user=CAROL))})
        public, _ = await _broadcasts(rt, n, private=False)
        rows.append({"row": "broadcast public (baseline)", **_ms(public)})
        private, first = await _broadcasts(rt, n, private=True)
        rows.append({"row": "broadcast private", **_ms(private)})
        rows.append({"row": "first private broadcast (write check)", "p50 ms": first * 1000, "n": 1})
        rows.append({"row": "checks made", **{k: v for k, v in rt.server.stats["authorization"].items()}})
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    quick = parse_quick(__doc__, argv)
    rows = asyncio.run(_run(40 if quick else 200))
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
