"""Fixtures for LiveFrame tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from frame_events import make_change, message

from harmony_lab.events import RealtimeEvent


@pytest.fixture
def change() -> Callable[..., RealtimeEvent]:
    return make_change


@pytest.fixture
def msg() -> Callable[..., dict[str, Any]]:
    return message
