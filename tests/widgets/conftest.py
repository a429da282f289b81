"""Widget tests on the Python side: every comm message the widgets send is captured."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harmony_lab.events import RealtimeEvent
from tests.frames.frame_events import MESSAGE_COLUMNS, make_change, message
from tests.widgets.recording_comm import RecordingComm, install, rows_of

__all__ = ["MESSAGE_COLUMNS", "RecordingComm", "make_change", "message", "rows_of"]


@pytest.fixture(autouse=True)
def recording_comms(monkeypatch: pytest.MonkeyPatch) -> list[RecordingComm]:
    return install(monkeypatch)


@pytest.fixture
def change() -> Callable[..., RealtimeEvent]:
    return make_change
