"""Postgres column types → pandas / Arrow types, and the conversions of JSON-like column values.

Values in change events are JSON-like: ints, floats, bools, ISO-8601 strings for timestamps and dates,
dicts/lists for ``json``/``jsonb``, lists for arrays. :func:`kind_of` sorts a Postgres type name (as
pgoutput / Supabase Realtime name it: ``int8``, ``timestamptz``, ``_text`` …, or the SQL spelling
``bigint``, ``timestamp with time zone`` …) into a :class:`Kind`; the converters turn a list of values
of one column into a typed pandas array, a typed Arrow array, or the "native" Arrow array the
browser widgets read (:func:`to_native`: as :func:`to_arrow`, with ``numeric`` as exact decimals).

Mapping (pandas dtype / Arrow type):

==============================  =========================  ==============================
Postgres                        pandas                     Arrow
==============================  =========================  ==============================
int2 int4 int8 oid (serials)    ``Int64`` (nullable)       int64
float4 float8 **numeric**       ``Float64`` (nullable)     float64 (numeric loses exactness)
bool                            ``boolean``                bool
text varchar bpchar uuid enums  ``string``                 string
timestamptz                     ``datetime64[us, UTC]``    timestamp[us, UTC]
timestamp                       ``datetime64[us]``         timestamp[us]
date                            ``date32[pyarrow]``        date32
json jsonb                      ``object`` (dict/list)     string (JSON text)
arrays (``_int4``, ``_text`` …)  ``object`` (lists)         list<element> (JSON text if nested)
anything else                   ``string`` (``object`` if non-text values appear)
==============================  =========================  ==============================

:func:`to_native` differs in one row: ``numeric`` is an exact ``decimal128(38, s)``.

Values that cannot be parsed (``'infinity'`` timestamps, a non-number in an int column) become missing
values; each such column is logged once at WARNING with its name and how many values were lost.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

logger = logging.getLogger(__name__)

__all__ = ["Kind", "kind_of", "native_field", "to_arrow", "to_native", "to_pandas"]


class Kind(StrEnum):
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STRING = "string"
    TIMESTAMPTZ = "timestamptz"
    TIMESTAMP = "timestamp"
    DATE = "date"
    JSON = "json"
    ARRAY = "array"
    UNKNOWN = "unknown"


_KINDS: dict[str, Kind] = {}
for _names, _kind in (
    (
        (
            "int2",
            "int4",
            "int8",
            "oid",
            "smallint",
            "integer",
            "int",
            "bigint",
            "smallserial",
            "serial",
            "bigserial",
            "serial2",
            "serial4",
            "serial8",
        ),
        Kind.INT,
    ),
    (("float4", "float8", "real", "double precision", "numeric", "decimal", "money"), Kind.FLOAT),
    (("bool", "boolean"), Kind.BOOL),
    (
        (
            "text",
            "varchar",
            "character varying",
            "bpchar",
            "char",
            "character",
            "name",
            "uuid",
            "citext",
            "inet",
            "cidr",
            "macaddr",
            "time",
            "timetz",
            "time without time zone",
            "time with time zone",
            "interval",
            "bytea",
            "xml",
        ),
        Kind.STRING,
    ),
    (("timestamptz", "timestamp with time zone"), Kind.TIMESTAMPTZ),
    (("timestamp", "timestamp without time zone"), Kind.TIMESTAMP),
    (("date",), Kind.DATE),
    (("json", "jsonb"), Kind.JSON),
):
    for _n in _names:
        _KINDS[_n] = _kind


def kind_of(pg_type: str | None) -> Kind:
    """The :class:`Kind` of a Postgres type name; arrays are ``_elem`` or ``elem[]``."""
    if not pg_type:
        return Kind.UNKNOWN
    name = pg_type.strip().lower()
    if name.startswith("_") or name.endswith("[]"):
        return Kind.ARRAY
    return _KINDS.get(name, Kind.UNKNOWN)


def element_type(pg_type: str) -> str:
    """``_int4`` → ``int4``; ``text[]`` → ``text``."""
    name = pg_type.strip().lower()
    if name.startswith("_"):
        return name[1:]
    return name[:-2] if name.endswith("[]") else name


def _warn_lost(column: str, kind: Kind, lost: int) -> None:
    if lost:
        logger.warning(
            "column %r (%s): %d value(s) could not be converted and became missing", column, kind, lost
        )


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), default=str)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _numbers(values: Sequence[Any], dtype: str, column: str, kind: Kind) -> Any:
    try:
        return pd.array(values, dtype=dtype)
    except (TypeError, ValueError):
        pass
    obj = pd.Series(values, dtype=object)
    parsed = pd.to_numeric(obj, errors="coerce")
    _warn_lost(column, kind, int(parsed.isna().sum() - obj.isna().sum()))
    if dtype == "Int64":
        # floats with a fraction cannot be Int64: keep what is integral, lose the rest (logged)
        frac = parsed.notna() & (parsed % 1 != 0)
        if frac.any():
            _warn_lost(column, kind, int(frac.sum()))
            parsed = parsed.mask(frac)
    return pd.array(parsed, dtype=dtype)


def _bools(values: Sequence[Any], column: str) -> Any:
    try:
        return pd.array(values, dtype="boolean")
    except (TypeError, ValueError):
        pass
    truthy = {"t", "true", "1", "yes", "on"}
    falsy = {"f", "false", "0", "no", "off"}
    out: list[bool | None] = []
    lost = 0
    for v in values:
        if v is None or isinstance(v, bool):
            out.append(v)
        elif str(v).strip().lower() in truthy:
            out.append(True)
        elif str(v).strip().lower() in falsy:
            out.append(False)
        else:
            out.append(None)
            lost += 1
    _warn_lost(column, Kind.BOOL, lost)
    return pd.array(out, dtype="boolean")


def _timestamps(values: Sequence[Any], *, utc: bool, column: str) -> pd.Series:
    obj = pd.Series(values, dtype=object)
    kind = Kind.TIMESTAMPTZ if utc else Kind.TIMESTAMP
    parsed = pd.to_datetime(obj, utc=utc, format="ISO8601", errors="coerce")
    _warn_lost(column, kind, int(parsed.isna().sum() - obj.isna().sum()))
    if not utc and getattr(parsed.dtype, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    return parsed.astype("datetime64[us, UTC]" if utc else "datetime64[us]")


def _dates(values: Sequence[Any], column: str) -> pa.Array:
    texts = [v.isoformat() if isinstance(v, dt.date) else v for v in values]
    try:
        return pc.cast(pa.array(texts, type=pa.string()), pa.date32())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    out: list[dt.date | None] = []
    lost = 0
    for v in texts:
        try:
            out.append(None if v is None else dt.date.fromisoformat(str(v)[:10]))
        except ValueError:
            out.append(None)
            lost += 1
    _warn_lost(column, Kind.DATE, lost)
    return pa.array(out, type=pa.date32())


def to_pandas(values: Sequence[Any], pg_type: str | None, column: str = "?") -> Any:
    """A typed pandas array/Series for one column's values (see the module table)."""
    kind = kind_of(pg_type)
    if kind is Kind.INT:
        return _numbers(values, "Int64", column, kind)
    if kind is Kind.FLOAT:
        return _numbers(values, "Float64", column, kind)
    if kind is Kind.BOOL:
        return _bools(values, column)
    if kind is Kind.TIMESTAMPTZ:
        return _timestamps(values, utc=True, column=column).array
    if kind is Kind.TIMESTAMP:
        return _timestamps(values, utc=False, column=column).array
    if kind is Kind.DATE:
        return pd.array(_dates(values, column), dtype=pd.ArrowDtype(pa.date32()))
    if kind is Kind.STRING:
        return pd.array([_as_text(v) for v in values], dtype="string")
    if kind is Kind.UNKNOWN and all(v is None or isinstance(v, str) for v in values):
        return pd.array(list(values), dtype="string")
    # json, arrays and unknown types with non-text values stay Python objects
    return pd.Series(list(values), dtype=object).array


