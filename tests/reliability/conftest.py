"""Fixtures for the reliability campaign: managers with fast timings that always clean up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from harmony_lab.manager import BackoffPolicy, RealtimeConnectionManager

FAST: dict[str, Any] = {
    "heartbeat_interval": 0.5,
    "backoff": BackoffPolicy(base=0.1, max_delay=0.5, max_retries=10),
    "join_timeout": 5.0,
    "token_wait": 1.0,
}


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
