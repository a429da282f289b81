"""Recording must never be the thing that loses data: SIGKILL, SIGTERM, interpreter exit, live readers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from harmony_lab.events import RealtimeEvent
from harmony_lab.recording import Recorder, read_recording
from harmony_lab.recording._layout import iter_parts
from harmony_lab.recording._manifest import read_manifest
from tests.recording.recording_events import T0

# A recording process: it generates a live event stream (three channels, ~1 kHz) and reports every
# event on stdout right after handing it to the recorder: "<seq> <channel> <received_mono_ns>".
GENERATOR = textwrap.dedent(
    """
    import sys, time, signal
    from harmony_lab.events import RealtimeEvent
    from harmony_lab.recording import Recorder

    out, flush, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    if mode == "chained":
        def handler(signum, frame):
            print("HANDLED", flush=True)
            raise SystemExit(7)
        signal.signal(signal.SIGTERM, handler)
    rec = Recorder(None, out, flush_seconds=flush, rotate_rows=400)
    rec.start()
    limit = int(sys.argv[4]) if len(sys.argv) > 4 else None
    i = 0
    while limit is None or i < limit:
        ev = RealtimeEvent(kind="broadcast", channel=f"c{i % 3}", seq=i, op="tick", payload={"i": i})
        rec.write(ev)
        print(i, ev.channel, ev.received_mono_ns, flush=True)
        i += 1
        if limit is None:
            time.sleep(0.001)
    print("DONE", flush=True)
    if mode == "exit":
        sys.exit(0)  # no stop(): atexit must flush
    while True:
        time.sleep(0.05)
    """
)


def start_generator(tmp_path: Path, out: Path, flush: float, mode: str, limit: int | None = None):
    script = tmp_path / "gen.py"
    script.write_text(GENERATOR)
    args = [sys.executable, str(script), str(out), str(flush), mode]
    if limit is not None:
        args.append(str(limit))
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_every_visible_file_opens(out: Path) -> int:
    rows = 0
    for part in iter_parts(out):
        rows += pq.read_table(part.path).num_rows
    return rows


def test_sigkill_loses_at_most_the_last_flush_interval(tmp_path):
    out, flush = tmp_path / "rec", 0.5
    generated: dict[str, list[tuple[int, int]]] = defaultdict(list)

    def note(line: str) -> None:
        seq, channel, mono = line.split()
        generated[channel].append((int(seq), int(mono)))

    with start_generator(tmp_path, out, flush, "forever") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            note(line)
            if len(generated["c0"]) + len(generated["c1"]) + len(generated["c2"]) > 2500:
                break  # ~3 s of stream: several flushes and row rotations have happened
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)  # what it had reported before it died
        for line in rest.splitlines():
            note(line)
    assert proc.returncode == -signal.SIGKILL

    visible_rows = assert_every_visible_file_opens(out)
    df = read_recording(out)
    assert len(df) == visible_rows
    assert duckdb.sql(f"select count(*) from read_parquet('{out}/**/*.parquet')").fetchall()[0][0] == len(df)
    assert len(df) > 1000
    last_mono = max(m for evs in generated.values() for _, m in evs)
    tolerance_ns = int((flush + 1.0) * 1e9)  # one flush interval + the time one flush may take here
    for channel, evs in generated.items():
        recorded = df.loc[df["channel"] == channel, "seq"].tolist()
        want = [s for s, _ in evs]
        assert recorded == want[: len(recorded)], f"{channel}: recorded events are not a prefix"
        lost = evs[len(recorded) :]
        if lost:
            first_lost_mono = lost[0][1]
            assert last_mono - first_lost_mono <= tolerance_ns, (
                f"{channel}: lost {len(lost)} events spanning "
                f"{(last_mono - first_lost_mono) / 1e9:.3f} s > flush {flush} s + 1 s"
            )
    m = next(iter(read_manifest(out)["sessions"].values()))
    assert m["status"] == "recording"  # never finalised: it was killed
    assert m["events"] <= len(df)


def test_sigterm_flushes_everything_then_dies_by_sigterm(tmp_path):
    out = tmp_path / "rec"
    with start_generator(tmp_path, out, 30.0, "wait", limit=2000) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("DONE"):
                break
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM  # the default action still happens after the flush
    df = read_recording(out)
    assert sorted(df["seq"]) == list(range(2000))
    assert next(iter(read_manifest(out)["sessions"].values()))["status"] == "stopped"


def test_sigterm_chains_to_the_previous_handler(tmp_path):
    out = tmp_path / "rec"
    with start_generator(tmp_path, out, 30.0, "chained", limit=300) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("DONE"):
                break
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    assert "HANDLED" in rest
    assert proc.returncode == 7
    assert sorted(read_recording(out)["seq"]) == list(range(300))


def test_interpreter_exit_flushes_via_atexit(tmp_path):
    out = tmp_path / "rec"
    with start_generator(tmp_path, out, 30.0, "exit", limit=1200) as proc:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert sorted(read_recording(out)["seq"]) == list(range(1200))
    assert next(iter(read_manifest(out)["sessions"].values()))["status"] == "stopped"


def test_readers_during_recording_only_ever_see_complete_growing_files(tmp_path):
    stop = threading.Event()
    rec = Recorder(None, tmp_path, flush_seconds=0.02, rotate_rows=700)
    rec.start()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            for _ in range(50):
                rec.write(
                    RealtimeEvent(
                        kind="broadcast",
                        channel=f"c{i % 2}",
                        seq=i,
                        received_at=T0 + timedelta(microseconds=i),
                        payload={"i": i, "pad": "x" * 200},
                    )
                )
                i += 1
            time.sleep(0.002)

    t = threading.Thread(target=produce)
    t.start()
    counts = []
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            counts.append(len(read_recording(tmp_path)))
            for part in iter_parts(tmp_path):
                pq.read_metadata(part.path)
    finally:
        stop.set()
        t.join()
        rec.stop()
    assert counts == sorted(counts)  # what is visible only grows
    assert counts[-1] > 0
    assert len(read_recording(tmp_path)) == rec.stats["events"]
    assert not [p for p in tmp_path.rglob("*.tmp")]
    assert os.listdir(tmp_path)


def test_jupyter_kernel_shutdown_flushes(tmp_path):
    """A notebook's recorder that is never stopped is flushed when the kernel shuts down (or restarts)."""
    from jupyter_client.manager import start_new_kernel

    out = tmp_path / "rec"
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        code = (
            "from harmony_lab.events import RealtimeEvent\n"
            "from harmony_lab.recording import Recorder\n"
            f"rec = Recorder(None, {str(out)!r}, flush_seconds=3600).start()\n"
            "for i in range(500):\n"
            "    rec.write(RealtimeEvent(kind='broadcast', channel='nb', seq=i))\n"
        )
        reply = kc.execute_interactive(code, timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
        assert not list(out.rglob("*.parquet"))  # nothing flushed yet (flush_seconds=3600)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)  # what "Shut Down Kernel" / "Restart Kernel" does
    assert sorted(read_recording(out)["seq"]) == list(range(500))
    assert next(iter(read_manifest(out)["sessions"].values()))["status"] == "stopped"
