"""One lifecycle vocabulary: ``aclose()`` ends async work, ``stop()`` what owns a thread or process,
``close()`` a widget's view; the older spellings warn and name the new one."""

from __future__ import annotations

import asyncio
import inspect

import pytest

import harmony_lab
from tests.test_feed import Listening


@pytest.mark.parametrize(
    ("name", "methods"),
    [
        ("LocalRealtime", ("start", "stop", "aclose", "__enter__", "__aenter__")),
        ("LocalPostgres", ("start", "stop", "__enter__")),
        ("RealtimeConnectionManager", ("aclose", "cleanup", "__aenter__")),
        ("LiveFrame", ("ready", "aclose", "__aenter__")),
        ("Recorder", ("start", "stop", "aclose", "__enter__", "__aenter__")),
        ("Simulator", ("start", "aclose", "start_in_thread", "stop_in_thread", "__aenter__")),
        ("Inspector", ("aclose", "close")),
        ("Dashboard", ("aclose", "close")),
    ],
)
def test_every_public_object_speaks_the_same_words(name, methods):
    cls = getattr(harmony_lab, name)
    for method in methods:
        assert callable(getattr(cls, method, None)), f"{name}.{method}"
    if hasattr(cls, "aclose"):
        assert inspect.iscoroutinefunction(cls.aclose), f"{name}.aclose must be async"
    if hasattr(cls, "stop") and name not in ("Simulator",):
        assert not inspect.iscoroutinefunction(cls.stop), f"{name}.stop must block, not be awaited"


def test_frame_close_is_the_old_spelling_of_aclose():
    src = Listening()
    lf = harmony_lab.LiveFrame(src, "messages")
    with pytest.warns(DeprecationWarning, match=r"await frame\.aclose\(\)"):
        asyncio.run(lf.close())
    assert src.fns == []  # it did close
    asyncio.run(lf.aclose())  # and ending twice is harmless


def test_simulator_stop_is_the_old_spelling_of_aclose():
    class Stack:
        url, anon_key, dsn = "http://127.0.0.1:1", "anon", "postgresql://x@127.0.0.1:1/x"

        def token_for(self, user_id: str) -> str:
            return "t"

    sim = harmony_lab.Simulator(Stack())
    with pytest.warns(DeprecationWarning, match=r"await sim\.aclose\(\)"):
        asyncio.run(sim.stop())
    asyncio.run(sim.aclose())
