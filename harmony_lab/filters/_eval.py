"""Evaluate postgres_changes filter conditions in Python with Postgres semantics (pure, no I/O).

This is the one meaning of a filter in the package: the embedded server evaluates subscriptions with
it, and a ``LiveFrame`` fed by a replay or any other stream evaluates its filter with it, so a filter
selects the same rows whatever the source.

Supabase Realtime evaluates every filter in SQL: ``'<row value>'::T OP '<filter value>'::T`` with ``T``
the column's type (``realtime.check_equality_op``). Doing that per change per subscriber costs a
round trip, so the common types are compared here instead, with the same results (tests use
Postgres as the oracle):

* integers, ``numeric`` (exactly, as :class:`~decimal.Decimal`), ``float4``/``float8`` (``NaN`` equal to
  itself and above everything, like Postgres), ``bool``, ``uuid``, ``date``, ``time``, ``timestamp``,
  ``timestamptz`` (instants; ``±infinity``), enums (by their sort order), ``text``/``varchar``/``name``
  and ``bpchar`` (trailing blanks ignored);
* ``like``/``ilike`` with a matcher linear in the text (:func:`~harmony_lab.filters.compile_like`);
  ``match``/``imatch`` only for fixed-length patterns (no quantifier, no alternation) translated to
  Python, which cannot backtrack without bound; every other regex is Postgres's to evaluate (its
  engine does not backtrack exponentially, and the hub bounds the query with a statement timeout);
* ``in`` with NULL items, ``isdistinct``, ``is null|true|false|unknown``, ``not.``; a NULL row value
  never satisfies a plain comparison (negated or not).

Whatever is not covered — other types, text ordering or case folding under a non-C collation with
non-ASCII data, regex features Python spells differently — evaluates to :data:`DEFER`: the server asks
Postgres (:func:`sql_check`) in one batched query; a client without a database uses the fallback of
:func:`client_predicate`.

Row and filter values arrive in ``to_jsonb`` rendering (what :class:`~harmony_lab.capture.types.Change`
carries and what the subscribe-time cast returns), so one converter serves both.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import re
import struct
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final

from harmony_lab.filters import Condition, compile_like, pg_regex_to_python

__all__ = [
    "DEFER",
    "ColumnType",
    "Predicate",
    "classify",
    "client_predicate",
    "compile_condition",
    "literal_value",
    "pg_text",
    "sql_check",
]


class _Defer:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFER"


DEFER: Final = _Defer()
"""Returned by a predicate that must be evaluated by Postgres."""

Tri = bool | None  # SQL three-valued result: None = NULL (not visible)
Predicate = Callable[[Any], Tri | _Defer]


def _null_else_defer(v: Any) -> Tri | _Defer:
    """Where Python cannot decide as Postgres would: NULL stays NULL, anything else asks Postgres."""
    return None if v is None else DEFER


def _null_distinct_else_defer(v: Any) -> Tri | _Defer:
    """``isdistinct`` where Python cannot decide: NULL is distinct from a value, the rest asks Postgres."""
    return True if v is None else DEFER


_INT_TYPES: Final = frozenset({"int2", "int4", "int8", "oid"})
_FLOAT_TYPES: Final = frozenset({"float4", "float8"})
_TEXT_TYPES: Final = frozenset({"text", "varchar", "name"})
_SIMPLE: Final = {
    "numeric": "numeric",
    "bool": "bool",
    "bpchar": "bpchar",
    "uuid": "uuid",
    "timestamptz": "timestamptz",
    "timestamp": "timestamp",
    "date": "date",
    "time": "time",
}
_C_COLLATIONS: Final = frozenset({"C", "POSIX"})

SQL_OPERATORS: Final = {
    "eq": "=",
    "neq": "<>",
    "lt": "<",
    "lte": "<=",
    "gt": ">",
    "gte": ">=",
    "like": "LIKE",
    "ilike": "ILIKE",
    "match": "~",
    "imatch": "~*",
}


@dataclasses.dataclass(frozen=True, slots=True)
class ColumnType:
    """What the evaluator needs to know about a column's type."""

    typname: str
    """``pg_type.typname`` (``int4``, ``_text``, an enum's name…)."""
    regtype: str
    """The type as SQL spells it (``format_type``): used in casts by the SQL fallback."""
    category: str
    """``int``, ``float``, ``numeric``, ``bool``, ``text``, ``bpchar``, ``uuid``, ``timestamptz``,
    ``timestamp``, ``date``, ``time``, ``enum`` or ``other`` (SQL only)."""
    c_collation: bool = True
    """Text compares by code point and folds case in ASCII only (collation ``C``/``POSIX``)."""
    enum_labels: tuple[str, ...] = ()


