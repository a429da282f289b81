"""The campaign's own bookkeeping (pure parts of bench/chaos.py and bench/soak.py), without I/O.

The chaos and soak verdicts are only as good as their accounting: fault schedules, fault → gap
attribution, the frame/table diff, the RSS growth rule and the soak's per-change ledger.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pandas as pd
import pytest

from tests.reliability.reliability_helpers import load_bench

chaos = load_bench("chaos")
soak = load_bench("soak")

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# ----------------------------------------------------------------------------------------- the plan


def test_plan_is_seeded_bounded_and_classified():
    a = chaos.plan_faults(7, 50, start_s=3, end_s=237, heartbeat_interval=1.5)
    b = chaos.plan_faults(7, 50, start_s=3, end_s=237, heartbeat_interval=1.5)
    c = chaos.plan_faults(8, 50, start_s=3, end_s=237, heartbeat_interval=1.5)
    assert a == b
    assert a != c
    assert len(a) == 50
    assert all(3 <= f.at <= 237 for f in a)
    assert [f.at for f in a] == sorted(f.at for f in a)
    assert {f.kind for f in a} == set(chaos.KINDS)
    for f in a:
        if f.kind == "stall":
            long = f.params["seconds"] >= 2 * 1.5 + 1.5
            assert f.interrupting is long
            assert f.params["variant"] == ("long" if long else "short")
            if not long:
                assert f.params["seconds"] <= 0.3 * 1.5
        else:
            assert f.interrupting is (f.kind != "latency")


def test_plan_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown fault kind"):
        chaos.plan_faults(1, 3, start_s=0, end_s=10, kinds=("drop", "explode"))
    with pytest.raises(ValueError, match="fault window"):
        chaos.plan_faults(1, 50, start_s=0, end_s=10)


# ------------------------------------------------------------------------------ fault → gap accounting


def fault(index, kind, t, *, interrupting=True, **params):
    return chaos.FaultRecord(
        index=index,
        kind=kind,
        label=kind,
        params=params,
        interrupting=interrupting,
        at=at(t),
        status_before="connected",
    )


def gap(start, end, reason):
    return {"start": at(start), "end": at(end), "reason": reason, "seconds": end - start}


def test_account_produced_absorbed_and_delay():
    faults = [
        fault(0, "drop", 10.0, code=1001),
        fault(1, "refuse", 11.0, seconds=2.0, status=503),  # lands in gap 0: absorbed
        fault(2, "stall", 20.0, seconds=5.0, variant="long"),
        fault(3, "latency", 30.0, interrupting=False, ms=100, seconds=2.0),
    ]
    gaps = [
        gap(10.01, 13.5, "closed (1001): chaos #0 drop"),
        gap(22.0, 25.5, "stall: no heartbeat reply for 1.5 s"),
    ]
    assert chaos._account(faults, gaps, 1.5) == []
    assert [f.outcome for f in faults] == ["produced", "absorbed", "produced", "delay"]
    assert faults[0].recovery_s == pytest.approx(3.5)
    assert faults[2].gap_index == 1


def test_account_flags_uncovered_faults_and_refusals_that_let_a_handshake_through():
    faults = [
        fault(0, "drop", 10.0, code=1001),  # no gap at all
        fault(1, "refuse", 30.0, seconds=5.0, status=503),  # gap ends before the refusal does
    ]
    gaps = [gap(30.01, 31.0, "closed (1001): chaos #1 refuse")]
    problems = chaos._account(faults, gaps, 1.5)
    assert faults[0].outcome == "uncovered"
    assert any("#0" in p and "not covered" in p for p in problems)
    assert any("#1" in p and "before the fault" in p for p in problems)


def test_account_marks_a_gap_no_fault_explains_during_a_delay():
    faults = [fault(0, "latency", 10.0, interrupting=False, ms=300, seconds=3.0)]
    gaps = [gap(11.0, 12.0, "stall: no heartbeat reply for 1.6 s")]
    assert chaos._account(faults, gaps, 1.5) == []
    assert faults[0].outcome == "delay+gap"
    assert chaos._producer(gaps[0], faults, 1.5) is None


# ------------------------------------------------------------------------------------- frame vs table


def frame(rows):
    return chaos.table_frame([(i, 0, v, f"p{v}", at(v)) for i, v in rows])


def test_diff_finds_missing_extra_and_stale_rows():
    table = frame([(1, 1), (2, 5), (3, 1)])
    live = frame([(1, 1), (2, 4), (4, 1)])
    d = chaos.diff_frames(table, live)
    assert (d.missing, d.extra, d.differing) == ([3], [4], [2])
    assert not d.equal
    assert chaos.diff_frames(table, frame([(3, 1), (1, 1), (2, 5)])).equal  # order does not matter
    assert not chaos.diff_frames(table, table, extra_columns=["x"]).equal


def test_mismatches_are_sorted_by_cause():
    d = chaos.Diff(2, 5, missing=[9], extra=[4, 5, 6], differing=[2], extra_columns=[], examples=[])
    gaps = [gap(10.0, 12.0, "closed (1001): chaos #0 drop")]
    deleted_at = {4: at(11.0).timestamp(), 5: at(30.0).timestamp(), 6: at(40.0).timestamp()}

    def ev(i, received, version, backfilled):
        return {
            "kind": "change",
            "pk": f'{{"id":{i}}}',
            "new": f'{{"id":{i},"version":{version}}}',
            "backfilled": backfilled,
            "received_at": pd.Timestamp(at(received)),
        }

    recording = pd.DataFrame(
        [
            ev(5, 29.0, 3, False),
            ev(5, 30.5, 2, True),  # backfilled after the DELETE at 30: resurrection
            ev(6, 39.0, 1, False),  # deleted at 40, never delivered, outside gaps: unexplained
            ev(2, 20.0, 7, False),
            ev(2, 20.2, 6, True),  # backfilled older version after a newer live one
        ]
    )
    causes = chaos.classify_mismatches(d, deleted_at, gaps, recording, lookback_s=2.0)
    assert causes == {
        "delete during a gap": 1,
        "resurrected by backfill": 1,
        "stale backfill overwrite": 1,
        "unexplained": 2,
    }


# ------------------------------------------------------------------------------------------- soak


def test_growth_uses_windowed_medians_after_warmup():
    samples = [(t, 500.0) for t in range(0, 20)] + [(t, 100.0 + (t >= 60) * 4) for t in range(20, 100)]
    g = soak.growth(samples, 20.0)
    assert g["samples"] == 80
    assert g["window"] == 20
    assert g["baseline"] == 100.0
    assert g["end"] == 104.0
    assert g["growth"] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="samples after"):
        soak.growth(samples[:25], 20.0)


def change(op, writer, version, row_id, *, backfilled=False):
    row = {"id": row_id, "writer": writer, "version": version}
    return SimpleNamespace(
        kind="change",
        table=soak.TABLE,
        op=op,
        new=None if op == "DELETE" else row,
        old=row if op == "DELETE" else None,
        backfilled=backfilled,
    )


def test_ledger_settles_received_superseded_and_lost():
    ledger = soak.Ledger(horizon_s=30.0, lookback_s=2.0)
    t = 1000.0
    ledger.on_commit(0, [(1, 1), (2, 2)], [], [], t)  # both received live
    ledger.on_commit(0, [], [(1, 3)], [(2, 2)], t + 1)  # update received, delete lost (no gap)
    ledger.on_commit(0, [], [(1, 4), (1, 5)], [], t + 50)  # in a gap: v4 superseded by backfilled v5
    ledger.on_commit(0, [(3, 6)], [], [], t + 51)  # in a gap, never delivered: lost
    for ev in (change("INSERT", 0, 1, 1), change("INSERT", 0, 2, 2), change("UPDATE", 0, 3, 1)):
        ledger.on_event(ev)
    ledger.gaps.append((t + 49, t + 55))
    ledger.on_event(change("UPDATE", 0, 5, 1, backfilled=True))
    ledger.settle(t + 10)  # nothing old enough yet
    assert ledger.received == 0
    ledger.settle(t + 100, final=True)
    assert ledger.received == 4  # v1, v2, v3 live + v5 by backfill
    assert ledger.superseded == 1  # v4
    assert dict(ledger.lost) == {"outside any gap": 1, "in a gap": 1}
    assert ledger.lost_total == 2
    assert ledger.backfilled == 1
    assert ledger.written == {"INSERT": 3, "UPDATE": 3, "DELETE": 1}
