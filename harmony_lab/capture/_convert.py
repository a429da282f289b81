"""Text-format column values → JSON-compatible Python, the way PostgreSQL's ``to_jsonb`` renders them.

pgoutput sends every value in its text output form (``t``). Supabase Realtime sends rows as JSON
built by ``to_jsonb``-like rules; this module reproduces them so a consumer sees the same shapes:

* ``int2``/``int4``/``int8``/``numeric``/``float4``/``float8`` → ``int`` or ``float`` (``NaN`` and
  ``±Infinity`` stay strings, as JSON has no such numbers); a number is an ``int`` when its decimal
  form has no fractional digits, as ``json.loads`` would read ``to_jsonb``'s output; a ``numeric``
  with more significant digits than a float holds is an :class:`ExactNumeric` (a float that keeps
  the exact value for filter comparisons);
* ``bool`` → ``bool``; ``json``/``jsonb`` → parsed;
* ``date``/``timestamp``/``timestamptz`` → ISO 8601 strings (``2025-11-03T09:32:55.123+00:00``);
* arrays (any dimension, NULL elements, quoted elements) → nested lists, elements converted;
* everything else (text, uuid, bytea, enums, time, interval, …) → the text form unchanged.

The values must come from a session with ``DateStyle=ISO`` (the server default): the change stream
sets it (and ``TimeZone=UTC``) on its replication connection.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, Final

__all__ = ["Converter", "ExactNumeric", "converter_for", "parse_array", "to_json_value"]

Converter = Callable[[str], Any]

_PG_SPACE: Final = " \t\n\r\v\f"  # array_in's scanner_isspace (str.strip() would also eat \x1c-\x1f)
_NON_FINITE: Final = frozenset({"NaN", "Infinity", "-Infinity"})
_INT_RE: Final = re.compile(r"-?\d+\Z")


_FLOAT_DIGITS: Final = 15  # every decimal of up to 15 significant digits survives a float round trip


class ExactNumeric(float):
    """A ``numeric`` value with more significant digits than a float holds.

    Everywhere a float is expected (JSON payloads, pandas, Arrow, recordings) it is the nearest float,
    as ``json.loads`` of ``to_jsonb``'s output would give; :attr:`exact` keeps the value itself, so
    postgres_changes filters compare it the way Postgres does.
    """

    __slots__ = ("exact",)
    exact: Decimal

    def __new__(cls, exact: Decimal) -> ExactNumeric:
        obj = super().__new__(cls, exact)
        obj.exact = exact
        return obj

    def __reduce__(self) -> tuple[type[ExactNumeric], tuple[Decimal]]:
        return (ExactNumeric, (self.exact,))


def _parse_number(text: str) -> int | str | Decimal:
    """An ``int`` when the value has no fractional digits, the text for NaN/±Infinity (JSON has no
    such numbers), else the exact :class:`~decimal.Decimal`."""
    if _INT_RE.match(text):
        return int(text)
    if text in _NON_FINITE:
        return text
    try:
        d = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {text!r}") from exc
    if d.as_tuple().exponent >= 0:  # type: ignore[operator]  # finite here
        return int(d)
    return d


def _number(text: str) -> Any:
    value = _parse_number(text)
    return float(value) if isinstance(value, Decimal) else value


def _numeric(text: str) -> Any:
    """Like :func:`_number`, but a value a float cannot hold exactly stays exact (:class:`ExactNumeric`)."""
    value = _parse_number(text)
    if not isinstance(value, Decimal):
        return value
    return ExactNumeric(value) if len(value.as_tuple().digits) > _FLOAT_DIGITS else float(value)


def _bool(text: str) -> bool:
    if text == "t":
        return True
    if text == "f":
        return False
    raise ValueError(f"not a boolean: {text!r}")


# "+05", "-03:30", "+05:53:28" (historical zones) → "+05:00", "-03:30", "+05:53:28"
def _xsd_offset(offset: str) -> str:
    parts = offset[1:].split(":")
    if len(parts) == 1:
        return f"{offset[0]}{parts[0]}:00"
    return offset


def _timestamp(text: str) -> str:
    """ISO ``2025-11-03 09:32:55.123+00`` → XSD ``2025-11-03T09:32:55.123+00:00``."""
    n = len(text)
    if n > 19 and text[10] == " " and text[4] == "-" and not text.endswith(" BC"):  # common case
        if text[-3] in "+-":  # whole-hour offset
            return f"{text[:10]}T{text[11:]}:00"
        if text[-6] in "+-" and text[-3] == ":" and text[-9] != "+":  # "+05:30"
            return f"{text[:10]}T{text[11:]}"
        if n <= 26 and ("+" not in text[11:] and "-" not in text[11:]):  # timestamp without zone
            return f"{text[:10]}T{text[11:]}"
    if text in ("infinity", "-infinity"):
        return text
    bc = text.endswith(" BC")
    if bc:
        text = text[:-3]
    date, sep, time = text.partition(" ")
    if not sep:
        raise ValueError(f"not an ISO timestamp: {text!r}")
    # the offset starts at the last + or - after the time of day
    for i in range(len(time) - 1, 0, -1):
        if time[i] in "+-":
            time = time[:i] + _xsd_offset(time[i:])
            break
    out = f"{date}T{time}"
    return out + " BC" if bc else out


def _date(text: str) -> str:
    return text


def _json(text: str) -> Any:
    return json.loads(text)


def _text(text: str) -> str:
    return text


_SCALARS: Final[dict[str, Converter]] = {
    "int2": int,
    "int4": int,
    "int8": int,
    "numeric": _numeric,
    "float4": _number,
    "float8": _number,
    "bool": _bool,
    "json": _json,
    "jsonb": _json,
    "date": _date,
    "timestamp": _timestamp,
    "timestamptz": _timestamp,
}


def parse_array(text: str, element: Converter = _text, delimiter: str = ",") -> list[Any]:
    """Parse PostgreSQL's array text form (``{1,NULL,"a b"}``, nested, with optional bounds)."""
    if text[:1] == "{" and text[-1:] == "}":  # fast path: flat, nothing quoted (array_out's usual form)
        inner = text[1:-1]
        if '"' not in inner and "{" not in inner and "\\" not in inner:
            if not inner:
                return []
            return [None if p == "NULL" else element(p) for p in inner.split(delimiter)]
    pos = 0
    if text.startswith("["):  # explicit bounds: "[0:1]={1,2}" — to_jsonb ignores them
        eq = text.find("=")
        if eq < 0:
            raise ValueError(f"malformed array literal: {text!r}")
        pos = eq + 1
    n = len(text)

    def fail(why: str) -> ValueError:
        return ValueError(f"malformed array literal ({why} at {pos}): {text!r}")

    def parse_level() -> list[Any]:
        nonlocal pos
        if pos >= n or text[pos] != "{":
            raise fail("expected '{'")
        pos += 1
        out: list[Any] = []
        if pos < n and text[pos] == "}":
            pos += 1
            return out
        while True:
            while pos < n and text[pos] in _PG_SPACE:
                pos += 1
            if pos >= n:
                raise fail("unterminated")
            ch = text[pos]
            if ch == "{":
                out.append(parse_level())
            elif ch == '"':
                pos += 1
                buf: list[str] = []
                while True:
                    if pos >= n:
                        raise fail("unterminated quoted element")
                    c = text[pos]
                    if c == "\\":
                        buf.append(text[pos + 1 : pos + 2])
                        pos += 2
                    elif c == '"':
                        pos += 1
                        break
                    else:
                        j = pos
                        while j < n and text[j] not in '\\"':
                            j += 1
                        buf.append(text[pos:j])
                        pos = j
                out.append(element("".join(buf)))
            else:
                j = pos
                buf = []
                while j < n and text[j] not in (delimiter, "}"):
                    if text[j] == "\\":
                        buf.append(text[j + 1 : j + 2])
                        j += 2
                    else:
                        buf.append(text[j])
                        j += 1
                raw = "".join(buf).strip(_PG_SPACE)
                pos = j
                out.append(None if raw.upper() == "NULL" else element(raw))
            while pos < n and text[pos] in _PG_SPACE:
                pos += 1
            if pos >= n:
                raise fail("unterminated")
            if text[pos] == delimiter:
                pos += 1
                continue
            if text[pos] == "}":
                pos += 1
                return out
            raise fail(f"unexpected {text[pos]!r}")

    result = parse_level()
    if text[pos:].strip(_PG_SPACE):
        raise fail("trailing characters")
    return result


_cache: dict[str, Converter] = {}


def converter_for(conv: str) -> Converter:
    """The converter for a type, by the name of its base type (``int4``, ``_int4`` for arrays)."""
    fn = _cache.get(conv)
    if fn is not None:
        return fn
    if conv.startswith("_") and len(conv) > 1:
        element = converter_for(conv[1:])
        delimiter = ";" if conv == "_box" else ","

        def fn(text: str) -> list[Any]:
            return parse_array(text, element, delimiter)

    else:
        fn = _SCALARS.get(conv, _text)
    _cache[conv] = fn
    return fn


def to_json_value(conv: str, text: str | None) -> Any:
    """Convert one value's text form; ``conv`` is the (base) type name. ``None`` stays ``None``."""
    if text is None:
        return None
    return converter_for(conv)(text)
