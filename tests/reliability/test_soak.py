"""The CI version of the soak (``bench/soak.py``): 80 s at 1 000 changes/s, RSS every 2 s.

Asserts no change lost (every INSERT/UPDATE/DELETE written was delivered, see the ledger in
``bench/soak.py``), the LiveFrame equal to the table, and RSS growth of this process under 5 % (median of
the last quarter of post-warm-up samples vs the median of the first quarter; warm-up 20 s).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.reliability.reliability_helpers import REALTIME_PY_DEPRECATIONS, load_bench

pytestmark = [*REALTIME_PY_DEPRECATIONS, pytest.mark.slow, pytest.mark.timeout(420)]

DURATION_S, RATE, SAMPLE_S, WARMUP_S = 80.0, 1000.0, 2.0, 20.0


@pytest.fixture(scope="module")
def soak(artifacts) -> Any:
    bench = load_bench("soak")
    result = asyncio.run(
        bench.run_soak(DURATION_S, RATE, sample_s=SAMPLE_S, warmup_s=WARMUP_S, settle_s=30.0)
    )
    (artifacts / "soak-ci-summary.txt").write_text(result.summary() + "\n", encoding="utf-8")
    print(result.summary())
    return result


def test_no_change_is_lost(soak):
    written = sum(soak.written.values())
    assert written > 0.8 * DURATION_S * RATE, soak.summary()
    assert soak.lost_total == 0, soak.summary()
    assert soak.received + soak.superseded == written
    assert soak.frame_equal, soak.frame_summary


def test_rss_growth_is_under_five_percent(soak):
    assert soak.memory["samples"] >= 0.9 * (DURATION_S - WARMUP_S) / SAMPLE_S
    assert soak.memory["growth"] < 0.05, soak.summary()
