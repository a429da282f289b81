"""The Python filter evaluator against Postgres as the oracle.

For random (row value, filter value) pairs of each supported type, every operator is evaluated
both by :mod:`harmony_lab.filters` (as the server and a client-side LiveFrame run it) and by Postgres
(``cast(row as T) OP cast(filter as T)``, as Supabase's ``check_equality_op`` does); they must agree
(DEFER is allowed: the hub then asks Postgres).
"""

from __future__ import annotations

import datetime as dt
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harmony_lab.capture import to_json_value
from harmony_lab.filters import (
    DEFER,
    Condition,
    classify,
    client_predicate,
    compile_condition,
    compile_like,
    literal_value,
    pg_regex_to_python,
    pg_text,
    sql_check,
)
from harmony_lab.frames._filter import compile_filter

COMPARISONS = ("eq", "neq", "lt", "lte", "gt", "gte", "isdistinct")


@pytest.fixture(scope="module")
def conn(postgres):
    import psycopg

    with psycopg.connect(postgres.dsn, autocommit=True) as c:
        c.execute("set timezone = 'UTC'")
        c.execute("drop type if exists eval_mood")
        c.execute("create type eval_mood as enum ('sad', 'ok', 'happy', 'Zen')")
        yield c


def pg_jsonb(conn, text, regtype):
    """Text cast to the type, as Change records (and the hub's canonical filter values) carry it: the
    to_jsonb rendering, except numeric, which the change stream's converter keeps exact."""
    if text is None:
        return None
    if regtype in ("numeric", "numeric[]"):
        row = conn.execute(f"select cast(%s::text as {regtype})::text", (text,)).fetchone()
        return to_json_value("_numeric" if regtype.endswith("[]") else "numeric", row[0])
    row = conn.execute(f"select to_jsonb(cast(%s::text as {regtype}))::text", (text,)).fetchone()
    return json.loads(row[0])


def oracle(conn, cond, regtype, row_text):
    second = cond.wire_value if cond.op == "in" else (cond.value if isinstance(cond.value, str) else None)
    sql = "select " + sql_check(cond, regtype)
    value = conn.execute(sql, (row_text, second)).fetchone()[0]
    return value is True  # NULL → not visible


def ours(conn, cond, ctype, row_text):
    canonical = None
    if cond.op == "in":
        canonical = pg_jsonb(conn, cond.wire_value, ctype.regtype + "[]")
    elif cond.op not in ("is", "like", "ilike", "match", "imatch"):
        canonical = pg_jsonb(conn, cond.value, ctype.regtype)
    pred = compile_condition(cond, ctype, canonical)
    result = pred(pg_jsonb(conn, row_text, ctype.regtype))
    return result


def client_readable(cond, ctype):
    """Whether a client without a database reads the filter literal(s) as Postgres does."""
    if cond.op in ("is", "like", "ilike", "match", "imatch"):
        return True
    items = cond.value if cond.op == "in" else (cond.value,)
    try:
        for item in items:
            literal_value(item, ctype)
    except ValueError:
        return False
    return True


def check(conn, cond, ctype, row_text):
    """The server's predicate (where it decides) and the client's (always) agree with Postgres."""
    got = ours(conn, cond, ctype, row_text)
    want = oracle(conn, cond, ctype.regtype, row_text)
    if got is not DEFER:
        assert (got is True) == want, ("server", cond, ctype.typname, row_text, got, want)
    if (got is not DEFER or cond.op in ("like", "ilike", "match", "imatch")) and client_readable(cond, ctype):
        value = pg_jsonb(conn, row_text, ctype.regtype)
        client = client_predicate(cond, ctype)(value)
        assert (client is True) == want, ("client", cond, ctype.typname, row_text, client, want)
        if ctype.category != "enum":  # an event names the type, not its labels
            # the path a client-side LiveFrame takes: the filter as text, the type from the event
            seen = compile_filter(cond).matches({"c": value}, [("c", ctype.typname)])
            assert seen == want, ("LiveFrame", str(cond), ctype.typname, row_text, seen, want)


