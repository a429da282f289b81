"""Stall detection against a real LocalRealtime while changes stream.

Under load, heartbeat replies queue behind a backlog of postgres_changes frames and can take longer
than a heartbeat interval on a healthy socket; the chaos campaign saw such sockets declared stalled
(a gap no fault caused). Here the server's ``latency`` fault stands in for the backlog: every frame,
heartbeat replies included, leaves later than it was produced, in order, while changes keep flowing.
A real stall (``rt.faults.stall``) must still be noticed within two heartbeat intervals.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from harmony_lab.events import ChannelStatus, EventKind
from tests.manager.manager_helpers import REALTIME_PY_DEPRECATIONS
from tests.polling import eventually

pytestmark = REALTIME_PY_DEPRECATIONS

TABLE_SQL = """
CREATE TABLE public.hb_rows (
  id   bigserial PRIMARY KEY,
  note text NOT NULL DEFAULT ''
);
GRANT SELECT ON public.hb_rows TO anon, authenticated;
ALTER PUBLICATION supabase_realtime ADD TABLE public.hb_rows;
"""


@contextlib.asynccontextmanager
async def steady_writes(rt: Any, every: float = 0.02) -> AsyncIterator[list[int]]:
    """Insert a row every ``every`` seconds until the block ends; yields the ids written so far."""
    ids: list[int] = []

    async def write() -> None:
        async with await psycopg.AsyncConnection.connect(rt.dsn, autocommit=True) as conn:
            while True:
                cur = await conn.execute("INSERT INTO public.hb_rows DEFAULT VALUES RETURNING id")
                row = await cur.fetchone()
                assert row is not None
                ids.append(row[0])
                await asyncio.sleep(every)

    task = asyncio.ensure_future(write())
    try:
        yield ids
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def statuses_after(events: list, name: str, seq: int) -> list[ChannelStatus | None]:
    return [e.status for e in events if e.kind is EventKind.STATUS and e.channel == name and e.seq > seq]


async def test_late_heartbeat_replies_on_a_busy_socket_are_not_a_stall(rt, make_manager):
    interval = 0.8
    await rt.execute(TABLE_SQL)
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn, heartbeat_interval=interval)
    events: list = []
    mgr.add_listener(events.append)
    got: list = []
    await mgr.subscribe_to_table("busy", "hb_rows", callback=got.append)
    await mgr.wait_for_status("busy", "connected", timeout=10)
    async with steady_writes(rt) as ids:
        await eventually(lambda: len(got) >= 10, what="changes flowing")
        await eventually(
            lambda: mgr.get_debug_info()["channels"]["busy"]["heartbeat"]["replies"] >= 2,
            what="two heartbeat replies",
        )
        quick = mgr.get_debug_info()["channels"]["busy"]["heartbeat"]["max_ms"]
        mark = events[-1].seq
        # replies fall behind by up to 2.25 intervals; each step delays the stream by 0.2 s more, so the
        # socket is never silent for a whole interval (changes arrive every ~20 ms throughout)
        for step in range(1, 10):
            rt.faults.latency(200 * step)
            await asyncio.sleep(interval)
        latency_s = 1.8
        await asyncio.sleep(latency_s + interval)
        info = mgr.get_debug_info()["channels"]["busy"]
        written = len(ids)
    rt.faults.clear()
    hb = info["heartbeat"]
    assert statuses_after(events, "busy", mark) == [], (
        f"a socket delivering changes all along was declared dead: {mgr.get_status('busy')!r}"
    )
    assert not [e for e in events if e.kind is EventKind.GAP]
    assert not [e for e in events if e.kind is EventKind.HEARTBEAT and e.payload.get("timeout")]
    assert hb["late_ticks"] >= 2, f"replies were never later than an interval: {hb}"
    # the RTT is that of the replies (they really took ~1.8 s), not the spacing of the change frames
    assert quick < 600
    assert hb["max_ms"] >= 0.9 * latency_s * 1000, hb
    assert hb["last_ms"] >= 0.9 * latency_s * 1000, hb
    await eventually(lambda: len(got) >= written, what="every change written delivered", within=10)
    assert mgr.get_status("busy").status is ChannelStatus.CONNECTED


@pytest.mark.parametrize("streaming", [False, True], ids=["idle", "streaming"])
async def test_a_real_stall_is_detected_within_two_intervals(rt, make_manager, streaming):
    interval = 0.5
    await rt.execute(TABLE_SQL)
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn, heartbeat_interval=interval)
    events: list = []
    mgr.add_listener(events.append)
    got: list = []
    await mgr.subscribe_to_table("s", "hb_rows", callback=got.append)
    await mgr.wait_for_status("s", "connected", timeout=10)
    async with contextlib.AsyncExitStack() as stack:
        if streaming:
            await stack.enter_async_context(steady_writes(rt))
            await eventually(lambda: len(got) >= 10, what="changes flowing")
        await eventually(lambda: mgr.get_debug_info()["channels"]["s"]["heartbeat"]["replies"] >= 2)
        t0 = time.monotonic()
        rt.faults.stall(3.0)
        state = await mgr.wait_for_status("s", "reconnecting", timeout=5)
        detected = time.monotonic() - t0
    assert detected <= 2 * interval + 0.3
    assert state.reason.startswith("stall: no heartbeat reply")
    assert "no frame for" in state.reason
    await mgr.wait_for_status("s", "connected", timeout=10)
    (gap,) = [e for e in events if e.kind is EventKind.GAP]
    assert gap.reason.startswith("stall")
    before = len(got)
    await rt.execute("INSERT INTO public.hb_rows (note) VALUES ('after the stall')")
    await eventually(lambda: len(got) > before, what="a change after the reconnect")
