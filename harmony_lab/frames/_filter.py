"""Client-side evaluation of a postgres_changes filter, for sources the server did not filter.

A manager-backed ``LiveFrame`` hands its filter to the server; a replay or any other event stream is
filtered here with the same grammar: ``column=op.value`` where op is one of ``eq``, ``neq``, ``lt``,
``lte``, ``gt``, ``gte`` or ``in`` (``in.(a,b,c)``). As on Supabase, DELETE events are not filtered.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["RowFilter", "parse_filter"]

_OPS = ("eq", "neq", "lt", "lte", "gt", "gte", "in")
_FORMS = "column=eq.value, column=neq.value, column=lt|lte|gt|gte.value or column=in.(v1,v2,…)"
_PATTERN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([a-z]+)\.(.*)$", re.DOTALL)


def _coerce(literal: str, like: Any) -> Any:
    """The filter literal as the type of the row value it is compared with."""
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


@dataclasses.dataclass(frozen=True, slots=True)
class RowFilter:
    column: str
    op: str
    values: tuple[str, ...]

    def matches(self, row: Mapping[str, Any] | None) -> bool:
        if row is None or self.column not in row:
            return False
        value = row[self.column]
        if value is None:
            return False  # SQL: comparisons with NULL are never true
        if isinstance(value, dict | list):
            return False
        try:
            targets = [_coerce(v, value) for v in self.values]
        except ValueError:
            return self.op == "neq"
        if not isinstance(value, bool | int | float | str):
            value = str(value)
        t = targets[0]
        try:
            if self.op == "eq":
                return bool(value == t)
            if self.op == "neq":
                return bool(value != t)
            if self.op == "in":
                return value in targets
            if self.op == "lt":
                return bool(value < t)
            if self.op == "lte":
                return bool(value <= t)
            if self.op == "gt":
                return bool(value > t)
            return bool(value >= t)
        except TypeError:
            return False

    def __str__(self) -> str:
        if self.op == "in":
            return f"{self.column}=in.({','.join(self.values)})"
        return f"{self.column}={self.op}.{self.values[0]}"


def parse_filter(text: str) -> RowFilter:
    """Parse ``column=op.value``; raise ValueError naming the valid forms."""
    if not isinstance(text, str):
        raise TypeError(f"filter must be a string such as 'channel_id=eq.42'; got {type(text).__name__}")
    m = _PATTERN.match(text)
    if m is None:
        raise ValueError(f"invalid filter {text!r}; valid forms: {_FORMS}")
    column, op, rest = m.group(1), m.group(2), m.group(3)
    if op not in _OPS:
        raise ValueError(f"invalid filter operator {op!r} in {text!r}; valid operators: {', '.join(_OPS)}")
    if op == "in":
        rest = rest.strip()
        if not (rest.startswith("(") and rest.endswith(")")) or len(rest) < 3:
            raise ValueError(f"invalid 'in' filter {text!r}; write column=in.(v1,v2,…)")
        values = tuple(v.strip().strip('"') for v in rest[1:-1].split(","))
        if any(v == "" for v in values):
            raise ValueError(f"invalid 'in' filter {text!r}: empty value in the list")
        return RowFilter(column, op, values)
    return RowFilter(column, op, (rest,))
