"""A hypothesis state machine interleaving subscribe, re-subscribe with another spec, unsubscribe,
cleanup, legacy subscribe, bursts of overlapping calls and server faults on a few names, against a real
LocalRealtime. After each settle the server's view equals the manager's channels; a probe broadcast on
every name reaches exactly the callbacks of the calls that won, never one of a call that is gone; every
call returns within a bound.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from harmony_lab.events import ChannelStatus
from harmony_lab.manager import BackoffPolicy, RealtimeConnectionManager
from tests.conftest import FAST_MANAGER
from tests.manager.manager_helpers import REALTIME_PY_DEPRECATIONS
from tests.polling import eventually, eventually_sync, stays

pytestmark = REALTIME_PY_DEPRECATIONS

NAMES = ("a", "b")
CALL_BOUND_S = 15.0  # join_timeout + token_wait + slack: no call may take longer
FILTERS = (None, "channel_id=eq.1", "channel_id=eq.2")


@pytest.fixture(scope="module")
def stack() -> Iterator[Any]:
    from harmony_lab.local import LocalRealtime

    with LocalRealtime() as rt:
        yield rt


def server_topics(rt: Any) -> set[str]:
    """The topics with joined channels, read from the server's thread-owned registry."""
    for _ in range(20):
        try:
            return set(rt.server.registry.topics())
        except RuntimeError:  # changed size while read from this thread: read again
            continue
    raise AssertionError("the server's registry never held still")


