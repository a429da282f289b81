"""Every notebook executes cleanly with nbclient against a LocalRealtime it starts itself.

Each notebook runs in a fresh kernel from a temporary copy of ``notebooks/`` (never the repository
files), with ``HARMONY_LAB_*`` removed so ``stack()`` starts an embedded stack in the kernel: the path
of someone who opens a notebook without ``harmony-lab lab``. Cells have a timeout; waits inside the
notebooks are event-driven. Notebooks 01-05 run on the lab's own path in
``tests/browser/test_user_path.py`` (Run All in JupyterLab); here only the others execute.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.browser.userpath_driver import USER_PATH

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
ALL = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT = 180


def notebook_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARMONY_LAB_", "SUPABASE_"))}
    env.update(JUPYTER_PLATFORM_DIRS="1", PYTHONUNBUFFERED="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def execute(name: str, workdir: Path, artifacts: Path | None = None) -> nbformat.NotebookNode:
    shutil.copytree(NOTEBOOKS, workdir, dirs_exist_ok=True)
    nb = nbformat.read(workdir / name, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        startup_timeout=120,
        store_widget_state=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    old = dict(os.environ)
    env = notebook_env()  # computed before clearing: PYTHONPATH (a worktree first) must reach the kernel
    os.environ.clear()
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
        if artifacts is not None:
            nbformat.write(nb, artifacts / f"executed-{name}")
    return nb


def errors_in(nb: nbformat.NotebookNode) -> list[str]:
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"{out['ename']}: {out['evalue']}")
            if (
                out.get("output_type") == "stream"
                and out.get("name") == "stderr"
                and "Traceback" in out["text"]
            ):
                found.append(out["text"])
    return found


def output_text(nb: nbformat.NotebookNode) -> str:
    """Everything the cells printed or displayed as text."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out["text"])
            elif "text/plain" in out.get("data", {}):
                parts.append(out["data"]["text/plain"])
    return "\n".join(parts)


# what each notebook run here promises, as it prints it (01-05: userpath_driver.PROMISES)
PROMISES = {
    "00_inspector.ipynb": ["('hello', {'text': 'hi from the Inspector'})"],  # sent from the Inspector
    "06_broadcast_and_authorization.ipynb": [
        "bob: connected",  # the member was admitted
        "Bob heard: INSERT messages",  # and heard the trigger's broadcast
        "erin: error — refused: Unauthorized: You do not have permissions to read from this Channel topic",
        "Erin heard: 0 messages",  # the non-member was refused and heard nothing
        "frames equal: True",  # both delivery paths agree
    ],
}


def test_there_are_seven_notebooks():
    assert [n[:2] for n in ALL] == ["00", "01", "02", "03", "04", "05", "06"], ALL
    assert set(PROMISES) == {n for n in ALL if n not in USER_PATH}, set(PROMISES)


@pytest.mark.parametrize("name", ALL)
def test_committed_without_outputs(name):
    nb = json.loads((NOTEBOOKS / name).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{name}: a code cell has outputs"
            assert cell["execution_count"] is None, f"{name}: a code cell has an execution count"
    assert "widgets" not in nb["metadata"], f"{name}: saved widget state"
    md = [c for c in nb["cells"] if c["cell_type"] == "markdown"]
    assert md, f"{name} has no story"
    assert "".join(md[0]["source"]).startswith("# ")


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ALL if n not in USER_PATH])
def test_notebook_executes(name, tmp_path, artifacts):
    nb = execute(name, tmp_path / "nb", artifacts)
    assert errors_in(nb) == []
    ran = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in ran), "a cell did not run"
    text = output_text(nb)
    for promise in PROMISES.get(name, []):
        assert promise in text, f"{name} did not print {promise!r}"
