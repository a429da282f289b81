"""The widgets' built front end: one self-contained ES module per widget, and the stylesheets.

The sources live in the repository's top-level ``widgets/`` folder; esbuild bundles each widget's
entry (its relative imports and npm dependencies inlined) into ``harmony_lab/widgets/static/``
(``widgets/build.mjs``; ``bash dev.sh build-widgets``). Those built files are committed, ship in the
wheel and are what every widget loads, offline, in a checkout and in an installed package alike.

With ``ANYWIDGET_HMR=1`` in the kernel's environment, :func:`esm` gives the built file's path
instead of its text: anywidget then watches the file (it needs the ``watchfiles`` package) and
reloads open views whenever the esbuild watcher (``npm run watch`` in ``widgets/``) rewrites it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

__all__ = ["css", "esm", "hot_reload", "static_dir"]

_STATIC = Path(__file__).resolve().parent / "static"


def static_dir() -> Path:
    """``harmony_lab/widgets/static``: the built bundles and the stylesheets."""
    return _STATIC


def hot_reload() -> bool:
    """True when anywidget's hot module replacement is on (``ANYWIDGET_HMR=1``)."""
    return os.environ.get("ANYWIDGET_HMR") == "1"


def _built(name: str) -> Path:
    path = static_dir() / name
    if not path.is_file():
        raise FileNotFoundError(
            f"the built widget file {name!r} is missing from {static_dir()}; in a checkout run "
            "`bash dev.sh build-widgets` (esbuild, from widgets/), else reinstall harmony-lab"
        )
    return path


@functools.cache
def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def esm(name: str) -> str | Path:
    """The bundled ES module of ``widgets/<name>``: its text, or its path when :func:`hot_reload`."""
    path = _built(name)
    return path if hot_reload() else _text(path)


def css(name: str = "harmony.css") -> str:
    """The text of a stylesheet: the shared ``harmony.css`` by default, or a widget's own sheet."""
    return _text(_built(name))
