"""Inspector tests: a module-wide LocalRealtime (own thread) and an Inspector factory cleaned up after."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.conftest import FAST_MANAGER
from tests.widgets.recording_comm import RecordingComm, install


@pytest.fixture(autouse=True)
def recording_comms(monkeypatch: pytest.MonkeyPatch) -> list[RecordingComm]:
    return install(monkeypatch)


@pytest.fixture(scope="module")
def stack() -> Iterator[Any]:
    from harmony_lab.local import LocalRealtime

    rt = LocalRealtime().start()
    try:
        yield rt
    finally:
        rt.stop()


@pytest.fixture
async def make_inspector() -> AsyncIterator[Any]:
    from harmony_lab.inspector import Inspector
    from harmony_lab.manager import BackoffPolicy

    made: list[Inspector] = []
    fast = {**FAST_MANAGER, "backoff": BackoffPolicy(base=0.1, max_delay=0.5, max_retries=3)}

    def make(source: Any = None, **kwargs: Any) -> Inspector:
        kwargs.setdefault("manager_options", fast)
        insp = Inspector(source, **kwargs)
        made.append(insp)
        return insp

    yield make
    for insp in made:
        await insp.aclose()
