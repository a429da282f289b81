"""One client cannot hold back everyone's postgres_changes joins.

The attack (silent until measured): every postgres_changes binding of a join is checked in the
database (the publication, the role's column privileges, the filter casts), one at a time through one
connection. A 460 KB join frame with 5 000 bindings kept that work busy for 73 s, and every other
client's join waited behind all of it. Now a join may carry at most
``ServerLimits.max_postgres_changes_per_channel`` bindings (refused at once, nothing checked), and the
checks of concurrent joins take turns binding by binding, so a small join is answered while big ones
are still being checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import pytest
import websockets

from harmony_lab.local.schema import ALICE
from harmony_lab.local.stack import LocalRealtime
from harmony_lab.server._limits import ServerLimits
from tests.polling import eventually


def bindings(n: int, tag: str) -> list[dict[str, Any]]:
    return [
        {"event": "INSERT", "schema": "public", "table": "messages", "filter": f"content=eq.{tag}{i}"}
        for i in range(n)
    ]


class Socket:
    """A raw V1 client that timestamps each channel's postgres_changes ``system`` message."""

    def __init__(self, ws: Any, token: str) -> None:
        self.ws, self.token = ws, token
        self.systems: dict[str, tuple[float, dict[str, Any]]] = {}
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            msg = json.loads(frame)
            if msg["event"] == "system" and msg["payload"].get("extension") == "postgres_changes":
                self.systems.setdefault(msg["topic"], (time.monotonic(), msg["payload"]))

    async def join(self, topic: str, changes: list[dict[str, Any]]) -> None:
        config = {"postgres_changes": changes}
        frame = {"topic": f"realtime:{topic}", "event": "phx_join", "ref": topic,
                 "payload": {"config": config, "access_token": self.token}}  # fmt: skip
        await self.ws.send(json.dumps(frame))

    def result(self, topic: str) -> tuple[float, dict[str, Any]] | None:
        return self.systems.get(f"realtime:{topic}")


@pytest.mark.timeout(120)
async def test_big_joins_are_capped_and_cannot_hold_back_a_small_one() -> None:
    limit = 40
    async with LocalRealtime(limits=ServerLimits(max_postgres_changes_per_channel=limit)) as rt:
        url = f"{rt.ws_url}/websocket?apikey={rt.anon_key}&vsn=1.0.0"
        token = rt.token_for(str(ALICE))
        async with contextlib.AsyncExitStack() as sockets:

            async def connect() -> Socket:
                return Socket(
                    await sockets.enter_async_context(websockets.connect(url, max_size=None)), token
                )

            attackers = [await connect() for _ in range(3)]
            user = await connect()
            # over the cap: refused at once, before any of it is checked in the database
            await attackers[0].join("too-many", bindings(limit + 1, "x"))
            refused = await eventually(lambda: attackers[0].result("too-many"), 10, what="the refusal")
            assert refused[1]["status"] == "error"
            assert refused[1]["message"] == (
                "Unable to subscribe to changes with given parameters: a channel may have at most "
                f"{limit} postgres_changes bindings, this join has {limit + 1}"
            )
            assert rt.hub.stats["subscribers"] == 0
            # at the cap, three sockets join at once; a one-binding join sent while their bindings are
            # being checked is answered before any of them (it used to wait for every one of theirs)
            for i, attacker in enumerate(attackers):
                await attacker.join("big", bindings(limit, f"{i}-"))
            await eventually(lambda: rt.hub._sub_lock.locked(), 10, what="the big joins being checked")
            await user.join("small", bindings(1, "hello"))
            small = await eventually(lambda: user.result("small"), 60, what="the small join")
            assert small[1] == {"channel": "small", "extension": "postgres_changes", "status": "ok",
                                "message": "Subscribed to PostgreSQL"}  # fmt: skip

            def all_big() -> list[tuple[float, dict[str, Any]]] | None:
                results = [a.result("big") for a in attackers]
                return [r for r in results if r is not None] if all(results) else None

            done = await eventually(all_big, 60, what="the big joins")
            assert all(r[1]["status"] == "ok" for r in done), done
            first_big = min(r[0] for r in done)
            assert small[0] < first_big, "the small join waited for all the bindings of the big ones"
            assert rt.hub.stats["subscriptions"] == 3 * limit + 1
