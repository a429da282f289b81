"""LiveFrame.at: arguments, projections, and damaged part files (skipped with a warning)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harmony_lab.events import RealtimeEvent
from harmony_lab.frames import LiveFrame
from harmony_lab.recording import CorruptPartWarning, Recorder

T0 = datetime(2025, 4, 1, 12, 0, tzinfo=UTC)
COLS = (("id", "int8"), ("body", "text"), ("n", "int4"))


def _ev(i: int, op: str, key: int, channel: str = "a", **new: object) -> RealtimeEvent:
    row = {"id": key, "body": f"b{i}", "n": i, **new}
    return RealtimeEvent(
        kind="change",
        channel=channel,
        seq=i,
        received_at=T0 + timedelta(seconds=i),
        received_mono_ns=i,
        schema="public",
        table="messages",
        op=op,
        new=None if op == "DELETE" else row,
        old={"id": key} if op == "DELETE" else None,
        pk={"id": key},
        columns=COLS,
    )


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    rec = Recorder(None, tmp_path / "rec").start()
    for ev in [
        _ev(1, "INSERT", 1),
        _ev(2, "INSERT", 2, channel="b"),
        _ev(3, "UPDATE", 1),
        _ev(4, "DELETE", 2, channel="b"),
        _ev(5, "INSERT", 3),
    ]:
        rec.write(ev)
    rec.stop()
    return tmp_path / "rec"


def test_state_at_instants(recording: Path) -> None:
    assert len(LiveFrame.at(recording, "messages", T0)) == 0
    at3 = LiveFrame.at(recording, "messages", T0 + timedelta(seconds=3))
    assert at3.df.to_dict("records") == [{"id": 1, "body": "b3", "n": 3}, {"id": 2, "body": "b2", "n": 2}]
    assert at3.key == ("id",)
    assert at3.columns == list(COLS)
    at5 = LiveFrame.at(recording, "messages", (T0 + timedelta(seconds=5)).isoformat())
    assert at5.df["id"].tolist() == [1, 3]
    assert len(LiveFrame.at(recording, "reactions", T0 + timedelta(seconds=5))) == 0


def test_columns_projection(recording: Path) -> None:
    at = LiveFrame.at(recording, "messages", T0 + timedelta(seconds=5), columns=["id", "n"])
    assert at.df.to_dict("records") == [{"id": 1, "n": 3}, {"id": 3, "n": 5}]
    with pytest.raises(ValueError, match="the table's columns are: id, body, n"):
        LiveFrame.at(recording, "messages", T0 + timedelta(seconds=5), columns=["nope"])


def test_bad_arguments(recording: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        LiveFrame.at(recording, "messages", datetime(2025, 4, 1))
    with pytest.raises(ValueError, match="ISO 8601"):
        LiveFrame.at(recording, "messages", "yesterday")
    with pytest.raises(TypeError, match="key must be"):
        LiveFrame.at(recording, "messages", T0, key=3)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="no recording at"):
        LiveFrame.at(tmp_path / "missing", "messages", T0)
    # hostile names are values, never SQL
    assert len(LiveFrame.at(recording, "x'; drop table ev; --", T0 + timedelta(seconds=9))) == 0
    at = LiveFrame.at(recording, "messages", T0 + timedelta(seconds=9), key=["id\"'/~"])
    assert len(at) == 4  # no such column: every INSERT and UPDATE is a row of its own, as when fed


def test_a_foreign_file_is_skipped_with_a_warning(recording: Path) -> None:
    part = next(recording.glob("date=*/channel=a/*.parquet"))
    (part.parent / "part-zz-999.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.warns(CorruptPartWarning, match="part-zz-999"):
        at = LiveFrame.at(recording, "messages", T0 + timedelta(seconds=9))
    assert at.df["id"].tolist() == [1, 3]


def test_a_part_damaged_inside_is_skipped_with_a_warning(recording: Path) -> None:
    part = next(recording.glob("date=*/channel=b/*.parquet"))
    data = bytearray(part.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    for i in range(4, len(data) - footer):  # every data page byte: the footer still reads
        data[i] ^= 0x5A
    part.write_bytes(bytes(data))
    with pytest.warns(CorruptPartWarning, match=part.name):
        at = LiveFrame.at(recording, "messages", T0 + timedelta(seconds=9))
    assert at.df["id"].tolist() == [1, 3]  # channel b's rows (id 2, inserted then deleted) are lost
