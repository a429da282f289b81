"""A LiveFrame's rows on the table widget's wire: the public frame API and the Arrow it produces."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

from harmony_lab.frames import LiveFrame
from harmony_lab.widgets import _wire
from tests.frames.frame_events import make_change, message

COLUMNS = (
    ("id", "int8"),
    ("amount", "numeric"),
    ("score", "float8"),
    ("at", "timestamptz"),
    ("local", "timestamp"),
    ("day", "date"),
    ("ids", "_int8"),
    ("grid", "_int4"),
    ("doc", "json"),
    ("who", "uuid"),
)


def frame_of(n: int) -> LiveFrame:
    lf = LiveFrame(None, "messages")
    for i in range(n):
        lf.apply(make_change("INSERT", message(i)))
    return lf


def test_row_ids_are_the_change_rids_oldest_first():
    lf = LiveFrame(None, "messages")
    seen: list[int] = []
    lf.on_change(lambda c: seen.append(c.rid) if c.op == "insert" else None)
    for i in range(4):
        lf.apply(make_change("INSERT", message(i)))
    lf.apply(make_change("DELETE", None, old={"id": 1}))
    assert lf.row_ids() == [seen[0], seen[2], seen[3]]


def test_wire_batch_keeps_the_order_asked_and_skips_rows_gone():
    lf = frame_of(4)
    rids = lf.row_ids()
    lf.apply(make_change("DELETE", None, old={"id": 2}))
    batch = _wire.wire_batch(lf, [rids[3], rids[2], rids[0], 999])
    assert batch.schema.names[0] == _wire.RID == "__rid"
    assert batch.column(0).to_pylist() == [rids[3], rids[0]]
    assert batch.column(1).to_pylist() == [3, 0]
    assert batch.schema.names[1:] == [name for name, _ in lf.columns]


def test_wire_batch_types_are_native():
    lf = LiveFrame(None, "things")
    row = {
        "id": 1,
        "amount": 10.25,
        "score": 0.5,
        "at": "2024-05-01T12:00:00.5+02:00",
        "local": "2024-05-01T12:00:00",
        "day": "2024-05-01",
        "ids": [2**62, None],
        "grid": [[1, 2], [3, 4]],
        "doc": {"a": "é"},
        "who": "00000000-0000-0000-0000-000000000001",
    }
    lf.apply(make_change("INSERT", row, table="things", columns=COLUMNS))
    lf.apply(
        make_change("INSERT", {**row, "id": 2, "amount": Decimal("-3")}, table="things", columns=COLUMNS)
    )
    batch = _wire.wire_batch(lf, lf.row_ids())
    types = {f.name: f.type for f in batch.schema}
    assert types == {
        "__rid": pa.int64(),
        "id": pa.int64(),
        "amount": pa.decimal128(38, 2),
        "score": pa.float64(),
        "at": pa.timestamp("us", tz="UTC"),
        "local": pa.timestamp("us"),
        "day": pa.date32(),
        "ids": pa.list_(pa.int64()),
        "grid": pa.string(),
        "doc": pa.string(),
        "who": pa.string(),
    }
    assert batch.column(2).to_pylist() == [Decimal("10.25"), Decimal("-3.00")]
    assert batch.column(7).to_pylist()[0] == [2**62, None]
    json_fields = {
        f.name for f in batch.schema if (f.metadata or {}).get(b"ARROW:extension:name") == b"arrow.json"
    }
    assert json_fields == {"grid", "doc"}
    assert batch.column(9).to_pylist()[0] == '{"a":"é"}'
    # pyarrow reads the marked columns back as its canonical JSON extension type
    back = pa.ipc.open_stream(_wire.ipc_bytes(batch)).read_all()
    assert [str(back.schema.field(n).type) for n in ("grid", "doc", "who")] == [
        "extension<arrow.json>",
        "extension<arrow.json>",
        "string",
    ]
    assert back.to_pylist() == pa.Table.from_batches([batch]).to_pylist()


def test_to_arrow_still_gives_floats_for_numeric():
    lf = LiveFrame(None, "things")
    lf.apply(make_change("INSERT", {"id": 1, "amount": 10.25}, table="things", columns=COLUMNS[:2]))
    assert lf.to_arrow().schema.field("amount").type == pa.float64()


def test_wire_columns_name_each_kind():
    lf = LiveFrame(None, "things")
    lf.apply(make_change("INSERT", {"id": 1}, table="things", columns=COLUMNS))
    assert _wire.wire_columns(lf) == [
        ["id", "int8", "int"],
        ["amount", "numeric", "decimal"],
        ["score", "float8", "float"],
        ["at", "timestamptz", "timestamptz"],
        ["local", "timestamp", "timestamp"],
        ["day", "date", "date"],
        ["ids", "_int8", "list"],
        ["grid", "_int4", "list"],
        ["doc", "json", "json"],
        ["who", "uuid", "text"],
    ]
    assert _wire.column_kind(None) == "text"
    assert _wire.column_kind("text[]") == "list"


def test_a_row_id_column_that_clashes_is_a_clear_error():
    lf = frame_of(1)
    with pytest.raises(ValueError, match=r"row_id_column 'body' is also a column.*another name"):
        lf.arrow_batch(lf.row_ids(), row_id_column="body")
    assert lf.arrow_batch(lf.row_ids()).schema.names[0] == "rid"