class ManagerMachine(RuleBasedStateMachine):
    rt: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.Runner()
        eventually_sync(lambda: self.rt.server.stats["connections"] == 0, what="a quiet server")
        fast = {**FAST_MANAGER, "backoff": BackoffPolicy(base=0.05, max_delay=0.3, max_retries=30)}
        self.mgr = RealtimeConnectionManager(self.rt.url, self.rt.service_role_key, **fast)
        self.keys = itertools.count()
        self.hits: dict[int, int] = {}
        # name → (kind, keys of the callbacks that must receive): the model
        self.model: dict[str, tuple[str, frozenset[int]]] = {}
        # name → when its status last changed before a fault dropped its socket: until it changes
        # again, "connected" is the view from before the drop (the server closes in the background)
        self.dropped: dict[str, datetime] = {}

    # ----------------------------------------------------------------------------------- helpers
    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        t0 = time.monotonic()
        try:
            return self.loop.run(asyncio.wait_for(coro, CALL_BOUND_S))
        finally:
            assert time.monotonic() - t0 < CALL_BOUND_S

    def callback(self) -> tuple[int, Callable[[Any], None]]:
        key = next(self.keys)
        self.hits[key] = 0

        def cb(_ev: Any) -> None:
            self.hits[key] += 1

        return key, cb

    def op(self, kind: str, name: str, option: Any) -> tuple[Coroutine[Any, Any, Any] | None, Any]:
        """(the call, the model entry it makes if it wins)."""
        if kind == "unsubscribe":
            return self.mgr.unsubscribe(name), None
        key, cb = self.callback()
        if kind == "table":
            coro = self.mgr.subscribe_to_table(name, "messages", filter=option, callback=cb)
            return coro, (f"table {option}", frozenset({key}))
        coro = self.mgr.subscribe_to_broadcast(name, name, callback=cb)
        return coro, ("broadcast", frozenset({key}))

    def apply(self, name: str, entry: Any) -> None:
        if entry is None:
            self.model.pop(name, None)
        else:
            self.model[name] = entry

    # ------------------------------------------------------------------------------------- rules
    @initialize()
    def bind(self) -> None:
        assert self.mgr.channels == {}

    @rule(name=st.sampled_from(NAMES), flt=st.sampled_from(FILTERS))
    def subscribe_table(self, name: str, flt: str | None) -> None:
        coro, entry = self.op("table", name, flt)
        state = self.run(coro)
        assert not state.superseded
        self.apply(name, entry)

    @rule(name=st.sampled_from(NAMES))
    def subscribe_broadcast(self, name: str) -> None:
        coro, entry = self.op("broadcast", name, None)
        self.run(coro)
        self.apply(name, entry)

    @rule(name=st.sampled_from(NAMES))
    def legacy_subscribe(self, name: str) -> None:
        key, cb = self.callback()
        kind, keys = self.model.get(name, ("", frozenset()))
        if kind.startswith("table"):
            with pytest.raises(ValueError, match="is a table subscription"):
                self.run(self.mgr.subscribe(name, "*", cb))
            return
        state = self.run(self.mgr.subscribe(name, "*", cb))
        assert not state.superseded
        # legacy calls on one legacy channel add up; on anything else they replace it
        self.model[name] = ("legacy", keys | {key}) if kind == "legacy" else ("legacy", frozenset({key}))

    @rule(name=st.sampled_from(NAMES))
    def unsubscribe(self, name: str) -> None:
        self.run(self.mgr.unsubscribe(name))
        self.apply(name, None)

    @rule()
    def cleanup(self) -> None:
        self.run(self.mgr.cleanup())
        self.model.clear()

    @rule(
        name=st.sampled_from(NAMES),
        calls=st.lists(
            st.tuples(st.sampled_from(["table", "broadcast", "unsubscribe"]), st.sampled_from(FILTERS)),
            min_size=2,
            max_size=3,
        ),
    )
    def burst(self, name: str, calls: list[tuple[str, Any]]) -> None:
        """Overlapping calls on one name: the last one wins, every earlier subscribe is superseded."""
        ops = [self.op(kind, name, option) for kind, option in calls]

        async def together() -> list[Any]:
            return await asyncio.gather(*(coro for coro, _ in ops))

        results = self.run(together())
        for (kind, _), result in zip(calls[:-1], results[:-1], strict=True):
            if kind != "unsubscribe":
                assert result.superseded, result
        if calls[-1][0] != "unsubscribe":
            assert not results[-1].superseded
        self.apply(name, ops[-1][1])

    @rule()
    def fault(self) -> None:
        before = {name: self.mgr.get_status(name) for name in self.model}
        self.rt.faults.drop_all(code=1001, reason="fault: stateful test")
        for name, state in before.items():
            if state.status is ChannelStatus.CONNECTED:
                self.dropped[name] = state.since

    @rule()
    def probe(self) -> None:
        """A broadcast on every name reaches exactly the winning callbacks."""
        self.settle()
        before = dict(self.hits)
        for name in self.model:
            assert self.rt.server.broadcast(name, "ping", {"probe": True}) == 1
        wanted = {k for _, keys in self.model.values() for k in keys}

        async def delivered() -> None:
            await eventually(
                lambda: all(self.hits[k] == before[k] + 1 for k in wanted), what="probe delivery"
            )
            # then nothing else: a late delivery to a gone callback would land here
            settled = dict(self.hits)
            await stays(lambda: dict(self.hits), settled, for_s=0.2, what="callback hits after the probe")

        self.run(delivered())
        changed = {k for k, n in self.hits.items() if n != before.get(k, 0)}
        assert changed == wanted, f"callbacks that fired {changed} != the winners {wanted}"
        assert all(self.hits[k] == before[k] + 1 for k in wanted)

    # -------------------------------------------------------------------------------- invariants
    def settle(self) -> None:
        """Until every modelled channel is connected and the server sees exactly those (all inside
        the manager's loop, so it keeps reconnecting while we wait)."""
        want_topics = {f"realtime:{name}" for name in self.model}
        want_pg = sum(1 for kind, _ in self.model.values() if kind.startswith("table"))

        def matches() -> bool:
            return (
                all(self.mgr.get_status(n).status is ChannelStatus.CONNECTED for n in self.model)
                and all(self.mgr.get_status(n).since > t for n, t in self.dropped.items() if n in self.model)
                and server_topics(self.rt) == want_topics
                and self.rt.hub.stats["subscribers"] == want_pg
            )

        async def settled() -> None:
            await eventually(
                matches,
                what=f"connected {sorted(self.model)}, topics {want_topics}, {want_pg} hub subscribers",
            )

        self.run(settled())
        self.dropped.clear()

    @invariant()
    def server_matches_the_manager(self) -> None:
        live = {
            name
            for name, state in self.mgr.channels.items()
            if state.status is not ChannelStatus.DISCONNECTED
        }
        assert live == set(self.model)
        self.settle()

    def teardown(self) -> None:
        try:
            self.loop.run(self.mgr.cleanup())
        finally:
            self.loop.close()
        eventually_sync(lambda: self.rt.server.stats["connections"] == 0, what="every socket closed")


@pytest.mark.timeout(240)
def test_manager_state_machine_against_a_real_server(stack: Any) -> None:
    ManagerMachine.rt = stack
    run_state_machine_as_test(
        ManagerMachine,
        settings=settings(
            max_examples=15,
            stateful_step_count=10,
            deadline=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: every step costs real I/O
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
