"""BackoffPolicy: pure, seeded."""

from __future__ import annotations

import random

import pytest

from harmony_lab.manager import BackoffPolicy


def test_defaults_are_the_seeds():
    p = BackoffPolicy()
    assert (p.base, p.max_delay, p.factor, p.max_retries, p.jitter) == (1.0, 30.0, 2.0, 10, 0.2)


def test_nominal_doubles_and_caps_at_max_delay():
    p = BackoffPolicy()
    assert [p.nominal(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert p.nominal(10_000) == 30.0  # no overflow for absurd attempts


@pytest.mark.parametrize("seed", range(20))
def test_delays_stay_within_twenty_percent(seed):
    p = BackoffPolicy()
    rng = random.Random(seed)
    for attempt in range(15):
        nominal = p.nominal(attempt)
        d = p.delay(attempt, rng)
        assert 0.8 * nominal <= d <= 1.2 * nominal
        assert d <= p.max_delay  # jitter included: the cap is a cap


@pytest.mark.parametrize("seed", range(5))
def test_no_delay_exceeds_max_delay_and_the_cap_still_spreads(seed):
    # regression: jitter was applied after the cap, so delays reached 36 s against max_delay=30
    p = BackoffPolicy(max_delay=30.0, jitter=0.2)
    rng = random.Random(seed)
    at_cap = [p.delay(attempt, rng) for attempt in range(5, 400)]
    assert max(at_cap) <= 30.0
    assert min(at_cap) >= 24.0
    assert len({round(d, 6) for d in at_cap}) > 300  # not piled up on exactly 30.0
    assert max(at_cap) > 29.5
    assert all(d <= p.max_delay for d in p.schedule(rng))


def test_jitter_actually_varies_and_spans_the_band():
    p = BackoffPolicy()
    rng = random.Random(7)
    samples = [p.delay(3, rng) for _ in range(2000)]
    assert len(set(samples)) > 1900
    assert min(samples) < 8 * 0.82
    assert max(samples) > 8 * 1.18


def test_seeded_rng_is_reproducible():
    p = BackoffPolicy()
    assert p.schedule(random.Random(3)) == p.schedule(random.Random(3))
    assert len(p.schedule(random.Random(3))) == 10


def test_zero_jitter_is_exact():
    p = BackoffPolicy(jitter=0.0, base=0.5, factor=3.0, max_delay=10.0)
    assert [p.delay(n, random.Random(0)) for n in range(4)] == [0.5, 1.5, 4.5, 10.0]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"base": 0}, ValueError, "base must be > 0"),
        ({"base": -1}, ValueError, "base"),
        ({"max_delay": 0.5}, ValueError, "max_delay .* must be >= base"),
        ({"factor": 0.5}, ValueError, "factor must be >= 1"),
        ({"jitter": 1.0}, ValueError, r"jitter must be in \[0, 1\)"),
        ({"jitter": -0.1}, ValueError, "jitter"),
        ({"max_retries": -1}, ValueError, "max_retries must be >= 0"),
        ({"max_retries": 2.5}, TypeError, "max_retries must be an int"),
        ({"base": "1"}, TypeError, "base must be a number"),
        ({"base": float("nan")}, ValueError, "finite"),
        ({"max_retries": True}, TypeError, "max_retries"),
    ],
)
def test_bad_arguments_are_rejected_clearly(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        BackoffPolicy(**kwargs)


def test_unknown_argument_is_a_type_error():
    with pytest.raises(TypeError):
        BackoffPolicy(retries=3)  # type: ignore[call-arg]


def test_bad_attempt():
    with pytest.raises(ValueError, match="attempt must be an int >= 0"):
        BackoffPolicy().delay(-1, random.Random(0))


def test_frozen():
    p = BackoffPolicy()
    with pytest.raises(AttributeError):
        p.base = 2.0  # type: ignore[misc]
