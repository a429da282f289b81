"""The Postgres type → pandas/Arrow mapping, value by value."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest

from harmony_lab.frames._dtypes import Kind, kind_of, native_field, to_arrow, to_native, to_pandas


@pytest.mark.parametrize(
    ("pg", "kind"),
    [
        ("int2", Kind.INT),
        ("int4", Kind.INT),
        ("int8", Kind.INT),
        ("bigint", Kind.INT),
        ("float4", Kind.FLOAT),
        ("float8", Kind.FLOAT),
        ("numeric", Kind.FLOAT),
        ("bool", Kind.BOOL),
        ("text", Kind.STRING),
        ("varchar", Kind.STRING),
        ("uuid", Kind.STRING),
        ("timestamptz", Kind.TIMESTAMPTZ),
        ("timestamp with time zone", Kind.TIMESTAMPTZ),
        ("timestamp", Kind.TIMESTAMP),
        ("date", Kind.DATE),
        ("jsonb", Kind.JSON),
        ("json", Kind.JSON),
        ("_text", Kind.ARRAY),
        ("int4[]", Kind.ARRAY),
        ("presence_status", Kind.UNKNOWN),  # an enum: shown as text
        (None, Kind.UNKNOWN),
    ],
)
def test_kind_of(pg, kind):
    assert kind_of(pg) is kind


@pytest.mark.parametrize(
    ("pg", "values", "dtype", "expected"),
    [
        ("int2", [1, None, 3], "Int64", [1, pd.NA, 3]),
        ("int8", [2**62, None], "Int64", [2**62, pd.NA]),
        ("int4", ["7", None], "Int64", [7, pd.NA]),  # numbers sent as text
        ("float8", [1.5, None, 2], "Float64", [1.5, pd.NA, 2.0]),
        ("numeric", ["12.50", 3, None], "Float64", [12.5, 3.0, pd.NA]),
        ("bool", [True, None, False], "boolean", [True, pd.NA, False]),
        ("bool", ["t", "false"], "boolean", [True, False]),
        ("text", ["a", None], "string", ["a", pd.NA]),
        (
            "uuid",
            ["0b6f4e0c-0000-4000-8000-000000000001"],
            "string",
            ["0b6f4e0c-0000-4000-8000-000000000001"],
        ),
        ("presence_status", ["online", None], "string", ["online", pd.NA]),
        ("varchar", [12], "string", ["12"]),
    ],
)
def test_scalar_columns(pg, values, dtype, expected):
    arr = to_pandas(values, pg, "c")
    assert str(arr.dtype) == dtype
    assert pd.Series(arr).tolist() == expected


def test_timestamptz_parses_iso_and_postgres_text_to_utc_microseconds():
    arr = to_pandas(["2024-05-01T12:00:00.123456+00:00", "2024-05-01 14:00:00+02", None], "timestamptz", "at")
    assert str(arr.dtype) == "datetime64[us, UTC]"
    s = pd.Series(arr)
    assert s[0] == pd.Timestamp("2024-05-01T12:00:00.123456Z")
    assert s[1] == pd.Timestamp("2024-05-01T12:00:00Z")
    assert pd.isna(s[2])


def test_timestamp_without_zone_is_naive():
    arr = to_pandas(["2024-05-01T12:00:00.5", None], "timestamp", "at")
    assert str(arr.dtype) == "datetime64[us]"
    assert pd.Series(arr)[0] == pd.Timestamp("2024-05-01T12:00:00.5")


def test_unparsable_values_become_missing_and_are_logged(caplog):
    caplog.set_level(logging.WARNING)
    arr = to_pandas(["infinity", "2024-01-01T00:00:00Z"], "timestamptz", "expires_at")
    assert pd.isna(pd.Series(arr)[0])
    assert "expires_at" in caplog.text
    assert "1 value(s)" in caplog.text
    caplog.clear()
    ints = to_pandas([1, "x"], "int4", "n")
    assert pd.Series(ints).tolist() == [1, pd.NA]
    assert "'n'" in caplog.text


def test_date_json_and_arrays():
    d = to_pandas(["2024-01-02", None], "date", "d")
    assert pd.Series(d).tolist()[0] == dt.date(2024, 1, 2)
    j = to_pandas([{"a": [1, 2]}, None, [1]], "jsonb", "j")
    assert str(j.dtype) == "object"
    assert list(j) == [{"a": [1, 2]}, None, [1]]
    a = to_pandas([["x", "y"], None, []], "_text", "a")
    assert list(a) == [["x", "y"], None, []]


def test_arrow_types():
    assert to_arrow([1, None], "int4").type == pa.int64()
    assert to_arrow(["a"], "text").type == pa.string()
    assert to_arrow([{"a": 1}], "jsonb").to_pylist() == ['{"a":1}']
    assert to_arrow([[1, 2], None], "_int4").type == pa.list_(pa.int64())
    assert to_arrow([["a"]], "_text").type == pa.list_(pa.string())
    assert to_arrow([[[1], [2]]], "_int4").type == pa.string()  # 2-D arrays fall back to JSON text
    assert to_arrow(["2024-01-02"], "date").type == pa.date32()
    assert to_arrow(["2024-01-02T00:00:00Z"], "timestamptz").type == pa.timestamp("us", tz="UTC")


@pytest.mark.parametrize(
    ("pg", "values", "arrow"),
    [
        ("int4", [1, None], pa.int64()),
        ("float8", [1.5], pa.float64()),
        ("numeric", [1.5, 12, None], pa.decimal128(38, 1)),
        ("bool", [True], pa.bool_()),
        ("timestamptz", ["2024-01-01T00:00:00Z"], pa.timestamp("us", tz="UTC")),
        ("timestamp", ["2024-01-01T00:00:00"], pa.timestamp("us")),
        ("date", ["2024-01-02"], pa.date32()),
        ("jsonb", [{"a": 1}], pa.string()),
        ("_int4", [[1, None], None], pa.list_(pa.int64())),
        ("_text", [["a", "b"]], pa.list_(pa.string())),
        ("uuid", ["x"], pa.string()),
        (None, ["x"], pa.string()),
    ],
)
def test_native_types_keep_what_postgres_sent(pg, values, arrow):
    assert to_native(values, pg).type == arrow


def test_numeric_is_exact():
    from harmony_lab.capture._convert import ExactNumeric

    big = ExactNumeric(Decimal("12345678901234567890.123456789"))
    arr = to_native([Decimal("19.90"), 0.1, 3, big, None], "numeric")
    assert arr.type == pa.decimal128(38, 9)
    assert arr.to_pylist() == [
        Decimal("19.900000000"),
        Decimal("0.100000000"),
        Decimal("3.000000000"),
        Decimal("12345678901234567890.123456789"),
        None,
    ]


@pytest.mark.parametrize("odd", ["NaN", "Infinity", 1e300, Decimal("1" * 40), "oops"])
def test_numeric_a_decimal_cannot_hold_becomes_exact_text(odd):
    arr = to_native([Decimal("1.25"), odd, None], "numeric")
    assert arr.type == pa.string()
    got = arr.to_pylist()
    assert got[0] == "1.25"
    assert got[2] is None
    want = odd if isinstance(odd, str) else format(Decimal(repr(odd)) if isinstance(odd, float) else odd, "f")
    assert got[1] == want


def test_json_text_is_marked_for_the_browser():
    arr = to_native([{"b": 1}, None], "jsonb")
    assert arr.to_pylist() == ['{"b":1}', None]
    field = native_field("doc", "jsonb", arr)
    assert field.metadata[b"ARROW:extension:name"] == b"arrow.json"
    nested = to_native([[[1], [2]]], "_int4")  # 2-D arrays fall back to JSON text
    assert native_field("m", "_int4", nested).metadata[b"ARROW:extension:name"] == b"arrow.json"
    assert native_field("t", "text", to_native(["x"], "text")).metadata is None
    assert native_field("l", "_int4", to_native([[1]], "_int4")).metadata is None
