"""One socket's floods, with the server's default limits, as Supabase answers them.

The attacks were silent (nothing in the red-team report measured them): a socket that pushes
broadcasts as fast as it can, joins channel after channel, tracks a huge presence payload, or sends
one enormous frame. Each is cut off by a default of ``ServerLimits`` with Supabase's own words, and
only that socket or channel pays: a bystander keeps its socket and sees no more than the limit.
"""

from __future__ import annotations

import pytest

from harmony_lab.server._limits import ServerLimits
from tests.polling import eventually, stays
from tests.server.rt_helpers import raw_factory

DEFAULTS = ServerLimits()


@pytest.mark.timeout(60)
async def test_floods_from_one_socket_are_cut_off_with_supabases_texts(server) -> None:
    connect = raw_factory(server)
    async with connect(vsn="2.0.0") as flood, connect(vsn="2.0.0") as bystander:
        assert (await bystander.join("realtime:room"))["payload"]["status"] == "ok"
        j = await flood.join("realtime:room")
        # broadcasts: the rate averages over the window, so a burst of its whole budget passes...
        budget = int(DEFAULTS.max_events_per_second * DEFAULTS.rate_window_s)
        for i in range(budget + 50):
            await flood.send(
                "realtime:room", "broadcast", {"event": "e", "payload": {"i": i}}, None, j["ref"]
            )
        system = await flood.expect("system", "realtime:room", within=20)
        assert system["payload"]["message"] == "Too many messages per second"
        await flood.expect("phx_close", "realtime:room")
        # ...and nothing past it reaches anyone
        await eventually(lambda: len(bystander.messages("broadcast")) >= budget, 20, what="the budget")
        await stays(lambda: len(bystander.messages("broadcast")), budget, for_s=0.3, what="nothing more")

        # channels: at most max_channels_per_connection on one socket
        for i in range(DEFAULTS.max_channels_per_connection):
            assert (await flood.join(f"realtime:c{i}"))["payload"]["status"] == "ok"
        over = await flood.join("realtime:one-too-many")
        assert over["payload"] == {
            "status": "error", "response": {"reason": "ChannelRateLimitReached: Too many channels"}
        }  # fmt: skip

    async with connect(vsn="2.0.0") as tracker, connect(vsn="2.0.0") as watcher:
        config = {"config": {"presence": {"enabled": True, "key": "w"}}}
        assert (await watcher.join("realtime:lobby", config))["payload"]["status"] == "ok"
        j = await tracker.join("realtime:lobby", config)
        huge = {"event": "track", "payload": {"blob": "x" * (DEFAULTS.max_track_bytes + 1)}}
        await tracker.send("realtime:lobby", "presence", huge, tracker.ref(), j["ref"])
        system = await tracker.expect("system", "realtime:lobby")
        assert system["payload"]["message"] == "Track message size exceeded"
        await tracker.expect("phx_close", "realtime:lobby")
        await stays(
            lambda: watcher.messages("presence_diff"), [], for_s=0.3, what="no diff of the refused track"
        )

        # one frame over max_frame_bytes closes only that socket (1009 message too big)
        await tracker.send_raw("x" * (DEFAULTS.max_frame_bytes + 1))
        await eventually(lambda: tracker.ws.close_code is not None, 10, what="the big frame's socket closed")
        assert tracker.ws.close_code == 1009
        await watcher.send("phoenix", "heartbeat", {}, "after")
        await watcher.expect("phx_reply", ref="after")


@pytest.mark.timeout(60)
async def test_a_socket_joining_too_fast_is_disconnected(server) -> None:
    budget = int(DEFAULTS.max_joins_per_second * DEFAULTS.rate_window_s)
    assert budget > DEFAULTS.max_channels_per_connection  # leave each channel to stay under that cap
    async with raw_factory(server)(vsn="2.0.0") as c:
        for i in range(budget + 1):  # join and leave, pipelined: the window cannot slide meanwhile
            ref = c.ref()
            await c.send(f"realtime:j{i}", "phx_join", {"config": {}}, ref, ref)
            await c.send(f"realtime:j{i}", "phx_leave", {}, c.ref(), ref)
        last = await c.expect("phx_reply", f"realtime:j{budget}", within=30)
        assert (
            last["payload"]["response"]["reason"] == "ClientJoinRateLimitReached: Too many joins per second"
        )
        replies = [m for m in c.messages("phx_reply") if m["ref"] == m["join_ref"]]
        assert [m["payload"]["status"] for m in replies] == ["ok"] * budget + ["error"]
        await eventually(lambda: c.ws.close_code is not None, 10, what="the socket closed")
