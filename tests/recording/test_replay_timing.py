"""replay() reproduces the recorded inter-arrival times, scaled by speed, without drift."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from harmony_lab.events import RealtimeEvent
from harmony_lab.recording import Recorder, replay
from tests.recording.recording_events import T0

LATE_S = 0.15  # scheduling slack on a shared 2-core machine (never early is checked strictly)
EARLY_S = 0.002


def record_offsets(path, offsets: list[float]) -> None:
    with Recorder(None, path) as rec:
        for i, off in enumerate(offsets):
            rec.write(
                RealtimeEvent(
                    kind="broadcast",
                    channel=f"c{i % 2}",  # two channels: replay merges files by arrival
                    seq=i,
                    received_at=T0 + timedelta(seconds=off),
                    received_mono_ns=int(off * 1e9),
                )
            )


async def arrival_times(path, speed: float | None) -> tuple[list[int], list[float]]:
    loop = asyncio.get_running_loop()
    seqs, times = [], []
    start = None
    async for ev in replay(path, speed=speed):
        now = loop.time()
        start = now if start is None else start
        seqs.append(ev.seq)
        times.append(now - start)
    return seqs, times


@pytest.mark.parametrize("speed", [1.0, 4.0])
async def test_inter_arrival_times_are_scaled_by_speed(tmp_path, speed):
    offsets = [0.0, 0.1, 0.25, 0.5, 0.55, 0.8]
    record_offsets(tmp_path, offsets)
    seqs, times = await arrival_times(tmp_path, speed)
    assert seqs == list(range(len(offsets)))
    for got, off in zip(times, offsets, strict=True):
        want = off / speed
        assert want - EARLY_S <= got <= want + LATE_S, (got, want)


async def test_no_drift_over_many_events(tmp_path):
    offsets = [i * 0.01 for i in range(60)]
    record_offsets(tmp_path, offsets)
    _, times = await arrival_times(tmp_path, 1.0)
    assert offsets[-1] - EARLY_S <= times[-1] <= offsets[-1] + LATE_S


async def test_speed_none_is_as_fast_as_possible(tmp_path):
    offsets = [0.0, 1.0, 2.0, 3.0]
    record_offsets(tmp_path, offsets)
    seqs, times = await arrival_times(tmp_path, None)
    assert seqs == [0, 1, 2, 3]
    assert times[-1] < 0.5  # vs 3 s recorded
