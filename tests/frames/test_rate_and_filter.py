"""The rate meter (fake clock) and the client-side filter grammar."""

from __future__ import annotations

import pytest

from harmony_lab.filters import F, FilterError
from harmony_lab.frames._filter import compile_filter
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
        ('name=in.("a, b",c)', {"name": "a, b"}, True),
        ("flag=eq.true", {"flag": True}, True),
        ("id=eq.5", {"id": None}, False),
        ("id=neq.5", {"id": None}, False),  # NULL never compares
        ("id=not.eq.5", {"id": None}, False),  # NOT unknown is unknown
        ("id=eq.5", {"other": 5}, False),
        ("id=eq.x", {"id": 5}, False),
        ("id=neq.x", {"id": 5}, True),
        ("id=not.eq.5", {"id": 6}, True),
        ("deleted_at=is.null", {"deleted_at": None}, True),
        ("deleted_at=is.null", {"deleted_at": "2024-01-01"}, False),
        ("deleted_at=not.is.null", {"deleted_at": "2024-01-01"}, True),
        ("ok=is.true", {"ok": True}, True),
        ("ok=is.false", {"ok": True}, False),
        ("name=like.a%", {"name": "alice"}, True),
        ("name=like.a_", {"name": "alice"}, False),
        ("name=ilike.A%E", {"name": "alice"}, True),
        ("name=like.100\\%", {"name": "100%"}, True),  # an escaped % is a literal
        ("name=like.100\\%", {"name": "1000"}, False),
        ("name=like.a%", {"name": "a\nb"}, True),  # % spans newlines, as in Postgres
        ("name=match.^al", {"name": "alice"}, True),
        ("name=imatch.ICE$", {"name": "alice"}, True),
        ("n=isdistinct.5", {"n": None}, True),
        ("n=isdistinct.5", {"n": 5}, False),
        ("channel_id=eq.1,id=gt.3", {"channel_id": 1, "id": 4}, True),
        ("channel_id=eq.1,id=gt.3", {"channel_id": 1, "id": 2}, False),
        ("payload=eq.x", {"payload": {"a": 1}}, False),
    ],
)
def test_filter_matches(text, row, ok):
    assert compile_filter(text).matches(row) is ok


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id", "expected column=op.value"),
        ("id=5", "expected op.value"),
        ("id=foo.5", "unknown operator 'foo'"),
        ("id=in.1,2", "in needs parentheses"),
        ("id=in.(1,,2)", "empty item"),
        # Postgres (and so the server, when subscribing) refuses this LIKE pattern too
        ("name=like.abc\\", "LIKE pattern must not end with escape character"),
    ],
)
def test_filter_errors_name_the_valid_forms(text, message):
    with pytest.raises(FilterError, match=message) as info:
        compile_filter(text)
    assert "valid forms" in str(info.value)


def test_filter_accepts_f_expressions_and_roundtrips_to_text():
    assert str(compile_filter("channel_id=in.(1,2)")) == "channel_id=in.(1,2)"
    built = F.eq("channel_id", 42) & ~F.is_("deleted_at", None)
    f = compile_filter(built)
    assert str(f) == "channel_id=eq.42,deleted_at=not.is.null"
    assert f.matches({"channel_id": 42, "deleted_at": "2024-01-01"})
    assert not f.matches({"channel_id": 42, "deleted_at": None})
    with pytest.raises(TypeError, match="F expression"):
        compile_filter(42)


@pytest.mark.parametrize(
    ("text", "row", "columns", "ok"),
    [
        # instants, not strings: 10:00+02:00 is 08:00 UTC, before 09:00 UTC (as text it sorts after)
        ("at=gt.2024-01-01 09:00:00", {"at": "2024-01-01T10:00:00+02:00"}, [("at", "timestamptz")], False),
        ("at=lt.2024-01-01 09:00:00", {"at": "2024-01-01T10:00:00+02:00"}, [("at", "timestamptz")], True),
        ("at=eq.2024-01-01T08:00:00Z", {"at": "2024-01-01T10:00:00+02:00"}, [("at", "timestamptz")], True),
        # numeric is exact: 0.1 + 0.2 is not 0.3 in binary floating point, it is in numeric
        ("n=eq.0.30", {"n": 0.3}, [("n", "numeric")], True),
        ("n=gt.12345678901234567.1", {"n": "12345678901234567.2"}, [("n", "numeric")], True),
        # uuids compare as values, whatever their case
        (
            "id=eq.A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            {"id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
            [("id", "uuid")],
            True,
        ),
        ("ok=eq.yes", {"ok": True}, [("ok", "bool")], True),
        ("ok=eq.t", {"ok": True}, (), True),  # no type information: true/false stand for bool
        ("d=gte.2024-02-01", {"d": "2024-02-01"}, [("d", "date")], True),
    ],
)
def test_filter_uses_the_event_column_types(text, row, columns, ok):
    assert compile_filter(text).matches(row, columns) is ok