TYPES = {
    "int2": st.integers(-(2**15), 2**15 - 1).map(str),
    "int4": st.integers(-(2**31), 2**31 - 1).map(str),
    "int8": st.integers(-(2**63), 2**63 - 1).map(str),
    "numeric": st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-(10**6), max_value=10**6).map(
            str
        ),
        st.sampled_from(["NaN", "Infinity", "-Infinity", "0", "1.10", "1.1", "-0.000"]),
        # beyond a float's 15 significant digits, and neighbours that round to the same float
        st.decimals(
            allow_nan=False, allow_infinity=False, places=10, min_value=-(10**12), max_value=10**12
        ).map(str),
        st.sampled_from(["12345678901234567.1", "12345678901234567.2", "0.12345678901234567890"]),
    ),
    "float8": st.one_of(
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.sampled_from(["NaN", "Infinity", "-Infinity", "0", "-0", "1e-300", "0.1"]),
    ),
    "float4": st.one_of(
        st.floats(width=32, allow_nan=False, allow_infinity=False).map(repr),
        st.sampled_from(["NaN", "Infinity", "0.1", "3.4e38"]),
    ),
    "boolean": st.sampled_from(["true", "false", "t", "f", "yes", "0"]),
    "uuid": st.uuids().map(lambda u: str(u).upper() if u.int % 2 else str(u)),
    "timestamp with time zone": st.one_of(
        st.datetimes(timezones=st.just(dt.UTC)).map(lambda d: d.isoformat()),
        st.datetimes().map(lambda d: d.isoformat() + "+05:30"),
        # no offset: the session time zone (UTC), as a client reads it too
        st.datetimes(min_value=dt.datetime(1000, 1, 1)).map(lambda d: d.isoformat(sep=" ")),
        st.sampled_from(
            ["infinity", "-infinity", "2024-01-01 00:00:00+00", "2024-01-01T05:30:00+05:30", "2024-01-01"]
        ),
    ),
    "timestamp without time zone": st.one_of(
        st.datetimes().map(lambda d: d.isoformat()), st.sampled_from(["infinity", "-infinity"])
    ),
    "date": st.one_of(st.dates().map(str), st.sampled_from(["infinity", "-infinity"])),
    "time without time zone": st.times().map(str),
    "eval_mood": st.sampled_from(["sad", "ok", "happy", "Zen"]),
}

TEXTY = st.text(alphabet="abcAB Zz_%é\\.,()'\"\n", max_size=6)
TEXT_TYPES = {"text": TEXTY, "character varying": TEXTY, "bpchar": TEXTY}


def ctype_for(regtype):
    typname = {
        "boolean": "bool",
        "timestamp with time zone": "timestamptz",
        "timestamp without time zone": "timestamp",
        "time without time zone": "time",
        "character varying": "varchar",
    }.get(regtype, regtype)
    if regtype == "eval_mood":
        return classify("eval_mood", regtype, typtype="e", enum_labels=["sad", "ok", "happy", "Zen"])
    return classify(typname, regtype)


ALL_TYPES = {**TYPES, **TEXT_TYPES}


