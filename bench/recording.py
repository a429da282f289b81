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

Analysis of a generated recording (``HARMONY_BENCH_RECORDING_EVENTS`` events, default 300 000; the
published table uses 10 000 000), each measurement in a fresh process (peak RSS = its ``VmHWM``):

* ``analysis: DuckDB path``          — ``lag_summary`` + ``event_rates`` + ``status_durations`` on the
                                       recording path (the work runs in DuckDB, out of core)
* ``analysis: read_recording + pandas (baseline)`` — ``read_recording`` then the same three functions on
                                       the DataFrame, on the first ``HARMONY_BENCH_RECORDING_BASELINE``
                                       events (default: all of them, at most 2 000 000: it needs about
                                       2.1 GB per million events); ``per_1M_events_s`` compares the two

    python bench/recording.py            # full (a few minutes: 10 M events)
    python bench/recording.py --quick    # small sizes (< 60 s)
    HARMONY_BENCH_RECORDING_EVENTS=10000000 python bench/recording.py --quick   # the 10 M analysis table
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from _table import parse_quick, print_table

from harmony_lab.events import RealtimeEvent
from harmony_lab.recording import Recorder
from harmony_lab.recording._codec import SCHEMA, TS, events_to_table
from harmony_lab.recording._layout import iter_parts, part_name, partition_dir

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


# --------------------------------------------------------------------------- analysis beyond memory

_GEN_T0 = datetime(2025, 11, 3, 9, 0, tzinfo=UTC)
_GEN_PART_ROWS = 50_000  # the Recorder's default rotate_rows
_GEN_COLUMNS = pa.array([list(COLUMNS)], SCHEMA.field("columns").type)


