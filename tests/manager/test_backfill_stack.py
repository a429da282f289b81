"""Gap backfill against a real LocalRealtime: DELETEs missed in a gap, and a slow backfill snapshot that
must not overwrite newer live changes nor resurrect rows deleted live. Consumers end equal to the table."""

from __future__ import annotations

import asyncio
from typing import Any

from harmony_lab.events import EventKind
from harmony_lab.frames import LiveFrame
from harmony_lab.local.schema import ALICE, BOB, GENERAL
from harmony_lab.manager import Backfill, TableSubscription
from tests.manager.manager_helpers import (
    REALTIME_PY_DEPRECATIONS,
    GapTable,
    backfill_reports,
    gap_table,
)
from tests.polling import eventually

pytestmark = REALTIME_PY_DEPRECATIONS


async def subscribe(rt: Any, make_manager: Any, *, slow: bool = False, **backfill: Any) -> GapTable:
    return await gap_table(
        rt,
        make_manager,
        "gap_rows",
        lookback=1.0,
        filtered=True,
        slow_seconds=2.0 if slow else None,
        **backfill,
    )


async def test_rows_deleted_or_moved_out_of_the_filter_during_a_gap_are_backfilled_deletes(rt, make_manager):
    t = await subscribe(rt, make_manager)
    await rt.execute("INSERT INTO public.gap_rows (id) VALUES (1), (2), (3), (4)")
    await eventually(lambda: len(t.lf) == 4, what="live inserts")
    await t.gap("test gap")
    await rt.execute("DELETE FROM public.gap_rows WHERE id = 1")
    await rt.execute("UPDATE public.gap_rows SET grp = 2, updated_at = clock_timestamp() WHERE id = 2")
    await t.bump(2, 3)
    await rt.execute("INSERT INTO public.gap_rows (id) VALUES (5)")
    await t.mgr.wait_for_status("gap_rows", "connected", timeout=10)
    # get_status says when the background backfill is over: by then it has been delivered
    await eventually(lambda: not t.mgr.get_status("gap_rows").backfilling, what="the backfill's end")
    assert len(t.reports()) == 1
    assert t.frame() == await t.table() == {3: 2, 4: 1, 5: 1}
    backfilled = [e for e in t.events if e.kind is EventKind.CHANGE and e.backfilled]
    deletes = sorted((e for e in backfilled if e.op == "DELETE"), key=lambda e: e.pk["id"])
    assert [(e.pk, e.old, e.new) for e in deletes] == [
        ({"id": 1}, {"id": 1}, None),
        ({"id": 2}, {"id": 2}, None),
    ]
    assert sorted((e.op, e.pk["id"]) for e in backfilled if e.op != "DELETE") == [
        ("INSERT", 5),
        ("UPDATE", 3),
    ]
    (report,) = t.reports()
    assert report.payload["deleted"] == 2
    assert report.payload["keys_checked"] == 4
    info = t.mgr.get_debug_info()["channels"]["gap_rows"]
    assert info["backfill_deleted"] == 2
    # a second gap: nothing more to delete, nothing delivered twice
    await t.gap("test gap")
    await t.mgr.wait_for_status("gap_rows", "connected", timeout=10)
    await eventually(lambda: len(t.reports()) == 2, what="the second backfill report")
    assert t.reports()[1].payload["deleted"] == 0
    assert t.reports()[1].payload["keys_checked"] == 3
    assert t.frame() == await t.table()


async def test_deletes_false_checks_no_keys(rt, make_manager):
    t = await subscribe(rt, make_manager, deletes=False)
    await rt.execute("INSERT INTO public.gap_rows (id) VALUES (1), (2)")
    await eventually(lambda: len(t.lf) == 2, what="live inserts")
    await t.gap("test gap")
    await rt.execute("DELETE FROM public.gap_rows WHERE id = 1")
    await t.mgr.wait_for_status("gap_rows", "connected", timeout=10)
    await eventually(lambda: len(t.reports()) == 1, what="the backfill report")
    assert t.reports()[0].payload["keys_checked"] is None
    assert 1 in t.lf  # documented: without deletes=True the DELETE in the gap is not seen


