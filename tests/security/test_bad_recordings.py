"""Hostile recording directories: a deeply nested manifest, truncated and foreign part files.

``inspect`` must answer a bad manifest with one line and exit 2; every reader (``inspect``,
``replay``, ``read_recording``) skips an unreadable part with a warning that names it, counts it,
and still gives every event of the healthy parts.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from harmony_lab.cli import main
from harmony_lab.recording import CorruptPartWarning, Recorder, read_recording, replay
from harmony_lab.recording._layout import iter_parts
from tests.recording.recording_events import T0, every_kind

pytestmark = pytest.mark.timeout(60)


def two_channel_recording(root: Path) -> tuple[list, list]:
    """Events of two channels (one part file each); returns (lobby events, other events)."""
    lobby = every_kind()
    other = every_kind(t0=T0, seq0=1000, channel="room:other")
    with Recorder(None, root) as rec:
        for ev in sorted(lobby + other, key=lambda e: e.received_at):
            rec.write(ev)
    return lobby, other


def part_of(root: Path, channel_segment: str) -> Path:
    (part,) = [p.path for p in iter_parts(root) if channel_segment in str(p.path)]
    return part


def test_inspect_of_a_manifest_nested_5000_deep_is_one_line_and_exit_2(tmp_path):
    two_channel_recording(tmp_path)
    (tmp_path / "_session.json").write_text('{"sessions": ' + "[" * 5000 + "]" * 5000 + "}")
    proc = subprocess.run(
        [sys.executable, "-m", "harmony_lab.cli", "inspect", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "RecursionError" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "nested too deeply" in lines[0]
    assert "_session.json" in lines[0]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("[1, 2]", "no 'sessions' object"),
        ('{"sessions": {"s": [1]}}', "is not an object"),
        ("{not json", "not valid JSON"),
        (b"\xff\xfe{", "not valid JSON"),
    ],
)
def test_inspect_of_a_malformed_manifest_is_one_line_and_exit_2(tmp_path, capsys, content, why):
    two_channel_recording(tmp_path)
    manifest = tmp_path / "_session.json"
    if isinstance(content, bytes):
        manifest.write_bytes(content)
    else:
        manifest.write_text(content)
    assert main(["inspect", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert why in err[0]


def test_a_recorder_writing_next_to_a_nested_manifest_moves_it_aside(tmp_path):
    (tmp_path / "_session.json").write_text("[" * 5000 + "]" * 5000)
    with Recorder(None, tmp_path) as rec:
        rec.write(every_kind()[0])
    assert list(tmp_path.glob("_session.json.corrupt-*"))
    assert main(["inspect", str(tmp_path)]) == 0


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_inspect_skips_a_truncated_part_names_it_and_counts_it(tmp_path, capsys):
    lobby, _ = two_channel_recording(tmp_path)
    bad = part_of(tmp_path, "room%3Aother")
    truncate(bad)
    assert main(["inspect", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "unreadable parts skipped: 1" in out
    assert bad.name in out
    assert str(bad) in err
    assert f"{len(lobby):,} events" in out


def test_read_recording_skips_a_truncated_part_with_a_warning(tmp_path):
    lobby, _ = two_channel_recording(tmp_path)
    bad = part_of(tmp_path, "room%3Aother")
    truncate(bad)
    with pytest.warns(CorruptPartWarning, match=bad.name) as record:
        df = read_recording(tmp_path)
    assert len(record) == 1
    assert sorted(df["seq"]) == sorted(ev.seq for ev in lobby)


def test_a_foreign_file_named_like_a_part_is_skipped(tmp_path):
    lobby, other = two_channel_recording(tmp_path)
    junk = part_of(tmp_path, "room%3Alobby").with_name("part-x-1.parquet")
    junk.write_bytes(b"PAR1" + b"\0" * 100 + b"PAR1")
    with pytest.warns(CorruptPartWarning, match="part-x-1.parquet"):
        df = read_recording(tmp_path)
    assert len(df) == len(lobby) + len(other)


def test_replay_skips_a_truncated_part_with_a_warning(tmp_path):
    lobby, _ = two_channel_recording(tmp_path)
    bad = part_of(tmp_path, "room%3Aother")
    truncate(bad)

    async def collect():
        return [ev async for ev in replay(tmp_path, speed=None)]

    with pytest.warns(CorruptPartWarning, match=bad.name):
        got = asyncio.run(collect())
    assert got == sorted(lobby, key=lambda e: (e.received_at, e.received_mono_ns, e.seq))


def test_replay_cli_goes_on_past_a_truncated_part(tmp_path):
    lobby, _ = two_channel_recording(tmp_path)
    bad = part_of(tmp_path, "room%3Aother")
    truncate(bad)
    proc = subprocess.run(
        [sys.executable, "-m", "harmony_lab.cli", "replay", str(tmp_path), "--speed", "max"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == len(lobby)
    assert bad.name in proc.stderr
    assert "Traceback" not in proc.stderr


def test_duckdb_readers_skip_a_truncated_part_with_a_warning(tmp_path):
    from harmony_lab import analysis, connect_recording

    lobby, _ = two_channel_recording(tmp_path)
    bad = part_of(tmp_path, "room%3Aother")
    truncate(bad)
    with pytest.warns(CorruptPartWarning, match=bad.name) as record:
        con = connect_recording(tmp_path)
    assert len(record) == 1
    with con:
        got = sorted(s for (s,) in con.sql("SELECT seq FROM events").fetchall())
    assert got == sorted(ev.seq for ev in lobby)
    with pytest.warns(CorruptPartWarning, match=bad.name):
        rates = analysis.event_rates(tmp_path, "1s", by=None)
    assert rates["events"].sum() == len(lobby)


def damage_a_data_page(path: Path, column: str = "received_at") -> None:
    """Overwrite the middle of one column chunk, leaving the footer intact."""
    meta = pq.read_metadata(path).row_group(0)
    (chunk,) = [meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema == column]
    data = bytearray(path.read_bytes())
    start = chunk.data_page_offset
    data[start + 8 : start + chunk.total_compressed_size - 4] = b"\xab" * (chunk.total_compressed_size - 12)
    path.write_bytes(bytes(data))


def test_the_duckdb_path_skips_a_part_damaged_inside_with_a_warning(tmp_path):
    from harmony_lab import analysis, connect_recording

    lobby, _ = two_channel_recording(tmp_path)
    bad = part_of(tmp_path, "room%3Aother")
    damage_a_data_page(bad)
    with connect_recording(tmp_path) as con, pytest.raises(duckdb.Error):  # the footer reads fine
        con.sql("SELECT max(received_at) FROM events").fetchall()
    with pytest.warns(CorruptPartWarning, match=bad.name):
        rates = analysis.event_rates(tmp_path, "1s", by=None)
    assert rates["events"].sum() == len(lobby)
    with pytest.warns(CorruptPartWarning, match=bad.name):
        want = analysis.lag_summary(read_recording(tmp_path))
    with pytest.warns(CorruptPartWarning, match=bad.name):
        got = analysis.lag_summary(tmp_path)
    pd.testing.assert_frame_equal(got, want)
