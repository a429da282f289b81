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


def skip_or_fail(reason: str) -> None:
    """Skip on a developer machine; fail in CI, where everything must be installed."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """One bare LocalPostgres (wal_level=logical) for the whole session; no schema applied."""
    from harmony_lab.local import LocalPostgres

    with LocalPostgres() as pg:
        yield pg


@pytest.fixture
async def rt() -> AsyncIterator[Any]:
    """A fresh LocalRealtime (Postgres + Harmony schema + the Realtime-compatible server) per test."""
    from harmony_lab.local import LocalRealtime

    async with LocalRealtime() as stack:
        yield stack
