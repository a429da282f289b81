"""The CI version of the chaos campaign (``bench/chaos.py``): about two minutes on a 2-core machine.

Parameters (the benchmark runs 2 000 changes/s, 50 faults, 240 s): seed 34 (every fault kind, long
and short stalls), 600 changes/s from 4 writers, 16 faults over 75 s, 30 s to settle. One campaign runs
per module; each test checks one part of its result. The summary (faults, gaps, forensics) is saved to
``test-artifacts/``.

``test_frame_equals_table`` is the point: after 16 faults the LiveFrame equals the table row for row
(it was a strict xfail until the manager's backfill fixes, see ``test_backfill_bugs.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.reliability.reliability_helpers import REALTIME_PY_DEPRECATIONS, load_bench

pytestmark = [*REALTIME_PY_DEPRECATIONS, pytest.mark.slow, pytest.mark.timeout(420)]

PARAMS: dict[str, Any] = {"seed": 34, "duration_s": 75.0, "rate": 600.0, "faults": 16, "settle_s": 30.0}


@pytest.fixture(scope="module")
def chaos(artifacts) -> Any:
    bench = load_bench("chaos")
    result = asyncio.run(bench.run_chaos(**PARAMS))
    (artifacts / "chaos-ci-summary.txt").write_text(result.summary() + "\n", encoding="utf-8")
    print(result.summary())
    return result


def test_stream_and_faults_really_happened(chaos):
    assert chaos.achieved_rate > 0.8 * PARAMS["rate"], chaos.summary()
    assert len(chaos.faults) == PARAMS["faults"], chaos.problems_of("faults")
    assert {f.kind for f in chaos.faults} == {"drop", "stall", "refuse", "rapid_close", "latency"}
    interrupting = [f for f in chaos.faults if f.interrupting]
    assert interrupting, "the schedule must contain faults that interrupt delivery"
    assert any(f.outcome == "produced" for f in interrupting), chaos.summary()
    assert chaos.backfilled_events > 0, "gaps must have been backfilled"


def test_channel_ends_connected(chaos):
    assert chaos.final_status == "connected", chaos.problems_of("status")


def test_every_interrupting_fault_is_a_recorded_gap_with_a_cause(chaos):
    assert not chaos.problems_of("faults"), "\n".join(chaos.problems_of("faults"))
    assert chaos.gaps
    assert all(g["reason"] for g in chaos.gaps)
    for f in chaos.faults:
        if f.interrupting:
            assert f.outcome in ("produced", "absorbed"), (f, chaos.summary())
            assert f.gap_cause, f
        else:
            assert f.outcome in ("delay", "delay+gap"), f


def test_recording_is_complete(chaos):
    assert not chaos.problems_of("recording"), "\n".join(chaos.problems_of("recording"))
    assert chaos.recorder_dropped == 0
    assert chaos.recorded_changes == chaos.frame_events > 0


def test_frame_equals_table(chaos):
    assert chaos.diff is not None
    causes = ", ".join(f"{k}: {v}" for k, v in chaos.mismatch_causes.items())
    assert chaos.diff.equal, f"{chaos.diff.summary()} ({causes})\n" + "\n".join(chaos.forensics)
    assert not chaos.problems, chaos.problems
