"""The files are plain hive-partitioned Parquet: duckdb and polars read them directly."""

from __future__ import annotations

import json

import duckdb
import polars as pl

from harmony_lab.recording import Recorder, read_recording
from tests.recording.recording_events import every_kind


def record_two_channels(path):
    evs = every_kind() + every_kind(seq0=500, channel="odd/name=%~ü")
    with Recorder(None, path, rotate_rows=5) as rec:
        for ev in evs:
            rec.write(ev)
    return evs


def test_duckdb_reads_the_recording(tmp_path):
    evs = record_two_channels(tmp_path)
    glob = f"{tmp_path}/**/*.parquet"
    rows = duckdb.sql(
        f"""select channel, count(*) as n, min(received_at) as first
            from read_parquet('{glob}', hive_partitioning = true) group by channel order by channel"""
    ).fetchall()
    want = sorted({e.channel for e in evs})
    assert [r[0] for r in rows] == want
    assert [r[1] for r in rows] == [sum(e.channel == c for e in evs) for c in want]
    assert rows[0][2] == min(e.received_at for e in evs if e.channel == want[0])
    # JSON columns are queryable as JSON; "table" needs quoting in SQL (a keyword)
    bodies = duckdb.sql(
        f"""select json_extract_string(new, '$.body') from read_parquet('{glob}')
            where kind = 'change' and op = 'INSERT' and "table" = 'messages' and new is not null
            order by seq"""
    ).fetchall()
    assert [b[0] for b in bodies] == [
        e.new.get("body")
        for e in sorted(evs, key=lambda e: e.seq)
        if e.kind == "change" and e.op == "INSERT" and e.table == "messages"
    ]
    # the date partition decodes, and the channel partition (percent-encoded) too
    parts = duckdb.sql(
        f"select distinct date, channel from read_parquet('{glob}', hive_partitioning = true)"
    ).fetchall()
    assert {str(p[0]) for p in parts} == {"2025-11-03"}


def test_polars_reads_the_recording(tmp_path):
    evs = record_two_channels(tmp_path)
    lf = pl.scan_parquet(f"{tmp_path}/**/*.parquet")
    df = lf.filter(pl.col("kind") == "presence").sort("seq").collect()
    want = sorted((e for e in evs if e.kind == "presence"), key=lambda e: e.seq)
    assert df["seq"].to_list() == [e.seq for e in want]
    assert [json.loads(p) for p in df["payload"]] == [e.payload for e in want]
    assert df.schema["received_at"] == pl.Datetime("us", "UTC")
    hive = pl.scan_parquet(f"{tmp_path}/**/*.parquet", hive_partitioning=True).collect()
    assert set(hive["channel"]) == {e.channel for e in evs}  # hive values decode to the names
    assert len(hive) == len(read_recording(tmp_path))
