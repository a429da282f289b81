"""A hostile filter cannot freeze the server.

The attack: a subscriber's ``content=match.^(a+)+$`` or ``content=like.%a%a%a%a%a%a%b`` made the
single event loop backtrack exponentially on an ordinary insert (26 characters took seconds, doubling
per character). LIKE now runs in linear time per pattern character; a regex with quantifiers or
alternation is evaluated by Postgres under a statement timeout, never by Python's backtracking engine.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates

from harmony_lab.filters import (
    DEFER,
    Condition,
    classify,
    compile_condition,
    compile_like,
    pg_regex_to_python,
)
from harmony_lab.frames._filter import compile_filter
from harmony_lab.local.schema import ALICE, GENERAL
from harmony_lab.local.stack import LocalRealtime
from tests.polling import eventually

BOMBS = {
    "like": "%a%a%a%a%a%a%a%a%b",
    "many": "%%%%%%%%Q",
    "match": "^(a+)+$",
    "nested": "(x+x+)+y",
}
LONG = 10_000


@pytest.mark.timeout(60)
def test_like_bombs_take_linear_time_on_long_text() -> None:
    # exponential before: these calls would not return for hours
    for pattern in (BOMBS["like"], BOMBS["many"], "%_%_%_%_%_%_%_%_!", "a%a%a%a%a%a%a%a%a%a%a"):
        for text in ("a" * LONG, "a" * LONG + "!", ("ab" * LONG)[:LONG]):
            expected = text.endswith(pattern[-1]) if pattern[-1] in "b!Q" else True
            if pattern.startswith("a%"):
                expected = text.startswith("a") and text.endswith("a") and text.count("a") >= 11
            assert compile_like(pattern)(text) == expected, (pattern, text[:20])
            assert compile_like(pattern.upper(), fold=True)(text.upper()) == expected


def test_server_evaluator_never_backtracks_a_quantified_regex() -> None:
    ctype = classify("text", "text")
    for name in ("match", "nested"):
        pred = compile_condition(Condition("content", "match", BOMBS[name]), ctype)
        assert pred("a" * 40 + "!") is DEFER, name  # Postgres decides, off the event loop
        assert pred(None) is None
    assert pg_regex_to_python(BOMBS["match"], fixed_length=True) is None
    fixed = compile_condition(Condition("content", "match", "^ab.d"), ctype)
    assert fixed("abcd" + "x" * LONG) is True
    like = compile_condition(Condition("content", "like", BOMBS["like"]), ctype)
    assert like("a" * LONG + "b") is True
    assert like("a" * LONG + "!") is False


def test_client_side_like_is_linear_too() -> None:
    rf = compile_filter(f"content=like.{BOMBS['like']}")
    assert rf.matches({"content": "a" * LONG + "b"})
    assert not rf.matches({"content": "a" * LONG})


ADVERSARIAL = st.text(alphabet="ab%_", min_size=0, max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pattern=ADVERSARIAL, text=st.text(alphabet="abA", max_size=40))
def test_like_matcher_agrees_with_postgres(pg_conn, pattern, text) -> None:
    want = pg_conn.execute(
        "select %s::text like %s, %s::text ilike %s", (text, pattern, text, pattern)
    ).fetchone()
    assert compile_like(pattern)(text) is want[0], (pattern, text)
    assert compile_like(pattern, fold=True)(text) is want[1], (pattern, text)


@pytest.fixture(scope="module")
def pg_conn(postgres):
    import psycopg

    with psycopg.connect(postgres.dsn, autocommit=True) as c:
        yield c


async def _heartbeat_round_trip(ws_url: str, key: str) -> float:
    async with websockets.connect(f"{ws_url}/websocket?apikey={key}&vsn=1.0.0") as ws:
        start = time.perf_counter()
        await ws.send(json.dumps({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "1"}))
        async with asyncio.timeout(10):
            while True:
                msg = json.loads(await ws.recv())
                if msg.get("ref") == "1":
                    assert msg["payload"]["status"] == "ok"
                    return time.perf_counter() - start


@pytest.mark.timeout(120)
async def test_hostile_subscribers_do_not_block_heartbeats_or_lose_events() -> None:
    async with LocalRealtime() as rt:
        client = AsyncRealtimeClient(rt.ws_url, token=rt.anon_key, auto_reconnect=False)
        got: dict[str, list[str]] = {name: [] for name in BOMBS}
        systems: list[Any] = []
        try:
            await client.connect()
            await client.set_auth(rt.token_for(str(ALICE)))
            for name, pattern in BOMBS.items():
                op = "like" if name in ("like", "many") else "match"
                ch = client.channel(f"bomb-{name}")
                ch.on_postgres_changes(
                    "INSERT", schema="public", table="messages", filter=f"content={op}.{pattern}",
                    callback=lambda p, name=name: got[name].append(p["data"]["record"]["content"]),
                )  # fmt: skip
                ch.on_system(systems.append)
                await ch.subscribe()
            await eventually(lambda: len(systems) >= len(BOMBS), within=15, what="four joins")
            assert {s.message for s in systems} == {"Subscribed to PostgreSQL"}, systems
            # a pattern Postgres cannot compile, or one on a column without the operator, is refused
            # when the channel joins (as subscription_check_filters does), never met at insert time
            refused: dict[str, list[Any]] = {}
            for column, op, pattern in (("content", "match", "(a+"), ("user_id", "like", "%a%a%b")):
                ch = client.channel(f"refused-{op}")
                ch.on_postgres_changes(
                    "INSERT", schema="public", table="messages", filter=f"{column}={op}.{pattern}",
                    callback=lambda p: pytest.fail(f"a refused subscription got {p}"),
                )  # fmt: skip
                states = refused.setdefault(op, [])
                await ch.subscribe(lambda state, err, states=states: states.append((state, err)))
            errors = {}
            for op, states in refused.items():
                (error,) = await eventually(
                    lambda s=states: [e for st_, e in s if st_ == RealtimeSubscribeStates.CHANNEL_ERROR][:1],
                    15, what=f"the {op} subscription refused",
                )  # fmt: skip
                errors[op] = json.loads(str(error))["message"]
            assert errors["match"].endswith(
                "Exception: ERROR P0001 (raise_exception) invalid regular expression for match filter: "
                "invalid regular expression: parentheses () not balanced"
            ), errors
            assert errors["like"].endswith(
                "Exception: ERROR P0001 (raise_exception) operator like requires a text-compatible column "
                "type, got uuid"
            ), errors
            tag = uuid.uuid4().hex[:6]
            rows = {
                "a" * 60 + "!": (),  # matches none: the exponential case for every bomb
                "a" * 3000 + "b": ("like",),
                "a" * 5000: ("match",),
                "x" * 2000 + "y" + tag: ("nested",),
                "z" * LONG + "Q": ("many",),
            }
            for content in rows:
                await rt.execute(
                    "insert into public.messages (channel_id, user_id, content) values (%s, %s, %s)",
                    GENERAL, ALICE, content,
                )  # fmt: skip
                await _heartbeat_round_trip(rt.ws_url, rt.anon_key)  # answered, or the test times out
            for content, names in rows.items():
                for name in names:
                    await eventually(lambda n=name, c=content: c in got[n], within=15, what=f"{name} event")
            for name in BOMBS:
                expected = [c for c, names in rows.items() if name in names]
                assert got[name] == expected, name
            assert rt.hub.stats["sql_filter_checks"] > 0  # the regexes were Postgres's to decide
        finally:
            await client.close()
