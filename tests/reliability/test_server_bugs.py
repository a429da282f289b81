"""Minimal reproductions of what the chaos campaign found in the embedded server (``harmony_lab.server``).

New findings start as ``xfail(strict=True)``; once fixed, the marker goes and they stay as regression tests.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
import websockets


async def test_handshake_abandoned_during_a_stall_logs_no_internal_error(rt, caplog):
    """Fixed: the server used to answer the abandoned handshake once the stall ended, and websockets
    logged "unexpected internal error" / "opening handshake failed" at ERROR."""
    caplog.set_level(logging.INFO)
    rt.faults.stall(1.5)
    url = f"{rt.ws_url}/websocket?apikey={rt.anon_key}&vsn=1.0.0"
    with pytest.raises(TimeoutError):
        await websockets.connect(url, open_timeout=0.3)  # the client gives up during the stall
    await asyncio.sleep(2.0)  # the stall is over: the server answers the abandoned handshake
    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], errors
