"""LiveFrame via="broadcast": the rows of a realtime.broadcast_changes topic, with the frame semantics
of Postgres Changes. Real Postgres, the real server and the real manager; the Harmony schema's
triggers broadcast every change of public.messages to the channel's private topic."""

from __future__ import annotations

from typing import Any

import pytest

from harmony_lab.events import EventKind, RealtimeEvent
from harmony_lab.frames import LiveFrame
from harmony_lab.frames._broadcast import change_event
from harmony_lab.local.schema import ALICE, BOB, ERIN, GENERAL, RANDOM
from harmony_lab.manager import Backfill, BackoffPolicy, RealtimeConnectionManager

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:ConnectionClosed.code is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ConnectionClosed.reason is deprecated:DeprecationWarning"),
]

INSERT = "insert into messages (channel_id, user_id, content) values (%s, %s, %s) returning id"


@pytest.fixture
def manager(rt, make_manager):
    """Alice's manager on the stack, with the suite's fast timings (cleaned up by make_manager)."""
    return make_manager(rt.url, rt.anon_key, dsn=rt.dsn, access_token=rt.token_for(str(ALICE)))


def _rows(lf: LiveFrame) -> list[dict[str, Any]]:
    return lf.df.astype(object).where(lf.df.notna(), None).to_dict("records")


async def test_frame_via_broadcast_equals_frame_via_postgres_changes(rt, manager):
    general = f"channel_id=eq.{GENERAL}"
    pg = LiveFrame(manager, "messages", filter=general, max_rows=8)
    # the topic carries this channel's rows only; the filter makes the starting snapshot match it
    bc = LiveFrame(
        manager,
        "messages",
        filter=general,
        via="broadcast",
        topic="channel:general",
        private=True,
        max_rows=8,
    )
    await pg.ready()
    await bc.ready()
    for lf in (pg, bc):
        await manager.wait_for_status(lf.name, "connected", timeout=30)
    assert pg.snapshot_info is not None
    assert bc.snapshot_info is not None
    assert _rows(pg) == _rows(bc)  # both start from the same snapshot

    ids = [(await rt.execute(INSERT, GENERAL, ALICE if n % 2 else BOB, f"m{n}"))[0][0] for n in range(6)]
    await rt.execute(INSERT, RANDOM, ALICE, "another channel")
    await rt.execute("update messages set content = 'edited', edited_at = now() where id = %s", ids[1])
    await rt.execute("delete from messages where id = %s", ids[2])
    await rt.execute("update messages set content = 'edited again' where id = %s", ids[4])
    expected = 6 + 2 + 1
    for lf in (pg, bc):
        await lf.wait_until(lambda f: f.counters["events"] >= expected, within_s=30)

    assert pg.counters["events"] == bc.counters["events"] == expected
    assert (pg.inserts, pg.updates, pg.deletes) == (bc.inserts, bc.updates, bc.deletes) == (6, 2, 1)
    assert pg.counters["evicted"] == bc.counters["evicted"]
    assert len(bc) == 7  # 8 kept, then one deleted
    assert list(bc.df["id"]) == list(pg.df["id"])
    assert _rows(pg) == _rows(bc)
    assert dict(bc.df.dtypes) == dict(pg.df.dtypes)
    assert bc.key == pg.key == ("id",)
    assert bc.status == pg.status == "connected"
    got = {r["id"]: r["content"] for r in _rows(bc)}
    assert got[ids[1]] == "edited"
    assert got[ids[4]] == "edited again"
    assert ids[2] not in got
    await pg.aclose()
    await bc.aclose()


async def test_a_refused_private_topic_is_the_frames_status_with_the_servers_reason(rt):
    # Erin is not in the DM: Realtime Authorization refuses her join of its private topic
    mgr = RealtimeConnectionManager(
        rt.url,
        rt.anon_key,
        dsn=rt.dsn,
        access_token=rt.token_for(str(ERIN)),
        heartbeat_interval=0.5,
        backoff=BackoffPolicy(base=0.1, max_delay=0.5, max_retries=10),
        join_timeout=5.0,
    )
    try:
        lf = LiveFrame(mgr, "messages", via="broadcast", topic="dm:alice-bob", private=True)
        await lf.ready()
        await mgr.wait_for_status(lf.name, "error", timeout=30)
        assert lf.status == "error"
        assert "Unauthorized: You do not have permissions to read from this Channel topic" in lf.status_reason
        assert lf.snapshot_info is None  # a refused channel loads no rows either
        assert len(lf) == 0
        await lf.aclose()
    finally:
        await mgr.cleanup()


