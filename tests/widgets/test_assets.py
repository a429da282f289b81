"""Finding and bundling the front-end sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmony_lab.widgets import _assets

REPO_WIDGETS = Path(__file__).resolve().parents[2] / "widgets"


def test_sources_are_found_in_the_checkout():
    assert _assets.static_dir() == REPO_WIDGETS


def test_relative_imports_are_inlined_once(tmp_path):
    (tmp_path / "a.js").write_text(
        'import { b } from "./b.js";\nimport { c } from "./c.js";\nexport const a = b + c;\n'
    )
    (tmp_path / "b.js").write_text('import { c } from "./c.js";\nexport const b = c;\n')
    (tmp_path / "c.js").write_text("export const c = 1;\n")
    out = _assets.bundle(tmp_path, "a.js")
    assert "import" not in out.replace("inlined", "")
    assert out.count("export const c = 1;") == 1
    assert out.index("export const c") < out.index("export const b") < out.index("export const a")


def test_missing_module_is_a_clear_error(tmp_path):
    (tmp_path / "a.js").write_text('import { z } from "./zz.js";\n')
    with pytest.raises(FileNotFoundError, match=r"zz\.js"):
        _assets.bundle(tmp_path, "a.js")


def test_shipped_modules_bundle_without_imports():
    for name in ("live_table.js", "presence_roster.js", "status_timeline.js"):
        text = _assets.esm(name)
        assert "export default" in text
        assert not any(line.lstrip().startswith("import ") for line in text.splitlines()), name
    assert "decodeStream" in _assets.esm("live_table.js")
    assert ".hl-root" in _assets.css()


def test_a_widget_stylesheet_is_served_by_name(tmp_path, monkeypatch):
    (tmp_path / "harmony.css").write_text(".hl-root { color: red; }\n")
    (tmp_path / "player.css").write_text(".hl-player-bar { color: blue; }\n")
    monkeypatch.setattr(_assets, "static_dir", lambda: tmp_path)
    _assets.css.cache_clear()
    try:
        assert _assets.css() == ".hl-root { color: red; }\n"
        assert _assets.css("player.css") == ".hl-player-bar { color: blue; }\n"
        with pytest.raises(FileNotFoundError, match=r"nope\.css"):
            _assets.css("nope.css")
    finally:
        _assets.css.cache_clear()


def test_every_widget_has_status_and_reason_traits():
    from harmony_lab.widgets._base import StreamingWidget

    traits = StreamingWidget.class_traits(sync=True)
    assert traits["status"].default_value == "waiting"
    assert traits["reason"].default_value == ""
