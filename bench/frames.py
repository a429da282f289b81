"""LiveFrame and LiveTableWidget benchmarks, baselines measured in the same run on the same events.

1. Applying a change stream (60 % INSERT, 30 % UPDATE, 10 % DELETE of ``messages``-shaped rows):
   * ``LiveFrame.apply`` per event (and one typed DataFrame materialisation at the end);
   * naive pandas: ``pd.concat`` per INSERT, boolean-mask ``.loc`` per UPDATE, mask per DELETE
     (on a prefix of the stream: it is quadratic);
   * perspective-python: ``Table(schema, index="id")`` with ``update([row])`` / ``remove([key])`` per
     event, and the same batched per 1 000 events.
2. Widget traffic while a 10 000 events/s stream runs into a LiveFrame shown by a LiveTableWidget
   (after the front end's ``ready``): messages/s, bytes/s and bytes per update, captured at the comm.
3. Client-side filters (a LiveFrame fed by something other than a manager evaluates its filter itself):
   ``LiveFrame.apply`` of the same stream with one filter per column type against no filter.
4. The table's wire encoding of a 10 000-row snapshot (rows → Arrow record batch → IPC bytes), against
   ``LiveFrame.to_arrow()`` written as IPC (the frame's typed Arrow table) on the same rows.

    python bench/frames.py            # 200 000 events, 5 s of widget traffic
    python bench/frames.py --quick    # 20 000 events, 2 s
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from _comm import counting_comms
from _table import parse_quick, print_table

from harmony_lab.events import RealtimeEvent
from harmony_lab.frames import LiveFrame
from harmony_lab.widgets import LiveTableWidget, _wire

COLUMNS = (
    ("id", "int8"),
    ("channel_id", "int8"),
    ("user_id", "uuid"),
    ("content", "text"),
    ("created_at", "timestamptz"),
    ("edited", "bool"),
)
USERS = [str(uuid.UUID(int=i + 1)) for i in range(50)]


def make_events(n: int, seed: int = 7) -> list[RealtimeEvent]:
    rng = random.Random(seed)
    live: list[int] = []
    pos: dict[int, int] = {}
    next_id = 1
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        r = rng.random()
        ts = (t0 + timedelta(milliseconds=i)).isoformat()
        if r < 0.6 or len(live) < 10:
            k = next_id
            next_id += 1
            pos[k] = len(live)
            live.append(k)
            row = {
                "id": k,
                "channel_id": rng.randint(1, 5),
                "user_id": rng.choice(USERS),
                "content": f"message {k} " + "x" * rng.randint(5, 80),
                "created_at": ts,
                "edited": False,
            }
            out.append(_ev("INSERT", row, None, k, ts))
        elif r < 0.9:
            k = live[rng.randrange(len(live))]
            row = {"id": k, "content": f"edited {i}", "edited": True}
            out.append(_ev("UPDATE", row, {"id": k}, k, ts))
        else:
            idx = rng.randrange(len(live))
            k = live[idx]
            last = live.pop()
            if last != k:  # swap-remove
                live[idx] = last
                pos[last] = idx
            del pos[k]
            out.append(_ev("DELETE", None, {"id": k}, k, ts))
    return out


def _ev(
    op: str, new: Mapping[str, Any] | None, old: Mapping[str, Any] | None, k: int, ts: str
) -> RealtimeEvent:
    return RealtimeEvent(
        kind="change",
        channel="bench",
        schema="public",
        table="messages",
        op=op,
        new=new,
        old=old,
        pk={"id": k},
        columns=COLUMNS,
        commit_ts=datetime.fromisoformat(ts),
    )


# ------------------------------------------------------------------------------------ contenders


def run_liveframe(events: list[RealtimeEvent]) -> dict[str, Any]:
    lf = LiveFrame(None, "messages", max_rows=None)
    t = time.perf_counter()
    for ev in events:
        lf.apply(ev)
    apply_s = time.perf_counter() - t
    t = time.perf_counter()
    df = lf.df
    df_s = time.perf_counter() - t
    return {
        "contender": "LiveFrame.apply (per event)",
        "events": len(events),
        "seconds": round(apply_s, 3),
        "events_per_s": round(len(events) / apply_s),
        "rows": len(df),
        "note": f"+ typed DataFrame of {len(df)} rows in {df_s * 1000:.0f} ms",
    }


FILTERS = (
    ("int8", "channel_id=eq.3"),
    ("timestamptz", "created_at=gt.2024-05-01T00:00:10+00:00"),
    ("uuid", f"user_id=eq.{USERS[0]}"),
    ("text like", "content=like.%9%"),
)


def run_filters(events: list[RealtimeEvent], repeat: int = 3) -> list[dict[str, Any]]:
    """``LiveFrame.apply`` with a client-side filter, the best of ``repeat`` runs, against no filter."""

    def best(spec: str | None) -> tuple[float, int]:
        times, rows = [], 0
        for _ in range(repeat):
            lf = LiveFrame(None, "messages", max_rows=None, filter=spec)
            t = time.perf_counter()
            for ev in events:
                lf.apply(ev)
            times.append(time.perf_counter() - t)
            rows = len(lf)
        return min(times), rows

    base_s, base_rows = best(None)
    out = [
        {
            "contender": "LiveFrame.apply, no filter (baseline)",
            "events": len(events),
            "seconds": round(base_s, 3),
            "events_per_s": round(len(events) / base_s),
            "rows": base_rows,
        }
    ]
    for kind, spec in FILTERS:
        s, rows = best(spec)
        out.append(
            {
                "contender": f"LiveFrame.apply, client-side filter on {kind}",
                "events": len(events),
                "seconds": round(s, 3),
                "events_per_s": round(len(events) / s),
                "rows": rows,
                "note": spec,
                "vs_baseline": round(base_s / s, 2),
            }
        )
    return out


def run_naive_pandas(events: list[RealtimeEvent]) -> dict[str, Any]:
    df = pd.DataFrame({name: pd.Series(dtype=object) for name, _ in COLUMNS})
    t = time.perf_counter()
    for ev in events:
        if ev.op == "INSERT":
            df = pd.concat([df, pd.DataFrame([dict(ev.new or {})])], ignore_index=True)
        elif ev.op == "UPDATE":
            new = dict(ev.new or {})
            mask = df["id"] == new["id"]
            for col, value in new.items():
                df.loc[mask, col] = value
        else:
            df = df[df["id"] != (ev.old or {})["id"]]
    s = time.perf_counter() - t
    return {
        "contender": "naive pandas (concat/loc/mask per event)",
        "events": len(events),
        "seconds": round(s, 3),
        "events_per_s": round(len(events) / s),
        "rows": len(df),
        "note": "first events of the same stream (quadratic)",
    }


def _perspective_table() -> Any:
    import perspective

    schema = {
        "id": "integer",
        "channel_id": "integer",
        "user_id": "string",
        "content": "string",
        "created_at": "string",
        "edited": "boolean",
    }
    return perspective.table(schema, index="id")


def run_perspective(events: list[RealtimeEvent], batch: int = 1) -> dict[str, Any]:
    table = _perspective_table()
    t = time.perf_counter()
    if batch == 1:
        for ev in events:
            if ev.op == "DELETE":
                table.remove([(ev.old or {})["id"]])
            else:
                table.update([dict(ev.new or {})])
    else:
        upserts: list[dict[str, Any]] = []
        for i, ev in enumerate(events, 1):
            if ev.op == "DELETE":
                if upserts:
                    table.update(upserts)
                    upserts = []
                table.remove([(ev.old or {})["id"]])
            else:
                upserts.append(dict(ev.new or {}))
            if i % batch == 0 and upserts:
                table.update(upserts)
                upserts = []
        if upserts:
            table.update(upserts)
    rows = table.size()
    s = time.perf_counter() - t
    how = "update per event" if batch == 1 else f"batched {batch}"
    return {
        "contender": f"perspective Table(index='id') {how}",
        "events": len(events),
        "seconds": round(s, 3),
        "events_per_s": round(len(events) / s),
        "rows": rows,
        "note": "deletes flush the batch" if batch > 1 else "first events of the same stream",
    }


# ------------------------------------------------------------------------------- widget traffic


async def widget_traffic(seconds: float, rate: int = 10_000, max_rows: int = 10_000) -> list[dict[str, Any]]:
    with counting_comms() as made:
        lf = LiveFrame(None, "messages", max_rows=max_rows)
        w = LiveTableWidget(lf)
        cm = made[-1]
        cm.ready()
        cm.reset()
        events = make_events(int(rate * seconds) + 1000, seed=11)
        per_tick = rate // 100  # every 10 ms
        start = time.monotonic()
        i = 0
        while i < len(events) and time.monotonic() - start < seconds:
            due = int((time.monotonic() - start) * rate)
            while i < min(due + per_tick, len(events)):
                lf.apply(events[i])
                i += 1
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        elapsed = time.monotonic() - start
        w.close()
    log = cm.log
    customs = [x for x in log if x[1] == "custom"]
    per_second: dict[int, int] = {}
    for t, _, _ in log:
        per_second[int(t - start)] = per_second.get(int(t - start), 0) + 1
    total_bytes = sum(x[2] for x in log)
    return [
        {
            "contender": f"LiveTableWidget at {rate} events/s (max_rows={max_rows})",
            "events": i,
            "seconds": round(elapsed, 2),
            "events_per_s": round(i / elapsed),
            "messages_per_s": round(len(log) / elapsed, 1),
            "max_messages_in_1s": max(per_second.values()) if per_second else 0,
            "bytes_per_s": round(total_bytes / elapsed),
            "bytes_per_update": round(sum(x[2] for x in customs) / max(1, len(customs))),
            "note": "≤10 deltas/s + 1 stats/s (+ columns once); iopub limit 1000 msg/s",
        }
    ]


# ------------------------------------------------------------------------------------ wire encoding


def _best_of(fn: Any, repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def wire_encoding(events: list[RealtimeEvent], rows: int = 10_000, repeat: int = 5) -> list[dict[str, Any]]:
    lf = LiveFrame(None, "messages", max_rows=rows)
    for ev in events:
        lf.apply(ev)
    rids = lf.row_ids()
    wire_s, wire = _best_of(lambda: _wire.ipc_bytes(_wire.wire_batch(lf, rids)), repeat)

    def plain() -> bytes:
        table = lf.to_arrow()
        return _wire.ipc_bytes(table.combine_chunks().to_batches()[0])

    plain_s, base = _best_of(plain, repeat)
    return [
        {
            "contender": f"wire encoding: {len(rids)}-row snapshot (wire_batch + IPC)",
            "rows": len(rids),
            "seconds": round(wire_s, 4),
            "us_per_row": round(wire_s / len(rids) * 1e6, 2),
            "bytes_per_row": round(len(wire) / len(rids), 1),
            "note": f"best of {repeat}",
        },
        {
            "contender": "baseline: LiveFrame.to_arrow() + IPC, same rows",
            "rows": len(rids),
            "seconds": round(plain_s, 4),
            "us_per_row": round(plain_s / len(rids) * 1e6, 2),
            "bytes_per_row": round(len(base) / len(rids), 1),
            "note": f"best of {repeat}; no row-id column",
        },
    ]


# ----------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    quick = parse_quick(__doc__, argv, log_level=logging.ERROR)
    n = 20_000 if quick else 200_000
    n_naive = 2_000 if quick else 5_000
    events = make_events(n)
    rows = [run_liveframe(events)]
    rows.append(run_naive_pandas(events[:n_naive]))
    try:
        # per-event perspective is slow (a Python→engine call per event): a prefix of the same stream
        rows.append(run_perspective(events[: min(len(events), 50_000)]))
        rows.append(run_perspective(events, batch=1000))
    except ImportError:
        rows.append({"contender": "perspective", "note": "not installed: pip install perspective-python"})
    base = rows[1].get("events_per_s") or 1
    for r in rows:
        if "events_per_s" in r:
            r["x_naive_pandas"] = round(r["events_per_s"] / base, 1)
    rows += run_filters(events[: 20_000 if quick else 100_000])
    rows += asyncio.run(widget_traffic(2.0 if quick else 5.0))
    rows += wire_encoding(events)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
