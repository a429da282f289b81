"""Property-based fuzz: > 10 000 hypothesis-generated frames (V1 and V2, text and binary) against one
server; no internal error, every fuzzed socket still answers, a control client keeps working."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from harmony_lab.server import RealtimeServer, ServerLimits
from harmony_lab.server._codec import encode_user_broadcast_push
from tests.server.rt_helpers import ANON, SECRET, token

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "4000"))  # one frame per example
CHECK_EVERY = 500

TOPICS = st.sampled_from(
    ["realtime:a", "realtime:b", "realtime:", "phoenix", "lobby", "realtime:control", ""]
) | st.text(max_size=20)
EVENTS = st.sampled_from(
    ["phx_join", "phx_leave", "broadcast", "presence", "access_token", "heartbeat", "phx_reply", "system"]
) | st.text(max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
REFS = st.none() | st.text(max_size=6) | st.integers(0, 99) | JSON
CONFIGS = st.fixed_dictionaries(
    {},
    optional={
        "broadcast": st.fixed_dictionaries({}, optional={"self": JSON, "ack": JSON, "replay": JSON}) | JSON,
        "presence": st.fixed_dictionaries({}, optional={"enabled": JSON, "key": JSON}) | JSON,
        "postgres_changes": st.lists(
            st.fixed_dictionaries({}, optional={"event": JSON, "schema": JSON, "table": JSON, "filter": JSON})
            | JSON,
            max_size=3,
        )
        | JSON,
        "private": JSON,
    },
)
PAYLOADS = (
    st.fixed_dictionaries(
        {},
        optional={
            "config": CONFIGS,
            "access_token": st.sampled_from([ANON, "sb_publishable_x", "garbage", token(expires_in=-5)])
            | JSON,
            "type": st.sampled_from(["broadcast", "presence"]),
            "event": st.sampled_from(["track", "untrack", "TRACK", "e"]) | JSON,
            "payload": JSON,
        },
    )
    | JSON
)


@st.composite
def v1_frame(draw: st.DrawFn) -> str:
    obj = {"topic": draw(TOPICS), "event": draw(EVENTS), "payload": draw(PAYLOADS), "ref": draw(REFS)}
    if draw(st.booleans()):
        obj["join_ref"] = draw(REFS)
    for key in draw(st.sets(st.sampled_from(list(obj)), max_size=1)):
        del obj[key]
    return json.dumps(obj)


@st.composite
def v2_frame(draw: st.DrawFn) -> str:
    arr = [draw(REFS), draw(REFS), draw(TOPICS | JSON), draw(EVENTS), draw(PAYLOADS)]
    return json.dumps(arr[: draw(st.integers(0, 6))] if draw(st.integers(0, 9)) == 0 else arr)


@st.composite
def kind3(draw: st.DrawFn) -> bytes:
    short = st.text(max_size=10).filter(lambda s: len(s.encode()) < 256)
    encoding = draw(st.sampled_from([0, 1]))
    data = json.dumps(draw(JSON)).encode() if encoding == 1 else draw(st.binary(max_size=64))
    meta = draw(st.sampled_from([b"", b'{"persist":true}', b"[]", b"{bad"]))
    topic = draw(st.sampled_from(["realtime:a", "realtime:b"]) | short)
    join_ref, ref = draw(short | st.none()), draw(short | st.none())
    return encode_user_broadcast_push(
        join_ref, ref, topic, draw(short), data, encoding=encoding, metadata=meta
    )


GARBAGE = (
    st.text(max_size=40)
    | st.binary(max_size=40)
    | st.builds(lambda k, b: bytes([k]) + b, st.integers(0, 9), st.binary(max_size=30))
)
FRAMES = st.one_of(
    v1_frame(), v2_frame(), kind3(), GARBAGE, st.sampled_from(["{", "[", "null", "[]", "{}", '""'])
)


class Threaded:
    """A RealtimeServer on its own loop thread, so hypothesis can drive it from sync code."""

    def __init__(self, limits: ServerLimits) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = RealtimeServer(jwt_secret=SECRET, limits=limits)
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def call(self, fn: Any) -> Any:
        async def wrap() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.aclose(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def threaded() -> Iterator[Threaded]:
    t = Threaded(ServerLimits.unlimited(max_broadcast_bytes=2000, max_track_bytes=2000, idle_timeout_s=None))
    yield t
    t.stop()


_checks = itertools.count()


def alive(ws: ClientConnection, vsn: str) -> None:
    """Send a heartbeat with a fresh ref and wait for its reply (proves in-order processing is done)."""
    ref = f"check-{next(_checks)}"
    hb = {"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": ref}
    ws.send(json.dumps(hb) if vsn == "1.0.0" else json.dumps([None, ref, "phoenix", "heartbeat", {}]))
    while True:
        frame = ws.recv(timeout=10)
        if isinstance(frame, str) and f'"{ref}"' in frame:
            msg = json.loads(frame)
            payload = msg["payload"] if isinstance(msg, dict) else msg[4]
            assert payload == {"status": "ok", "response": {}}
            return


def test_fuzz_frames_never_break_the_server(threaded):
    port = threaded.server.port
    url = f"ws://127.0.0.1:{port}/realtime/v1/websocket?apikey={ANON}"
    conns: dict[str, ClientConnection] = {}
    closes: list[int | None] = []
    sent = [0]

    def conn(vsn: str) -> ClientConnection:
        if vsn not in conns:
            conns[vsn] = connect(f"{url}&vsn={vsn}", max_size=None, max_queue=None, ping_interval=None)
        return conns[vsn]

    def check() -> None:
        for vsn, ws in list(conns.items()):
            try:
                alive(ws, vsn)
            except ConnectionClosed:
                closes.append(ws.protocol.close_code)
                del conns[vsn]

    # no keepalive pings: websockets draws their payloads from `random`, which hypothesis forbids
    with connect(url + "&vsn=1.0.0", ping_interval=None) as control:
        control.send(json.dumps({"topic": "realtime:control", "event": "phx_join",
                                 "payload": {"config": {}}, "ref": "1", "join_ref": "1"}))  # fmt: skip
        alive(control, "1.0.0")

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(FRAMES, st.sampled_from(["1.0.0", "2.0.0"]))
        def run(frame: str | bytes, vsn: str) -> None:
            ws = conn(vsn)
            try:
                ws.send(frame)
            except ConnectionClosed:
                closes.append(ws.protocol.close_code)
                del conns[vsn]
            sent[0] += 1
            if sent[0] % CHECK_EVERY == 0:
                check()

        try:
            run()
            check()
        finally:
            for ws in conns.values():
                ws.close()

        # the control client still works: another client joins, broadcasts, control receives
        with connect(url + "&vsn=2.0.0") as other:
            other.send(json.dumps(["1", "1", "realtime:control", "phx_join", {"config": {}}]))
            after = {"type": "broadcast", "event": "after-fuzz", "payload": {"ok": True}}
            other.send(json.dumps(["1", "2", "realtime:control", "broadcast", after]))
            while True:
                msg = json.loads(control.recv(timeout=10))  # fuzz frames may have reached it too
                if msg["event"] == "broadcast" and msg["payload"] == after:
                    break
        alive(control, "1.0.0")
    assert sent[0] >= 0.95 * EXAMPLES
    assert 1011 not in closes, closes  # the server never closed a socket on an internal error
    stats = threaded.call(lambda: threaded.server.stats)
    assert stats["rejected"].get("internal error", 0) == 0, stats["rejected"]
    assert stats["frames_in"] >= 0.95 * EXAMPLES
    assert sum(stats["rejected"].values()) > EXAMPLES // 4  # the fuzzer did hit the error paths (~98 %)
    # every fuzz socket is gone and left nothing behind
    assert threaded.call(lambda: threaded.server.connection_count) == 0
    assert threaded.call(lambda: threaded.server.registry.topics()) == []