def classify(
    typname: str,
    regtype: str,
    *,
    typtype: str = "b",
    collation: str | None = None,
    enum_labels: Sequence[str] = (),
) -> ColumnType:
    """Build a :class:`ColumnType`. ``collation`` is the effective collation name (``None`` = C)."""
    if typtype == "e":
        category = "enum"
    elif typname in _INT_TYPES:
        category = "int"
    elif typname in _FLOAT_TYPES:
        category = "float"
    elif typname in _TEXT_TYPES:
        category = "text"
    else:
        category = _SIMPLE.get(typname, "other")
    c_coll = collation is None or collation in _C_COLLATIONS
    return ColumnType(typname, regtype, category, c_coll, tuple(enum_labels))


# --------------------------------------------------------------------------------------------
# value → comparison key


class _Unconvertible(Exception):
    pass


_POS_INF: Final = ("infinity", "+infinity")
_NEG_INF: Final = ("-infinity",)


def _ranked_time(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    def key(v: Any) -> Any:
        if not isinstance(v, str):
            raise _Unconvertible(v)
        low = v.lower()
        if low in _POS_INF:
            return (1, 0)
        if low in _NEG_INF:
            return (-1, 0)
        try:
            return (0, parse(v))
        except ValueError as exc:
            raise _Unconvertible(v) from exc

    return key


def _parse_timestamptz(v: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(v)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamptz without offset: {v!r}")
    return parsed


def _parse_timestamp(v: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(v)
    if parsed.tzinfo is not None:
        raise ValueError(f"timestamp with offset: {v!r}")
    return parsed


def _float_key(v: Any) -> Any:
    if isinstance(v, bool):
        raise _Unconvertible(v)
    try:
        f = float(v)
    except (TypeError, ValueError) as exc:
        raise _Unconvertible(v) from exc
    return (1, 0) if f != f else (0, f)


def _exact(v: Any) -> decimal.Decimal | None:
    """The exact value of a numeric the capture kept exact (a float subclass carrying ``.exact``)."""
    exact = getattr(v, "exact", None) if isinstance(v, float) else None
    return exact if isinstance(exact, decimal.Decimal) else None


def _numeric_key(v: Any) -> Any:
    if isinstance(v, bool):
        raise _Unconvertible(v)
    exact = _exact(v)
    if exact is not None:
        return (0, exact)
    try:
        d = decimal.Decimal(repr(v)) if isinstance(v, float) else decimal.Decimal(v)
    except (TypeError, ValueError, decimal.InvalidOperation) as exc:
        raise _Unconvertible(v) from exc
    return (1, 0) if d.is_nan() else (0, d)


def _int_key(v: Any) -> Any:
    if isinstance(v, bool):
        raise _Unconvertible(v)
    if isinstance(v, int):
        return v
    try:
        return int(v)
    except (TypeError, ValueError) as exc:
        raise _Unconvertible(v) from exc


def _bool_key(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    raise _Unconvertible(v)


def _text_key(v: Any) -> Any:
    if isinstance(v, str):
        return v
    raise _Unconvertible(v)


def _bpchar_key(v: Any) -> Any:
    if isinstance(v, str):
        return v.rstrip(" ")
    raise _Unconvertible(v)


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid_key(v: Any) -> Any:
    """The uuid's canonical text (lowercase, hyphenated): its order is the order of the uuids' bytes,
    as Postgres compares them. Values in that form already (what Postgres sends) are used as they are."""
    if type(v) is str and _CANONICAL_UUID.fullmatch(v):
        return v
    try:
        return str(uuid.UUID(str(v)))
    except ValueError as exc:
        raise _Unconvertible(v) from exc


def _time_key(v: Any) -> Any:
    if not isinstance(v, str):
        raise _Unconvertible(v)
    try:
        return dt.time.fromisoformat(v)
    except ValueError as exc:
        raise _Unconvertible(v) from exc


_KEYS: Final[dict[str, Callable[[Any], Any]]] = {
    "int": _int_key,
    "float": _float_key,
    "numeric": _numeric_key,
    "bool": _bool_key,
    "text": _text_key,
    "bpchar": _bpchar_key,
    "uuid": _uuid_key,
    "timestamptz": _ranked_time(_parse_timestamptz),
    "timestamp": _ranked_time(_parse_timestamp),
    "date": _ranked_time(dt.date.fromisoformat),
    "time": _time_key,
}


def _key_function(ctype: ColumnType) -> Callable[[Any], Any] | None:
    if ctype.category == "enum":
        order = {label: i for i, label in enumerate(ctype.enum_labels)}

        def enum_key(v: Any) -> Any:
            try:
                return order[v]
            except (KeyError, TypeError) as exc:
                raise _Unconvertible(v) from exc

        return enum_key
    return _KEYS.get(ctype.category)


# --------------------------------------------------------------------------------------------
# patterns


# --------------------------------------------------------------------------------------------
# predicates


def compile_condition(cond: Condition, ctype: ColumnType, canonical: Any = None) -> Predicate:
    """A predicate over one row value (``to_jsonb`` rendering; ``None`` = SQL NULL).

    ``canonical`` is the filter value cast to the column type by Postgres, in ``to_jsonb`` rendering
    (a list for ``in``); it is ignored for ``is``/``like``/``ilike``/``match``/``imatch``. The
    predicate returns ``True``, ``False``, ``None`` (SQL NULL: not visible) or :data:`DEFER`.
    """
    base = _compile_base(cond, ctype, canonical)
    if not cond.negate:
        return base

    def negated(v: Any) -> Tri | _Defer:
        r = base(v)
        if r is None or r is DEFER:
            return r
        return not r

    return negated


def _compile_base(cond: Condition, ctype: ColumnType, canonical: Any) -> Predicate:
    op = cond.op
    if op == "is":
        keyword = cond.value

        def is_(v: Any) -> Tri:
            if keyword is None or keyword == "unknown":
                return v is None
            if keyword == "true":
                return v is True
            return v is False

        return is_

    if op in ("like", "ilike"):
        return _compile_like(cond, ctype)
    if op in ("match", "imatch"):
        return _compile_match(cond, ctype)

    if op == "in" and not canonical and cond.value == ():
        return lambda v: False  # = any('{}') is false, even for NULL
    key = _key_function(ctype)
    if key is None:
        if op == "isdistinct":
            return _null_distinct_else_defer
        return _null_else_defer
    if ctype.category in ("text", "bpchar") and op in ("lt", "lte", "gt", "gte") and not ctype.c_collation:
        return _null_else_defer

    try:
        if op == "in":
            items = list(canonical or [])
            fkeys = [key(x) for x in items if x is not None]
            has_null = any(x is None for x in items)
        else:
            fkey = key(canonical)
    except _Unconvertible:
        if op == "isdistinct":
            return _null_distinct_else_defer
        return _null_else_defer

    if op == "in":

        def in_(v: Any) -> Tri | _Defer:
            if not items:
                return False  # = any('{}') is false even for NULL
            if v is None:
                return None
            try:
                k = key(v)
            except _Unconvertible:
                return DEFER
            if k in fkeys:
                return True
            return None if has_null else False

        return in_

    compare = _COMPARE[op]

    def cmp(v: Any) -> Tri | _Defer:
        if v is None:
            return True if op == "isdistinct" else None
        try:
            k = key(v)
        except _Unconvertible:
            return DEFER
        return compare(k, fkey)

    return cmp


_COMPARE: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "isdistinct": lambda a, b: a != b,
}


def _text_predicate(test: Callable[[str], bool], pattern: str, *, needs_ascii: bool) -> Predicate:
    """A pattern test on text: NULL is NULL; non-text values, and non-ASCII text where case folding or
    character classes depend on a collation Python does not know (``needs_ascii``), go to Postgres."""
    pattern_ascii = pattern.isascii()

    def predicate(v: Any) -> Tri | _Defer:
        if v is None:
            return None
        if not isinstance(v, str):
            return DEFER
        if needs_ascii and not (pattern_ascii and v.isascii()):
            return DEFER
        return test(v)

    return predicate


def _compile_like(cond: Condition, ctype: ColumnType) -> Predicate:
    if ctype.category != "text":
        return _null_else_defer
    pattern = str(cond.value)
    insensitive = cond.op == "ilike"
    try:
        test = compile_like(pattern, fold=insensitive)
    except ValueError:
        return _null_else_defer
    return _text_predicate(test, pattern, needs_ascii=insensitive and not ctype.c_collation)


def _compile_match(cond: Condition, ctype: ColumnType) -> Predicate:
    if ctype.category != "text":
        return _null_else_defer
    pattern = str(cond.value)
    translated = pg_regex_to_python(pattern, fixed_length=True)
    if translated is None:
        return _null_else_defer  # quantifiers, alternation, other features: Postgres decides
    flags = re.DOTALL | re.ASCII | (re.IGNORECASE if cond.op == "imatch" else 0)
    rx = re.compile(translated, flags)

    def search(text: str) -> bool:
        return rx.search(text) is not None

    return _text_predicate(search, pattern, needs_ascii=not ctype.c_collation)


# --------------------------------------------------------------------------------------------
# SQL fallback


def pg_text(value: Any) -> str | None:
    """A JSON row value as the text Postgres casts to the column type (``value #>> '{}'``).

    Lists become array literals (the real server would fail on JSON arrays here; this does better).
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return _array_literal(value)
    exact = _exact(value)
    if exact is not None:
        return str(exact)
    if isinstance(value, float):
        return repr(value) if value == value and value not in (float("inf"), float("-inf")) else str(value)
    return json.dumps(value, ensure_ascii=False)


def _array_literal(items: list[Any]) -> str:
    parts = []
    for item in items:
        if item is None:
            parts.append("NULL")
        elif isinstance(item, list):
            parts.append(_array_literal(item))
        else:
            text = pg_text(item) or ""
            parts.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(parts) + "}"


def sql_check(cond: Condition, regtype: str) -> str:
    """SQL (two text parameters: row value, filter value) returning the condition's boolean.

    ``regtype`` must come from ``format_type`` (safe to interpolate).
    """
    op = cond.op
    if op == "is":
        keyword = "NULL" if cond.value is None else str(cond.value).upper()
        verb = "IS NOT" if cond.negate else "IS"
        # the filter value parameter is unused: is takes a keyword
        return f"(cast(%s::text as {regtype}) {verb} {keyword} or (%s::text is null and false))"
    if op == "isdistinct":
        verb = "IS NOT DISTINCT FROM" if cond.negate else "IS DISTINCT FROM"
        return f"cast(%s::text as {regtype}) {verb} cast(%s::text as {regtype})"
    if op == "in":
        expr = f"cast(%s::text as {regtype}) = any(cast(%s::text as {regtype}[]))"
    else:
        expr = f"cast(%s::text as {regtype}) {SQL_OPERATORS[op]} (cast(%s::text as {regtype}))"
    return f"not ({expr})" if cond.negate else f"({expr})"


# --------------------------------------------------------------------------------------------
# filter literals, as Postgres reads them


_BOOL_WORDS: Final = (("true", True), ("false", False), ("yes", True), ("no", False))


def _bool_literal(text: str) -> bool:
    """``boolin``: true/false/yes/no and their prefixes, on/off, 1/0, any case, blanks around."""
    s = text.strip().lower()
    if s in ("1", "on"):
        return True
    if s in ("0", "of", "off"):
        return False
    for word, value in _BOOL_WORDS:
        if s and word.startswith(s):
            return value
    raise _Unconvertible(text)


def _datetime_literal(text: str) -> dt.datetime:
    s = text.strip()
    if s[-4:].lower() == " utc":
        s = s[:-4] + "+00:00"
    try:
        return dt.datetime.fromisoformat(s)
    except ValueError as exc:
        raise _Unconvertible(text) from exc


def _as_float4(value: float) -> float:
    """A float rounded to ``float4`` as ``to_jsonb`` renders it (the shortest text that round-trips)."""
    if value != value or value in (float("inf"), float("-inf")):
        return value
    (single,) = struct.unpack("f", struct.pack("f", value))  # OverflowError beyond float4's range
    for digits in range(1, 10):
        shortest = float(f"{single:.{digits}g}")
        if struct.unpack("f", struct.pack("f", shortest))[0] == single:
            return shortest
    return single


def literal_value(text: str | None, ctype: ColumnType) -> Any:
    """A filter literal as Postgres casts it to the column's type, in ``to_jsonb`` rendering.

    What the server gets from Postgres at subscribe time, computed without a database for the common
    input forms (ISO dates and times; a timestamp without offset is UTC, the session time zone
    Supabase uses). Raises ``ValueError`` for a literal Postgres would reject or that is spelled in a
    form this does not read.
    """
    if text is None:
        return None
    category = ctype.category
    try:
        if category == "int":
            return int(text.strip())
        if category == "float":
            value = float(text.strip())
            return _as_float4(value) if ctype.typname == "float4" else value
        if category == "numeric":
            decimal.Decimal(text.strip())
            return text.strip()
        if category == "bool":
            return _bool_literal(text)
        if category in ("timestamptz", "timestamp", "date"):
            low = text.strip().lower()
            if low in _POS_INF or low in _NEG_INF:
                return low
            parsed = _datetime_literal(text)
            if category == "timestamptz":
                return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).isoformat()
            if category == "timestamp":
                return parsed.replace(tzinfo=None).isoformat()
            return parsed.date().isoformat()
        if category == "time":
            return dt.time.fromisoformat(text.strip()).isoformat()
        if category == "uuid":
            return str(uuid.UUID(text.strip()))
    except (ValueError, OverflowError, decimal.InvalidOperation, _Unconvertible) as exc:
        raise ValueError(f"{text!r} is not a valid {ctype.regtype}") from exc
    return text


def _canonical(cond: Condition, ctype: ColumnType) -> Any:
    if cond.op == "in":
        assert isinstance(cond.value, tuple)
        return [literal_value(item, ctype) for item in cond.value]
    if cond.op in ("is", "like", "ilike", "match", "imatch"):
        return None
    return literal_value(None if cond.value is None else str(cond.value), ctype)


def client_predicate(cond: Condition, ctype: ColumnType) -> Callable[[Any], Tri]:
    """A predicate with the server's meaning for a process that has no database to defer to.

    :func:`compile_condition` decides everything it can; where it would defer to Postgres the
    fallback is: a regular expression runs as its full Python translation (the caller refuses one that
    has none), ``like``/``ilike`` on a non-text column test the value's text form, and comparisons on a
    type Python does not model compare the text forms (``eq``, ``in`` and ``isdistinct`` are exact
    for every type whose text form is canonical, which is the case for the values ``to_jsonb``
    renders). A literal the column's type cannot hold compares as text too.
    """
    try:
        canonical = _canonical(cond, ctype)
    except ValueError:
        ctype = classify("text", "text")
        canonical = _canonical(cond, ctype)
    fast = compile_condition(cond, ctype, canonical)
    slow = _fallback(cond)

    def predicate(v: Any) -> Tri:
        r = fast(v)
        if r is DEFER:
            r = slow(v)
            if cond.negate and r is not None:
                r = not r
        assert not isinstance(r, _Defer)
        return r

    return predicate


def _fallback(cond: Condition) -> Callable[[Any], Tri]:
    """The un-negated base condition on the value's text form."""
    op = cond.op
    if op in ("match", "imatch"):
        translated = pg_regex_to_python(str(cond.value))
        if translated is None:
            raise ValueError(f"the regular expression {cond.value!r} has no Python translation")
        flags = re.DOTALL | re.ASCII | (re.IGNORECASE if op == "imatch" else 0)
        rx = re.compile(translated, flags)

        def search(v: Any) -> Tri:
            text = pg_text(v)
            return None if text is None else rx.search(text) is not None

        return search
    if op in ("like", "ilike"):
        like = compile_like(str(cond.value), fold=op == "ilike")

        def like_(v: Any) -> Tri:
            text = pg_text(v)
            return None if text is None else like(text)

        return like_
    if op == "in":
        assert isinstance(cond.value, tuple)
        items = [item for item in cond.value if item is not None]
        has_null = len(items) != len(cond.value)

        def in_(v: Any) -> Tri:
            text = pg_text(v)
            if text is None:
                return None
            return True if text in items else (None if has_null else False)

        return in_
    literal = str(cond.value)
    compare = _COMPARE.get(op)

    def cmp(v: Any) -> Tri:
        text = pg_text(v)
        if text is None:
            return True if op == "isdistinct" else None
        return None if compare is None else compare(text, literal)

    return cmp
