"""realtime-py's connection-loss ERROR lines under ``logging.basicConfig(level=logging.WARNING)``.

realtime-py logs every socket loss at ERROR. For connections the manager owns (it reconnects and
reports the loss as a status event) those lines must not reach the handlers at all — re-labelling a
record's level in a logger filter is not enough, the level check happened before — and must be
available at DEBUG on ``harmony_lab.manager``. A realtime client used directly keeps its ERROR lines.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from realtime import AsyncRealtimeClient

from tests.manager.manager_helpers import REALTIME_PY_DEPRECATIONS
from tests.polling import eventually

pytestmark = REALTIME_PY_DEPRECATIONS

LOSS_LINES = ("WebSocket connection closed with code: 1012", "Auto-reconnect disabled")


@pytest.fixture
def warning_config() -> Iterator[io.StringIO]:
    """What ``logging.basicConfig(level=logging.WARNING)`` sets up: a root handler with no level of its
    own, the root logger at WARNING. Yields what the handler printed."""
    root = logging.getLogger()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_connection_loss_lines_are_not_printed_but_kept_at_debug(
    rt, make_manager, warning_config, caplog
):
    caplog.set_level(logging.DEBUG, logger="harmony_lab.manager")
    mgr = make_manager(rt.url, rt.anon_key)
    await mgr.subscribe("room", "*", lambda ev: None)
    await mgr.wait_for_status("room", "connected", timeout=10)
    # a realtime client used directly, next to the manager: its lines stay ERROR
    bare = AsyncRealtimeClient(rt.ws_url, token=rt.anon_key, auto_reconnect=False)
    await bare.connect()
    try:
        assert rt.faults.drop_all(code=1012, reason="fault: restart") == 2
        await mgr.wait_for_status("room", "reconnecting", timeout=5)
        await mgr.wait_for_status("room", "connected", timeout=10)
        await eventually(lambda: not bare.is_connected, what="the bare client noticing the drop")
    finally:
        await bare.close()
    printed = [line.split(":", 2) for line in warning_config.getvalue().splitlines()]
    from_realtime = [(level, text) for level, name, text in printed if name.startswith("realtime")]
    # the bare client's two lines, at ERROR; none of the manager's connection
    assert sorted(from_realtime) == [
        ("ERROR", "Auto-reconnect disabled, terminating connection"),
        ("ERROR", "WebSocket connection closed with code: 1012, reason: fault: restart"),
    ], printed
    # the manager's copies: DEBUG on harmony_lab.manager, with the channel's name, same text
    moved = [r for r in caplog.records if r.name == "harmony_lab.manager" and r.levelno == logging.DEBUG]
    moved = [r for r in moved if getattr(r, "realtime_logger", None) == "realtime._async.client"]
    texts = [r.getMessage() for r in moved]
    for prefix in LOSS_LINES:
        assert any(prefix in t and "'room'" in t for t in texts), texts
    assert all(r.channel == "room" and r.realtime_level == "ERROR" for r in moved)
    assert any("WebSocket connection closed with code: 1012, reason: fault: restart" in t for t in texts)
