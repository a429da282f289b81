"""Client-side evaluation of a postgres_changes filter, for sources the server did not filter.

A manager-backed ``LiveFrame`` hands its filter to the manager (and so to the server); a replay or any
other event stream is filtered here. Both parse with :func:`harmony_lab.filters.parse_filter` and
evaluate with :func:`harmony_lab.filters.client_predicate` — the server's own evaluator, with
Postgres's semantics for the column's type — so a filter selects the same rows whatever the source,
and bad filters fail with the same :class:`~harmony_lab.filters.FilterError` naming the valid forms.

The column's type comes from the event (``columns``: name and type, as Supabase sends them and
recordings keep them): timestamps compare as instants, numerics exactly, uuids and booleans as values.
An event without type information is read by its JSON values (a JSON string as text, a number as
``numeric``, true/false as ``bool``). NULL compares as unknown, so only ``is`` and ``isdistinct`` can
match it; as on Supabase, DELETE events are not filtered (the caller skips them).

``match``/``imatch`` run as the pattern's Python translation where Postgres would be asked on the
server (the pattern is the notebook user's own, evaluated in their process); a feature that has no
translation is refused when the filter is compiled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from harmony_lab.filters import (
    ColumnType,
    Condition,
    Filter,
    FilterError,
    classify,
    client_predicate,
    compile_like,
    parse_filter,
    pg_regex_to_python,
)

__all__ = ["RowFilter", "compile_filter"]

_MISSING = object()
_Tri = bool | None


def _check(c: Condition) -> None:
    """Refuse at compile time what the client cannot evaluate, with the reason."""
    if c.op in ("like", "ilike"):
        try:
            compile_like(str(c.value), fold=c.op == "ilike")
        except ValueError as exc:  # the server refuses the same pattern when subscribing
            raise FilterError(
                f"{exc}; write a literal backslash as two", reason=str(exc), stage="check", text=str(c)
            ) from exc
    elif c.op in ("match", "imatch") and pg_regex_to_python(str(c.value)) is None:
        raise FilterError(
            f"the regular expression {c.value!r} uses a Postgres feature client-side filtering does "
            "not evaluate (back references, lookaround, [[:classes:]], \\m \\y, embedded options); "
            "let the server filter it (a manager-backed LiveFrame) or simplify the pattern",
            reason="unsupported regular expression",
            stage="check",
            text=str(c),
        )


def _json_type(value: Any) -> str:
    """The Postgres type a JSON value stands for when the event names none."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float | Decimal):
        return "numeric"
    return "text"


class _Condition:
    """One condition, compiled once per column type it meets."""

    __slots__ = ("_by_type", "cond")

    def __init__(self, cond: Condition) -> None:
        _check(cond)
        self.cond = cond
        self._by_type: dict[str, Callable[[Any], _Tri]] = {}

    def __call__(self, row: Mapping[str, Any], types: Mapping[str, str]) -> bool:
        value = row.get(self.cond.column, _MISSING)
        if value is _MISSING:
            return False
        typname = types.get(self.cond.column) or _json_type(value)
        predicate = self._by_type.get(typname)
        if predicate is None:
            predicate = self._by_type[typname] = client_predicate(self.cond, _column_type(typname))
        return predicate(value) is True


def _column_type(typname: str) -> ColumnType:
    name = typname.strip().strip('"')
    return classify(name, name)


class RowFilter:
    """A parsed filter; ``matches(row, columns)`` is True when every condition holds."""

    def __init__(self, text: str, conditions: tuple[Condition, ...]) -> None:
        self.text = text
        self.conditions = conditions
        self._tests = [_Condition(c) for c in conditions]
        # the last event's column types: a stream's events mostly carry the same (name, type) pairs
        self._columns: tuple[tuple[str, str], ...] | None = None
        self._types: dict[str, str] = {}

    def matches(self, row: Mapping[str, Any] | None, columns: Iterable[tuple[str, str]] = ()) -> bool:
        """Whether ``row`` passes; ``columns`` are the event's (name, type) pairs."""
        if row is None:
            return False
        if columns is not self._columns and columns != self._columns:
            # a tuple is kept as it is; anything else (a list could change later) is copied
            self._columns = columns if type(columns) is tuple else tuple(columns)
            self._types = dict(self._columns)
        types = self._types
        for test in self._tests:  # noqa: SIM110 (a plain loop: this runs once per event)
            if not test(row, types):
                return False
        return True

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
