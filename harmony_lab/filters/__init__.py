"""Supabase Realtime ``postgres_changes`` filter strings: parse, validate, format, build.

Pure functions, no I/O. The embedded server parses bindings with :func:`parse_filter`; the client-side
connection manager validates filters with it before joining, so a typo fails in the notebook cell that
made it instead of as a ``system`` error after the join.

The syntax is the one Supabase Realtime (2.129) accepts::

    column=op.value                       op: eq neq lt lte gt gte in like ilike is match imatch isdistinct
    column=not.op.value                   negation
    a=eq.1,b=gt.2                         top-level commas are AND (commas inside (...) or "..." don't split)
    id=in.(1,2,"a,b")                     in: parentheses, a Postgres array literal, at most 100 values
    deleted_at=is.null                    is: null, true, false or unknown
    name=eq."a, b"                        double-quoted values are unquoted, backslash escapes

>>> str(F.eq("channel_id", 42) & F.in_("kind", ["text", "dm"]) & ~F.is_("deleted_at", None))
'channel_id=eq.42,kind=in.(text,dm),deleted_at=not.is.null'
>>> [str(c) for c in parse_filter("id=gt.0, id=lt.100")]
['id=gt.0', 'id=lt.100']
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Final, Literal

__all__ = [
    "DEFER",
    "IS_KEYWORDS",
    "MAX_IN_VALUES",
    "OPERATORS",
    "ColumnType",
    "Condition",
    "F",
    "Filter",
    "FilterError",
    "Predicate",
    "ascii_lower",
    "classify",
    "client_predicate",
    "compile_condition",
    "compile_like",
    "format_filter",
    "literal_value",
    "parse_filter",
    "pg_regex_to_python",
    "pg_text",
    "sql_check",
]

OPERATORS: Final = (
    "eq",
    "neq",
    "lt",
    "lte",
    "gt",
    "gte",
    "in",
    "like",
    "ilike",
    "is",
    "match",
    "imatch",
    "isdistinct",
)
IS_KEYWORDS: Final = ("null", "true", "false", "unknown")
MAX_IN_VALUES: Final = 100

VALID_FORMS: Final = (
    "valid forms: column=op.value with op one of " + ", ".join(OPERATORS) + "; "
    "negate with not. (id=not.eq.5); combine with commas for AND (a=eq.1,b=gt.2); "
    "in needs parentheses: id=in.(1,2,3) (at most 100 values); "
    "is takes null, true, false or unknown (deleted_at=is.null); "
    'double-quote values containing commas or parentheses: name=eq."a, b"'
)

Stage = Literal["parse", "check"]
InValue = tuple[str | None, ...]


def compile_like(pattern: str, *, fold: bool = False) -> Callable[[str], bool]:
    """A test ``text LIKE pattern`` (escape ``\\``) in time linear in ``len(text)`` per pattern character.

    ``fold`` makes it ``ILIKE`` with ASCII case folding (what Postgres does under the C collation):
    the pattern and the text are lower-cased in ASCII only. No regex translation: a pattern such as
    ``%a%a%a%a%b`` would make a backtracking engine take exponential time on hostile text. The
    pattern splits at ``%`` into fixed-length pieces (literals and ``_``); the first must match at
    the start, the last at the end, and the others, in order, at their leftmost places between —
    leftmost is always right, since ``%`` absorbs whatever lies between two pieces.

    Raises ValueError, with Postgres's message, for a pattern ending in the escape character.
    Shared by the server's filter evaluator and ``LiveFrame``'s client-side filters.
    """
    if fold:
        pattern = ascii_lower(pattern)
    pieces: list[list[str]] = [[]]  # regex atoms of each %-separated piece
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise ValueError("LIKE pattern must not end with escape character")
            pieces[-1].append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "%":
            pieces.append([])
        elif ch == "_":
            pieces[-1].append(".")
        else:
            pieces[-1].append(re.escape(ch))
        i += 1
    # each piece is a fixed-length regex: searching it costs O(len(text) * len(piece)), no backtracking
    compiled = [(re.compile("".join(atoms), re.DOTALL), len(atoms)) for atoms in pieces]
    first, first_len = compiled[0]
    if len(compiled) == 1:

        def exact(text: str) -> bool:
            if fold:
                text = ascii_lower(text)
            return len(text) == first_len and first.fullmatch(text) is not None

        return exact
    last, last_len = compiled[-1]
    middle = [(rx, size) for rx, size in compiled[1:-1] if size]

    def like(text: str) -> bool:
        if fold:
            text = ascii_lower(text)
        end = len(text) - last_len
        if end < first_len or first.match(text) is None or last.fullmatch(text, end) is None:
            return False
        pos = first_len
        for rx, size in middle:
            if end - pos < size:
                return False
            m = rx.search(text, pos, end)
            if m is None:
                return False
            pos = m.end()
        return True

    return like


_ASCII_LOWER: Final = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def ascii_lower(s: str) -> str:
    """``s`` with A-Z lower-cased and every other character kept (case folding of the C collation)."""
    return s.translate(_ASCII_LOWER)


_BOUND = re.compile(r"\{(\d+)(,(\d*))?\}")
_CLASS_ESCAPES: Final = frozenset("dDwWsS")
_CONTROL_ESCAPES: Final = frozenset("ntrfv")


def pg_regex_to_python(pattern: str, *, fixed_length: bool = False) -> str | None:
    """Translate a Postgres ARE into an equivalent Python regex for ``re.search``, or ``None``.

    Covers literals, ``. * + ? *? +? ?? {m} {m,} {m,n}``, alternation, groups (``(…)``, ``(?:…)``),
    ``^``/``$`` (whole-string anchors, as Postgres has no newline sensitivity by default),
    bracket expressions without POSIX classes, ``\\d \\w \\s`` (and negations) and escaped punctuation.
    Anything else (back references, lookaround, ``\\m \\y``, ``[[:alpha:]]``, directors…) → ``None``.
    Use with ``re.DOTALL | re.ASCII`` (plus ``re.IGNORECASE`` for ``imatch``).

    ``fixed_length=True`` also returns ``None`` for any quantifier or alternation: what is left
    matches a fixed number of characters, so Python's backtracking engine searches it in
    O(len(text) × len(pattern)) — safe for hostile text. Everything else belongs to an engine
    without exponential backtracking (Postgres's).
    """
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                return None
            nxt = pattern[i + 1]
            if nxt in _CLASS_ESCAPES or nxt in _CONTROL_ESCAPES:
                out.append("\\" + nxt)
            elif nxt.isascii() and not nxt.isalnum():
                out.append(re.escape(nxt))
            else:
                return None
            i += 2
        elif ch == "[":
            j = i + 1
            body: list[str] = ["["]
            if j < n and pattern[j] == "^":
                body.append("^")
                j += 1
            if j < n and pattern[j] == "]":
                body.append("\\]")
                j += 1
            closed = False
            while j < n:
                c = pattern[j]
                if c == "]":
                    closed = True
                    j += 1
                    break
                if c == "[":
                    return None
                if c == "\\":
                    if j + 1 >= n:
                        return None
                    nxt = pattern[j + 1]
                    if nxt in "dws":
                        body.append("\\" + nxt)
                    elif nxt.isascii() and not nxt.isalnum():
                        body.append(re.escape(nxt))
                    else:
                        return None
                    j += 2
                    continue
                body.append("\\-" if c == "-" and (j + 1 < n and pattern[j + 1] == "]") else c)
                j += 1
            if not closed:
                return None
            inner = "".join(body[1:])
            if any(op in inner for op in ("&&", "||", "~~", "--")):
                return None
            out.append("".join(body) + "]")
            i = j
        elif ch == "(":
            if pattern.startswith("(?:", i):
                out.append("(?:")
                i += 3
            elif pattern.startswith("(?", i):
                return None
            else:
                out.append("(")
                i += 1
        elif ch == "{":
            if fixed_length:
                return None
            m = _BOUND.match(pattern, i)
            if m is None:
                return None
            out.append(m.group(0))
            i = m.end()
        elif ch == "$":
            out.append(r"\Z")
            i += 1
        elif ch in ")|*+?.^":
            if fixed_length and ch in "|*+?":
                return None
            out.append(ch)
            i += 1
        else:
            out.append(re.escape(ch))
            i += 1
    translated = "".join(out)
    try:
        re.compile(translated, re.DOTALL | re.ASCII)
    except re.error:
        return None
    return translated


class FilterError(ValueError):
    """A filter string (or a :class:`Condition`) is invalid.

    ``str(error)`` names the bad part and the valid forms. ``reason`` is what Supabase Realtime itself
    says about it, and ``stage`` tells where the real server notices: ``"parse"`` (it answers
    ``Error parsing `filter` params: <reason>``) or ``"check"`` (its subscription trigger raises
    ``<reason>`` inside Postgres).
    """

    def __init__(
        self, detail: str, *, reason: str, stage: Stage, text: str | None = None, part: str = ""
    ) -> None:
        self.detail = detail
        self.reason = reason
        self.stage: Stage = stage
        self.text = text
        self.part = part
        where = f" (at {part!r})" if part and part != text else ""
        source = f"invalid filter {text!r}" if text is not None else "invalid filter"
        super().__init__(f"{source}: {detail}{where}. {VALID_FORMS}")


# --------------------------------------------------------------------------------------------
# Conditions


@dataclasses.dataclass(frozen=True, slots=True)
class Condition:
    """One ``column=[not.]op.value`` term.

    ``value`` is the unquoted text for most operators, a tuple for ``in`` (an unquoted ``NULL`` item
    of the array literal is ``None``), and for ``is`` one of ``"true"``, ``"false"``, ``"unknown"``,
    or ``None`` for ``is.null``.
    """

    column: str
    op: str
    value: str | InValue | None
    negate: bool = False

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise FilterError(
                f"unknown operator {self.op!r}",
                reason=_inspect_list([self.op, _display(self.value)]),
                stage="parse",
            )
        if not isinstance(self.column, str):
            raise FilterError(
                f"column must be a string, got {self.column!r}", reason="invalid column", stage="check"
            )
        if self.column == "":
            raise FilterError("empty column name", reason="invalid column for filter ", stage="check")
        if self.op == "in":
            if isinstance(self.value, list):
                object.__setattr__(self, "value", tuple(self.value))
            if not isinstance(self.value, tuple) or not all(
                v is None or isinstance(v, str) for v in self.value
            ):
                raise FilterError(
                    f"in takes a tuple of strings (or None for NULL items), got {self.value!r}",
                    reason="`in` filter value must be wrapped by parentheses",
                    stage="parse",
                )
            if len(self.value) > MAX_IN_VALUES:
                raise FilterError(
                    f"{len(self.value)} values for in on {self.column!r}; at most {MAX_IN_VALUES}",
                    reason="too many values for `in` filter. Maximum 100",
                    stage="check",
                )
        elif self.op == "is":
            if self.value is not None and self.value not in IS_KEYWORDS[1:]:
                raise FilterError(
                    f"is takes null, true, false or unknown, got {self.value!r}",
                    reason="invalid value for is filter: must be null, true, false, or unknown",
                    stage="check",
                )
        elif not isinstance(self.value, str):
            raise FilterError(
                f"{self.op} takes a string value, got {self.value!r}",
                reason=f"invalid value for {self.op} filter",
                stage="check",
            )

    @property
    def wire_value(self) -> str:
        """The value as the real server stores it (``in`` → ``{a,b}``, ``is.null`` → ``null``)."""
        if self.op == "in":
            assert isinstance(self.value, tuple)
            return "{" + ",".join(_format_array_item(v) for v in self.value) + "}"
        if self.op == "is":
            return "null" if self.value is None else str(self.value)
        assert isinstance(self.value, str)
        return self.value

    def __str__(self) -> str:
        prefix = "not." if self.negate else ""
        if self.op == "in":
            assert isinstance(self.value, tuple)
            value = "(" + ",".join(_format_array_item(v) for v in self.value) + ")"
        elif self.op == "is":
            value = "null" if self.value is None else str(self.value)
        else:
            assert isinstance(self.value, str)
            value = _quote_value(self.value)
        return f"{_check_column_formattable(self.column)}={prefix}{self.op}.{value}"

    def __invert__(self) -> Condition:
        return dataclasses.replace(self, negate=not self.negate)

    def __and__(self, other: Condition | Filter) -> Filter:
        return Filter((self,)) & other


@dataclasses.dataclass(frozen=True, slots=True)
class Filter:
    """Conditions ANDed together; ``str()`` gives the wire form."""

    conditions: tuple[Condition, ...] = ()

    def __and__(self, other: Condition | Filter) -> Filter:
        if isinstance(other, Condition):
            return Filter((*self.conditions, other))
        if isinstance(other, Filter):
            return Filter(self.conditions + other.conditions)
        return NotImplemented

    def __rand__(self, other: Condition) -> Filter:
        if isinstance(other, Condition):
            return Filter((other, *self.conditions))
        return NotImplemented

    def __iter__(self) -> Iterator[Condition]:
        return iter(self.conditions)

    def __len__(self) -> int:
        return len(self.conditions)

    def __str__(self) -> str:
        return format_filter(self.conditions)


# --------------------------------------------------------------------------------------------
# Parsing


def parse_filter(text: str | None) -> tuple[Condition, ...]:
    """Parse a Realtime filter string into conditions (AND). ``None``/empty/whitespace → ``()``.

    Raises :class:`FilterError` for anything the real server rejects at parse time or in its
    subscription check that needs no knowledge of the table (``in`` arity and array syntax, ``is``
    keywords, empty column names). Column existence and value types are checked by the server.
    """
    if text is None:
        return ()
    if not isinstance(text, str):
        raise FilterError(
            f"filter must be a string, got {type(text).__name__}",
            reason=_inspect_list([repr(text)]),
            stage="parse",
        )
    trimmed = text.strip()
    if not trimmed:
        return ()
    return tuple(_parse_segment(segment, text) for segment in _split_top_level(trimmed))


def format_filter(conditions: Iterable[Condition]) -> str:
    """The wire form of ``conditions`` (ANDed); ``parse_filter(format_filter(c)) == tuple(c)``."""
    parts = []
    for cond in conditions:
        if not isinstance(cond, Condition):
            raise TypeError(f"format_filter takes Condition objects, got {cond!r}")
        parts.append(str(cond))
    return ",".join(parts)


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses and double quotes (quotes open only after ``.``, ``(``, ``,``)."""
    segments: list[str] = []
    current: list[str] = []
    depth = 0
    quoted = False
    prev = ""
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if quoted:
            if ch == "\\" and i + 1 < n:
                current.append(text[i : i + 2])
                prev = text[i + 1]
                i += 2
                continue
            current.append(ch)
            if ch == '"':
                quoted = False
            prev = ch
        elif ch == '"' and prev in (".", "(", ","):
            quoted = True
            current.append(ch)
            prev = ch
        elif ch == "(":
            depth += 1
            current.append(ch)
            prev = ch
        elif ch == ")":
            depth = max(0, depth - 1)
            current.append(ch)
            prev = ch
        elif ch == "," and depth == 0:
            segments.append("".join(current))
            current = []
            prev = ""
        else:
            current.append(ch)
            prev = ch
        i += 1
    segments.append("".join(current))
    return segments


def _parse_segment(segment: str, text: str) -> Condition:
    trimmed = segment.strip()
    if not trimmed:
        raise FilterError(
            "empty segment (check for extra commas)",
            reason="filter must not contain empty segments (check for extra commas)",
            stage="parse",
            text=text,
        )
    column, eq, rest = trimmed.partition("=")
    if not eq:
        raise FilterError(
            "expected column=op.value",
            reason=_inspect_list([trimmed]),
            stage="parse",
            text=text,
            part=trimmed,
        )
    negate = rest.startswith("not.")
    op_value = rest[4:] if negate else rest
    op, dot, raw = op_value.partition(".")
    if not dot:
        raise FilterError(
            f"expected op.value after '=', got {op_value!r}",
            reason=_inspect_list([op_value]),
            stage="parse",
            text=text,
            part=trimmed,
        )
    if op not in OPERATORS:
        raise FilterError(
            f"unknown operator {op!r}",
            reason=_inspect_list([op, raw]),
            stage="parse",
            text=text,
            part=trimmed,
        )
    value: str | InValue | None
    if op == "in":
        if not (len(raw) >= 2 and raw.startswith("(") and raw.endswith(")")):
            raise FilterError(
                "in needs parentheses, e.g. id=in.(1,2,3)",
                reason="`in` filter value must be wrapped by parentheses",
                stage="parse",
                text=text,
                part=trimmed,
            )
        value = _parse_array_items(raw[1:-1], text=text, part=trimmed)
    else:
        value = _unquote(raw)
        if op == "is":
            if value not in IS_KEYWORDS:
                raise FilterError(
                    f"is takes null, true, false or unknown (lower case), got {value!r}",
                    reason="invalid value for is filter: must be null, true, false, or unknown",
                    stage="check",
                    text=text,
                    part=trimmed,
                )
            value = None if value == "null" else value
    if column == "":
        raise FilterError(
            "empty column name", reason="invalid column for filter ", stage="check", text=text, part=trimmed
        )
    try:
        return Condition(column, op, value, negate)
    except FilterError as exc:
        raise FilterError(exc.detail, reason=exc.reason, stage=exc.stage, text=text, part=trimmed) from None


def _unquote(raw: str) -> str:
    """``"a\\"b"`` → ``a"b``; a value that is not exactly one quoted string is kept as is."""
    if not raw.startswith('"'):
        return raw
    out: list[str] = []
    i = 1
    n = len(raw)
    while i < n:
        ch = raw[i]
        if ch == '"':
            return "".join(out) if i == n - 1 else raw
        if ch == "\\" and i + 1 < n:
            out.append(raw[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return raw


def _parse_array_items(inner: str, *, text: str, part: str) -> InValue:
    """Items of a one-dimensional Postgres array literal body (what ``in.(…)`` becomes: ``{…}``)."""

    def malformed(why: str) -> FilterError:
        return FilterError(
            f"malformed in list ({why})",
            reason=f'malformed array literal: "{{{inner}}}"',
            stage="check",
            text=text,
            part=part,
        )

    items: list[str | None] = []
    i = 0
    n = len(inner)
    if not inner.strip():
        return ()
    while True:
        while i < n and inner[i].isspace():
            i += 1
        if i >= n:
            raise malformed("empty item")
        if inner[i] == '"':
            i += 1
            buf: list[str] = []
            while True:
                if i >= n:
                    raise malformed("unterminated double quote")
                ch = inner[i]
                if ch == "\\":
                    if i + 1 >= n:
                        raise malformed("unterminated double quote")
                    buf.append(inner[i + 1])
                    i += 2
                elif ch == '"':
                    i += 1
                    break
                else:
                    buf.append(ch)
                    i += 1
            while i < n and inner[i].isspace():
                i += 1
            items.append("".join(buf))
        else:
            buf = []
            escaped_upto = 0  # len(buf) after the last escaped char: trailing spaces before it stay
            any_escape = False
            while i < n and inner[i] != ",":
                ch = inner[i]
                if ch in "{}":
                    raise malformed("nested braces are not supported")
                if ch == '"':
                    raise malformed('unexpected " inside an unquoted item')
                if ch == "\\":
                    if i + 1 >= n:
                        raise malformed("trailing backslash")
                    buf.append(inner[i + 1])
                    escaped_upto = len(buf)
                    any_escape = True
                    i += 2
                    continue
                buf.append(ch)
                i += 1
            end = len(buf)
            while end > escaped_upto and buf[end - 1].isspace():
                end -= 1
            item = "".join(buf[:end])
            if not item and not any_escape:
                raise malformed("empty item")
            items.append(None if (not any_escape and item.upper() == "NULL") else item)
        if i >= n:
            break
        if inner[i] != ",":
            raise malformed("expected a comma between items")
        i += 1
    if len(items) > MAX_IN_VALUES:
        raise FilterError(
            f"{len(items)} values for in; at most {MAX_IN_VALUES}",
            reason="too many values for `in` filter. Maximum 100",
            stage="check",
            text=text,
            part=part,
        )
    return tuple(items)


# --------------------------------------------------------------------------------------------
# Formatting


_VALUE_SPECIALS: Final = frozenset(',()"')
_ITEM_SPECIALS: Final = frozenset(',(){}"\\')


def _quote_value(value: str) -> str:
    needs = any(c in _VALUE_SPECIALS for c in value) or (
        value and (value[0].isspace() or value[-1].isspace())
    )
    if not needs:
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _format_array_item(item: str | None) -> str:
    if item is None:
        return "NULL"
    needs = item == "" or item.upper() == "NULL" or any(c in _ITEM_SPECIALS or c.isspace() for c in item)
    if not needs:
        return item
    return '"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_column_formattable(column: str) -> str:
    if any(c in column for c in '=,()"') or column != column.strip():
        raise FilterError(
            f'column {column!r} cannot be written in a filter string (no = , ( ) " or surrounding spaces)',
            reason=f"invalid column for filter {column}",
            stage="check",
        )
    return column


def _display(value: object) -> str:
    if isinstance(value, tuple):
        return "(" + ",".join("NULL" if v is None else str(v) for v in value) + ")"
    return "null" if value is None else str(value)


def _inspect_string(s: str) -> str:
    """Elixir's ``inspect/1`` of a binary (enough of it for error messages)."""
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out).replace("#{", "\\#{")


def _inspect_list(items: Iterable[str]) -> str:
    return "[" + ", ".join(_inspect_string(s) for s in items) + "]"


# --------------------------------------------------------------------------------------------
# Builder


ValueLike = str | int | float | decimal.Decimal | bool | uuid.UUID | _dt.date | _dt.datetime | _dt.time


def _text(value: ValueLike) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    raise FilterError(
        f"cannot use {type(value).__name__} value {value!r} in a filter; use str, int, float, Decimal, bool, "
        "UUID, date, datetime or time",
        reason=f"invalid value {value!r}",
        stage="check",
    )


class F:
    """Build filters in Python: ``F.eq("channel_id", 42) & ~F.is_("deleted_at", None)``.

    Every method returns a :class:`Condition`; ``&`` makes a :class:`Filter`, ``~`` negates,
    ``str()`` gives the wire form for ``on_postgres_changes(filter=...)``.
    """

    @staticmethod
    def eq(column: str, value: ValueLike) -> Condition:
        return Condition(column, "eq", _text(value))

    @staticmethod
    def neq(column: str, value: ValueLike) -> Condition:
        return Condition(column, "neq", _text(value))

    @staticmethod
    def lt(column: str, value: ValueLike) -> Condition:
        return Condition(column, "lt", _text(value))

    @staticmethod
    def lte(column: str, value: ValueLike) -> Condition:
        return Condition(column, "lte", _text(value))

    @staticmethod
    def gt(column: str, value: ValueLike) -> Condition:
        return Condition(column, "gt", _text(value))

    @staticmethod
    def gte(column: str, value: ValueLike) -> Condition:
        return Condition(column, "gte", _text(value))

    @staticmethod
    def in_(column: str, values: Iterable[ValueLike | None]) -> Condition:
        if isinstance(values, (str, bytes)):
            raise FilterError(
                f"in_ takes an iterable of values, got the string {values!r}; use [{values!r}]",
                reason="`in` filter value must be wrapped by parentheses",
                stage="parse",
            )
        return Condition(column, "in", tuple(None if v is None else _text(v) for v in values))

    @staticmethod
    def like(column: str, pattern: str) -> Condition:
        return Condition(column, "like", pattern)

    @staticmethod
    def ilike(column: str, pattern: str) -> Condition:
        return Condition(column, "ilike", pattern)

    @staticmethod
    def match(column: str, regex: str) -> Condition:
        return Condition(column, "match", regex)

    @staticmethod
    def imatch(column: str, regex: str) -> Condition:
        return Condition(column, "imatch", regex)

    @staticmethod
    def is_(column: str, value: bool | str | None) -> Condition:
        if isinstance(value, bool):
            return Condition(column, "is", "true" if value else "false")
        if value == "null":
            value = None
        return Condition(column, "is", value)

    @staticmethod
    def isdistinct(column: str, value: ValueLike) -> Condition:
        return Condition(column, "isdistinct", _text(value))


# The evaluation with Postgres semantics needs the grammar above, so it is imported last.
from harmony_lab.filters._eval import (  # noqa: E402
    DEFER,
    ColumnType,
    Predicate,
    classify,
    client_predicate,
    compile_condition,
    literal_value,
    pg_text,
    sql_check,
)
