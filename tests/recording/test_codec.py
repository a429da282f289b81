"""The JSON-with-type-notes codec gives back every value it is handed, with its type."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from harmony_lab.recording._codec import (
    SCHEMA,
    _batch_native,
    _native,
    decode_json,
    encode_json,
    json_array,
    timestamp_array,
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text()
    | st.datetimes(timezones=st.just(UTC))
    | st.datetimes()
    | st.dates()
    | st.times()
    | st.timedeltas(min_value=timedelta(days=-1000), max_value=timedelta(days=1000))
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.uuids()
    | st.binary(max_size=20)
)
keys = st.text(max_size=8) | st.integers(-5, 5)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        | st.dictionaries(keys, inner, max_size=4)
        | st.frozensets(st.integers() | st.text(max_size=4), max_size=3)
    ),
    max_leaves=20,
)


def same(a: object, b: object) -> bool:
    """Equal and of the same type, recursively."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)  # type: ignore[union-attr]
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, Decimal):
        return str(a) == str(b)
    return a == b


@settings(max_examples=300, deadline=None)
@given(values)
def test_any_value_round_trips_with_its_type(value):
    text, notes = encode_json(value)
    if value is None:
        assert text is None
        return
    json.loads(text)  # always valid, strict JSON (no NaN)
    # the notes survive their own JSON round trip (they live in the json_types column)
    notes = json.loads(json.dumps(notes)) if notes else None
    assert same(decode_json(text, notes), value)


def test_plain_json_needs_no_notes_and_reads_naturally():
    value = {"id": 1, "body": "héllo", "tags": ["a"], "meta": {"n": None, "f": 1.5, "ok": True}}
    text, notes = encode_json(value)
    assert notes is None
    assert json.loads(text) == value
    assert "héllo" in text  # not \\u-escaped: readable in duckdb/polars


def test_non_native_values_are_readable_json_too():
    when = __import__("datetime").datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    text, notes = encode_json({"at": when, "n": Decimal("1.50"), "u": uuid.UUID(int=1), "x": math.inf})
    assert json.loads(text) == {
        "at": "2025-01-02T03:04:05+00:00",
        "n": "1.50",
        "u": "00000000-0000-0000-0000-000000000001",
        "x": "inf",
    }
    assert {tuple(path): tag for path, tag in notes} == {
        ("at",): "datetime",
        ("n",): "decimal",
        ("u",): "uuid",
        ("x",): "float",
    }


def test_schema_is_one_for_every_kind():
    assert SCHEMA.names[:6] == ["session_id", "seq", "received_at", "received_mono_ns", "kind", "channel"]
    assert str(SCHEMA.field("received_at").type) == "timestamp[us, tz=UTC]"
    assert SCHEMA.metadata[b"harmony_lab.recording.format"] == b"1"


json_native = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from('",[]{}\\\n\t\x00'), max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(json_native, max_size=30))
def test_a_batch_encoded_in_one_call_holds_each_values_json(batch):
    """The column cut out of one encoded array parses back to each value, with nulls where None was."""
    arr = json_array(batch)
    arr.validate(full=True)
    assert len(arr) == len(batch)
    assert arr.null_count == sum(v is None for v in batch)
    for text, value in zip(arr.to_pylist(), batch, strict=True):
        if value is None:
            assert text is None
        else:
            assert json.loads(text) == value


def test_a_batch_orjson_refuses_falls_back_to_the_standard_library():
    batch = [{"big": 2**80}, None, [1, 2]]
    assert json_array(batch).to_pylist() == ['{"big":1208925819614629174706176}', None, "[1,2]"]


@settings(max_examples=300, deadline=None)
@given(st.lists(json_native | values, max_size=12))
def test_the_batch_nativeness_check_agrees_with_the_value_by_value_walk(batch):
    assert _batch_native(batch) == all(_native(v) for v in batch)


zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)), ZoneInfo("Europe/Paris")]
)
one_zone_batch = zones.flatmap(
    lambda tz: st.lists(st.none() | st.datetimes(timezones=st.just(tz)), max_size=20)
)
mixed_batch = st.lists(
    st.none() | st.datetimes(timezones=zones) | st.datetimes(timezones=st.timezones()), max_size=20
)


@settings(max_examples=300, deadline=None)
@given(one_zone_batch | mixed_batch)
def test_the_fast_timestamp_column_holds_the_same_instants_as_arrows_conversion(batch):
    """Same zone, mixed zones, years 1 to 9999 (beyond what pandas holds), nulls: the instants match."""
    arr = timestamp_array(batch)
    arr.validate(full=True)
    assert arr.type == SCHEMA.field("received_at").type
    assert arr.equals(pa.array(batch, SCHEMA.field("received_at").type))
