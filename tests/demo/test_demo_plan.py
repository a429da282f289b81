"""The planner alone: pure, seeded, no database."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter

import pytest

from harmony_lab.demo._plan import (
    PRESENCE_SPACING_S,
    ActionKind,
    Planner,
    Status,
    build_world,
    extra_user,
)
from harmony_lab.local import schema


def planner(seed: int | None = 7, users: int = 12, rate: float = 5.0, **kw) -> Planner:
    simulated, bystanders, channels = build_world(users, seed=seed, **kw)
    return Planner(simulated, channels, rate=rate, seed=seed, bystanders=bystanders)


def test_same_seed_same_actions():
    p1, p2 = planner(42), planner(42)
    a = [p1.next().to_dict() for _ in range(3000)]
    b = [p2.next().to_dict() for _ in range(3000)]
    assert a == b


def test_different_seed_different_actions():
    p1, p2 = planner(1), planner(2)
    assert [p1.next().to_dict() for _ in range(50)] != [p2.next().to_dict() for _ in range(50)]


def test_every_kind_and_status_is_planned():
    p = planner(3)
    actions = [p.next() for _ in range(3000)]
    assert {a.kind for a in actions} == set(ActionKind)
    statuses = {a.status for a in actions if a.kind is ActionKind.PRESENCE}
    assert statuses == set(Status)
    kinds = Counter(n for a in actions for _, n in a.notify)
    assert set(kinds) == {"mention", "dm", "reply", "reaction"}


def test_poisson_arrivals_match_the_rate():
    p = planner(5, rate=8.0)
    times = [p.next().at for _ in range(4000)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert statistics.fmean(gaps) == pytest.approx(1 / 8.0, rel=0.08)
    # exponential: the standard deviation equals the mean
    assert statistics.stdev(gaps) == pytest.approx(1 / 8.0, rel=0.12)


def test_presence_changes_are_spaced_per_user():
    p = planner(11, rate=50.0)
    last: dict[str, float] = {}
    for _ in range(5000):
        a = p.next()
        if a.kind is ActionKind.PRESENCE:
            if a.actor in last:
                assert a.at - last[a.actor] >= PRESENCE_SPACING_S
            last[a.actor] = a.at


def test_world_invariants_hold():
    p = planner(13)
    members = {name: set(ch.members) for name, ch in p.channels.items()}
    status = dict.fromkeys(p.users, Status.OFFLINE)
    for _ in range(3000):
        a = p.next()
        if a.kind is ActionKind.PRESENCE:
            status[a.actor] = a.status
            continue
        if a.kind in (ActionKind.TYPING_STOP,):
            continue
        # only connected users act
        assert status[a.actor] is not Status.OFFLINE, a
        if a.kind is ActionKind.OPEN_DM:
            members[a.channel] = {a.actor, *a.users}
        elif a.kind is ActionKind.JOIN:
            assert a.actor not in members[a.channel]
            members[a.channel].add(a.actor)
        elif a.kind is ActionKind.LEAVE:
            members[a.channel].discard(a.actor)
        elif a.kind in (ActionKind.MESSAGE, ActionKind.TYPING_START, ActionKind.KEY_SHARE):
            assert a.actor in members[a.channel], a
        if a.kind is ActionKind.KEY_SHARE:
            assert a.users
            assert set(a.users) <= members[a.channel] - {a.actor}
        if a.kind is ActionKind.TYPING_START:
            assert status[a.actor] is not Status.INVISIBLE


def test_world_users_and_bystanders():
    simulated, bystanders, channels = build_world(12, seed=1)
    assert len(simulated) == 12
    assert [u.username for u in simulated[:6]] == list(schema.USERS)
    assert bystanders == []
    assert simulated[6] == extra_user(0)
    general = next(c for c in channels if c.name == "general")
    assert {u.id for u in simulated} <= general.members

    simulated, bystanders, _ = build_world(12, seed=1, exclude=["alice"])
    assert "alice" not in {u.username for u in simulated}
    assert [u.username for u in bystanders] == ["alice"]

    simulated, bystanders, _ = build_world(["bob", "carol"], seed=1)
    assert [u.username for u in simulated] == ["bob", "carol"]
    assert len(bystanders) == 4


def test_extra_users_are_deterministic_and_unique():
    ids = {extra_user(i).id for i in range(60)}
    names = {extra_user(i).username for i in range(60)}
    assert len(ids) == len(names) == 60
    assert extra_user(3) == extra_user(3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"users": 1}, "int >= 2"),
        ({"users": ["alice", "nobody"]}, "unknown seed users"),
        ({"users": 4, "exclude": ["zed"]}, "unknown seed user 'zed'"),
    ],
)
def test_bad_world_arguments(kwargs, message):
    users = kwargs.pop("users")
    with pytest.raises(ValueError, match=message):
        build_world(users, seed=1, **kwargs)


def test_bad_rate():
    simulated, _bystanders, channels = build_world(3, seed=1)
    with pytest.raises(ValueError, match="rate must be a positive"):
        Planner(simulated, channels, rate=0, seed=1)
