"""The record/replay/inspect subcommands' offline behaviour (the live record run is in test_live.py)."""

from __future__ import annotations

import json

from harmony_lab.cli import main
from harmony_lab.recording import Recorder
from tests.recording.recording_events import every_kind


def make_recording(path):
    evs = every_kind()
    with Recorder(None, path) as rec:
        for ev in evs:
            rec.write(ev)
    return evs, rec


def test_replay_prints_events_and_json_lines(tmp_path, capsys):
    evs, _ = make_recording(tmp_path)
    assert main(["replay", str(tmp_path), "--speed", "max"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [repr(ev) for ev in evs]
    assert f"{len(evs)} events" in err
    assert main(["replay", str(tmp_path), "--speed", "0", "--json", "--kind", "gap"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["seq"] for r in rows] == [ev.seq for ev in evs if ev.kind == "gap"]
    assert rows[0]["reason"] == "socket closed (1006) while connected"


def test_replay_and_inspect_errors(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "missing")]) == 2
    assert "no recording" in capsys.readouterr().err
    assert main(["replay", str(tmp_path), "--speed", "fast"]) == 2
    assert "--speed" in capsys.readouterr().err
    assert main(["replay", str(tmp_path), "--speed", "-1"]) == 2
    assert main(["inspect", str(tmp_path / "missing")]) == 2


def test_inspect_summarises(tmp_path, capsys):
    evs, rec = make_recording(tmp_path)
    assert main(["inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert rec.session_id in out
    assert "stopped" in out
    assert f"{len(evs):,} events" in out
    for kind in {str(ev.kind) for ev in evs}:
        assert kind in out
    (tmp_path / "date=2025-11-03" / "channel=room%3Alobby" / ".part-x.parquet.1.tmp").write_bytes(b"PAR1")
    assert main(["inspect", str(tmp_path)]) == 0
    assert "leftovers of interrupted writes: 1" in capsys.readouterr().out


def test_record_requires_url_and_key(capsys, monkeypatch):
    for var in ("SUPABASE_URL", "SUPABASE_ANON_KEY", "SUPABASE_KEY"):
        monkeypatch.delenv(var, raising=False)
    assert main(["record", "--table", "messages"]) == 2
    assert "--url and --key" in capsys.readouterr().err
