"""Widget tests on the Python side: every comm message the widgets send is captured."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harmony_lab.events import RealtimeEvent

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "frames"))
from frame_events import MESSAGE_COLUMNS, make_change, message
from recording_comm import RecordingComm, install, rows_of

__all__ = ["MESSAGE_COLUMNS", "RecordingComm", "make_change", "message", "rows_of"]


@pytest.fixture(autouse=True)
def recording_comms(monkeypatch: pytest.MonkeyPatch) -> list[RecordingComm]:
    return install(monkeypatch)


@pytest.fixture
def change() -> Callable[..., RealtimeEvent]:
    return make_change
