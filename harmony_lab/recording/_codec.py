"""RealtimeEvent ⇄ Arrow rows: the one recording schema and exact, lossless conversion.

Every event kind shares :data:`SCHEMA`. The free-form fields (``pk``, ``new``, ``old``, ``payload``)
are stored as plain JSON text so duckdb, polars and pandas users can query them directly. Values
that JSON cannot express (datetimes, Decimals, UUIDs, bytes, tuples, sets, non-string dict keys,
NaN/±inf) are written in a readable JSON form (ISO strings, numbers, lists) and their Python type is
noted in the ``json_types`` column (null when every value is JSON-native), so :func:`decode_json`
and replay give back values of the same type and value as were recorded.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import logging
import math
import operator
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from harmony_lab.events import RealtimeEvent

logger = logging.getLogger(__name__)

FORMAT_VERSION = "1"
TS = pa.timestamp("us", tz="UTC")
JSON_COLUMNS: tuple[str, ...] = ("pk", "new", "old", "payload")

SCHEMA = pa.schema(
    [
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("received_at", TS, nullable=False),
        pa.field("received_mono_ns", pa.int64(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("schema", pa.string()),
        pa.field("table", pa.string()),
        pa.field("op", pa.string()),
        pa.field("commit_ts", TS),
        pa.field("pk", pa.string()),
        pa.field("new", pa.string()),
        pa.field("old", pa.string()),
        pa.field(
            "columns",
            pa.list_(pa.struct([pa.field("name", pa.string()), pa.field("type", pa.string())])),
            nullable=False,
        ),
        pa.field("errors", pa.list_(pa.string())),
        pa.field("payload", pa.string()),
        pa.field("status", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("backfilled", pa.bool_(), nullable=False),
        pa.field("suppressed", pa.bool_(), nullable=False),
        pa.field("attempt", pa.int64()),
        pa.field("gap_start", TS),
        pa.field("gap_end", TS),
        pa.field("json_types", pa.string()),
    ],
    metadata={
        "harmony_lab.recording.format": FORMAT_VERSION,
        "harmony_lab.recording.json_columns": ",".join(JSON_COLUMNS),
    },
)
COLUMN_NAMES: tuple[str, ...] = tuple(SCHEMA.names)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_JSON_NATIVE_SCALARS = (str, int, bool, type(None))


# --------------------------------------------------------------------------- JSON with type notes

Path = list[str | int]


def _plain(value: Any, path: Path, notes: list[list[Any]]) -> Any:
    """A JSON-native copy of ``value``; every non-native value's path and type go to ``notes``.

    Notes are appended in post-order (children before their container), the order
    :func:`_restore` applies them in.
    """
    t = type(value)
    if t in _JSON_NATIVE_SCALARS:
        return value
    if t is float:
        if math.isfinite(value):
            return value
        notes.append([path, "float"])
        return repr(value)  # 'nan', 'inf', '-inf'
    if t is dict or isinstance(value, Mapping):
        if all(type(k) is str for k in value):
            # other Mappings come back as dicts, which compare equal: nothing to note
            return {k: _plain(v, [*path, k], notes) for k, v in value.items()}
        pairs = [
            [_plain(k, [*path, i, 0], notes), _plain(v, [*path, i, 1], notes)]
            for i, (k, v) in enumerate(value.items())
        ]
        notes.append([path, "pairs"])
        return pairs
    if t is list:
        return [_plain(v, [*path, i], notes) for i, v in enumerate(value)]
    if t is tuple:
        out_t = [_plain(v, [*path, i], notes) for i, v in enumerate(value)]
        notes.append([path, "tuple"])
        return out_t
    if isinstance(value, int):  # IntEnum & co. compare equal to their plain value
        return int(value)
    if isinstance(value, str):  # StrEnum & co.
        return str(value)
    if isinstance(value, float):
        return _plain(float(value), path, notes)
    if isinstance(value, datetime):
        notes.append([path, "datetime"])
        return value.isoformat()
    if isinstance(value, date):
        notes.append([path, "date"])
        return value.isoformat()
    if isinstance(value, time):
        notes.append([path, "time"])
        return value.isoformat()
    if isinstance(value, timedelta):
        notes.append([path, "timedelta"])
        return [value.days, value.seconds, value.microseconds]
    if isinstance(value, Decimal):
        notes.append([path, "decimal"])
        return str(value)
    if isinstance(value, uuid.UUID):
        notes.append([path, "uuid"])
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        notes.append([path, "bytes"])
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, set | frozenset):
        items = [_plain(v, [*path, i], notes) for i, v in enumerate(value)]
        notes.append([path, "frozenset" if isinstance(value, frozenset) else "set"])
        return items
    if isinstance(value, Sequence):
        return [_plain(v, [*path, i], notes) for i, v in enumerate(value)]
    _warn_unsupported(type(value))
    notes.append([path, "repr"])
    return repr(value)


_warned: set[type] = set()


def _warn_unsupported(t: type) -> None:
    if t not in _warned:
        _warned.add(t)
        logger.warning(
            "recording: values of type %s.%s cannot be stored as JSON; recording their repr() instead "
            "(replay gives back a string)",
            t.__module__,
            t.__qualname__,
        )


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_encode = _ENCODER.encode


_SCALAR_TYPES = frozenset({str, int, bool, type(None)})
_STR = frozenset({str})


def _native(value: Any) -> bool:
    """True when ``value`` is JSON-native all the way down (then it needs no notes).

    The common shapes (a dict or list of strings, ints, bools and None) are checked by set
    membership in C without building anything; only nested containers and floats are walked.
    """
    t = type(value)
    if t in _SCALAR_TYPES:
        return True
    if t is float:
        return value - value == 0.0  # finite (nan - nan and inf - inf are nan)
    if t is dict:
        if not _STR.issuperset(map(type, value)):
            return False
        items = value.values()
    elif t is list:
        items = value
    else:
        return False
    if _SCALAR_TYPES.issuperset(map(type, items)):
        return True
    return all(_native(v) for v in items)


def encode_json(value: Any) -> tuple[str | None, list[list[Any]] | None]:
    """``(json_text, notes)`` for one free-form field; ``(None, None)`` for None."""
    if value is None:
        return None, None
    if _native(value):
        return _encode(value), None
    notes: list[list[Any]] = []
    text = _encode(_plain(value, [], notes))
    return text, (notes or None)


_WALKABLE = _SCALAR_TYPES | {float, dict, list}
_DICT_OR_NONE = frozenset({dict, type(None)})
_MAX_LEVELS = 16


def _batch_native(values: list[Any]) -> bool:
    """True when every value of a batch is JSON-native: checked level by level, over the whole batch.

    Each level (the values, then all their dicts' values and lists' items together, …) is checked
    by the set of its types, in C. False means "not known": a non-native value somewhere, a
    non-finite float, or nesting deeper than :data:`_MAX_LEVELS` (then each value is walked).
    """
    level: list[Any] = values
    for _ in range(_MAX_LEVELS):
        types = set(map(type, level))
        if types <= _SCALAR_TYPES:
            return True
        if not types <= _WALKABLE:
            return False
        if float in types and not all(map(math.isfinite, [v for v in level if type(v) is float])):
            return False
        nxt: list[Any] = []
        if dict in types:
            # filter(None) keeps the dicts when the rest are None (empty dicts need no check)
            if types <= _DICT_OR_NONE:
                dicts = list(filter(None, level))
            else:
                dicts = [v for v in level if type(v) is dict]
            if not _STR.issuperset(map(type, itertools.chain.from_iterable(dicts))):
                return False
            below = set(map(type, itertools.chain.from_iterable(map(dict.values, dicts))))
            if not below <= _SCALAR_TYPES:  # floats or containers: look at them on the next level
                nxt.extend(itertools.chain.from_iterable(map(dict.values, dicts)))
        if list in types:
            nxt.extend(itertools.chain.from_iterable([v for v in level if type(v) is list]))
        level = nxt
    return False


def _plain_values(values: list[Any]) -> tuple[list[Any], list[list[list[Any]] | None] | None]:
    """JSON-native stand-ins for ``values`` and each one's type notes (None when none needs any)."""
    out = values
    if _batch_native(values):
        return out, None
    flags = list(map(_native, values))  # None is native
    if all(flags):
        return out, None
    notes: list[list[list[Any]] | None] = [None] * len(values)
    for i, v in enumerate(values):
        if flags[i]:
            continue
        if out is values:
            out = list(values)
        row: list[list[Any]] = []
        out[i] = _plain(v, [], row)
        notes[i] = row or None
    return out, notes


