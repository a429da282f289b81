"""Errors reach the cell: a frame whose channel cannot connect says why — on the widget's status line
within seconds, and in exactly one log line (not one per retry). Real server, real manager."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import jwt
import pytest

from harmony_lab.frames import LiveFrame
from harmony_lab.manager import BackoffPolicy, RealtimeConnectionManager
from tests.polling import eventually

pytestmark = [
    pytest.mark.filterwarnings("ignore:ConnectionClosed.code is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ConnectionClosed.reason is deprecated:DeprecationWarning"),
]


def _refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there once the socket is closed


def _frame_lines(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    records = caplog.records
    return [r.getMessage() for r in records if r.name == "harmony_lab.frames._live" and r.levelno >= level]


async def _watch(url: str, key: str, caplog: pytest.LogCaptureFixture) -> tuple[Any, LiveFrame, Any]:
    caplog.set_level(logging.INFO)
    mgr = RealtimeConnectionManager(
        url, key, backoff=BackoffPolicy(base=0.1, max_delay=0.3, max_retries=100), join_timeout=3.0
    )
    lf = LiveFrame(mgr, "messages", snapshot=False)
    widget = lf.widget()
    widget.comm.front({"type": "ready"})
    return mgr, lf, widget


async def _close(mgr: Any, lf: LiveFrame, widget: Any) -> None:
    widget.close()
    await lf.aclose()
    await mgr.cleanup()
    RealtimeConnectionManager.reset_instance()


async def test_a_refused_url_shows_on_the_status_line_and_in_one_log_line(caplog):
    mgr, lf, widget = await _watch(_refused_url(), "anon-key", caplog)
    try:
        await eventually(lambda: widget.status == "reconnecting", within=10, what="status reconnecting")
        await eventually(lambda: "refused" in widget.reason.lower(), within=5, what="the reason")
        assert "attempt" in widget.reason
        assert lf.status == "reconnecting"
        # the retries go on; the cell got one line saying why, not one per retry
        await eventually(lambda: mgr.get_status(lf.name).attempt >= 4, within=20, what="4 retries")
        (line,) = _frame_lines(caplog)
        assert "reconnecting" in line
        assert "refused" in line.lower()
        assert lf.name in line
        # the status line keeps following the attempts
        await eventually(lambda: "attempt 4" in widget.reason or "attempt 5" in widget.reason)
    finally:
        await _close(mgr, lf, widget)


async def test_a_wrong_key_shows_401_on_the_status_line_and_in_one_log_line(rt, caplog):
    wrong = jwt.encode({"role": "anon", "iss": "supabase"}, "not-the-project-secret-" * 2, algorithm="HS256")
    mgr, lf, widget = await _watch(rt.url, wrong, caplog)
    try:
        await eventually(lambda: "401" in widget.reason, within=10, what="a 401 on the status line")
        assert widget.status in ("reconnecting", "error")
        await eventually(lambda: mgr.get_status(lf.name).attempt >= 3, within=20, what="3 retries")
        (line,) = _frame_lines(caplog)
        assert "401" in line
    finally:
        await _close(mgr, lf, widget)


async def test_the_status_line_clears_when_the_channel_is_back(rt, caplog):
    rt.faults.refuse(1.5)
    mgr, lf, widget = await _watch(rt.url, rt.anon_key, caplog)
    try:
        await eventually(lambda: widget.status == "reconnecting", within=10, what="status reconnecting")
        assert "503" in widget.reason
        await asyncio.wait_for(lf.ready(), 30)
        await eventually(lambda: widget.status == "connected" and widget.reason == "", within=5)
        assert len(_frame_lines(caplog)) == 1
        assert any("connected again" in m for m in _frame_lines(caplog, logging.INFO))
    finally:
        await _close(mgr, lf, widget)


def test_the_table_widget_takes_display_names():
    lf = LiveFrame(None, "messages")
    widget = lf.widget(names={"00000000-0000-4000-a000-000000000001": "Alice"})
    assert widget.names == {"00000000-0000-4000-a000-000000000001": "Alice"}
    assert lf.widget() is widget  # kept until closed or asked with other options
    with pytest.raises(TypeError, match="names must be a mapping"):
        lf.widget(names="Alice")
    widget.close()
