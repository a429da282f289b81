"""Fixtures for LiveFrame tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harmony_lab.events import RealtimeEvent
from tests.frames.frame_events import make_change, message


@pytest.fixture
def change() -> Callable[..., RealtimeEvent]:
    return make_change


@pytest.fixture
def msg() -> Callable[..., dict[str, Any]]:
    return message