_ELEMENT_ARROW: dict[Kind, pa.DataType] = {
    Kind.INT: pa.int64(),
    Kind.FLOAT: pa.float64(),
    Kind.BOOL: pa.bool_(),
    Kind.STRING: pa.string(),
    Kind.UNKNOWN: pa.string(),
}


def _json_texts(values: Sequence[Any], *, ascii: bool = True) -> pa.Array:
    return pa.array(
        [
            None if v is None else json.dumps(v, separators=(",", ":"), default=str, ensure_ascii=ascii)
            for v in values
        ],
        type=pa.string(),
    )


def to_arrow(
    values: Sequence[Any], pg_type: str | None, column: str = "?", *, ascii_json: bool = True
) -> pa.Array:
    """A typed Arrow array (see the module table); json becomes JSON text (non-ASCII characters
    escaped unless ``ascii_json`` is false)."""
    kind = kind_of(pg_type)
    if kind is Kind.JSON:
        return _json_texts(values, ascii=ascii_json)
    if kind is Kind.ARRAY:
        elem = kind_of(element_type(pg_type or ""))
        target = _ELEMENT_ARROW.get(elem)
        if target is not None:
            try:
                return pa.array(values, type=pa.list_(target))
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                logger.debug("column %r: array values are not flat %s lists; using JSON text", column, elem)
        return _json_texts(values, ascii=ascii_json)
    if kind is Kind.DATE:
        return _dates(values, column)
    if kind is Kind.UNKNOWN and not all(v is None or isinstance(v, str) for v in values):
        return _json_texts(values, ascii=ascii_json)
    arr = pa.array(to_pandas(values, pg_type, column))
    return arr.cast(pa.string()) if pa.types.is_large_string(arr.type) else arr


