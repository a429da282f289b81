"""The package's import layers (declared in pyproject.toml under ``[tool.importlinter]``) hold."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    assert exe.exists(), "import-linter is missing: install the test extra (pip install -e '.[test]')"
    return subprocess.run(
        [str(exe), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_import_contracts_are_kept() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    """The contract is not vacuous: the same configuration refuses a manager that imports the server."""
    pkg = tmp_path / "harmony_lab"
    shutil.copytree(ROOT / "harmony_lab", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (pkg / "manager" / "_upward.py").write_text("import harmony_lab.server._session\n")
    result = _lint_imports(tmp_path, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode != 0
    assert "harmony_lab.manager._upward -> harmony_lab.server._session" in result.stdout


# A package reaches another through what that package's __init__ exports, never through its private
# (underscore) modules. The project's shared bottom modules (harmony_lab._feed, _strict, _lifetime, …)
# are private to the project, not to a package, and may be imported anywhere below their layer.
# Each crossing still allowed names why; the list can only shrink.
ALLOWED_PRIVATE_IMPORTS: dict[tuple[str, str], str] = {}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and not parts[1].startswith("_")) else module


def private_imports(root: Path) -> set[tuple[str, str]]:
    """(importer, imported private module) for every import that crosses into another package's privates."""
    found: set[tuple[str, str]] = set()
    for path in sorted((root / "harmony_lab").rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        here = _package(module)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for target in targets:
                parts = target.split(".")
                if parts[0] != "harmony_lab" or len(parts) < 3 or _package(target) == here:
                    continue
                private = next((i for i, p in enumerate(parts[2:], 2) if p.startswith("_")), None)
                if private is not None:
                    found.add((module, ".".join(parts[: private + 1])))
    return found


def test_packages_meet_through_their_public_names():
    crossings = private_imports(ROOT)
    unexpected = sorted(crossings - set(ALLOWED_PRIVATE_IMPORTS))
    assert not unexpected, (
        f"imports of another package's private modules: {unexpected}; import what that package's "
        "__init__ exports (add the name there) instead"
    )
    stale = sorted(set(ALLOWED_PRIVATE_IMPORTS) - crossings)
    assert not stale, f"allowed crossings that no longer happen, remove them: {stale}"


def test_a_private_import_across_packages_is_found(tmp_path: Path):
    pkg = tmp_path / "harmony_lab" / "widgets"
    pkg.mkdir(parents=True)
    (pkg / "_x.py").write_text(
        "from harmony_lab.frames._at import SeekIndex\n"
        "from harmony_lab.frames import LiveFrame\n"
        "from harmony_lab.widgets._base import StreamingWidget\n"
        "from harmony_lab._feed import pump\n"
        "def f():\n    import harmony_lab.recording._codec\n"
    )
    assert private_imports(tmp_path) == {
        ("harmony_lab.widgets._x", "harmony_lab.frames._at"),
        ("harmony_lab.widgets._x", "harmony_lab.recording._codec"),
    }


# Objects other packages hold, by the names the code gives them, and the package that owns their class.
OWNERS = {
    "frame": "frames", "lf": "frames", "manager": "manager", "mgr": "manager", "server": "server",
    "hub": "server", "recorder": "recording", "rec": "recording", "rt": "local", "stack": "local",
}  # fmt: skip
ALLOWED_PRIVATE_MEMBERS: set[tuple[str, str]] = set()


def private_members(root: Path) -> set[tuple[str, str]]:
    """(module, "name._member") where a module reads an underscore member of another package's object."""
    found: set[tuple[str, str]] = set()
    for path in sorted((root / "harmony_lab").rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        here = [*module.split("."), ""][1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                not isinstance(node, ast.Attribute)
                or not node.attr.startswith("_")
                or node.attr.startswith("__")
            ):
                continue
            value = node.value
            name = value.id if isinstance(value, ast.Name) else getattr(value, "attr", None)
            if name is not None and OWNERS.get(name.lstrip("_"), here) != here:
                found.add((module, f"{name}.{node.attr}"))
    return found


def test_no_package_reads_another_packages_private_members():
    reaches = private_members(ROOT)
    unexpected = sorted(reaches - ALLOWED_PRIVATE_MEMBERS)
    assert not unexpected, f"private members of another package's objects: {unexpected}; add a public API"
    stale = sorted(ALLOWED_PRIVATE_MEMBERS - reaches)
    assert not stale, f"allowed reaches that no longer happen, remove them: {stale}"


def test_a_private_member_reach_is_found(tmp_path: Path):
    pkg = tmp_path / "harmony_lab" / "widgets"
    pkg.mkdir(parents=True)
    (pkg / "_y.py").write_text(
        "def f(frame, self):\n    frame._rows\n    self._frame._index\n    frame.row_ids()\n    self._x\n"
    )
    assert private_members(tmp_path) == {
        ("harmony_lab.widgets._y", "frame._rows"),
        ("harmony_lab.widgets._y", "_frame._index"),
    }
