"""The wheel carries everything an installed harmony_lab needs at run time."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip_wheel, "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("harmony_lab-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_ships_sql_widgets_notebooks_and_marker(wheel):
    names = set(wheel.namelist())
    assert "harmony_lab/py.typed" in names
    built = {p.name for p in (ROOT / "harmony_lab" / "widgets" / "static").iterdir()}
    assert {"live_table.js", "inspector.js", "harmony.css"} <= built, "the built widget bundles are missing"
    assert {f"harmony_lab/widgets/static/{n}" for n in built} <= names
    notebooks = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert {f"harmony_lab/demo/notebooks/{n}" for n in notebooks} <= names
    sql = {p.name for p in (ROOT / "harmony_lab" / "sql").glob("*.sql")}
    assert {f"harmony_lab/sql/{n}" for n in sql} <= names


def test_wheel_declares_the_cli_entry_point(wheel):
    (entry,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    assert "harmony-lab = harmony_lab.cli:main" in wheel.read(entry).decode()