# orjson writes a Fragment's bytes as they are; a NUL byte never occurs in JSON text it writes (in
# strings it is escaped as \u0000), so a Fragment holding one marks the boundaries between values
_BOUNDARY = orjson.Fragment(b"\x00")
_SPLIT = ",\x00,"
_MAX_BYTES = 2**31 - 2


def _stdlib_array(values: list[Any]) -> pa.Array:
    return pa.array([None if v is None else _encode(v) for v in values], pa.string())


def json_array(values: list[Any]) -> pa.Array:
    """A string array of the JSON texts of JSON-native ``values`` (None → null), encoded in one call.

    orjson encodes the whole batch as one JSON array whose elements are separated by a marker byte
    that JSON text never contains; Arrow then splits that text at the markers. One encoder call and
    one allocation instead of one of each per value. A batch orjson refuses (an integer beyond 64
    bits, nesting deeper than it allows) is encoded by the standard library, value by value.
    """
    n = len(values)
    nulls = values.count(None)
    if nulls == n:
        return pa.nulls(n, pa.string())
    dense = values if nulls == 0 else [v for v in values if v is not None]
    marked: list[Any] = [_BOUNDARY] * (2 * len(dense) - 1)
    marked[::2] = dense
    try:
        data = orjson.dumps(marked)
    except orjson.JSONEncodeError:
        return _stdlib_array(values)
    if len(data) > _MAX_BYTES:  # pragma: no cover - batches are far smaller
        return _stdlib_array(values)
    whole = pa.StringArray.from_buffers(
        1, pa.py_buffer(np.array([1, len(data) - 1], dtype=np.int32)), pa.py_buffer(data)
    )
    texts = pc.split_pattern(whole, pattern=_SPLIT).values
    if len(texts) != len(dense):  # pragma: no cover - the marker cannot occur inside a value
        raise AssertionError(f"splitting {len(dense)} JSON values gave {len(texts)}")
    if nulls == 0:
        return texts
    # spread the dense texts over the rows: a null row gets an empty slot and a cleared validity bit
    valid = np.fromiter(map(operator.is_not, values, itertools.repeat(None)), dtype=bool, count=n)
    _, offsets_buf, data_buf = texts.buffers()
    dense_offsets = np.frombuffer(offsets_buf, dtype=np.int32)[texts.offset : texts.offset + len(texts) + 1]
    lengths = np.zeros(n, dtype=np.int32)
    lengths[valid] = np.diff(dense_offsets)
    offsets = np.empty(n + 1, dtype=np.int32)
    offsets[0] = dense_offsets[0]
    np.cumsum(lengths, out=offsets[1:])
    offsets[1:] += dense_offsets[0]
    bitmap = np.packbits(valid, bitorder="little")
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets), data_buf, pa.py_buffer(bitmap), null_count=nulls
    )


