"""The one presence reducer, against a model of Phoenix Presence and the messages clients see."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from harmony_lab._presence import PresenceState, meta_id, metas_of, user_of

KEYS = st.sampled_from(["alice", "bob", "carol"])


@st.composite
def sessions(draw):
    """Random track/untrack steps, each turned into the message a client receives (realtime-js shapes:
    join carries the metas before it, leave the metas that remain), with ``current`` sometimes missing
    and occasional full syncs."""
    model: dict[str, list[dict]] = {}
    steps = []
    ref = 0
    for _ in range(draw(st.integers(1, 25))):
        key = draw(KEYS)
        action = draw(st.sampled_from(["track", "untrack", "sync"]))
        with_current = draw(st.booleans())
        js_names = draw(st.booleans())
        if action == "track":
            ref += 1
            meta = {
                "presence_ref": f"r{ref}",
                "user_id": f"u-{key}",
                "status": draw(st.sampled_from(["online", "away"])),
            }
            before = list(model.get(key, []))
            model[key] = [*before, meta]
            payload = {"key": key, ("newPresences" if js_names else "new"): [meta]}
            if with_current:
                payload["currentPresences" if js_names else "current"] = before
            steps.append(("join", payload))
        elif action == "untrack" and model.get(key):
            gone = draw(st.sampled_from(model[key]))
            model[key] = [m for m in model[key] if m is not gone]
            payload = {"key": key, ("leftPresences" if js_names else "left"): [gone]}
            if with_current:
                payload["currentPresences" if js_names else "current"] = list(model[key])
            if not model[key]:
                del model[key]
            steps.append(("leave", payload))
        elif action == "sync":
            phoenix = draw(st.booleans())  # {key: {"metas": [...]}} as Phoenix sends it
            state = {k: ({"metas": v} if phoenix else list(v)) for k, v in model.items()}
            steps.append(("sync", {"state": state} if draw(st.booleans()) else state))
        steps.append(("check", {k: [m["presence_ref"] for m in v] for k, v in model.items()}))
    return steps


@settings(max_examples=300, deadline=None)
@given(steps=sessions())
def test_the_reducer_follows_presence(steps):
    state = PresenceState()
    for op, payload in steps:
        if op == "check":
            assert sorted(state.keys()) == sorted(payload)
            for key, refs in payload.items():
                assert state.meta_ids(key) == set(refs)
                assert state.latest(key)["presence_ref"] in refs
            assert set(state.users()) == {f"u-{k}" for k in payload}
        else:
            state.apply(op, payload)


def test_diffs_name_who_joined_and_left():
    state = PresenceState()
    d = state.apply("join", {"key": "a", "new": [{"presence_ref": "1", "user_id": "ua"}]})
    assert (d.joined, d.changed, dict(d.left)) == (("a",), ("a",), {})
    d = state.apply("join", {"key": "a", "new": [{"presence_ref": "2"}]})
    assert (d.joined, d.changed) == ((), ("a",))
    d = state.apply("sync", {"b": [{"presence_ref": "3"}]})
    assert (d.joined, list(d.left), len(d.left["a"])) == (("b",), ["a"], 2)
    assert state.clear().left.keys() == {"b"}
    assert state.apply("leave", {"key": "nobody", "left": []}).left == {}


def test_helpers():
    assert metas_of({"metas": [{"a": 1}, 3]}) == [{"a": 1}]
    assert metas_of("x") == []
    assert meta_id({"phx_ref": 7}) == "7"
    assert meta_id({"b": 1, "a": 2}) == meta_id({"a": 2, "b": 1})
    assert user_of("k", {"user_id": "u"}) == "u"
    assert user_of("k", {"user_id": ""}) == "k"
    assert user_of("k", None) == "k"
    assert PresenceState().apply("join", "not a mapping").changed == ()


def test_current_metas_repair_a_state_that_missed_messages():
    """A consumer that started late (or dropped a message) learns the key's metas from ``current``."""
    state = PresenceState()
    state.apply("join", {"key": "a", "current": [{"presence_ref": "1"}], "new": [{"presence_ref": "2"}]})
    assert state.meta_ids("a") == {"1", "2"}
    state.apply("leave", {"key": "a", "current": [{"presence_ref": "9"}], "left": [{"presence_ref": "1"}]})
    assert state.meta_ids("a") == {"9"}
    state.apply("leave", {"key": "a", "current": [], "left": [{"presence_ref": "404"}]})
    assert "a" not in state