def _generated_chunk(start: int, n: int, channel: int, channels: int) -> pa.Table:
    """Rows ``start, start + channels, …`` of a generated recording: channel ``channel`` of ``channels``.

    The mix of make_events (80 % changes of two tables with 1-50 ms commit lag, presence, broadcasts,
    heartbeats), plus a status event every 1 001 events cycling connected / reconnecting.
    """
    seq = start + channel + channels * np.arange(n, dtype=np.int64)
    r = seq % 20
    is_change = r < 16
    is_status = (seq % 1001) == 1000
    kind = np.where(
        is_status,
        "status",
        np.where(
            is_change, "change", np.where(r < 18, "presence", np.where(r == 18, "broadcast", "heartbeat"))
        ),
    )
    at_us = int((_GEN_T0 - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)) + 250 * seq
    lag_us = 1000 + (seq * 7919) % 49_000
    change = is_change & ~is_status
    sid = pa.array(np.full(n, "bench-generated"))
    ids = pa.array(seq).cast(pa.string())
    new = pc.binary_join_element_wise(
        '{"id":', ids, ',"channel_id":', pa.array(seq % 4).cast(pa.string()), ',"content":"message number ',
        ids, ' with a little text"}', "",
    )  # fmt: skip
    payload = np.where(
        is_status,
        '{"previous":"connected"}',
        np.where(r < 18, '{"key":"user-1","current":[],"new":[{"phx_ref":"F1"}]}', '{"typing":true}'),
    )
    status = np.where(is_status, np.where((seq // 1000) % 3 == 0, "reconnecting", "connected"), None)
    empty_cols = pa.array([[]] * n, SCHEMA.field("columns").type)
    cols = {
        "session_id": sid,
        "seq": pa.array(seq),
        "received_at": pa.array(at_us).cast(TS),
        "received_mono_ns": pa.array(seq * 250_000),
        "kind": pa.array(kind),
        "channel": pa.array(np.full(n, f"room-{channel}")),
        "topic": pa.array(np.full(n, f"realtime:room-{channel}")),
        "schema": pa.array(np.where(change, "public", None)),
        "table": pa.array(np.where(change, np.where(seq % 5 == 0, "reactions", "messages"), None)),
        "op": pa.array(np.where(change, "INSERT", None)),
        "commit_ts": pc.if_else(pa.array(change), pa.array(at_us - lag_us).cast(TS), pa.nulls(n, TS)),
        "pk": pc.if_else(pa.array(change), pc.binary_join_element_wise('{"id":', ids, "}", ""), None),
        "new": pc.if_else(pa.array(change), new, None),
        "old": pa.nulls(n, pa.string()),
        "columns": pc.if_else(pa.array(change), _GEN_COLUMNS.take(np.zeros(n, dtype=np.int64)), empty_cols),
        "errors": pa.nulls(n, pa.list_(pa.string())),
        "payload": pc.if_else(pa.array(change), None, pa.array(payload)),
        "status": pa.array(status, pa.string()),
        "reason": pa.nulls(n, pa.string()),
        "backfilled": pa.array(np.zeros(n, dtype=bool)),
        "suppressed": pa.array(np.zeros(n, dtype=bool)),
        "attempt": pa.nulls(n, pa.int64()),
        "gap_start": pa.nulls(n, TS),
        "gap_end": pa.nulls(n, TS),
        "json_types": pa.nulls(n, pa.string()),
    }
    return pa.Table.from_pydict(cols, schema=SCHEMA)


def generate_recording(root: Path, total: int, channels: int = 4) -> None:
    """A recording of ``total`` events in the Recorder's layout (parts of 50 000 rows per channel)."""
    per_channel = -(-total // channels)
    for ch in range(channels):
        count = max(0, min(per_channel, (total - ch + channels - 1) // channels))
        for first in range(0, count, _GEN_PART_ROWS):
            n = min(_GEN_PART_ROWS, count - first)
            table = _generated_chunk(first * channels, n, ch, channels)
            path = partition_dir(root, _GEN_T0.date(), f"room-{ch}") / part_name("bench-generated", first)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, compression="zstd", row_group_size=_GEN_PART_ROWS)


_ANALYSIS_CHILD = """
import json, sys, time
mode, path, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
from harmony_lab import analysis, read_recording
t0 = time.perf_counter()
if mode == "duckdb":
    source = path
else:
    source = read_recording(path, where=[("seq", "<", limit)])
lag = analysis.lag_summary(source)
rates = analysis.event_rates(source, "1s")
durations = analysis.status_durations(source)
seconds = time.perf_counter() - t0
print(json.dumps({
    "seconds": seconds,
    # VmHWM starts afresh at exec (ru_maxrss would include the parent's peak from before the fork)
    "peak_rss_MiB": next(
        int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")
    ) / 1024,
    "changes": int(lag["count"].sum()),
    "rate_bins": len(rates),
    "channels": len(durations),
}))
"""


def _analysis_child(mode: str, root: Path, limit: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", _ANALYSIS_CHILD, mode, str(root), str(limit)],
        capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"analysis child ({mode}) failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def analysis_rows(total: int, baseline_events: int, tmp: Path) -> list[dict[str, Any]]:
    root = tmp / "generated"
    t0 = time.perf_counter()
    generate_recording(root, total)
    gen_s = time.perf_counter() - t0
    size = _disk_bytes(root)
    duck = _analysis_child("duckdb", root, total)
    base = _analysis_child("pandas", root, baseline_events)
    shutil.rmtree(root, ignore_errors=True)
    return [
        {
            "metric": "analysis: DuckDB path (lag_summary + event_rates + status_durations)",
            "events": total,
            "seconds": round(duck["seconds"], 2),
            "per_1M_events_s": round(duck["seconds"] / total * 1e6, 3),
            "peak_rss_MiB": round(duck["peak_rss_MiB"]),
            "changes": duck["changes"],
            "recording_MiB": round(size / 2**20),
            "generate_s": round(gen_s, 1),
        },
        {
            "metric": "analysis: read_recording + pandas (baseline)",
            "events": min(total, baseline_events),
            "seconds": round(base["seconds"], 2),
            "per_1M_events_s": round(base["seconds"] / min(total, baseline_events) * 1e6, 3),
            "peak_rss_MiB": round(base["peak_rss_MiB"]),
            "changes": base["changes"],
        },
    ]


# --------------------------------------------------------------------------- seeking (time travel)

_SEEK_KEYS = 10_000  # rows a table holds at most: the state a seek rebuilds stays this size


def _seek_chunk(start: int, n: int, channel: int, channels: int) -> pa.Table:
    """A generated chunk whose changes churn a bounded table: each key is inserted, then updated over
    and over, every 97th change deleting it (the next change of that key inserts it again)."""
    table = _generated_chunk(start, n, channel, channels)
    seq = start + channel + channels * np.arange(n, dtype=np.int64)
    change = np.asarray(table.column("kind").to_numpy(zero_copy_only=False) == "change")
    key = seq % _SEEK_KEYS
    first = seq < _SEEK_KEYS * 20
    after_delete = ((seq - _SEEK_KEYS * 20) % 97) == 1
    op = np.where(seq % 97 == 0, "DELETE", np.where(first | after_delete, "INSERT", "UPDATE"))
    keys = pa.array(key).cast(pa.string())
    pk = pc.binary_join_element_wise('{"id":', keys, "}", "")
    new = pc.binary_join_element_wise(
        '{"id":', keys, ',"channel_id":', pa.array(seq % 4).cast(pa.string()), ',"content":"version ',
        pa.array(seq).cast(pa.string()), '"}', "",
    )  # fmt: skip
    is_delete = pa.array(change & (op == "DELETE"))
    cols = {
        "op": pc.if_else(pa.array(change), pa.array(op), None),
        "pk": pc.if_else(pa.array(change), pk, None),
        "new": pc.if_else(pc.and_(pa.array(change), pc.invert(is_delete)), new, None),
        "old": pc.if_else(is_delete, pk, None),
    }
    for name, values in cols.items():
        table = table.set_column(table.schema.get_field_index(name), SCHEMA.field(name), values)
    return table


def generate_seek_recording(root: Path, total: int, channels: int = 4) -> None:
    """Like :func:`generate_recording`, with changes that update and delete a bounded set of keys."""
    per_channel = -(-total // channels)
    for ch in range(channels):
        count = max(0, min(per_channel, (total - ch + channels - 1) // channels))
        for first in range(0, count, _GEN_PART_ROWS):
            n = min(_GEN_PART_ROWS, count - first)
            table = _seek_chunk(first * channels, n, ch, channels)
            path = partition_dir(root, _GEN_T0.date(), f"room-{ch}") / part_name("bench-generated", first)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, compression="zstd", row_group_size=_GEN_PART_ROWS)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def seek_rows(total: int, tmp: Path, seeks: int = 20) -> list[dict[str, Any]]:
    """Seek latency of ``LiveFrame.at``, of a ``SeekIndex`` (``open_s``: building it) and of a Player
    with two tables (``open_s``: opening it; its first seek, which builds the indexes, is not counted) at
    instants spread over a
    generated recording; baseline in the same run: ``replay`` as fast as possible into a LiveFrame up to
    the earliest of those instants (what seeking costs without DuckDB), scaled per event."""
    import asyncio

    from harmony_lab.frames import LiveFrame
    from harmony_lab.frames._at import SeekIndex
    from harmony_lab.recording import replay
    from harmony_lab.widgets import Player

    root = tmp / "seek"
    generate_seek_recording(root, total)
    t_start = _GEN_T0
    span_us = 250 * total
    rng = np.random.default_rng(7)
    instants = [t_start + timedelta(microseconds=int(f * span_us)) for f in sorted(rng.uniform(0, 1, seeks))]
    at_s, rows = [], []
    for when in instants:
        t0 = time.perf_counter()
        lf = LiveFrame.at(root, "messages", when)
        at_s.append(time.perf_counter() - t0)
        rows.append(len(lf))
    t0 = time.perf_counter()
    index = SeekIndex(LiveFrame, root, "messages")
    build_s = time.perf_counter() - t0
    idx_s = []
    for when in instants:
        t0 = time.perf_counter()
        index.at(when)
        idx_s.append(time.perf_counter() - t0)
    index.close()

    async def player_seeks() -> tuple[list[float], float]:
        t0 = time.perf_counter()
        player = Player(root, tables=["messages", "reactions"])
        open_s = time.perf_counter() - t0
        out = []
        try:
            await player.seek(instants[-1])  # the first seek builds the indexes
            for when in instants[: max(1, seeks // 2)]:
                t0 = time.perf_counter()
                await player.seek(when)
                out.append(time.perf_counter() - t0)
        finally:
            player.close()
        return out, open_s

    async def replay_to(when: datetime) -> tuple[float, int]:
        lf = LiveFrame(None, "messages", max_rows=None)
        n = 0
        t0 = time.perf_counter()
        async for ev in replay(root, speed=None, kinds="change"):
            if ev.received_at > when:
                break
            lf.apply(ev)
            n += 1
        return time.perf_counter() - t0, n

    player_s, open_s = asyncio.run(player_seeks())
    base_limit = min(total, 200_000)
    base_when = t_start + timedelta(microseconds=250 * base_limit)
    base_s, base_events = asyncio.run(replay_to(base_when))
    shutil.rmtree(root, ignore_errors=True)
    base_per_event = base_s / max(1, base_events)
    mid = total * 0.8 / 2  # change events before the median instant
    return [
        {
            "metric": "seek: SeekIndex.at (messages; index built once)",
            "events": total,
            "seeks": len(idx_s),
            "p50_s": round(_percentile(idx_s, 50), 3),
            "p99_s": round(_percentile(idx_s, 99), 3),
            "open_s": round(build_s, 2),
        },
        {
            "metric": "seek: LiveFrame.at (messages)",
            "events": total,
            "seeks": len(at_s),
            "p50_s": round(_percentile(at_s, 50), 3),
            "p99_s": round(_percentile(at_s, 99), 3),
            "rows_p50": int(_percentile(rows, 50)),
        },
        {
            "metric": "seek: Player.seek (messages + reactions, roster, timeline)",
            "events": total,
            "seeks": len(player_s),
            "p50_s": round(_percentile(player_s, 50), 3),
            "p99_s": round(_percentile(player_s, 99), 3),
            "open_s": round(open_s, 2),
        },
        {
            "metric": "seek baseline: replay(speed=None) into a LiveFrame",
            "events": base_events,
            "seconds": round(base_s, 2),
            "per_1M_events_s": round(base_per_event * 1e6, 2),
            "p50_s": round(base_per_event * mid, 1),  # extrapolated to the median instant
        },
    ]


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
        n_analysis = int(os.environ.get("HARMONY_BENCH_RECORDING_EVENTS", "300000"))
        n_baseline = int(os.environ.get("HARMONY_BENCH_RECORDING_BASELINE", str(min(n_analysis, 2_000_000))))
        rows += analysis_rows(n_analysis, n_baseline, tmp)
        rows += seek_rows(int(os.environ.get("HARMONY_BENCH_SEEK_EVENTS", str(n_analysis))), tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
