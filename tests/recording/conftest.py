from __future__ import annotations

import pytest
from recording_events import every_kind

from harmony_lab.events import RealtimeEvent


@pytest.fixture
def events() -> list[RealtimeEvent]:
    return every_kind()
