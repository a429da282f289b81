"""A LiveFrame's rows on the wire to the table widget's front end.

Rows travel as Arrow IPC streams (decoded in the browser by flechette): one record batch with the
frame's row id in an int64 ``__rid`` column first, then every column in its native Arrow type
(:meth:`~harmony_lab.LiveFrame.arrow_batch`: exact decimals, tz-aware timestamps, lists, JSON text
marked ``arrow.json``). The ``columns`` trait names each column's Postgres type and a short kind the
view can size and label it by.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from harmony_lab.frames import LiveFrame

__all__ = ["RID", "column_kind", "ipc_bytes", "wire_batch", "wire_columns"]

RID = "__rid"

_KINDS = {
    **dict.fromkeys(("int2", "int4", "int8", "oid", "smallint", "integer", "int", "bigint"), "int"),
    **dict.fromkeys(("smallserial", "serial", "bigserial", "serial2", "serial4", "serial8"), "int"),
    **dict.fromkeys(("float4", "float8", "real", "double precision", "money"), "float"),
    **dict.fromkeys(("numeric", "decimal"), "decimal"),
    **dict.fromkeys(("bool", "boolean"), "bool"),
    **dict.fromkeys(("timestamptz", "timestamp with time zone"), "timestamptz"),
    **dict.fromkeys(("timestamp", "timestamp without time zone"), "timestamp"),
    "date": "date",
    "json": "json",
    "jsonb": "json",
}


def column_kind(pg_type: str | None) -> str:
    """What a column is to the view: int, float, decimal, bool, timestamptz, timestamp, date, json,
    list (a Postgres array) or text (everything else)."""
    name = (pg_type or "").strip().lower()
    if name.startswith("_") or name.endswith("[]"):
        return "list"
    return _KINDS.get(name, "text")


def wire_columns(frame: LiveFrame) -> list[list[str | None]]:
    """The ``columns`` trait: ``[name, Postgres type, kind]`` per column, in the frame's order."""
    return [[name, pg, column_kind(pg)] for name, pg in frame.columns]


def wire_batch(frame: LiveFrame, rids: Iterable[int]) -> pa.RecordBatch:
    """The rows with these ids (those the frame still holds) as the record batch the view reads."""
    return frame.arrow_batch(rids, row_id_column=RID)


def ipc_bytes(batch: pa.RecordBatch) -> bytes:
    """One record batch as an Arrow IPC stream (schema message, batch, end-of-stream marker)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()
