"""Recording cost: the Recorder against raw pyarrow ``write_table`` of the same rows, in the same run.

Rows (a realistic event mix: 80 % row changes, presence, broadcasts, heartbeats, statuses; 4 channels):

* ``write_table (baseline)``   — the rows already as one Arrow table, one ``pq.write_table`` (zstd): the
                                 floor for encoding + compression
* ``codec + write_table``      — RealtimeEvent → Arrow conversion (JSON text columns) + the same write
* ``Recorder sustained``       — ``Recorder.write`` as fast as the writer thread drains (producer backs
                                 off at half the queue), until ``stop()`` returned: atomic republished
                                 parts, manifest, fsync at part close. ``vs baseline`` = baseline rate /
                                 this rate. ``bytes/1M events`` is the on-disk size; ``amplification`` =
                                 bytes passed to write(2) / final bytes (rewrites of open parts)
* ``Recorder paced``           — a steady 1 000 events/s for one whole ``rotate_seconds`` (60 s; the
                                 regime where rewriting open parts costs the most: they stay open until
                                 rotated by time): CPU share of the process and amplification
* ``Recorder RSS``             — resident memory while recording 10 M events (``--quick``: 300 k), sampled
                                 every 0.5 s: at 10 %, 50 %, 100 % of the run and the max; flat means the
                                 100 % value is close to the 10 % one

    python bench/recording.py            # full (a few minutes: 10 M events)
    python bench/recording.py --quick    # small sizes (< 60 s)
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
from _table import parse_quick, print_table

from harmony_lab.events import RealtimeEvent
from harmony_lab.recording import Recorder
from harmony_lab.recording._codec import events_to_table
from harmony_lab.recording._layout import iter_parts

COLUMNS = (
    ("id", "int8"),
    ("channel_id", "int8"),
    ("user_id", "uuid"),
    ("content", "text"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
)


def make_events(n: int, seq0: int = 0) -> list[RealtimeEvent]:
    t0 = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)
    out = []
    for i in range(n):
        seq = seq0 + i
        at = t0 + timedelta(microseconds=250 * seq)
        channel = f"room-{seq % 4}"
        r = seq % 20
        if r < 16:
            ts = at.isoformat()
            out.append(
                RealtimeEvent(
                    kind="change",
                    channel=channel,
                    topic=f"realtime:{channel}",
                    seq=seq,
                    received_at=at,
                    received_mono_ns=seq * 250_000,
                    schema="public",
                    table="messages",
                    op="INSERT",
                    commit_ts=at - timedelta(milliseconds=3),
                    new={
                        "id": seq,
                        "channel_id": seq % 4,
                        "user_id": "7d4e3b1a-8a4f-4f3e-9c1e-2b7a5e6f1c0d",
                        "content": f"message number {seq} with a little text",
                        "created_at": ts,
                        "updated_at": ts,
                    },
                    pk={"id": seq},
                    columns=COLUMNS,
                )
            )
        elif r < 18:
            out.append(
                RealtimeEvent(
                    kind="presence",
                    channel=channel,
                    seq=seq,
                    received_at=at,
                    received_mono_ns=seq * 250_000,
                    op="join",
                    payload={
                        "key": f"user-{seq % 50}",
                        "current": [],
                        "new": [{"phx_ref": f"F{seq}", "status": "online"}],
                    },
                )
            )
        elif r == 18:
            out.append(
                RealtimeEvent(
                    kind="broadcast",
                    channel=channel,
                    seq=seq,
                    received_at=at,
                    received_mono_ns=seq * 250_000,
                    op="typing",
                    payload={"user": f"user-{seq % 50}", "typing": True},
                )
            )
        else:
            out.append(
                RealtimeEvent(
                    kind="heartbeat" if seq % 40 == 19 else "status",
                    channel=channel,
                    seq=seq,
                    received_at=at,
                    received_mono_ns=seq * 250_000,
                    payload={"rtt_ms": 12.5} if seq % 40 == 19 else {"previous": "connected"},
                    status=None if seq % 40 == 19 else "connected",
                    reason=None if seq % 40 == 19 else "ok",
                    attempt=None if seq % 40 == 19 else 0,
                )
            )
    return out


def _write_chars() -> int:
    io = psutil.Process().io_counters()
    return int(getattr(io, "write_chars", io.write_bytes))


def _disk_bytes(root: Path) -> int:
    return sum(p.path.stat().st_size for p in iter_parts(root))


def baseline(events: list[RealtimeEvent], tmp: Path) -> list[dict[str, Any]]:
    n = len(events)
    table = events_to_table(events, "bench")
    t0 = time.perf_counter()
    pq.write_table(table, tmp / "baseline.parquet", compression="zstd")
    raw_s = time.perf_counter() - t0
    size = (tmp / "baseline.parquet").stat().st_size
    t0 = time.perf_counter()
    table2 = events_to_table(events, "bench")
    pq.write_table(table2, tmp / "codec.parquet", compression="zstd")
    codec_s = time.perf_counter() - t0
    return [
        {
            "metric": "write_table (baseline)",
            "events": n,
            "events_per_s": round(n / raw_s),
            "bytes_per_1M_events": round(size / n * 1e6),
        },
        {
            "metric": "codec + write_table",
            "events": n,
            "events_per_s": round(n / codec_s),
            "vs_baseline": round(raw_s and codec_s / raw_s, 2),
        },
    ]


def sustained(
    events: list[RealtimeEvent], total: int, tmp: Path, base_rate: float, rss: bool = False
) -> dict[str, Any]:
    root = tmp / ("rss" if rss else "sustained")
    proc = psutil.Process()
    samples: list[tuple[int, int]] = []  # (events written so far, rss)
    done = threading.Event()
    progress = [0]

    def sample() -> None:
        while not done.wait(0.5):
            samples.append((progress[0], proc.memory_info().rss))

    sampler = threading.Thread(target=sample, daemon=True)
    rec = Recorder(None, root, max_queue=200_000)
    high = rec.max_queue // 2
    w0 = _write_chars()
    t0 = time.perf_counter()
    rec.start()
    sampler.start()
    pool = len(events)
    for i in range(total):
        if i % 1024 == 0:
            progress[0] = i
            while rec.pending >= high:
                time.sleep(0.001)
        rec.write(events[i % pool])
    rec.stop()
    elapsed = time.perf_counter() - t0
    done.set()
    sampler.join()
    written = _write_chars() - w0
    size = _disk_bytes(root)
    assert rec.stats["written"] == total, rec.stats
    assert rec.stats["dropped"] == 0, rec.stats
    rate = total / elapsed
    row: dict[str, Any] = {
        "metric": "Recorder RSS" if rss else "Recorder sustained",
        "events": total,
        "events_per_s": round(rate),
        "vs_baseline": round(base_rate / rate, 2),
        "bytes_per_1M_events": round(size / total * 1e6),
        "amplification": round(written / size, 2),
        "files": rec.stats["files"],
    }
    if rss and samples:

        def at(frac: float) -> float:
            target = frac * total
            return min(samples, key=lambda s: abs(s[0] - target))[1] / 2**20

        row.update(
            {
                "rss_10pct_MiB": round(at(0.1)),
                "rss_50pct_MiB": round(at(0.5)),
                "rss_100pct_MiB": round(at(1.0)),
                "rss_max_MiB": round(max(s[1] for s in samples) / 2**20),
            }
        )
    shutil.rmtree(root, ignore_errors=True)
    return row


def paced(events: list[RealtimeEvent], rate: float, seconds: float, tmp: Path) -> dict[str, Any]:
    root = tmp / "paced"
    proc = psutil.Process()
    rec = Recorder(None, root)
    w0 = _write_chars()
    c0 = proc.cpu_times()
    t0 = time.perf_counter()
    rec.start()
    n = int(rate * seconds)
    step = 50  # write in small bursts, like a socket delivering a few frames at a time
    for i in range(0, n, step):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        for j in range(i, min(i + step, n)):
            rec.write(events[j % len(events)])
    rec.stop()
    wall = time.perf_counter() - t0
    c1 = proc.cpu_times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    size = _disk_bytes(root)
    shutil.rmtree(root, ignore_errors=True)
    return {
        "metric": f"Recorder paced {rate:,.0f}/s for {seconds:.0f} s",
        "events": n,
        "cpu_share": round(cpu / wall, 3),
        "amplification": round((_write_chars() - w0) / size, 2),
        "bytes_per_1M_events": round(size / n * 1e6),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    quick = parse_quick(__doc__, argv)
    n_rate = 100_000 if quick else 500_000
    n_rss = 300_000 if quick else 10_000_000
    paced_s = 5.0 if quick else 60.0  # full: one whole rotate_seconds
    events = make_events(n_rate)
    tmp = Path(tempfile.mkdtemp(prefix="bench-recording-"))
    try:
        rows = baseline(events, tmp)
        base_rate = rows[0]["events_per_s"]
        rows.append(sustained(events, n_rate, tmp, base_rate))
        rows.append(paced(events, 1000.0, paced_s, tmp))
        rows.append(sustained(events, n_rss, tmp, base_rate, rss=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
