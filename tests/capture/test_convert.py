"""Value conversion checked against PostgreSQL itself: ``to_jsonb(v)`` is the oracle.

For each value, the server gives its text output form (what pgoutput sends) and ``to_jsonb(v)``;
converting the former must give exactly the latter (same values, same Python types).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harmony_lab.capture._convert import parse_array, to_json_value

CASES = [
    ("int2", "-32768"),
    ("int4", "2147483647"),
    ("int8", "-9223372036854775808"),
    ("oid", "4294967295"),
    ("numeric", "1.50"),
    ("numeric", "'NaN'"),
    ("numeric", "'Infinity'"),
    ("numeric", "'-Infinity'"),
    ("numeric", "1e30"),
    ("numeric", "-0.000001"),
    ("numeric", "123456789012345678901234567890.123"),
    ("numeric", "0"),
    ("numeric", "2.0"),
    ("float4", "1.1"),
    ("float4", "'Infinity'"),
    ("float8", "1e20"),
    ("float8", "1.5e-7"),
    ("float8", "'NaN'"),
    ("float8", "'-Infinity'"),
    ("float8", "-0"),
    ("float8", "1.0"),
    ("float8", "0.1"),
    ("float8", "1.7976931348623157e308"),
    ("bool", "true"),
    ("bool", "false"),
    ("json", """'{"a": [1, 2.5, null], "a": "dup", "s": "\\u00e9"}'"""),
    ("jsonb", """'{"b": {"c": "é"}, "a": 1.0}'"""),
    ("json", "'[]'"),
    ("jsonb", "'\"just a string\"'"),
    ("jsonb", "'null'"),
    ("date", "'2025-11-03'"),
    ("date", "'infinity'"),
    ("date", "'-infinity'"),
    ("date", "'0044-03-15 BC'"),
    ("date", "'12345-01-01'"),
    ("timestamp", "'2025-11-03 09:32:55.123'"),
    ("timestamp", "'-infinity'"),
    ("timestamp", "'0044-03-15 10:00 BC'"),
    ("timestamp", "'2025-11-03 00:00:00'"),
    ("timestamptz", "'2025-11-03 09:32:55.123456+00'"),
    ("timestamptz", "'2025-11-03 09:32:55+05:30'"),
    ("timestamptz", "'1850-01-01 00:00 Europe/Amsterdam'"),
    ("timestamptz", "'infinity'"),
    ("timestamptz", "'0100-06-01 12:00+00 BC'"),
    ("time", "'09:32:55.5'"),
    ("timetz", "'09:32:55+02'"),
    ("timetz", "'09:32:55-03:30'"),
    ("interval", "'1 day 2 hours'"),
    ("interval", "'-1 year 3 mons'"),
    ("bytea", "'\\x00ff'"),
    ("uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"),
    ("text", """'he said "hi", {x} \\ back'"""),
    ("varchar(3)", "'abc'"),
    ("char(5)", "'ab'"),
    ("name", "'n'"),
    ("money", "1.5"),
    ("inet", "'10.0.0.1/8'"),
    ("cidr", "'10.0.0.0/8'"),
    ("macaddr", "'08:00:2b:01:02:03'"),
    ("point", "'(1,2)'"),
    ("int4range", "'[1,5)'"),
    ("bit(3)", "B'101'"),
    ("varbit", "B'1'"),
    ("tsvector", "'a fat cat'"),
    ("int4[]", "'{1,2,NULL}'"),
    ("int4[]", "'{{1,2},{3,4}}'"),
    ("int4[]", "'[0:1]={7,8}'"),
    ("int4[]", "'{}'"),
    ("int8[]", "'{{{1},{2}},{{3},{4}}}'"),
    ("text[]", r"""'{"a b","c,d","x\"y","back\\slash",NULL,"NULL","null",""," sp ","{}"}'"""),
    ("text[]", "'{{a,b},{c,d}}'"),
    ("varchar[]", "'{x}'"),
    ("jsonb[]", """ARRAY['{"a":1}'::jsonb, NULL, '[1,"x"]']"""),
    ("json[]", """ARRAY['{"b":2}'::json]"""),
    ("numeric[]", "'{1.5,NaN,2,1e3}'"),
    ("timestamptz[]", "ARRAY['2025-01-01 00:00+00'::timestamptz, NULL]"),
    ("timestamp[]", "'{\"2025-01-01 10:00:00\"}'"),
    ("date[]", "'{2025-01-01,infinity}'"),
    ("bool[]", "'{t,f,NULL}'"),
    ("float8[]", "'{Infinity,1.5,-0,NaN}'"),
    ("float4[]", "'{0.1}'"),
    ("uuid[]", "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'"),
    ("bytea[]", "ARRAY['\\x01'::bytea]"),
    ("box[]", "ARRAY[box '((1,2),(3,4))', box '((0,0),(1,1))']"),
    ("point[]", "ARRAY[point '(1,2)']"),
    ("int4range[]", "ARRAY['[1,2)'::int4range]"),
    ("interval[]", "ARRAY['1 day'::interval]"),
]

TIME_ZONES = ["UTC", "Asia/Kolkata", "America/St_Johns", "Europe/Amsterdam"]


@pytest.fixture(scope="module")
def oracle(postgres: Any) -> Iterator[psycopg.Connection[Any]]:
    with postgres.connect() as c:
        yield c


def _ask(conn: psycopg.Connection[Any], expr: str) -> tuple[str, str | None, Any]:
    """(typname, output-function text, to_jsonb) for a SQL expression, via raw libpq text results."""
    res = conn.pgconn.exec_(
        f"SELECT t.typname, v, to_jsonb(v) FROM (SELECT {expr} AS v) s "
        "JOIN pg_type t ON t.oid = pg_typeof(s.v)".encode()
    )
    if res.status != psycopg.pq.ExecStatus.TUPLES_OK:
        raise AssertionError(f"{expr}: {res.error_message.decode()}")
    raw = [res.get_value(0, i) for i in range(3)]
    return raw[0].decode(), raw[1].decode() if raw[1] is not None else None, json.loads(raw[2].decode())


def _json_type(value: Any) -> type:
    return float if isinstance(value, float) else type(value)


def _same(a: Any, b: Any) -> bool:
    """Equal values and equal JSON types (1 vs 1.0 differ; NaN strings compare as strings; an
    ExactNumeric is a JSON float)."""
    if _json_type(a) is not _json_type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


@pytest.mark.parametrize("tz", TIME_ZONES)
def test_matches_to_jsonb(oracle: psycopg.Connection[Any], tz: str) -> None:
    oracle.execute("SELECT set_config('TimeZone', %s, false)", [tz])
    mismatches = []
    for typ, literal in CASES:
        typname, text, expected = _ask(oracle, f"({literal})::{typ}")
        got = to_json_value(typname, text)
        if not _same(got, expected):
            mismatches.append(f"{typ} {text!r}: got {got!r}, to_jsonb gives {expected!r}")
    assert not mismatches, "\n".join(mismatches)


def test_null_stays_none() -> None:
    assert to_json_value("int4", None) is None


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not a boolean"):
        to_json_value("bool", "yes")
    with pytest.raises(ValueError, match="malformed array literal"):
        parse_array("{1,2")
    with pytest.raises(ValueError, match="malformed array literal"):
        parse_array("1,2}")
    with pytest.raises(ValueError, match="trailing"):
        parse_array("{1}x")


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
_nested_text = st.lists(st.none() | _text, max_size=5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=_nested_text, floats=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4))
def test_random_arrays_match_to_jsonb(
    oracle: psycopg.Connection[Any], values: list[Any], floats: list[float]
) -> None:
    for typ, data in (("text[]", values), ("float8[]", floats)):
        cur = oracle.execute(f"SELECT %s::{typ}::text, to_jsonb(%s::{typ})", [data, data])
        text, expected = cur.fetchone()
        got = to_json_value("_" + typ[:-2], text)
        assert _same(got, expected), (text, got, expected)


def test_numeric_beyond_float_precision_stays_exact() -> None:
    from decimal import Decimal

    from harmony_lab.capture._convert import ExactNumeric

    value = to_json_value("numeric", "12345678901234567.1")
    assert isinstance(value, ExactNumeric)
    assert value.exact == Decimal("12345678901234567.1")
    assert value == json.loads("12345678901234567.1")  # it is the float to_jsonb would give
    assert json.dumps(value) == json.dumps(float(value))
    assert [type(v) for v in to_json_value("_numeric", "{0.123456789012345,1.5,0.1234567890123456}")] == [
        float,
        float,
        ExactNumeric,
    ]  # 15 significant digits fit a float, 16 do not
    assert type(to_json_value("float8", "0.30000000000000004")) is float  # floats are floats already
    import pickle

    assert pickle.loads(pickle.dumps(value)).exact == value.exact