def _convert(value: Any, tag: str) -> Any:
    if tag == "tuple":
        return tuple(value)
    if tag == "datetime":
        return datetime.fromisoformat(value)
    if tag == "date":
        return date.fromisoformat(value)
    if tag == "time":
        return time.fromisoformat(value)
    if tag == "timedelta":
        return timedelta(days=value[0], seconds=value[1], microseconds=value[2])
    if tag == "decimal":
        return Decimal(value)
    if tag == "uuid":
        return uuid.UUID(value)
    if tag == "bytes":
        return base64.b64decode(value)
    if tag == "float":
        return float(value)
    if tag == "pairs":
        return {k: v for k, v in value}
    if tag == "set":
        return set(value)
    if tag == "frozenset":
        return frozenset(value)
    if tag == "repr":
        return value
    raise ValueError(f"unknown json_types tag {tag!r} in recording (written by a newer harmony_lab?)")


def _restore(value: Any, notes: list[list[Any]]) -> Any:
    for path, tag in notes:
        if not path:
            value = _convert(value, tag)
            continue
        parent = value
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        parent[last] = _convert(parent[last], tag)
    return value


def decode_json(text: str | None, notes: list[list[Any]] | None = None) -> Any:
    """Parse one JSON column value; with its ``json_types`` notes, give back the recorded types."""
    if text is None:
        return None
    value = json.loads(text)
    if notes:
        # containers converted to tuples/sets must be converted after their children: notes are
        # post-ordered, and tuple conversion happens on a list we still hold by path.
        value = _restore(value, notes)
    return value


