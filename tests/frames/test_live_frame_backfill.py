"""LiveFrame(manager, table, backfill=Backfill(...)) on the real stack: after an outage during which rows
were inserted, updated and deleted, the frame equals the table again."""

from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd
import pytest

from harmony_lab.events import EventKind
from harmony_lab.frames import LiveFrame
from harmony_lab.manager import Backfill, BackoffPolicy, RealtimeConnectionManager

pytestmark = [
    pytest.mark.filterwarnings("ignore:ConnectionClosed.code is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ConnectionClosed.reason is deprecated:DeprecationWarning"),
]

TABLE_SQL = """
CREATE TABLE public.lf_rows (
  id         bigint PRIMARY KEY,
  version    integer NOT NULL DEFAULT 1,
  note       text NOT NULL DEFAULT '',
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION public.lf_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := clock_timestamp();
  RETURN NEW;
END
$$;
CREATE TRIGGER lf_touch BEFORE UPDATE ON public.lf_rows FOR EACH ROW EXECUTE FUNCTION public.lf_touch();
GRANT SELECT ON public.lf_rows TO anon, authenticated;
ALTER PUBLICATION supabase_realtime ADD TABLE public.lf_rows;
"""


@pytest.fixture
async def manager(rt: Any) -> Any:
    await rt.execute(TABLE_SQL)
    mgr = RealtimeConnectionManager(
        rt.url,
        rt.anon_key,
        dsn=rt.dsn,
        heartbeat_interval=0.5,
        backoff=BackoffPolicy(base=0.1, max_delay=0.5, max_retries=20),
        join_timeout=5.0,
    )
    yield mgr
    await mgr.cleanup()


async def table_rows(rt: Any) -> list[tuple[int, int, str, pd.Timestamp]]:
    rows = await rt.execute("SELECT id, version, note, updated_at FROM public.lf_rows ORDER BY id")
    return [(int(i), int(v), str(n), pd.Timestamp(u)) for i, v, n, u in rows]


def frame_rows(lf: LiveFrame) -> list[tuple[int, int, str, pd.Timestamp]]:
    df = lf.df
    if not len(df):
        return []
    df = df.sort_values("id")
    return [
        (int(i), int(v), str(n), pd.Timestamp(u))
        for i, v, n, u in zip(df["id"], df["version"], df["note"], df["updated_at"], strict=True)
    ]


async def test_live_frame_with_backfill_equals_the_table_after_an_outage(rt, manager):
    events: list = []
    manager.add_listener(events.append)
    lf = LiveFrame(manager, "lf_rows", max_rows=None, backfill=Backfill(column="updated_at"))
    await lf.ready()
    await manager.wait_for_status(lf.name, "connected", timeout=30)
    await rt.execute("INSERT INTO public.lf_rows (id, note) SELECT g, 'live' FROM generate_series(1, 6) g")
    await lf.wait_until(lambda f: len(f) == 6, within_s=30)
    assert lf.key == ("id",)

    # the outage: every socket dropped, reconnects refused for a while; meanwhile the table changes
    rt.faults.refuse(1.5)
    assert rt.faults.drop_all(code=1012, reason="outage") == 1
    await manager.wait_for_status(lf.name, "reconnecting", timeout=5)
    await rt.execute("INSERT INTO public.lf_rows (id, note) VALUES (7, 'during'), (8, 'during')")
    await rt.execute("UPDATE public.lf_rows SET version = version + 1, note = 'edited' WHERE id IN (2, 7)")
    await rt.execute("DELETE FROM public.lf_rows WHERE id IN (3, 8)")
    await rt.execute("UPDATE public.lf_rows SET id = 60 WHERE id = 6")  # a key change = delete + insert
    assert manager.get_status(lf.name).status.value == "reconnecting", "the writes must fall in the gap"
    await manager.wait_for_status(lf.name, "connected", timeout=30)

    def backfilled() -> bool:
        return any(e.kind is EventKind.SYSTEM and e.reason == "backfill" for e in events)

    await lf.wait_until(lambda f: backfilled(), within_s=30)
    await asyncio.sleep(0.3)
    expected = await table_rows(rt)
    assert [r[0] for r in expected] == [1, 2, 4, 5, 7, 60]
    assert frame_rows(lf) == expected
    (gap,) = [e for e in events if e.kind is EventKind.GAP]
    assert "outage" in gap.reason
    c = lf.counters
    assert c["backfilled"] >= 5  # 7 inserted+updated, 2 updated, 3 and 6 gone, 60 new (8 never seen)
    assert (c["inserts"], c["updates"], c["deletes"]) == (6, 0, 0)  # live counters: before the outage
    assert "backfill=updated_at" in repr(lf)

    # and live delivery goes on after the backfill
    await rt.execute("UPDATE public.lf_rows SET note = 'after' WHERE id = 1")
    await lf.wait_until(lambda f: f.get(1)["note"] == "after", within_s=30)
    assert frame_rows(lf) == await table_rows(rt)
    await lf.aclose()


