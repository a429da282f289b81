"""The README's tour runs as written: ``examples/tour.py`` under ``asyncio.run`` and ``notebooks/tour.ipynb``
cell by cell, each against a real embedded stack with simulated users and real ids from the demo schema."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]

# run after the tour notebook, in its kernel: who the dashboard's roster shows
ROSTER_PROBE = """
from harmony_lab.demo import until
board = [v for v in Out.values() if type(v).__name__ == "Dashboard"][-1]
def present():
    return [u for u in board.roster.roster() if u["status"] != "offline"]
await until(lambda: present(), within=60, what="someone in the dashboard's roster")
print("roster shows", len(present()), "present users")
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_tour_script_runs(tmp_path):
    r = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", str(ROOT / "examples" / "tour.py")],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = r.stdout
    assert r.returncode == 0, f"{out[-3000:]}\n{r.stderr[-4000:]}"
    assert "Welcome to Harmony" in out  # the channel's existing rows, from the starting snapshot
    assert "<ChannelState 'inbox' connected" in out
    assert "status: inbox reconnecting" in out
    assert "status: inbox connected" in out  # the manager recovered from the dropped connections
    recorded = next(line for line in out.splitlines() if line.startswith("recorded "))
    events, rows = (int(w) for w in recorded.replace(";", "").split() if w.isdigit())
    assert events >= 2
    assert rows == events  # what the recorder wrote is what read_recording returns
    assert "Traceback" not in r.stderr


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_tour_notebook_runs(tmp_path, monkeypatch):
    work = tmp_path / "nb"
    shutil.copytree(ROOT / "notebooks", work)
    nb = nbformat.read(work / "tour.ipynb", as_version=4)
    for k, v in _env().items():
        monkeypatch.setenv(k, v)  # the kernel inherits this process's environment
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=180,
        startup_timeout=120,
        resources={"metadata": {"path": str(work)}},
    )
    written = len(nb.cells)
    nb.cells.append(nbformat.v4.new_code_cell(ROSTER_PROBE))
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):  # the notebook as written, then a look at its dashboard
            client.execute_cell(cell, index)
    probe = nb.cells.pop()
    assert len(nb.cells) == written
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(
        o.get("text", "") if o.get("output_type") == "stream" else o.get("data", {}).get("text/plain", "")
        for o in outputs
    )
    assert "('inbox', 'reconnecting')" in text
    assert "('inbox', 'connected')" in text
    assert "recorded " in text
    assert "change" in text  # the recording's event kinds
    views = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert [v["data"]["text/plain"].split()[0] for v in views] == ["<Dashboard"]
    assert "roster=True" in views[0]["data"]["text/plain"]
    # the dashboard's roster lists the people in the lobby (not "nobody here yet")
    (shown,) = [o["text"] for o in probe.outputs if o.get("output_type") == "stream"]
    present = int(shown.split()[2])
    assert present >= 1, shown


def _python_block(markdown: str, heading: str) -> list[str]:
    text = markdown[markdown.index(heading) :]
    start = text.index("```python\n") + len("```python\n")
    return [line for line in text[start : text.index("```\n", start)].splitlines() if line.strip()]


def test_the_readme_shows_the_tour_the_tests_run():
    """The README's tour is the notebook's code, line for line (so what the tests run is what it shows)."""
    readme = _python_block((ROOT / "README.md").read_text(), "## A tour in code")
    doc = _python_block((ROOT / "docs" / "tour.md").read_text(), "## In a notebook")
    nb = nbformat.read(ROOT / "notebooks" / "tour.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    cells = [line for line in code.splitlines() if line.strip()]
    assert readme == doc
    assert readme == cells
