"""``bash dev.sh lab`` on a warm environment goes straight to ``harmony-lab lab``: it reinstalls only when
pyproject.toml changed or the environment lacks an extra the command needs. Checked against a stand-in
environment whose ``python`` and ``harmony-lab`` only say how they were called (nothing is installed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _venv(tmp_path: Path, stamp_extras: str | None) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name in ("python", "harmony-lab"):
        script = venv / "bin" / name
        script.write_text(f'#!/bin/sh\necho "{name} called: $*"\n')
        script.chmod(0o755)
    if stamp_extras is not None:
        cksum = subprocess.run(
            ["cksum"], input=(ROOT / "pyproject.toml").read_bytes(), capture_output=True, check=True
        ).stdout.decode()
        (venv / ".harmony-lab-installed").write_text(f"{stamp_extras} {cksum}")
    return venv


def _dev_lab(venv: Path) -> str:
    r = subprocess.run(
        ["bash", str(ROOT / "dev.sh"), "lab", "--no-browser", "--port", "0"],
        env={"PATH": "/usr/bin:/bin", "HARMONY_LAB_VENV": str(venv)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_warm_environment_starts_the_lab_at_once(tmp_path):
    for extras in ("lab", "lab,test", "test,lab,bench"):
        out = _dev_lab(_venv(tmp_path / extras, extras))
        assert out == "harmony-lab called: lab --no-browser --port 0\n", (extras, out)


def test_a_stale_or_smaller_environment_is_reinstalled_first(tmp_path):
    for extras in (None, "test"):
        out = _dev_lab(_venv(tmp_path / str(extras), extras))
        assert "installing harmony_lab[lab]" in out, out
        assert "python called: -m pip install -q -e .[lab]" in out, out
        assert out.endswith("harmony-lab called: lab --no-browser --port 0\n"), out
    venv = _venv(tmp_path / "changed", "lab")
    stamp = venv / ".harmony-lab-installed"
    stamp.write_text(stamp.read_text().replace("lab ", "lab 1", 1))  # another pyproject.toml
    assert "installing harmony_lab[lab]" in _dev_lab(venv)