async def test_a_slow_backfill_does_not_overwrite_a_newer_live_update(rt, make_manager):
    t = await subscribe(rt, make_manager, slow=True)
    await rt.execute("INSERT INTO public.gap_rows (id) VALUES (1), (2)")
    await eventually(lambda: len(t.lf) == 2, what="live inserts")
    await t.open_gate()
    await t.gap("test gap")
    await t.bump(2, 1)
    await t.bump(2, 2)
    reconnected = await t.mgr.wait_for_status("gap_rows", "connected", timeout=10)
    assert reconnected.backfilling  # connected, the slow backfill still to come
    assert t.mgr.get_status("gap_rows").backfilling
    assert "backfilling" in repr(t.mgr.get_status("gap_rows"))
    await asyncio.sleep(0.5)  # the backfill has taken its snapshot and sleeps in the scan
    await t.bump(3, 1)
    await eventually(lambda: t.frame().get(1) == 3, what="the live v3")  # live is not held back
    await eventually(lambda: len(t.reports()) == 1, within=15, what="the backfill report")
    await eventually(lambda: not t.mgr.get_status("gap_rows").backfilling, what="the backfill's end")
    assert t.frame() == await t.table() == {1: 3, 2: 2}
    (report,) = t.reports()
    assert report.payload["superseded"] == 1  # row 1 at v2 from the snapshot: older than live v3
    assert report.payload["delivered"] == 1  # row 2 at v2
    # the live repeat of row 2 v2 (if the server delivers it after the backfill) is not a second event
    v2 = [
        e
        for e in t.events
        if e.kind is EventKind.CHANGE and e.pk == {"id": 2} and e.new and e.new["version"] == 2
    ]
    assert len(v2) == 1


async def test_a_slow_backfill_does_not_resurrect_a_row_deleted_live(rt, make_manager):
    t = await subscribe(rt, make_manager, slow=True)
    await rt.execute("INSERT INTO public.gap_rows (id) VALUES (1), (2), (3)")
    await eventually(lambda: len(t.lf) == 3, what="live inserts")
    await t.open_gate()
    await t.gap("test gap")
    await t.bump(2, 1)
    await rt.execute("DELETE FROM public.gap_rows WHERE id = 3")  # missed: a backfilled DELETE
    await t.mgr.wait_for_status("gap_rows", "connected", timeout=10)
    await asyncio.sleep(0.5)
    await rt.execute("DELETE FROM public.gap_rows WHERE id = 1")  # live, while the backfill runs
    await eventually(lambda: 1 not in t.lf, what="the live DELETE")
    await eventually(lambda: len(t.reports()) == 1, within=15, what="the backfill report")
    await asyncio.sleep(0.3)
    assert t.frame() == await t.table() == {2: 1}
    (report,) = t.reports()
    assert report.payload["superseded"] == 1
    assert report.payload["deleted"] == 1


async def test_composite_keys_under_rls_and_a_created_at_backfill(rt, make_manager):
    """message_reactions: (bigint, uuid, text) key, RLS for authenticated members, now() timestamps."""
    mgr = make_manager(rt.url, rt.anon_key, dsn=rt.dsn, access_token=rt.token_for(str(ALICE)))
    got: list[Any] = []
    events: list[Any] = []
    mgr.add_listener(events.append)
    lf = LiveFrame(None, "message_reactions", max_rows=None)
    (msg,) = await rt.execute(
        "insert into messages (channel_id, user_id, content) values (%s, %s, 'react') returning id",
        GENERAL,
        ALICE,
    )
    await mgr.subscribe_to_multiple_tables(
        "reactions",
        [TableSubscription("message_reactions", backfill=Backfill("created_at", lookback=1.0))],
        callback=lambda ev: (got.append(ev), lf.apply(ev)),
    )
    await mgr.wait_for_status("reactions", "connected", timeout=10)
    react = "insert into message_reactions (message_id, user_id, emoji) values (%s, %s, %s)"
    for user, emoji in ((ALICE, "👍"), (BOB, "a,b"), (ALICE, "🎉")):
        await rt.execute(react, msg[0], user, emoji)
    await eventually(lambda: len(lf) == 3, what="live reactions")
    rt.faults.refuse(1.0)
    rt.faults.drop_all(code=1001)
    await mgr.wait_for_status("reactions", "reconnecting", timeout=5)
    await rt.execute(
        "delete from message_reactions where user_id = %s and emoji = %s", BOB, "a,b"
    )  # missed in the gap
    await rt.execute(react, msg[0], BOB, "new")
    await mgr.wait_for_status("reactions", "connected", timeout=10)
    await eventually(lambda: len(backfill_reports(events)) == 1, what="the backfill report")
    mine = "select user_id, emoji from message_reactions where message_id = %s"
    want = sorted((str(u), e) for u, e in await rt.execute(mine, msg[0]))
    df = lf.df[lf.df["message_id"] == msg[0]]
    have = sorted((str(u), e) for u, e in zip(df["user_id"], df["emoji"], strict=True))
    assert have == want
    assert (str(BOB), "a,b") not in have
    (report,) = backfill_reports(events)
    assert (report.payload["deleted"], report.payload["keys_checked"]) == (1, 3)