_DECIMAL_DIGITS = 38  # decimal128's precision
_JSON_FIELD = {b"ARROW:extension:name": b"arrow.json", b"ARROW:extension:metadata": b""}


def _exact(value: Any) -> decimal.Decimal | None:
    """A numeric value as the exact decimal it stands for (a float as its shortest repr), else None."""
    if isinstance(value, bool):
        return None
    exact = getattr(value, "exact", None)  # capture's ExactNumeric: a float that keeps the exact value
    if isinstance(exact, decimal.Decimal):
        return exact
    if isinstance(value, decimal.Decimal):
        return value
    if isinstance(value, int):
        return decimal.Decimal(value)
    if isinstance(value, float):
        return decimal.Decimal(repr(value))
    if isinstance(value, str):
        try:
            return decimal.Decimal(value.strip())
        except decimal.InvalidOperation:
            return None
    return None


def _decimals(values: Sequence[Any], column: str) -> pa.Array:
    """``numeric`` values as decimal128(38, s), ``s`` the most fractional digits among them, exactly.

    NaN and ±Infinity (which a decimal cannot hold), more than 38 digits or a value that is no number
    make the column its exact text instead (logged at DEBUG)."""
    exact: list[decimal.Decimal | None] = []
    scale = whole = 0
    fits = True
    for v in values:
        if v is None:
            exact.append(None)
            continue
        d = _exact(v)
        if d is None or not d.is_finite():
            fits = False
            break
        t = d.as_tuple()
        exp = int(t.exponent)
        scale = max(scale, -exp)
        whole = max(whole, len(t.digits) + exp)
        exact.append(d)
    if fits and scale + whole <= _DECIMAL_DIGITS:
        return pa.array(exact, type=pa.decimal128(_DECIMAL_DIGITS, scale))
    logger.debug("column %r: numeric values that decimal128(38) cannot hold; sending exact text", column)
    texts = []
    for v in values:
        d = None if v is None else _exact(v)
        texts.append(None if v is None else (format(d, "f") if d is not None and d.is_finite() else str(v)))
    return pa.array(texts, type=pa.string())


def to_native(values: Sequence[Any], pg_type: str | None, column: str = "?") -> pa.Array:
    """The Arrow array closest to the Postgres type, losing nothing a typed reader can show.

    The types of :func:`to_arrow`, except that ``numeric``/``decimal`` are exact decimal128 (see
    :func:`_decimals`) instead of float64 and JSON text keeps its characters unescaped; text goes
    straight to Arrow (no pandas step). :func:`native_field` marks the JSON-text columns.
    """
    kind = kind_of(pg_type)
    if kind is Kind.FLOAT and (pg_type or "").strip().lower() in ("numeric", "decimal"):
        return _decimals(values, column)
    if kind in (Kind.INT, Kind.FLOAT, Kind.BOOL, Kind.TIMESTAMPTZ, Kind.TIMESTAMP):
        return pa.array(to_pandas(values, pg_type, column))
    if kind in (Kind.DATE, Kind.JSON, Kind.ARRAY):
        return to_arrow(values, pg_type, column, ascii_json=False)
    return pa.array([_as_text(v) for v in values], type=pa.string())


def native_field(name: str, pg_type: str | None, array: pa.Array) -> pa.Field:
    """The field of a :func:`to_native` column: JSON text carries Arrow's ``arrow.json`` extension name
    (json/jsonb, and arrays that fell back to JSON text)."""
    kind = kind_of(pg_type)
    is_json = pa.types.is_string(array.type) and kind in (Kind.JSON, Kind.ARRAY)
    return pa.field(name, array.type, metadata=_JSON_FIELD if is_json else None)
