"""One lifecycle vocabulary: ``aclose()`` ends async work, ``stop()`` what owns a thread or process,
``close()`` a widget's view; the older spellings warn and name the new one."""

from __future__ import annotations

import asyncio
import importlib
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
        ("Player", ("play", "pause", "close")),
        ("LiveTableWidget", ("close",)),
        ("PresenceRosterWidget", ("close",)),
        ("StatusTimelineWidget", ("close",)),
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


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("harmony_lab.server", "RealtimeServer"),
        ("harmony_lab.server", "Authorizer"),
        ("harmony_lab.server.changes", "ChangesHub"),
        ("harmony_lab.capture", "ChangeStream"),
    ],
)
def test_the_building_blocks_end_with_aclose_too(module, name):
    """The server's and the capture's public classes run on the event loop: they end with aclose()."""
    cls = getattr(importlib.import_module(module), name)
    assert inspect.iscoroutinefunction(cls.aclose), f"{name}.aclose"


def test_the_old_close_of_a_building_block_warns_and_closes():
    from harmony_lab.server import RealtimeServer

    async def main() -> None:
        server = await RealtimeServer(jwt_secret="secret-" + "x" * 32).start()
        assert server.running
        with pytest.warns(DeprecationWarning, match=r"await server\.aclose\(\)"):
            await server.close()
        assert not server.running
        await server.aclose()  # ending twice is harmless

    asyncio.run(main())


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