def _broadcast(payload: Any) -> RealtimeEvent:
    return RealtimeEvent(
        kind=EventKind.BROADCAST, channel="c", topic="realtime:t", op="UPDATE", payload=payload
    )


def test_change_event_reads_broadcast_changes_payloads():
    ev = change_event(
        _broadcast(
            {
                "operation": "UPDATE",
                "schema": "public",
                "table": "items",
                "record": {"id": 2, "name": "b"},
                "old_record": {"id": 1, "name": "a"},
                "id": "6f0c…",
            }
        ),
        ("id",),
    )
    assert ev is not None
    assert (ev.kind, ev.op, ev.schema, ev.table) == (EventKind.CHANGE, "UPDATE", "public", "items")
    assert (ev.new, ev.old, ev.pk) == ({"id": 2, "name": "b"}, {"id": 1, "name": "a"}, {"id": 2})
    delete = change_event(
        _broadcast(
            {
                "operation": "DELETE",
                "schema": "public",
                "table": "items",
                "record": None,
                "old_record": {"id": 1},
            }
        ),
        ("id",),
    )
    assert delete is not None
    assert (delete.new, delete.old, delete.pk) == (None, {"id": 1}, {"id": 1})
    # anything else on the topic is not a row change
    assert change_event(_broadcast({"text": "hi"}), ("id",)) is None
    assert change_event(_broadcast({"operation": "TRUNCATE", "schema": "s", "table": "t"}), None) is None
    assert change_event(_broadcast("not a map"), None) is None


async def test_a_private_topic_catches_up_after_a_gap_by_replay(rt, manager):
    """Rows written while the connection was down reach the frame when it comes back: the topic's
    stored broadcasts are replayed (backfilled), and nothing is applied twice."""
    bc = LiveFrame(manager, "messages", filter=f"channel_id=eq.{GENERAL}", via="broadcast",
                   topic="channel:general", private=True)  # fmt: skip
    await bc.ready()
    await manager.wait_for_status(bc.name, "connected", timeout=30)
    before = await rt.execute(INSERT, GENERAL, ALICE, "before the gap")
    await bc.wait_until(lambda f: before[0][0] in set(f.df["id"]), within_s=30)
    rt.faults.refuse(1.5)
    rt.faults.drop_all(code=1001, reason="test: gap")
    await manager.wait_for_status(bc.name, "reconnecting", timeout=10)
    during = [(await rt.execute(INSERT, GENERAL, BOB, f"during {n}"))[0][0] for n in range(3)]
    await rt.execute("update messages set content = 'edited in the gap' where id = %s", before[0][0])
    await manager.wait_for_status(bc.name, "connected", timeout=30)
    await bc.wait_until(lambda f: set(during) <= set(f.df["id"]), within_s=30)
    await bc.wait_until(
        lambda f: f.df.set_index("id").loc[before[0][0], "content"] == "edited in the gap", within_s=30
    )
    assert bc.counters["backfilled"] >= 4  # the three inserts and the edit, replayed
    assert manager.get_debug_info()["channels"][bc.name]["replay"]["replayed"] >= 4
    table = {r[0]: r[1] for r in await rt.execute(
        "select id, content from messages where channel_id = %s", GENERAL)}  # fmt: skip
    assert {r["id"]: r["content"] for r in _rows(bc)} == table
    await bc.aclose()


async def test_broadcast_options_are_checked(rt, manager):
    with pytest.raises(ValueError, match="needs topic="):
        LiveFrame(manager, "messages", via="broadcast")
    with pytest.raises(ValueError, match="via must be one of"):
        LiveFrame(manager, "messages", via="presence")
    with pytest.raises(ValueError, match="belong to via='broadcast'"):
        LiveFrame(manager, "messages", topic="channel:general")
    with pytest.raises(ValueError, match="catches up after a gap by replaying"):
        LiveFrame(manager, "messages", via="broadcast", topic="t", backfill=Backfill(column="updated_at"))
    with pytest.raises(ValueError, match="needs a RealtimeConnectionManager"):
        LiveFrame(None, "messages", via="broadcast", topic="t")
