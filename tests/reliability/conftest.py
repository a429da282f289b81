"""Fixtures for the reliability campaign: managers that always clean up, the bench modules by path."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from harmony_lab.manager import BackoffPolicy, RealtimeConnectionManager

BENCH = Path(__file__).resolve().parents[2] / "bench"

FAST: dict[str, Any] = {
    "heartbeat_interval": 0.5,
    "backoff": BackoffPolicy(base=0.1, max_delay=0.5, max_retries=10),
    "join_timeout": 5.0,
    "token_wait": 1.0,
}


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


@pytest.fixture
async def make_manager() -> AsyncIterator[Callable[..., RealtimeConnectionManager]]:
    made: list[RealtimeConnectionManager] = []

    def make(url: str, key: str, **kwargs: Any) -> RealtimeConnectionManager:
        mgr = RealtimeConnectionManager(url, key, **{**FAST, **kwargs})
        made.append(mgr)
        return mgr

    yield make
    for mgr in made:
        await mgr.cleanup()
