"""The tour from the README as a script: ``python examples/tour.py`` (about half a minute, no account).

It starts the embedded stack with simulated Harmony users, follows ``messages`` of the #general
channel in a LiveFrame, subscribes to Alice's notifications with backfill, drops every connection
once and watches the manager recover, records a few seconds to Parquet and reads them back.
"""

# ruff: noqa: T201  (a script: it prints what it shows)
from __future__ import annotations

import asyncio
import tempfile

from harmony_lab import (
    Backfill,
    LiveFrame,
    LocalRealtime,
    RealtimeConnectionManager,
    Recorder,
    read_recording,
)
from harmony_lab.demo import traffic
from harmony_lab.local.schema import ALICE, GENERAL


async def main() -> None:
    rt = LocalRealtime().start()  # PostgreSQL + Harmony schema + Realtime server, on its own thread
    try:
        sim = await traffic(rt)  # a dozen simulated Harmony users
        manager = RealtimeConnectionManager(rt.url, rt.service_role_key, dsn=rt.dsn)

        messages = LiveFrame(manager, "messages", filter=f"channel_id=eq.{GENERAL}")
        await messages.ready()  # subscribed, and holding the rows the channel already has
        await messages.wait_until(lambda lf: len(lf) >= 3, within_s=60)
        print(messages.df[["id", "user_id", "content"]].tail(3))  # a typed pandas DataFrame, always current

        await manager.subscribe_to_table(
            "inbox", "notifications", filter=f"user_id=eq.{ALICE}",
            backfill=Backfill(column="created_at"),  # rows missed during an outage arrive marked backfilled
            callback=lambda ev: print("notification:", ev.op, ev.new["kind"]),
        )  # fmt: skip
        print(manager.get_status("inbox"))  # connected / reconnecting / error, with reason and attempt
        manager.on_status_change("*", lambda state: print("status:", state.name, state.status.value))

        rt.faults.drop_all()  # or stall(5), refuse(10), rapid_close(3), latency(200)
        await manager.wait_for_status("inbox", "reconnecting", timeout=30)
        await manager.wait_for_status("inbox", "connected", timeout=60)

        folder = tempfile.mkdtemp(prefix="harmony-tour-")
        seen = messages.inserts
        async with Recorder(manager, folder) as recorder:  # every event, as Parquet, flushed every second
            await messages.wait_until(lambda lf: lf.inserts >= seen + 2, within_s=60)  # two new messages
        print(f"recorded {recorder.stats['events']} events; read back {len(read_recording(folder))} rows")

        await manager.cleanup()
        await sim.aclose()
    finally:
        rt.stop()


if __name__ == "__main__":
    asyncio.run(main())