async def test_without_backfill_the_frame_stays_stale_after_an_outage(rt, manager):
    """The control: what ``backfill=`` fixes (the live stream alone misses the outage)."""
    lf = LiveFrame(manager, "lf_rows", max_rows=None)
    await lf.ready()
    await manager.wait_for_status(lf.name, "connected", timeout=30)
    await rt.execute("INSERT INTO public.lf_rows (id) VALUES (1), (2)")
    await lf.wait_until(lambda f: len(f) == 2, within_s=30)
    rt.faults.refuse(1.0)
    rt.faults.drop_all(code=1012, reason="outage")
    await manager.wait_for_status(lf.name, "reconnecting", timeout=5)
    await rt.execute("DELETE FROM public.lf_rows WHERE id = 1")
    await rt.execute("INSERT INTO public.lf_rows (id) VALUES (3)")
    await manager.wait_for_status(lf.name, "connected", timeout=30)
    await asyncio.sleep(1.0)
    assert [r[0] for r in await table_rows(rt)] == [2, 3]
    assert [r[0] for r in frame_rows(lf)] == [1, 2]
    await lf.aclose()


async def test_key_reaches_the_manager_as_the_primary_key(rt, manager):
    await rt.execute(
        "CREATE TABLE public.lf_pairs (room int, seq int, body text, updated_at timestamptz "
        "NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (room, seq));"
        "GRANT SELECT ON public.lf_pairs TO anon;"
        "ALTER PUBLICATION supabase_realtime ADD TABLE public.lf_pairs"
    )
    lf = LiveFrame(manager, "lf_pairs", key=("room", "seq"), backfill=Backfill(column="updated_at"))
    await lf.ready()
    await manager.wait_for_status(lf.name, "connected", timeout=30)
    (sub,) = manager._runners[lf.name].spec.tables
    assert sub.primary_key == ("room", "seq")
    assert sub.backfill == Backfill(column="updated_at")
    await rt.execute("INSERT INTO public.lf_pairs (room, seq, body) VALUES (1, 1, 'a'), (1, 2, 'b')")
    await lf.wait_until(lambda f: len(f) == 2, within_s=30)
    rt.faults.refuse(1.0)
    rt.faults.drop_all(code=1012, reason="outage")
    await manager.wait_for_status(lf.name, "reconnecting", timeout=5)
    await rt.execute("DELETE FROM public.lf_pairs WHERE room = 1 AND seq = 1")
    await manager.wait_for_status(lf.name, "connected", timeout=30)
    await lf.wait_until(lambda f: (1, 1) not in f, within_s=30)
    assert (1, 2) in lf
    await lf.aclose()


def test_backfill_is_checked_at_construction():
    with pytest.raises(TypeError, match=r"backfill must be None or a harmony_lab.Backfill"):
        LiveFrame(None, "messages", backfill="updated_at")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backfill needs a RealtimeConnectionManager source"):
        LiveFrame(None, "messages", backfill=Backfill(column="updated_at"))
