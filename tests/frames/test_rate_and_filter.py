"""The rate meter (fake clock) and the client-side filter grammar."""

from __future__ import annotations

import pytest

from harmony_lab.frames._filter import parse_filter
from harmony_lab.frames._rate import RateMeter


def test_rate_meter_sliding_window():
    m = RateMeter(2.0, buckets=20, history_s=5, clock=lambda: 0.0)
    for i in range(100):
        m.add(now=10.0 + i * 0.01)  # 100 events over 1 s
    assert m.rate(now=11.0) == pytest.approx(100, rel=0.05)  # young stream: measured since start
    assert m.rate(now=12.0) == pytest.approx(50, rel=0.1)  # bucketed: off by at most ~one bucket
    assert m.rate(now=13.5) == 0
    assert m.history(5, now=13.5) == [0, 100, 0, 0, 0]


def test_rate_meter_long_idle_then_burst():
    m = RateMeter(1.0, buckets=10, clock=lambda: 0.0)
    m.add(5, now=1.0)
    m.add(3, now=10_000.0)
    assert m.rate(now=10_000.5) == pytest.approx(3 / 0.9, rel=0.01)  # the old burst is long gone
    assert m.rate(now=10_001.05) == 0  # and the new one has left the 1 s window


def test_rate_meter_rejects_bad_arguments():
    with pytest.raises(ValueError, match="positive"):
        RateMeter(0)


@pytest.mark.parametrize(
    ("text", "row", "ok"),
    [
        ("id=eq.5", {"id": 5}, True),
        ("id=eq.5", {"id": 6}, False),
        ("id=neq.5", {"id": 6}, True),
        ("id=gt.5", {"id": 6}, True),
        ("id=gte.5", {"id": 5}, True),
        ("id=lt.5", {"id": 5}, False),
        ("score=lte.1.5", {"score": 1.5}, True),
        ("id=in.(1,2,3)", {"id": 2}, True),
        ("name=in.(ann,bob)", {"name": "cy"}, False),
        ("flag=eq.true", {"flag": True}, True),
        ("id=eq.5", {"id": None}, False),
        ("id=eq.5", {"other": 5}, False),
        ("id=eq.x", {"id": 5}, False),
        ("id=neq.x", {"id": 5}, True),
    ],
)
def test_filter_matches(text, row, ok):
    assert parse_filter(text).matches(row) is ok


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id", "valid forms"),
        ("id=5", "valid forms"),
        ("id=like.5", "valid operators"),
        ("id=in.1,2", r"in\.\(v1"),
        ("id=in.()", r"in\.\(v1"),
        ("id=in.(1,,2)", "empty value"),
    ],
)
def test_filter_errors_name_the_valid_forms(text, message):
    with pytest.raises(ValueError, match=message):
        parse_filter(text)


def test_filter_roundtrips_to_text():
    assert str(parse_filter("channel_id=in.(1,2)")) == "channel_id=in.(1,2)"
    assert str(parse_filter("channel_id=eq.42")) == "channel_id=eq.42"
