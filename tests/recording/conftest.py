from __future__ import annotations

import pytest

from harmony_lab.events import RealtimeEvent
from tests.recording.recording_events import every_kind


@pytest.fixture
def events() -> list[RealtimeEvent]:
    return every_kind()
