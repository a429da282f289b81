"""The record/replay/inspect subcommands' offline behaviour (the live record run is in test_live.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

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
    assert "a URL and a key are required" in capsys.readouterr().err


def test_record_rejects_a_bad_filter_or_event_before_recording(tmp_path, capsys):
    out = tmp_path / "rec"
    base = ["record", "--url", "http://127.0.0.1:9", "--key", "k", "--table", "messages", "--out", str(out)]
    assert main([*base, "--filter", "channel_id==1"]) == 2
    err = capsys.readouterr().err
    assert "harmony-lab record: invalid filter 'channel_id==1'" in err
    assert "column=op.value" in err  # the valid forms
    assert main([*base, "--event", "INSERTED"]) == 2
    assert "event must be one of" in capsys.readouterr().err
    assert not out.exists()  # nothing was started


def test_record_progress_says_why_it_is_not_connected(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(
        [sys.executable, "-m", "harmony_lab.cli", "record", "--url", f"http://127.0.0.1:{port}",
         "--key", "k", "--table", "messages", "--out", str(tmp_path / "rec"), "--duration", "6"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "reconnecting (connect failed: ConnectionRefusedError" in proc.stderr, proc.stderr


def test_record_takes_the_key_from_the_environment_and_warns_about_key_on_the_command_line(
    monkeypatch, caplog, capsys
):
    # a bad --duration stops the command before it connects, after the key has been looked at
    monkeypatch.setenv("SUPABASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SUPABASE_ANON_KEY", "from-the-environment")
    assert main(["record", "--table", "messages", "--duration", "-1"]) == 2
    assert "--duration must be positive" in capsys.readouterr().err  # the key was found
    assert not [r for r in caplog.records if "--key" in r.getMessage()]
    assert main(["record", "--key", "on-the-command-line", "--table", "messages", "--duration", "-1"]) == 2
    (warning,) = [r for r in caplog.records if "--key" in r.getMessage()]
    assert "every local user" in warning.getMessage()
    assert "SUPABASE_ANON_KEY" in warning.getMessage()
    monkeypatch.delenv("SUPABASE_ANON_KEY")
    monkeypatch.delenv("SUPABASE_KEY", raising=False)
    assert main(["record", "--table", "messages", "--duration", "1"]) == 2
    assert "SUPABASE_ANON_KEY" in capsys.readouterr().err  # no key anywhere: refused, saying how
