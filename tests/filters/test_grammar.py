"""harmony_lab.filters: the Realtime filter grammar (pure; no server needed)."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harmony_lab.filters import (
    MAX_IN_VALUES,
    OPERATORS,
    Condition,
    F,
    Filter,
    FilterError,
    format_filter,
    parse_filter,
)

C = Condition


@pytest.mark.parametrize("text", [None, "", "   ", "\t\n"])
def test_empty_filter_is_no_condition(text):
    assert parse_filter(text) == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id=eq.1", C("id", "eq", "1")),
        ("id=neq.1", C("id", "neq", "1")),
        ("id=lt.1", C("id", "lt", "1")),
        ("id=lte.1", C("id", "lte", "1")),
        ("id=gt.1", C("id", "gt", "1")),
        ("id=gte.1", C("id", "gte", "1")),
        ("id=in.(1,2,3)", C("id", "in", ("1", "2", "3"))),
        ("name=like.ab%", C("name", "like", "ab%")),
        ("name=ilike.AB_", C("name", "ilike", "AB_")),
        ("deleted_at=is.null", C("deleted_at", "is", None)),
        ("flag=is.true", C("flag", "is", "true")),
        ("flag=is.false", C("flag", "is", "false")),
        ("flag=is.unknown", C("flag", "is", "unknown")),
        ("name=match.^a.*z$", C("name", "match", "^a.*z$")),
        ("name=imatch.^A", C("name", "imatch", "^A")),
        ("x=isdistinct.5", C("x", "isdistinct", "5")),
        ("id=not.eq.5", C("id", "eq", "5", negate=True)),
        ("deleted_at=not.is.null", C("deleted_at", "is", None, negate=True)),
        ("id=not.in.(1,2)", C("id", "in", ("1", "2"), negate=True)),
        # values keep dots and equals signs after the first ones
        ("v=eq.1.5", C("v", "eq", "1.5")),
        ("v=eq.a=b", C("v", "eq", "a=b")),
        ("v=eq.", C("v", "eq", "")),
        # quoting
        ('v=eq."a,b"', C("v", "eq", "a,b")),
        (r'v=eq."a\"b\\c"', C("v", "eq", 'a"b\\c')),
        ('v=eq."abc', C("v", "eq", '"abc')),  # not one quoted string: kept verbatim
        ('v=eq."a"b', C("v", "eq", '"a"b')),
        ("v=eq. spaced", C("v", "eq", " spaced")),
        # in: array literal rules
        ("id=in.( 1 , 2 )", C("id", "in", ("1", "2"))),
        ('k=in.("a,b",c)', C("k", "in", ("a,b", "c"))),
        ('k=in.(NULL,null,"NULL")', C("k", "in", (None, None, "NULL"))),
        ("k=in.(a b)", C("k", "in", ("a b",))),
        ("k=in.()", C("k", "in", ())),
        (r"k=in.(a\,b)", C("k", "in", ("a,b",))),
    ],
)
def test_parse_single_condition(text, expected):
    assert parse_filter(text) == (expected,)


def test_comma_is_and_and_whitespace_is_trimmed():
    assert parse_filter("  id=gt.0 , id=lt.100  ") == (C("id", "gt", "0"), C("id", "lt", "100"))
    assert parse_filter('a=eq."x,y",b=in.(1,2),c=eq.z') == (
        C("a", "eq", "x,y"),
        C("b", "in", ("1", "2")),
        C("c", "eq", "z"),
    )


def test_parentheses_protect_commas_like_the_real_server():
    # An unbalanced "(" in an unquoted value swallows the following commas (as in Supabase).
    assert parse_filter("a=eq.x(,b=eq.1") == (C("a", "eq", "x(,b=eq.1"),)


@pytest.mark.parametrize(
    ("text", "reason", "stage"),
    [
        ("undefined", '["undefined"]', "parse"),
        ("subject=foo.hey", '["foo", "hey"]', "parse"),
        ("id=eq", '["eq"]', "parse"),
        ("id=not.eq", '["eq"]', "parse"),
        ('s=bad."q"', '["bad", "\\"q\\""]', "parse"),
        ("id=in.1,2", "`in` filter value must be wrapped by parentheses", "parse"),
        ("id=in.(1,2", "`in` filter value must be wrapped by parentheses", "parse"),
        ("a=eq.1,,b=eq.2", "filter must not contain empty segments (check for extra commas)", "parse"),
        ("a=eq.1,", "filter must not contain empty segments (check for extra commas)", "parse"),
        ("a=is.NULL", "invalid value for is filter: must be null, true, false, or unknown", "check"),
        ("a=is.yes", "invalid value for is filter: must be null, true, false, or unknown", "check"),
        ("=eq.1", "invalid column for filter ", "check"),
        ("a=in.(1,,2)", 'malformed array literal: "{1,,2}"', "check"),
        ("a=in.({1},2)", 'malformed array literal: "{{1},2}"', "check"),
        ('a=in.(x"y)', 'malformed array literal: "{x"y}"', "check"),
        (
            "a=in.(" + ",".join(str(i) for i in range(MAX_IN_VALUES + 1)) + ")",
            "too many values for `in` filter. Maximum 100",
            "check",
        ),
    ],
)
def test_errors_carry_the_real_server_reason(text, reason, stage):
    with pytest.raises(FilterError) as info:
        parse_filter(text)
    err = info.value
    assert err.reason == reason
    assert err.stage == stage
    message = str(err)
    assert repr(text) in message  # names the bad filter
    assert "column=op.value" in message
    assert "id=in.(1,2,3)" in message  # and the valid forms
    assert "is takes null, true, false or unknown" in message


def test_hundred_in_values_are_fine():
    text = "a=in.(" + ",".join(str(i) for i in range(MAX_IN_VALUES)) + ")"
    (cond,) = parse_filter(text)
    assert len(cond.value) == MAX_IN_VALUES


def test_non_string_filter_is_an_error():
    with pytest.raises(FilterError, match="must be a string"):
        parse_filter(42)  # type: ignore[arg-type]


def test_builder_matches_the_brief_example():
    f = F.eq("channel_id", 42) & F.in_("kind", ["text", "dm"]) & ~F.is_("deleted_at", None)
    assert isinstance(f, Filter)
    assert str(f) == "channel_id=eq.42,kind=in.(text,dm),deleted_at=not.is.null"
    assert parse_filter(str(f)) == tuple(f)


def test_builder_value_rendering():
    when = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    uid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert str(F.gte("at", when)) == "at=gte.2025-01-02T03:04:05+00:00"
    assert str(F.eq("ok", True)) == "ok=eq.true"
    assert str(F.eq("id", uid)) == f"id=eq.{uid}"
    assert str(F.lt("n", decimal.Decimal("1.50"))) == "n=lt.1.50"
    assert str(F.is_("ok", False)) == "ok=is.false"
    assert str(F.is_("ok", "unknown")) == "ok=is.unknown"
    assert str(F.like("name", "a%")) == "name=like.a%"
    assert str(F.ilike("name", "A%")) == "name=ilike.A%"
    assert str(F.match("name", "^a")) == "name=match.^a"
    assert str(F.imatch("name", "^a")) == "name=imatch.^a"
    assert str(F.isdistinct("n", 3)) == "n=isdistinct.3"
    assert str(F.neq("n", 3)) == "n=neq.3"
    assert str(F.lte("n", 3.5)) == "n=lte.3.5"
    assert str(F.gt("n", 3)) == "n=gt.3"
    assert str(F.eq("s", "a, b")) == 's=eq."a, b"'
    assert str(F.in_("s", ["a b", None, "NULL", ""])) == 's=in.("a b",NULL,"NULL","")'
    assert str(~~F.eq("n", 1)) == "n=eq.1"


def test_builder_rejects_bad_input_helpfully():
    with pytest.raises(FilterError, match="iterable"):
        F.in_("kind", "text")
    with pytest.raises(FilterError, match="at most 100"):
        F.in_("id", range(101))
    with pytest.raises(FilterError, match="cannot use"):
        F.eq("x", object())  # type: ignore[arg-type]
    with pytest.raises(FilterError, match="unknown operator"):
        Condition("x", "between", "1")
    with pytest.raises(FilterError, match="is takes"):
        Condition("x", "is", "maybe")
    with pytest.raises(FilterError, match="cannot be written"):
        str(Condition("a,b", "eq", "1"))


def test_format_filter_rejects_non_conditions():
    with pytest.raises(TypeError):
        format_filter(["id=eq.1"])  # type: ignore[list-item]


def test_wire_value():
    assert C("id", "in", ("1", None, "a b")).wire_value == '{1,NULL,"a b"}'
    assert C("d", "is", None).wire_value == "null"
    assert C("d", "eq", "x,y").wire_value == "x,y"


# --------------------------------------------------------------------------------------------
# round trip

columns = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,15}", fullmatch=True)
plain_ops = [op for op in OPERATORS if op not in ("in", "is")]


@st.composite
def conditions(draw):
    column = draw(columns)
    negate = draw(st.booleans())
    kind = draw(st.sampled_from(["plain", "in", "is"]))
    if kind == "in":
        items = draw(st.lists(st.one_of(st.none(), st.text(max_size=8)), max_size=6))
        return Condition(column, "in", tuple(items), negate)
    if kind == "is":
        return Condition(column, "is", draw(st.sampled_from([None, "true", "false", "unknown"])), negate)
    return Condition(column, draw(st.sampled_from(plain_ops)), draw(st.text(max_size=12)), negate)


@settings(max_examples=600)
@given(st.lists(conditions(), min_size=1, max_size=5))
def test_round_trip(conds):
    text = format_filter(conds)
    assert parse_filter(text) == tuple(conds)


@settings(max_examples=400)
@given(st.text(max_size=40))
def test_parse_never_crashes_on_junk(text):
    error: FilterError | None = None
    try:
        result = parse_filter(text)
    except FilterError as err:
        error = err
        result = ()
    if error is not None:
        assert error.stage in ("parse", "check")
        assert error.reason
    # whatever parses formats back to an equivalent filter
    kept = tuple(c for c in result if _formattable(c))
    assert parse_filter(format_filter(kept)) == kept


def _formattable(cond: Condition) -> bool:
    return not any(ch in cond.column for ch in '=,()"') and cond.column == cond.column.strip()
