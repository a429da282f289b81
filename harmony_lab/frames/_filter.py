"""Client-side evaluation of a postgres_changes filter, for sources the server did not filter.

A manager-backed ``LiveFrame`` hands its filter to the manager (and so to the server); a replay or any
other event stream is filtered here. Both use the one grammar of :mod:`harmony_lab.filters`
(``column=[not.]op.value``, commas for AND; ops eq, neq, lt, lte, gt, gte, in, like, ilike, is, match,
imatch, isdistinct), so a filter means the same whatever the source, and bad filters fail with the
same :class:`~harmony_lab.filters.FilterError` naming the valid forms.

Patterns mean what they mean in Postgres (C collation): ``like``/``ilike`` with the linear-time
matcher the server uses, ``match``/``imatch`` as Postgres regular expressions translated to Python's
engine (the translation the server's evaluator uses; a feature it cannot translate is refused when the
filter is compiled). The pattern is the notebook user's own, evaluated in their process.

Evaluation follows SQL on the event's JSON values: a literal is read as the type of the row value it
is compared with (int, float, bool, text); NULL compares as unknown, so only ``is`` and
``isdistinct`` can match it. As on Supabase, DELETE events are not filtered (the caller skips them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from harmony_lab.filters import (
    Condition,
    Filter,
    FilterError,
    compile_like,
    parse_filter,
    pg_regex_to_python,
)

__all__ = ["RowFilter", "compile_filter"]

_MISSING = object()


def _coerce(literal: str, like: Any) -> Any:
    """The filter literal as the type of the row value it is compared with (ValueError if it cannot be)."""
    if isinstance(like, bool):
        low = literal.strip().lower()
        if low in ("t", "true"):
            return True
        if low in ("f", "false"):
            return False
        raise ValueError(literal)
    if isinstance(like, int):
        try:
            return int(literal)
        except ValueError:
            return float(literal)
    if isinstance(like, float):
        return float(literal)
    return literal


def _scalar(value: Any) -> Any:
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _condition(c: Condition) -> Callable[[Mapping[str, Any]], bool]:
    op = c.op
    matcher: Callable[[str], bool] | None = None
    if op in ("like", "ilike"):
        try:
            matcher = compile_like(str(c.value), fold=op == "ilike")
        except ValueError as exc:  # the server refuses the same pattern when subscribing
            raise FilterError(
                f"{exc}; write a literal backslash as two", reason=str(exc), stage="check", text=str(c)
            ) from exc
    elif op in ("match", "imatch"):
        translated = pg_regex_to_python(str(c.value))
        if translated is None:
            raise FilterError(
                f"the regular expression {c.value!r} uses a Postgres feature client-side filtering does "
                "not evaluate (back references, lookaround, [[:classes:]], \\m \\y, embedded options); "
                "let the server filter it (a manager-backed LiveFrame) or simplify the pattern",
                reason="unsupported regular expression",
                stage="check",
                text=str(c),
            )
        rx = re.compile(translated, re.DOTALL | re.ASCII | (re.IGNORECASE if op == "imatch" else 0))

        def matcher(text: str) -> bool:
            return rx.search(text) is not None

    def test(row: Mapping[str, Any]) -> bool | None:
        """True/False, or None for SQL's unknown."""
        value = row.get(c.column, _MISSING)
        if value is _MISSING:
            return None
        if op == "is":
            if c.value is None or c.value == "unknown":
                return value is None
            return value is (c.value == "true")
        if op == "isdistinct":
            if value is None:
                return True
            try:
                return _scalar(value) != _coerce(str(c.value), _scalar(value))
            except ValueError:
                return True
        if value is None or isinstance(value, dict | list):
            return None
        v = _scalar(value)
        if matcher is not None:
            return matcher(str(v))
        try:
            if op == "in":
                assert isinstance(c.value, tuple)
                return any(v == _coerce(item, v) for item in c.value if item is not None)
            t = _coerce(str(c.value), v)
        except ValueError:
            return op == "neq"
        try:
            if op == "eq":
                return bool(v == t)
            if op == "neq":
                return bool(v != t)
            if op == "lt":
                return bool(v < t)
            if op == "lte":
                return bool(v <= t)
            if op == "gt":
                return bool(v > t)
            return bool(v >= t)
        except TypeError:
            return None

    def evaluate(row: Mapping[str, Any]) -> bool:
        result = test(row)
        if result is None:
            return False  # NOT unknown is still unknown
        return not result if c.negate else result

    return evaluate


class RowFilter:
    """A parsed filter; ``matches(row)`` is True when every condition holds."""

    def __init__(self, text: str, conditions: tuple[Condition, ...]) -> None:
        self.text = text
        self.conditions = conditions
        self._tests = [_condition(c) for c in conditions]

    def matches(self, row: Mapping[str, Any] | None) -> bool:
        if row is None:
            return False
        return all(t(row) for t in self._tests)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"RowFilter({self.text!r})"


def compile_filter(spec: str | Condition | Filter) -> RowFilter:
    """Parse a filter string (or ``F`` expression) and build its evaluator.

    Raises :class:`~harmony_lab.filters.FilterError` (a ValueError naming the valid forms) for bad text.
    """
    if isinstance(spec, Condition | Filter):
        text = str(spec)
    elif isinstance(spec, str):
        text = spec
    else:
        raise TypeError(
            "filter must be a string such as 'channel_id=eq.42' or an F expression "
            f"(harmony_lab.filters.F.eq('channel_id', 42)); got {type(spec).__name__}"
        )
    return RowFilter(text, parse_filter(text))
