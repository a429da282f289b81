"""Run All leaves the demo running: every notebook stops its channels and traffic only in a last,
labelled step that Run All skips (``STOP_DEMO = False``).

The user-path browser test proves the widgets of 01-03 are still live after Run All; this rule covers
every notebook, including those that test runs only with nbclient, by reading their code: a call
that ends the demo (``cleanup()``, or ``aclose()`` of the traffic, a manager, an Inspector or a
frame) may only appear under ``if STOP_DEMO:`` in the last code cell. A recorder or another
short-lived helper a cell opens and closes itself is not the demo, nor is an object the same cell
replaces right after closing it (05 signs its anon manager out and makes Alice's).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
STOPPERS = {"cleanup"}  # the manager's sign-out: always the end of the demo
SHORT_LIVED = {"rec", "recorder", "player", "writer", "replay"}  # closed by the cell that opened them


def code_cells(path: Path) -> list[str]:
    nb = json.loads(path.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def stop_calls(source: str) -> list[tuple[int, str]]:
    """(line, text) of every call that ends the demo, outside an ``if STOP_DEMO:`` block."""
    tree = ast.parse(source)
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "STOP_DEMO":
            guarded.update(id(n) for n in ast.walk(node))
    assigned_after: dict[str, int] = {}  # name -> line of its last assignment in the cell
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    assigned_after[target.id] = max(assigned_after.get(target.id, 0), node.lineno)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or id(node) in guarded:
            continue
        func = node.func
        if not isinstance(func, ast.Attribute):
            continue
        owner = func.value.id if isinstance(func.value, ast.Name) else None
        if owner is not None and assigned_after.get(owner, 0) > node.lineno:
            continue  # replaced by the same cell, not ended
        if func.attr in STOPPERS or (func.attr in {"aclose", "close", "stop"} and owner not in SHORT_LIVED):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_the_rule_sees_an_unguarded_stop_and_accepts_a_guarded_one():
    assert stop_calls("await manager.cleanup()\nawait sim.aclose()") == [
        (1, "manager.cleanup()"),
        (2, "sim.aclose()"),
    ]
    assert stop_calls("STOP_DEMO = False\nif STOP_DEMO:\n    await manager.cleanup()") == []
    assert stop_calls("rec = insp.record('x')\nawait rec.aclose()") == []
    assert stop_calls("await manager.cleanup()\nmanager = make()") == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_run_all_leaves_the_demo_running(path: Path):
    cells = code_cells(path)
    assert cells, f"{path.name} has no code"
    for n, source in enumerate(cells):
        assert stop_calls(source) == [], (
            f"{path.name}, code cell {n + 1}: this ends the demo during Run All; move it under "
            "`if STOP_DEMO:` in the last cell"
        )
    last = cells[-1]
    assert last.startswith("STOP_DEMO = False"), f"{path.name}: the last code cell is not the STOP_DEMO step"
    assert "if STOP_DEMO:" in last, f"{path.name}: the stop step has no `if STOP_DEMO:` guard"
