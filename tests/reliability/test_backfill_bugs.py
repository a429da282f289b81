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
from harmony_lab.frames import LiveFrame
from harmony_lab.manager import Backfill
from tests.reliability.reliability_helpers import REALTIME_PY_DEPRECATIONS, eventually

pytestmark = REALTIME_PY_DEPRECATIONS

TABLE_SQL = """
CREATE TABLE public.bf_rows (
  id         bigint PRIMARY KEY,
  version    integer NOT NULL DEFAULT 1,
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
GRANT SELECT ON public.bf_rows TO anon, authenticated;
ALTER PUBLICATION supabase_realtime ADD TABLE public.bf_rows;
"""

# An RLS policy whose evaluation sleeps 1.5 s, once per transaction, only when the gate is open and only
# outside the embedded server's own sessions (application_name harmony_lab_*): the manager's backfill
# query then takes its snapshot, sleeps inside the scan, and returns rows as they were when it started —
# a deterministic stand-in for any slow backfill query (a big gap, an expensive policy, a remote DB).
SLOW_BACKFILL_SQL = """
CREATE TABLE public.bf_gate (open boolean NOT NULL);
INSERT INTO public.bf_gate VALUES (false);
GRANT SELECT ON public.bf_gate TO anon;
CREATE FUNCTION public.bf_slow_gate() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF current_setting('application_name') NOT LIKE 'harmony_lab%'
     AND (SELECT open FROM public.bf_gate)
     AND coalesce(current_setting('bf.slept', true), '') <> '1' THEN
    PERFORM pg_sleep(1.5);
    PERFORM set_config('bf.slept', '1', true);
  END IF;
  RETURN true;
END
$$;
ALTER TABLE public.bf_rows ENABLE ROW LEVEL SECURITY;
CREATE POLICY bf_rows_read ON public.bf_rows FOR SELECT TO anon USING (public.bf_slow_gate());
"""


async def _setup(rt: Any, make_manager: Any, *, slow: bool = False, **options: Any) -> tuple[Any, Any, list]:
    await rt.execute(TABLE_SQL)
    if slow:
        await rt.execute(SLOW_BACKFILL_SQL)
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn, **options)
    lf = LiveFrame(None, "bf_rows", max_rows=None)
    events: list = []
    mgr.add_listener(events.append)
    await mgr.subscribe_to_table(
        "bf", "bf_rows", callback=lf.apply, backfill=Backfill(column="updated_at", lookback=2.0)
    )
    await mgr.wait_for_status("bf", "connected", timeout=10)
    return mgr, lf, events


def _backfills(events: list) -> int:
    return sum(1 for e in events if e.kind is EventKind.SYSTEM and e.reason == "backfill")


async def _gap(rt: Any, mgr: Any, refuse: float = 1.0) -> None:
    rt.faults.refuse(refuse)
    rt.faults.drop_all(code=1001, reason="repro drop")
    await mgr.wait_for_status("bf", "reconnecting", timeout=5)


async def _versions(rt: Any) -> dict[int, int]:
    return {int(i): int(v) for i, v in await rt.execute("SELECT id, version FROM public.bf_rows")}


def _frame_versions(lf: LiveFrame) -> dict[int, int]:
    df = lf.df
    return {int(i): int(v) for i, v in zip(df["id"], df["version"], strict=True)} if len(df) else {}


async def test_control_rows_inserted_and_updated_during_a_gap_are_backfilled(rt, make_manager):
    mgr, lf, events = await _setup(rt, make_manager)
    await rt.execute("INSERT INTO public.bf_rows (id) VALUES (1), (2)")
    await eventually(lambda: len(lf) == 2, what="live inserts")
    await _gap(rt, mgr)
    await rt.execute("UPDATE public.bf_rows SET version = 2, updated_at = clock_timestamp() WHERE id = 1")
    await rt.execute("INSERT INTO public.bf_rows (id) VALUES (3)")
    await mgr.wait_for_status("bf", "connected", timeout=10)
    await eventually(lambda: _backfills(events) == 1, what="the backfill report")
    assert _frame_versions(lf) == await _versions(rt) == {1: 2, 2: 1, 3: 1}
    gap = next(e for e in events if e.kind is EventKind.GAP)
    assert "repro drop" in gap.reason