@pytest.mark.parametrize("regtype", list(ALL_TYPES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_comparisons_match_postgres(conn, regtype, data):
    values = ALL_TYPES[regtype]
    ctype = ctype_for(regtype)
    row = data.draw(st.one_of(st.none(), values), label="row")
    fv = data.draw(values, label="filter")
    for op in COMPARISONS:
        for negate in (False, True):
            check(conn, Condition("c", op, fv, negate), ctype, row)
    items = data.draw(st.lists(st.one_of(values, st.none()), max_size=4), label="in")
    for negate in (False, True):
        check(conn, Condition("c", "in", tuple(items), negate), ctype, row)
    if row is None or regtype == "boolean":
        for kw in (None, "true", "false", "unknown"):
            if kw is not None and regtype != "boolean":
                continue
            for negate in (False, True):
                check(conn, Condition("c", "is", kw, negate), ctype, row)


LIKE_PATTERNS = st.text(alphabet="abAB%_\\é.*", max_size=5).filter(lambda p: not _ends_with_escape(p))


def _ends_with_escape(p):
    n = len(p) - len(p.rstrip("\\"))
    return n % 2 == 1


@pytest.mark.parametrize("regtype", ["text", "character varying"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=st.one_of(st.none(), st.text(alphabet="abAB%_\\é.*\n", max_size=6)), pattern=LIKE_PATTERNS)
def test_like_ilike_match_postgres(conn, regtype, row, pattern):
    ctype = ctype_for(regtype)
    for op in ("like", "ilike"):
        for negate in (False, True):
            check(conn, Condition("c", op, pattern, negate), ctype, row)


REGEX_ATOMS = st.sampled_from(
    ["a", "b", "A", "é", ".", "\\d", "\\w", "\\s", "\\.", "[ab]", "[^a]", "[a-c]", "(a|b)", "(?:ab)", "x"]
)
REGEX_QUANT = st.sampled_from(["", "", "*", "+", "?", "{2}", "{1,}", "{0,2}", "*?"])


@st.composite
def regexes(draw):
    parts = draw(st.lists(st.tuples(REGEX_ATOMS, REGEX_QUANT), max_size=4))
    body = "".join(a + q for a, q in parts)
    return draw(st.sampled_from(["", "^"])) + body + draw(st.sampled_from(["", "$"]))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=st.one_of(st.none(), st.text(alphabet="abAB1 é.\nx_", max_size=6)), pattern=regexes())
def test_match_imatch_postgres(conn, row, pattern):
    """The server's predicate (fixed-length patterns) and the full translation (what client-side
    filtering runs) both agree with Postgres."""
    import re

    ctype = ctype_for("text")
    translated = pg_regex_to_python(pattern)
    assert translated is not None, pattern
    plain = pattern.replace("\\.", "").replace("(?:", "(")
    quantified = any(q in plain for q in "*+?{|")
    for op in ("match", "imatch"):
        for negate in (False, True):
            cond = Condition("c", op, pattern, negate)
            check(conn, cond, ctype, row)
            decided = ours(conn, cond, ctype, row) is not DEFER
            assert decided == (row is None or not quantified), (pattern, row)
        if row is not None:
            flags = re.DOTALL | re.ASCII | (re.IGNORECASE if op == "imatch" else 0)
            got = re.search(translated, row, flags) is not None
            assert got == oracle(conn, Condition("c", op, pattern), "text", row), (op, pattern, row)


def test_unsupported_regex_features_defer():
    for pattern in ["\\mword", "(a)\\1", "[[:alpha:]]", "(?=a)", "\\y", "***=a", "a{x"]:
        assert pg_regex_to_python(pattern) is None, pattern
    pred = compile_condition(Condition("c", "match", "[[:alpha:]]+"), classify("text", "text"))
    assert pred("abc") is DEFER
    assert pred(None) is None


def test_like_matcher():
    assert compile_like("a%b_")("axxbc")
    assert compile_like("100\\%")("100%")
    assert not compile_like("100\\%")("1000")
    assert compile_like("%")("")
    assert not compile_like("_")("")
    assert compile_like("A%z", fold=True)("abcZ")
    assert not compile_like("a%a")("a")  # the two pieces may not overlap
    with pytest.raises(ValueError, match="escape"):
        compile_like("abc\\")


def test_non_c_collation_defers_ordering_and_case_folding():
    ctype = classify("text", "text", collation="en_US")
    assert compile_condition(Condition("c", "lt", "b"), ctype, "b")("a") is DEFER
    assert compile_condition(Condition("c", "eq", "b"), ctype, "b")("a") is False
    assert compile_condition(Condition("c", "ilike", "É%"), ctype)("éa") is DEFER
    assert compile_condition(Condition("c", "ilike", "A%"), ctype)("ab") is True


def test_other_types_defer_but_null_is_decided():
    ctype = classify("jsonb", "jsonb")
    pred = compile_condition(Condition("c", "eq", '{"a":1}'), ctype, {"a": 1})
    assert pred({"a": 1}) is DEFER
    assert pred(None) is None
    assert compile_condition(Condition("c", "isdistinct", "1"), ctype, 1)(None) is True
    assert compile_condition(Condition("c", "is", None), ctype)(None) is True


def test_sql_fallback_for_arrays_and_json(conn):
    # the fallback evaluates types the Python side leaves to Postgres
    cond = Condition("c", "eq", "{1,2}")
    assert oracle(conn, cond, "integer[]", pg_text([1, 2])) is True
    assert oracle(conn, Condition("c", "eq", '{"a": 1}'), "jsonb", pg_text({"a": 1})) is True
    assert pg_text([1, None, "a b", True]) == '{"1",NULL,"a b","true"}'
    assert pg_text(1.5) == "1.5"
    assert pg_text(float("nan")) == "nan"


@pytest.mark.parametrize("s", ["", "a", string.ascii_letters])
def test_pg_text_strings_are_verbatim(s):
    assert pg_text(s) == s
