"""The built front end: the committed bundles are what the sources build to, and they load alone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import anywidget
import pytest

from harmony_lab.widgets import _assets
from tests.polling import eventually_sync

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "widgets"
ENTRIES = ("inspector.js", "live_table.js", "player.js", "presence_roster.js", "status_timeline.js")


def entry_points() -> set[str]:
    return {
        p.name
        for p in SOURCES.glob("*.js")
        if re.search(r"^export default ", p.read_text(encoding="utf-8"), re.MULTILINE)
    }


def test_the_bundles_live_in_the_package():
    assert _assets.static_dir() == ROOT / "harmony_lab" / "widgets" / "static"
    assert entry_points() == set(ENTRIES)
    built = {p.name for p in _assets.static_dir().iterdir()}
    assert built == set(ENTRIES) | {p.name for p in SOURCES.glob("*.css")}


@pytest.mark.parametrize("name", ENTRIES)
def test_a_bundle_is_one_module_without_imports(name):
    text = _assets.esm(name)
    assert isinstance(text, str)
    assert text.startswith("// Built by widgets/build.mjs")
    assert "export default" in text or re.search(r"export\s*\{[^}]*\bas default\b", text)
    assert not re.search(r"^\s*import\s*[\w{*\"']", text, re.MULTILINE), "a bundle must not import"
    assert not re.search(r"\bimport\s*\(", text), "no dynamic import"
    assert "https://" not in text.replace("https://github.com", "")  # nothing loaded from a CDN


def test_the_table_bundle_decodes_arrow_with_flechette():
    text = _assets.esm("live_table.js")
    assert "tableFromIPC" in text  # flechette's decoder is inlined
    assert "decodeStream" in text


def test_stylesheets_are_served_by_name():
    assert ".hl-root" in _assets.css()
    assert _assets.css("inspector.css") == (SOURCES / "inspector.css").read_text(encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=r"nope\.css.*build-widgets"):
        _assets.css("nope.css")


def test_a_missing_bundle_says_how_to_build_it():
    with pytest.raises(FileNotFoundError, match=r"nope\.js.*bash dev\.sh build-widgets"):
        _assets.esm("nope.js")


def test_the_committed_bundles_are_up_to_date_with_their_sources(tmp_path):
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is missing in CI: .ci/run installs nodejs and npm")
        pytest.skip("node is not installed: cannot rebuild widgets/ to compare with the committed bundles")
    if not (SOURCES / "node_modules" / "esbuild").is_dir():
        pytest.fail("widgets/node_modules is missing: run `bash dev.sh build-widgets` (npm ci in widgets/)")
    out = tmp_path / "static"
    done = subprocess.run(
        [node, str(SOURCES / "build.mjs"), "--outdir", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    fresh = {p.name: p.read_bytes() for p in out.iterdir()}
    committed = {p.name: p.read_bytes() for p in _assets.static_dir().iterdir()}
    assert sorted(fresh) == sorted(committed), "rebuild with `bash dev.sh build-widgets` and commit"
    stale = sorted(name for name in fresh if fresh[name] != committed[name])
    assert not stale, f"{stale} differ from their sources: run `bash dev.sh build-widgets` and commit"


def test_hot_reload_serves_paths_that_anywidget_watches(tmp_path, monkeypatch):
    monkeypatch.setenv("ANYWIDGET_HMR", "1")
    assert _assets.esm("live_table.js") == _assets.static_dir() / "live_table.js"
    # anywidget watches an ESM given by path and pushes each rewrite to the views
    built = tmp_path / "w.js"
    built.write_text("export default { render() {} };\n// v1\n")

    class Reloading(anywidget.AnyWidget):
        _esm = built

    w = Reloading()
    try:
        assert "// v1" in w._esm
        built.write_text("export default { render() {} };\n// v2\n")
        eventually_sync(lambda: "// v2" in w._esm, within=20, what="the widget's _esm to follow the file")
    finally:
        w.close()
        Reloading._esm.stop_thread()
    monkeypatch.delenv("ANYWIDGET_HMR")
    assert isinstance(_assets.esm("live_table.js"), str)


def test_hot_reload_reaches_the_real_widget_classes():
    # a kernel started with ANYWIDGET_HMR=1: every widget class watches its built bundle
    code = (
        "import harmony_lab.widgets as w, harmony_lab.inspector as i\n"
        "classes = (w.LiveTableWidget, w.PresenceRosterWidget, w.StatusTimelineWidget, w.Player)\n"
        "for cls in (*classes, i.Inspector):\n"
        "    esm = cls._esm\n"
        "    print(cls.__name__, type(esm).__name__, esm._path.name, esm._background_thread is not None)\n"
        "    esm.stop_thread()\n"
    )
    env = {**os.environ, "ANYWIDGET_HMR": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:5] == [
        "LiveTableWidget FileContents live_table.js True",
        "PresenceRosterWidget FileContents presence_roster.js True",
        "StatusTimelineWidget FileContents status_timeline.js True",
        "Player FileContents player.js True",
        "Inspector FileContents inspector.js True",
    ]