async def test_row_deleted_during_a_gap_leaves_the_frame(rt, make_manager):
    mgr, lf, events = await _setup(rt, make_manager)
    await rt.execute("INSERT INTO public.bf_rows (id) VALUES (1), (2)")
    await eventually(lambda: len(lf) == 2, what="live inserts")
    await _gap(rt, mgr)
    await rt.execute("DELETE FROM public.bf_rows WHERE id = 1")
    await mgr.wait_for_status("bf", "connected", timeout=10)
    await eventually(lambda: _backfills(events) == 1, what="the backfill report")
    await asyncio.sleep(0.5)
    assert await _versions(rt) == {2: 1}
    assert _frame_versions(lf) == {2: 1}, "row 1 was deleted during the gap but is still in the frame"


async def test_backfill_does_not_overwrite_a_newer_live_update(rt, make_manager):
    mgr, lf, events = await _setup(rt, make_manager, slow=True)
    await rt.execute("INSERT INTO public.bf_rows (id) VALUES (1)")
    await eventually(lambda: len(lf) == 1, what="live insert")
    await rt.execute("UPDATE public.bf_gate SET open = true")
    await _gap(rt, mgr)
    await rt.execute("UPDATE public.bf_rows SET version = 2, updated_at = clock_timestamp() WHERE id = 1")
    await mgr.wait_for_status("bf", "connected", timeout=10)
    await asyncio.sleep(0.5)  # the backfill query has taken its snapshot and sleeps in the scan
    await rt.execute("UPDATE public.bf_rows SET version = 3, updated_at = clock_timestamp() WHERE id = 1")
    await eventually(lambda: _frame_versions(lf).get(1) == 3, what="the live v3")  # arrives live first
    await eventually(lambda: _backfills(events) == 1, timeout=15, what="the backfill report")
    await asyncio.sleep(0.3)
    assert await _versions(rt) == {1: 3}
    assert _frame_versions(lf) == {1: 3}, "the backfill put the older version 2 back over the live 3"


async def test_backfill_does_not_resurrect_a_row_deleted_live(rt, make_manager):
    mgr, lf, events = await _setup(rt, make_manager, slow=True)
    await rt.execute("INSERT INTO public.bf_rows (id) VALUES (1), (2)")
    await eventually(lambda: len(lf) == 2, what="live inserts")
    await rt.execute("UPDATE public.bf_gate SET open = true")
    await _gap(rt, mgr)
    await rt.execute("UPDATE public.bf_rows SET version = 2, updated_at = clock_timestamp() WHERE id = 1")
    await mgr.wait_for_status("bf", "connected", timeout=10)
    await asyncio.sleep(0.5)
    await rt.execute("DELETE FROM public.bf_rows WHERE id = 1")
    await eventually(lambda: 1 not in lf, what="the live DELETE")
    await eventually(lambda: _backfills(events) == 1, timeout=15, what="the backfill report")
    await asyncio.sleep(0.3)
    assert await _versions(rt) == {2: 1}
    assert _frame_versions(lf) == {2: 1}, "the backfill re-inserted row 1 after its live DELETE"


async def test_rows_committed_early_in_a_stall_are_backfilled(rt, make_manager):
    mgr, lf, events = await _setup(rt, make_manager, heartbeat_interval=3.0)
    await rt.execute("INSERT INTO public.bf_rows (id) VALUES (1)")
    await eventually(lambda: len(lf) == 1, what="live insert")
    rt.faults.stall(9)
    await rt.execute("INSERT INTO public.bf_rows (id) VALUES (2)")  # queued behind the stall
    await mgr.wait_for_status("bf", "reconnecting", timeout=10)
    await mgr.wait_for_status("bf", "connected", timeout=20)
    await eventually(lambda: _backfills(events) == 1, what="the backfill report")
    await asyncio.sleep(0.5)
    gap = next(e for e in events if e.kind is EventKind.GAP)
    assert gap.reason.startswith("stall")
    assert _frame_versions(lf) == await _versions(rt) == {1: 1, 2: 1}, (
        f"row 2 (committed right after the stall began) was lost; the gap was recorded as starting "
        f"at {gap.gap_start.isoformat()}, seconds after delivery stopped"
    )
