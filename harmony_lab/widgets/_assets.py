"""Finding the widgets' front-end sources and inlining their relative imports into one ES module.

The ``.js``/``.css`` sources live in the repository's top-level ``widgets/`` folder; the wheel ships
them as ``harmony_lab/widgets/static/``. anywidget loads an ESM from a string (a blob URL), where a
relative ``import`` cannot resolve, so :func:`esm` inlines ``import { a, b } from "./x.js";`` lines
with the imported module's source (each module once). The sources stay plain ES modules that a
browser can also load directly (the bare-ESM tests do).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

__all__ = ["bundle", "css", "esm", "static_dir"]

_IMPORT = re.compile(r'^import\s*\{[^}]*\}\s*from\s*"\./([A-Za-z0-9_\-]+\.js)";\s*$', re.MULTILINE)


@functools.cache
def static_dir() -> Path:
    """``harmony_lab/widgets/static`` in an installed wheel, else ``<repo>/widgets`` in a checkout."""
    here = Path(__file__).resolve().parent
    candidates = (here / "static", here.parent.parent / "widgets")
    for cand in candidates:
        if (cand / "live_table.js").is_file():
            return cand
    raise FileNotFoundError(
        "harmony_lab's widget sources are missing; looked in "
        + ", ".join(str(c) for c in candidates)
        + ". Reinstall harmony-lab (the wheel ships them as harmony_lab/widgets/static)."
    )


def bundle(root: Path, name: str, seen: set[str] | None = None) -> str:
    """``root/name`` with its ``import {…} from "./x.js";`` lines replaced by those modules (once each)."""
    seen = set() if seen is None else seen
    path = root / name
    if not path.is_file():
        raise FileNotFoundError(f"widget module {name!r} not found in {root}")
    seen.add(name)
    source = path.read_text(encoding="utf-8")

    def replace(m: re.Match[str]) -> str:
        dep = m.group(1)
        if dep in seen:
            return f"// (inlined above: ./{dep})"
        return f"// ---- inlined ./{dep} ----\n{bundle(root, dep, seen)}\n// ---- end of ./{dep} ----"

    return _IMPORT.sub(replace, source)


@functools.cache
def esm(name: str) -> str:
    """The self-contained ES module text of ``widgets/<name>`` (relative imports inlined)."""
    text = bundle(static_dir(), name)
    if re.search(r"^\s*import\s", text, re.MULTILINE):
        raise RuntimeError(f'{name}: an import other than `import {{…}} from "./x.js";` cannot be inlined')
    return text


@functools.cache
def css(name: str = "harmony.css") -> str:
    """The text of ``widgets/<name>``: the shared ``harmony.css`` by default, or a widget's own sheet."""
    path = static_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"widget stylesheet {name!r} not found in {static_dir()}")
    return path.read_text(encoding="utf-8")