# --------------------------------------------------------------------------- events → Arrow


class RowBuffer:
    """Events waiting to become one RecordBatch (columns are built in bulk by :meth:`to_batch`)."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[RealtimeEvent] = []

    @property
    def rows(self) -> int:
        return len(self.events)

    def append(self, ev: RealtimeEvent) -> None:
        self.events.append(ev)

    def to_batch(self, session_id: str) -> pa.RecordBatch:
        """The buffered events as one batch, built column by column (the buffer is emptied).

        Each field is read into its own list by one comprehension (a specialised slot read per
        event), and each list becomes an Arrow array in one call: no per-event tuples to build,
        transpose and collect.
        """
        evs, self.events = self.events, []
        n = len(evs)
        types: list[dict[str, Any] | None] = [None] * n
        json_arrays: dict[str, pa.Array] = {}
        for name, values in (
            ("pk", [e.pk for e in evs]),
            ("new", [e.new for e in evs]),
            ("old", [e.old for e in evs]),
            ("payload", [e.payload for e in evs]),
        ):
            plain, notes = _plain_values(values)
            if notes is not None:
                for i, row in enumerate(notes):
                    if row is not None:
                        row_types = types[i]
                        if row_types is None:
                            row_types = types[i] = {}
                        row_types[name] = row
            json_arrays[name] = json_array(plain)
        string = pa.string()
        int64 = pa.int64()
        arrays = [
            pa.repeat(pa.scalar(session_id, string), n),
            pa.array([e.seq for e in evs], int64),
            timestamp_array([e.received_at for e in evs]),
            pa.array([e.received_mono_ns for e in evs], int64),
            pa.array([e.kind for e in evs], string),
            _string_array([e.channel for e in evs]),
            _string_array([e.topic for e in evs]),
            pa.array([e.schema for e in evs], string),
            pa.array([e.table for e in evs], string),
            pa.array([e.op for e in evs], string),
            timestamp_array([e.commit_ts for e in evs]),
            json_arrays["pk"],
            json_arrays["new"],
            json_arrays["old"],
            _columns_array([e.columns for e in evs]),
            pa.array([e.errors for e in evs], _ERRORS_TYPE),
            json_arrays["payload"],
            pa.array([e.status for e in evs], string),
            pa.array([e.reason for e in evs], string),
            _bool_array([e.backfilled for e in evs]),
            _bool_array([e.suppressed for e in evs]),
            pa.array([e.attempt for e in evs], int64),
            timestamp_array([e.gap_start for e in evs]),
            timestamp_array([e.gap_end for e in evs]),
            pa.array([None if t is None else _encode(t) for t in types], string)
            if types.count(None) != n
            else pa.nulls(n, string),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


_COLUMNS_TYPE = SCHEMA.field("columns").type
_ERRORS_TYPE = SCHEMA.field("errors").type
_NAT = np.iinfo(np.int64).min


def timestamp_array(values: list[datetime | None]) -> pa.Array:
    """A ``timestamp[us, UTC]`` array of aware datetimes (None → null), exact to the microsecond.

    pandas converts a list of datetimes sharing one time zone in compiled code, several times
    faster than Arrow's per-value conversion (which asks each value for its UTC offset); the
    instants are the same. Anything else (naive or mixed time zones, dates pandas cannot hold)
    goes through Arrow as before.
    """
    n = len(values)
    if values.count(None) == n:
        return pa.nulls(n, TS)
    try:
        index = pd.DatetimeIndex(values)
    except (TypeError, ValueError, OverflowError):
        return pa.array(values, TS)
    if index.tz is None:  # naive values: Arrow's reading of them is the recorded one
        return pa.array(values, TS)
    micros = index.as_unit("us").asi8
    mask = micros == _NAT
    return pa.Array.from_pandas(micros, mask=mask if mask.any() else None, type=pa.int64()).view(TS)


def _string_array(values: list[str]) -> pa.Array:
    """A string array; a column holding one value throughout (the channel of a part) is repeated."""
    first = values[0] if values else None
    if type(first) is str and values.count(first) == len(values):
        return pa.repeat(pa.scalar(first, pa.string()), len(values))
    return pa.array(values, pa.string())


def _bool_array(values: list[Any]) -> pa.Array:
    return pa.array(values if _BOOL.issuperset(map(type, values)) else list(map(bool, values)), pa.bool_())


_BOOL = frozenset({bool})


def _columns_array(values: list[tuple[tuple[str, str], ...]]) -> pa.Array:
    """The ``columns`` list<struct> array: each distinct value converted once, then taken by index.

    Events of one table share their column list, usually as the same object, so the rows are
    grouped by object identity in C (every value is alive while the batch is built, so ids are
    unambiguous) and only the few distinct objects are compared by value and converted.
    """
    ids = list(map(id, values))
    objects = dict(zip(ids, values, strict=True))  # one entry per distinct object, in first-seen order
    by_value: dict[tuple[tuple[str, str], ...], int] = {}
    uniques: list[Any] = []
    slot: dict[int, int] = {}
    for key, v in objects.items():
        if type(v) is not tuple:  # not hashable as given: convert each value (rare)
            return pa.array(values, type=_COLUMNS_TYPE)
        i = by_value.get(v)
        if i is None:
            i = by_value[v] = len(uniques)
            uniques.append(v)
        slot[key] = i
    table = pa.array(uniques, type=_COLUMNS_TYPE)
    if len(uniques) == len(values):
        return table
    return table.take(pa.array(list(map(slot.__getitem__, ids)), pa.int32()))


def events_to_table(events: Sequence[RealtimeEvent], session_id: str = "") -> pa.Table:
    """The recording table for ``events`` (used by tests and the benchmark)."""
    buf = RowBuffer()
    for ev in events:
        buf.append(ev)
    return pa.Table.from_batches([buf.to_batch(session_id)], schema=SCHEMA)


# --------------------------------------------------------------------------- Arrow → events


def _timestamps(col: pa.ChunkedArray | pa.Array) -> list[datetime | None]:
    micros = col.cast(pa.int64()).to_pylist()
    return [None if v is None else _EPOCH + timedelta(microseconds=v) for v in micros]


_EVENT_FIELDS = frozenset(f.name for f in dataclasses.fields(RealtimeEvent))


def events_from_table(table: pa.Table | pa.RecordBatch) -> Iterator[RealtimeEvent]:
    """Rebuild the recorded events, field for field, from recording rows."""
    n = table.num_rows
    if n == 0:
        return
    names = set(table.schema.names)
    missing = set(COLUMN_NAMES) - {"session_id"} - names
    if missing:
        raise ValueError(f"not a harmony_lab recording: columns {sorted(missing)} are missing")
    cols: dict[str, list[Any]] = {}
    for name in COLUMN_NAMES:
        if name == "session_id":
            continue
        col = table.column(name)
        cols[name] = _timestamps(col) if pa.types.is_timestamp(col.type) else col.to_pylist()
    for i in range(n):
        types_text = cols["json_types"][i]
        types = json.loads(types_text) if types_text else {}
        columns = cols["columns"][i] or []
        errors = cols["errors"][i]
        yield RealtimeEvent(
            kind=cols["kind"][i],
            channel=cols["channel"][i],
            topic=cols["topic"][i],
            seq=cols["seq"][i],
            received_at=cols["received_at"][i],
            received_mono_ns=cols["received_mono_ns"][i],
            schema=cols["schema"][i],
            table=cols["table"][i],
            op=cols["op"][i],
            commit_ts=cols["commit_ts"][i],
            new=decode_json(cols["new"][i], types.get("new")),
            old=decode_json(cols["old"][i], types.get("old")),
            pk=decode_json(cols["pk"][i], types.get("pk")),
            columns=tuple((c["name"], c["type"]) for c in columns),
            errors=None if errors is None else tuple(errors),
            backfilled=bool(cols["backfilled"][i]),
            suppressed=bool(cols["suppressed"][i]),
            payload=decode_json(cols["payload"][i], types.get("payload")),
            status=cols["status"][i],
            reason=cols["reason"][i],
            attempt=cols["attempt"][i],
            gap_start=cols["gap_start"][i],
            gap_end=cols["gap_end"][i],
        )
