"""The Simulator against a real LocalRealtime: rows in Postgres, presence seen by a realtime-py observer."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from realtime import AsyncRealtimeClient

from harmony_lab.demo import PRESENCE_CHANNEL, Simulator
from harmony_lab.demo._plan import ActionKind, Status
from harmony_lab.local import schema
from tests.polling import eventually, eventually_sync, stays

COVERAGE_SEED = 11  # covers every action kind and status within ~8 virtual seconds at 40/s (see test_plan)

AUDIT_SQL = """
CREATE TABLE IF NOT EXISTS public._sim_audit (tbl text, op text, at timestamptz DEFAULT clock_timestamp());
CREATE OR REPLACE FUNCTION public._sim_audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public._sim_audit (tbl, op) VALUES (TG_TABLE_NAME, TG_OP); RETURN NULL; END $$;
"""


async def install_audit(rt: Any) -> None:
    await rt.execute(AUDIT_SQL)
    for table in schema.TABLES:
        await rt.execute(
            f"CREATE OR REPLACE TRIGGER _sim_audit AFTER INSERT OR UPDATE OR DELETE ON public.{table} "
            "FOR EACH ROW EXECUTE FUNCTION public._sim_audit_fn()"
        )


class Observer:
    """A plain realtime-py client watching the presence channel."""

    def __init__(self, rt: Any) -> None:
        self.client = AsyncRealtimeClient(rt.ws_url, token=rt.anon_key)
        self.joins: list[tuple[str, str]] = []
        self.leaves: list[tuple[str, str]] = []
        self.channel: Any = None

    async def start(self) -> None:
        config = {
            "broadcast": {"ack": False, "self": False},
            "presence": {"key": "observer", "enabled": True},
        }
        self.channel = self.client.channel(PRESENCE_CHANNEL, {"config": {**config, "private": False}})
        self.channel.on_presence_join(
            lambda key, cur, new: self.joins.extend((key, p["status"]) for p in new)
        )
        self.channel.on_presence_leave(
            lambda key, cur, left: self.leaves.extend((key, p["status"]) for p in left)
        )
        await self.channel.subscribe()
        assert self.channel.is_joined

    def state(self) -> dict[str, str]:
        return {key: metas[-1]["status"] for key, metas in self.channel.presence_state().items() if metas}

    async def close(self) -> None:
        await self.client.close()


async def settle(sim: Simulator) -> None:
    """Wait until every queued presence step has run."""
    for _ in range(100):
        tails = [t for t in sim._presence_tail.values() if not t.done()]
        if not tails:
            return
        await asyncio.wait(tails, timeout=20)
    raise AssertionError("presence steps did not settle")


def covered(sim: Simulator) -> bool:
    kinds = {a.kind for a in sim.log}
    statuses = {a.status for a in sim.log if a.kind is ActionKind.PRESENCE}
    return kinds == set(ActionKind) and statuses == set(Status)


async def test_covers_every_table_and_presence_status(rt):
    await install_audit(rt)
    observer = Observer(rt)
    await observer.start()
    sim = Simulator(rt, users=12, rate=40.0, seed=COVERAGE_SEED)
    try:
        await sim.start()
        await sim.wait_for(covered, timeout=60)
        await sim.pause()
        await settle(sim)
        # quiescent: the server's presence must match the plan exactly
        expected = {
            uid: str(st)
            for uid, st in sim.planner.status.items()
            if st in (Status.ONLINE, Status.AWAY, Status.DND)
        }
        await eventually(lambda: {k: v for k, v in observer.state().items() if k != "observer"} == expected)
        connected = [uid for uid, st in sim.planner.status.items() if st is not Status.OFFLINE]
        for uid, user in sim._presence.items():
            assert user.joined == (uid in connected), user  # offline = disconnected, invisible = joined
        await eventually(lambda: rt.server.connection_count == len(connected) + 1)
        stats = sim.stats
        await sim.resume()
    finally:
        await sim.aclose()
        await observer.close()

    assert stats["errors"] == 0, stats["last_error"]
    # every table got inserts, and updates/deletes where the app does them
    rows = await rt.execute("SELECT tbl, op, count(*) FROM public._sim_audit GROUP BY tbl, op")
    ops: dict[str, set[str]] = defaultdict(set)
    for tbl, op, _ in rows:
        ops[tbl].add(op)
    assert set(ops) == set(schema.TABLES), ops
    assert {"INSERT", "UPDATE"} <= ops["messages"]  # sends, edits, soft deletes
    assert {"INSERT", "DELETE"} <= ops["message_reactions"]
    assert {"INSERT", "DELETE"} <= ops["typing_indicators"]
    assert {"INSERT", "DELETE"} <= ops["channel_members"]
    assert {"INSERT", "UPDATE"} <= ops["notifications"]  # created, then read
    assert "UPDATE" in ops["profiles"]  # status
    assert "INSERT" in ops["channels"]  # a new DM
    assert "INSERT" in ops["megolm_session_shares"]
    deleted = await rt.execute("SELECT count(*) FROM public.messages WHERE deleted_at IS NOT NULL")
    edited = await rt.execute("SELECT count(*) FROM public.messages WHERE edited_at IS NOT NULL")
    assert deleted[0][0] > 0
    assert edited[0][0] > 0
    kinds = {r[0] for r in await rt.execute("SELECT DISTINCT kind FROM public.notifications")}
    assert {"mention", "dm", "reply", "reaction"} <= kinds
    extra = await rt.execute("SELECT count(*) FROM public.profiles WHERE username = 'grace'")
    assert extra[0][0] == 1  # users beyond the seed were created

    # presence as another client saw it: every tracked status, and leaves for invisible/offline
    assert {status for _, status in observer.joins} == {"online", "away", "dnd"}
    left_by_going_dark = {
        a.actor
        for a, prev in _transitions(sim)
        if a.status in (Status.INVISIBLE, Status.OFFLINE) and prev in (Status.ONLINE, Status.AWAY, Status.DND)
    }
    assert left_by_going_dark
    assert left_by_going_dark <= {key for key, _ in observer.leaves}
    went_invisible = {
        a.actor
        for a, prev in _transitions(sim)
        if a.status is Status.INVISIBLE and prev is not Status.OFFLINE
    }
    assert went_invisible

    # after stop: everyone offline in profiles, no typing left, presence sockets closed
    ids = [u.id for u in sim.users]
    rows = await rt.execute("SELECT DISTINCT status FROM public.profiles WHERE id = ANY(%s::uuid[])", ids)
    assert rows == [("offline",)]
    rows = await rt.execute(
        "SELECT count(*) FROM public.typing_indicators WHERE user_id = ANY(%s::uuid[])", ids
    )
    assert rows == [(0,)]
    await eventually(lambda: rt.server.connection_count == 0)


def _transitions(sim: Simulator):
    prev: dict[str, Status] = {}
    for a in sim.log:
        if a.kind is ActionKind.PRESENCE:
            yield a, prev.get(a.actor, Status.OFFLINE)
            prev[a.actor] = a.status


async def test_same_seed_same_action_log(rt):
    logs = []
    for seed in (5, 5, 6):
        sim = Simulator(rt, users=8, rate=400.0, seed=seed, presence=False)
        async with sim:
            await sim.wait_for(lambda s: s.actions >= 400, timeout=60)
        assert sim.stats["errors"] == 0, sim.stats["last_error"]
        logs.append(sim.action_log()[:400])
    assert logs[0] == logs[1]
    assert logs[0] != logs[2]
    assert all(len(log) == 400 for log in logs)


async def test_pause_resume_stop_and_repr(rt):
    sim = Simulator(rt, users=4, rate=50.0, seed=1, presence=False)
    assert "created" in repr(sim)
    await sim.start()
    await sim.wait_for(lambda s: s.actions >= 5, timeout=20)
    await sim.pause()
    held = sim.actions
    await stays(lambda: sim.actions, held, for_s=0.4, what="actions while paused")
    assert sim.state == "paused"
    await sim.resume()
    await sim.wait_for(lambda s: s.actions >= held + 5, timeout=20)
    await sim.aclose()
    text = repr(sim)
    assert "stopped" in text
    assert "users=4" in text
    assert sim.stats["elapsed_s"] > 0
    with pytest.raises(RuntimeError, match="already stopped"):
        await sim.start()


def test_runs_in_its_own_thread_next_to_a_threaded_stack():
    from harmony_lab.local import LocalRealtime

    rt = LocalRealtime().start()
    try:
        sim = Simulator(rt, users=3, rate=30.0, seed=2).start_in_thread()
        try:
            eventually_sync(lambda: sim.actions >= 20, within=30, interval=0.05, what="20 simulated actions")
            assert sim.state == "running"
        finally:
            sim.stop_in_thread()
        assert sim.state == "stopped"
    finally:
        rt.stop()


async def test_bad_arguments_are_explained(rt):
    with pytest.raises(TypeError, match=r"unexpected argument\(s\) \['speed'\]; valid: rt, users, rate"):
        Simulator(rt, speed=2)
    with pytest.raises(TypeError, match="needs a stack with url, anon_key, dsn and token_for"):
        Simulator(object())
    with pytest.raises(ValueError, match="rate must be a positive"):
        Simulator(rt, rate=0)
    with pytest.raises(ValueError, match="unknown seed users"):
        Simulator(rt, users=["alice", "mallory"])


async def test_a_top_up_simulator_leaves_who_is_online_to_the_other(rt):
    """statuses=False (how traffic() tops up the lab's background): presence actions are planned and
    counted but profiles.status stays what the simulator that owns presence wrote, at start, while
    running and at close."""
    first = Simulator(rt, users=8, rate=1.0, seed=3, presence=False)  # creates the 8 users' profiles
    await first.start()
    await first.aclose()
    await rt.execute("UPDATE public.profiles SET status = 'away'")

    async def statuses() -> dict[str, str]:
        return dict(await rt.execute("SELECT id::text, status FROM public.profiles"))

    before = await statuses()
    sim = Simulator(rt, users=8, rate=300.0, seed=3, presence=False, statuses=False)
    async with sim:
        await sim.wait_for(lambda s: s.stats["by_kind"].get("presence", 0) >= 5, timeout=60)
        assert await statuses() == before
    assert sim.stats["errors"] == 0, sim.stats["last_error"]
    assert await statuses() == before
    # the default writes them (the same seed plans the same presence actions)
    sim = Simulator(rt, users=8, rate=300.0, seed=3, presence=False)
    async with sim:
        await sim.wait_for(lambda s: s.stats["by_kind"].get("presence", 0) >= 5, timeout=60)
    assert await statuses() != before
