"""LiveFrame on the real stack: LocalRealtime (Postgres + server) and the RealtimeConnectionManager."""

from __future__ import annotations

import pandas as pd
import pytest

from harmony_lab.frames import LiveFrame
from harmony_lab.local.schema import ALICE, BOB, GENERAL, RANDOM

# realtime-py 2.34.1 logs ConnectionClosed.code/.reason (deprecated in websockets 13.1) on abnormal
# closes; with warnings-as-errors that would kill its listener task. Same exemption as the manager's.
pytestmark = [
    pytest.mark.filterwarnings("ignore:ConnectionClosed.code is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ConnectionClosed.reason is deprecated:DeprecationWarning"),
]

INSERT = "insert into messages (channel_id, user_id, content) values (%s, %s, %s) returning id"


@pytest.fixture
def manager(rt, make_manager):
    """Alice's manager on the stack, with the suite's fast timings (cleaned up by make_manager)."""
    return make_manager(rt.url, rt.anon_key, dsn=rt.dsn, access_token=rt.token_for(str(ALICE)))


async def insert(rt, content: str, channel: int = GENERAL, user=ALICE) -> int:
    return (await rt.execute(INSERT, channel, user, content))[0][0]


async def test_live_frame_follows_postgres_through_the_manager(rt, manager):
    # snapshot=False: this test counts what the stream alone brings (the seed's rows stay out)
    lf = LiveFrame(manager, "messages", filter=f"channel_id=eq.{GENERAL}", snapshot=False)
    await lf.ready()  # the first attempt settled; on a loaded machine it may still be retrying
    await manager.wait_for_status(lf.name, "connected", timeout=30)
    assert lf.status == "connected"
    assert lf.name in manager.channels
    a = await insert(rt, "first")
    b = await insert(rt, "second", user=BOB)
    await insert(rt, "not this channel", channel=RANDOM)
    c = await insert(rt, "third")
    await rt.execute("update messages set content = 'edited', edited_at = now() where id = %s", a)
    await rt.execute("delete from messages where id = %s", b)
    await lf.wait_until(lambda f: f.counters["events"] >= 5, within_s=30)
    df = lf.df
    assert list(df["id"]) == [a, c]
    assert list(df["content"]) == ["edited", "third"]
    assert lf.key == ("id",)
    assert (lf.inserts, lf.updates, lf.deletes) == (3, 1, 1)
    assert str(df["id"].dtype) == "Int64"
    assert str(df["user_id"].dtype) == "string"
    assert df["user_id"][0] == str(ALICE)
    assert str(df["created_at"].dtype) == "datetime64[us, UTC]"
    assert pd.isna(df["deleted_at"][0])
    assert not pd.isna(df["edited_at"][0])
    # a key-changing update moves the row
    await rt.execute("update messages set id = %s where id = %s", c + 100_000, c)
    await lf.wait_until(lambda f: (c + 100_000,) in f, within_s=30)
    assert c not in lf
    assert lf.counters["key_changes"] == 1
    await lf.aclose()
    assert lf.name not in manager.channels
    assert lf.status == "closed"


async def test_live_frame_survives_a_dropped_connection(rt, manager):
    async with LiveFrame(manager, "messages", max_rows=100, snapshot=False) as lf:
        await manager.wait_for_status(lf.name, "connected", timeout=30)
        await insert(rt, "before")
        await lf.wait_until(lambda f: len(f) == 1, within_s=30)
        rt.faults.drop_all()
        await manager.wait_for_status(lf.name, "reconnecting", timeout=10)
        await manager.wait_for_status(lf.name, "connected", timeout=20)
        assert lf.status == "connected"
        await insert(rt, "after")
        await lf.wait_until(lambda f: len(f) == 2, within_s=15)
        assert list(lf.df["content"]) == ["before", "after"]
