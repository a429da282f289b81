"""Helpers shared by the reliability tests (a module, not a conftest, so tests import it by name)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

# realtime-py 2.34.1 reads ConnectionClosed.code/.reason (deprecated in websockets 13.1) when a socket
# closes abnormally; with "warnings are errors" that would kill its listener task. Ignore exactly those.
REALTIME_PY_DEPRECATIONS = [
    pytest.mark.filterwarnings("ignore:ConnectionClosed.code is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ConnectionClosed.reason is deprecated:DeprecationWarning"),
]


async def eventually(
    predicate: Callable[[], bool],
    timeout: float = 10.0,  # noqa: ASYNC109 - a polling deadline
    what: str = "condition",
) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


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
