"""Shared fixtures. Everything here starts real components: no mocks where the real thing runs."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
IN_CI = bool(os.environ.get("CI"))

# Debian's Chromium, driven by Playwright without any browser download (see shared/browser-widget-testing.md)
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


def skip_or_fail(reason: str) -> None:
    """Skip on a developer machine; fail in CI, where everything must be installed."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium for one test module.

    Module scope, not session: Playwright's sync API runs an event loop on the main thread while it
    is open, which would break every asyncio test collected after the browser tests. Only one sync
    Playwright may be open at a time, so every browser test takes it from here.
    """
    if not Path(CHROMIUM).exists():
        skip_or_fail(f"chromium not found at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install playwright; no browser download needed)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """One bare LocalPostgres (wal_level=logical) for the whole session; no schema applied."""
    from harmony_lab.local import LocalPostgres

    with LocalPostgres() as pg:
        yield pg


# manager timings for tests: fast heartbeats and retries, so outages resolve in seconds
FAST_MANAGER: dict[str, Any] = {
    "heartbeat_interval": 0.5,
    "join_timeout": 5.0,
    "token_wait": 1.0,
}


@pytest.fixture
async def make_manager() -> AsyncIterator[Any]:
    """A factory of RealtimeConnectionManagers with FAST_MANAGER timings, all cleaned up afterwards."""
    from harmony_lab.manager import BackoffPolicy, RealtimeConnectionManager

    made: list[RealtimeConnectionManager] = []
    fast = {**FAST_MANAGER, "backoff": BackoffPolicy(base=0.1, max_delay=0.5, max_retries=10)}

    def make(url: str, key: str, **kwargs: Any) -> RealtimeConnectionManager:
        mgr = RealtimeConnectionManager(url, key, **{**fast, **kwargs})
        made.append(mgr)
        return mgr

    yield make
    for mgr in made:
        await mgr.cleanup()
    RealtimeConnectionManager.reset_instance()


@pytest.fixture
async def rt() -> AsyncIterator[Any]:
    """A fresh LocalRealtime (Postgres + Harmony schema + the Realtime-compatible server) per test."""
    from harmony_lab.local import LocalRealtime

    async with LocalRealtime() as stack:
        yield stack


@pytest.fixture(scope="session", autouse=True)
def _no_postgres_left_running() -> Iterator[None]:
    """Every LocalPostgres this test process started must be stopped by the end of the session.

    Records the postmaster pid of every server started during the session (by wrapping
    ``LocalPostgres.start``) and, after every other fixture has been torn down, fails if one of
    them is still alive.
    """
    from harmony_lab.local import postgres as pgmod

    started: dict[int, str] = {}
    servers: list[Any] = []
    original = pgmod.LocalPostgres.start

    def start(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = original(self, *args, **kwargs)
        if self.external_dsn is None:  # an external database is not ours to stop
            servers.append(self)
        if self.pid is not None:
            started[self.pid] = str(self.data_dir)
        return out

    pgmod.LocalPostgres.start = start  # type: ignore[method-assign]
    yield
    pgmod.LocalPostgres.start = original  # type: ignore[method-assign]
    leaked = [pg for pg in servers if pg.running]
    for pg in leaked:
        pg.stop()
    orphans = [f"pid {pid} ({d})" for pid, d in started.items() if _alive(pid)]
    if leaked or orphans:
        pytest.fail(f"PostgreSQL left running after the test session: {leaked or orphans}")


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
