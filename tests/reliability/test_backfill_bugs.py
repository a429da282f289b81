"""Regressions of what the chaos campaign (bench/chaos.py) found in the manager's gap backfill.

Each test is the smallest deterministic scenario that showed one way a ``LiveFrame`` fed by
``subscribe_to_table(..., backfill=Backfill(column="updated_at"))`` ended up different from the table
after a gap. They were strict xfails until the manager's fixes landed (bf04e4a: a gap starts when the
channel last received data; 2474a9b: DELETEs missed in a gap are backfilled, live changes win over an
older snapshot). The control test shows the plain case: rows inserted or updated during a gap.

1. a DELETE committed during a gap was never delivered (the frame kept the row forever);
2. a backfill built from a snapshot taken when its query started overwrote a newer version that had
   arrived live meanwhile;
3. the same, for a row deleted live meanwhile: the backfill resurrected it;
4. a stall's gap was dated from its detection (up to two heartbeat intervals after delivery stopped), so
   rows committed early in the stall fell before ``gap_start - lookback`` and were never delivered.
"""

from __future__ import annotations

import asyncio
from typing import Any

from harmony_lab.events import EventKind
from tests.manager.manager_helpers import GapTable, gap_table
from tests.polling import eventually, stays
from tests.reliability.reliability_helpers import REALTIME_PY_DEPRECATIONS

pytestmark = REALTIME_PY_DEPRECATIONS


async def _setup(rt: Any, make_manager: Any, *, slow: bool = False, **options: Any) -> GapTable:
    return await gap_table(
        rt,
        make_manager,
        "bf_rows",
        lookback=2.0,
        slow_seconds=1.5 if slow else None,
        manager_options=options,
    )


async def test_control_rows_inserted_and_updated_during_a_gap_are_backfilled(rt, make_manager):
    t = await _setup(rt, make_manager)
    await rt.execute("INSERT INTO public.bf_rows (id) VALUES (1), (2)")
    await eventually(lambda: len(t.lf) == 2, what="live inserts")
    await t.gap("repro drop")
    await t.bump(2, 1)
    await rt.execute("INSERT INTO public.bf_rows (id) VALUES (3)")
    await t.mgr.wait_for_status("bf_rows", "connected", timeout=10)
    await eventually(lambda: len(t.reports()) == 1, what="the backfill report")
    assert t.frame() == await t.table() == {1: 2, 2: 1, 3: 1}
    gap = next(e for e in t.events if e.kind is EventKind.GAP)
    assert "repro drop" in gap.reason


async def test_row_deleted_during_a_gap_leaves_the_frame(rt, make_manager):
    t = await _setup(rt, make_manager)
    await rt.execute("INSERT INTO public.bf_rows (id) VALUES (1), (2)")
    await eventually(lambda: len(t.lf) == 2, what="live inserts")
    await t.gap("repro drop")
    await rt.execute("DELETE FROM public.bf_rows WHERE id = 1")
    await t.mgr.wait_for_status("bf_rows", "connected", timeout=10)
    await eventually(lambda: len(t.reports()) == 1, what="the backfill report")
    assert await t.table() == {2: 1}
    await stays(t.frame, {2: 1}, for_s=0.5, what="the frame (row 1 was deleted during the gap)")


async def test_backfill_does_not_overwrite_a_newer_live_update(rt, make_manager):
    t = await _setup(rt, make_manager, slow=True)
    await rt.execute("INSERT INTO public.bf_rows (id) VALUES (1)")
    await eventually(lambda: len(t.lf) == 1, what="live insert")
    await t.open_gate()
    await t.gap("repro drop")
    await t.bump(2, 1)
    await t.mgr.wait_for_status("bf_rows", "connected", timeout=10)
    await asyncio.sleep(0.5)  # the backfill query has taken its snapshot and sleeps in the scan
    await t.bump(3, 1)
    await eventually(lambda: t.frame().get(1) == 3, what="the live v3")  # arrives live first
    await eventually(lambda: len(t.reports()) == 1, within=15, what="the backfill report")
    assert await t.table() == {1: 3}
    await stays(t.frame, {1: 3}, for_s=0.3, what="the frame (no v2 back over the live v3)")


async def test_backfill_does_not_resurrect_a_row_deleted_live(rt, make_manager):
    t = await _setup(rt, make_manager, slow=True)
    await rt.execute("INSERT INTO public.bf_rows (id) VALUES (1), (2)")
    await eventually(lambda: len(t.lf) == 2, what="live inserts")
    await t.open_gate()
    await t.gap("repro drop")
    await t.bump(2, 1)
    await t.mgr.wait_for_status("bf_rows", "connected", timeout=10)
    await asyncio.sleep(0.5)
    await rt.execute("DELETE FROM public.bf_rows WHERE id = 1")
    await eventually(lambda: 1 not in t.lf, what="the live DELETE")
    await eventually(lambda: len(t.reports()) == 1, within=15, what="the backfill report")
    assert await t.table() == {2: 1}
    await stays(t.frame, {2: 1}, for_s=0.3, what="the frame (row 1 was deleted live)")


async def test_rows_committed_early_in_a_stall_are_backfilled(rt, make_manager):
    t = await _setup(rt, make_manager, heartbeat_interval=3.0)
    await rt.execute("INSERT INTO public.bf_rows (id) VALUES (1)")
    await eventually(lambda: len(t.lf) == 1, what="live insert")
    rt.faults.stall(9)
    await rt.execute("INSERT INTO public.bf_rows (id) VALUES (2)")  # queued behind the stall
    await t.mgr.wait_for_status("bf_rows", "reconnecting", timeout=10)
    await t.mgr.wait_for_status("bf_rows", "connected", timeout=20)
    await eventually(lambda: len(t.reports()) == 1, what="the backfill report")
    await asyncio.sleep(0.5)
    gap = next(e for e in t.events if e.kind is EventKind.GAP)
    assert gap.reason.startswith("stall")
    assert t.frame() == await t.table() == {1: 1, 2: 1}, (
        f"row 2 (committed right after the stall began) was lost; the gap was recorded as starting "
        f"at {gap.gap_start.isoformat()}, seconds after delivery stopped"
    )
