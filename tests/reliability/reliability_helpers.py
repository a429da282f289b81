"""Helpers shared by the reliability tests (a module, not a conftest, so tests import it by name)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tests.manager.manager_helpers import REALTIME_PY_DEPRECATIONS
from tests.polling import eventually

BENCH = Path(__file__).resolve().parents[2] / "bench"

# one definition of each, shared with the manager's tests
__all__ = ["BENCH", "REALTIME_PY_DEPRECATIONS", "eventually", "load_bench"]


def load_bench(name: str) -> ModuleType:
    """Import ``bench/<name>.py`` (not a package) as ``bench_<name>``."""
    mod_name = f"bench_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    return module
