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
import json
import logging
import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa

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


def _native(value: Any) -> bool:
    """True when ``value`` is JSON-native all the way down (then it needs no notes)."""
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return True
    if t is float:
        return value - value == 0.0  # finite (nan - nan and inf - inf are nan)
    if t is dict:
        for k, v in value.items():
            if type(k) is not str:
                return False
            tv = type(v)
            if tv is str or tv is int or tv is bool or v is None:
                continue
            if not _native(v):
                return False
        return True
    if t is list:
        return all(_native(v) for v in value)
    return False


def encode_json(value: Any) -> tuple[str | None, list[list[Any]] | None]:
    """``(json_text, notes)`` for one free-form field; ``(None, None)`` for None."""
    if value is None:
        return None, None
    if _native(value):
        return _encode(value), None
    notes: list[list[Any]] = []
    text = _encode(_plain(value, [], notes))
    return text, (notes or None)


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
        evs, self.events = self.events, []
        json_cols: dict[str, list[str | None]] = {}
        types: list[dict[str, Any] | None] = [None] * len(evs)
        for name in JSON_COLUMNS:
            texts: list[str | None] = []
            for i, ev in enumerate(evs):
                text, notes = encode_json(getattr(ev, name))
                texts.append(text)
                if notes:
                    row_types = types[i]
                    if row_types is None:
                        row_types = types[i] = {}
                    row_types[name] = notes
            json_cols[name] = texts
        values: dict[str, list[Any]] = {
            "session_id": [session_id] * len(evs),
            "seq": [ev.seq for ev in evs],
            "received_at": [ev.received_at for ev in evs],
            "received_mono_ns": [ev.received_mono_ns for ev in evs],
            "kind": [ev.kind for ev in evs],
            "channel": [ev.channel for ev in evs],
            "topic": [ev.topic for ev in evs],
            "schema": [ev.schema for ev in evs],
            "table": [ev.table for ev in evs],
            "op": [ev.op for ev in evs],
            "commit_ts": [ev.commit_ts for ev in evs],
            **json_cols,
            "columns": [ev.columns for ev in evs],
            "errors": [ev.errors for ev in evs],
            "status": [ev.status for ev in evs],
            "reason": [ev.reason for ev in evs],
            "backfilled": [bool(ev.backfilled) for ev in evs],
            "suppressed": [bool(ev.suppressed) for ev in evs],
            "attempt": [ev.attempt for ev in evs],
            "gap_start": [ev.gap_start for ev in evs],
            "gap_end": [ev.gap_end for ev in evs],
            "json_types": [None if t is None else _encode(t) for t in types],
        }
        arrays = [pa.array(values[f.name], type=f.type) for f in SCHEMA]
        return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


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
