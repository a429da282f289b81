"""Broadcast from Database without a database: a ``realtime.messages`` row → the broadcast it stands
for (or a clear reason why not), and the frames each serializer version gets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harmony_lab.capture.types import Change
from harmony_lab.server._bfd import DbMessage, MessageError, message_from_change
from harmony_lab.server._codec import (
    ENCODING_BINARY,
    ENCODING_JSON,
    KIND_USER_BROADCAST,
    V1,
    V2,
    decode_server_binary,
)
from harmony_lab.server._session import Registry

ID = "6f1e2d3c-0000-4000-8000-000000000001"


def row(**over: Any) -> Change:
    new = {
        "topic": "room:1",
        "extension": "broadcast",
        "payload": {"text": "hi", "id": ID},
        "event": "note",
        "private": True,
        "updated_at": "2026-12-03T10:00:00",
        "inserted_at": "2026-12-03T10:00:00",
        "id": ID,
    }
    new.update(over)
    return Change("realtime", "messages", "INSERT", 1_700_000_000_000_000, 1, 1, 1, "d", (), new=new)


def test_a_row_becomes_a_message():
    m = message_from_change(row(), max_payload_bytes=1000)
    assert m == DbMessage(
        "room:1", "note", b'{"text":"hi","id":"' + ID.encode() + b'"}', True, ID, m.commit_ts_us
    )


@pytest.mark.parametrize("missing", ["topic", "event", "id", "inserted_at", "private", "payload"])
def test_a_row_without_a_required_column_is_refused(missing):
    with pytest.raises(MessageError, match=f"no {missing}"):
        message_from_change(row(**{missing: None}), max_payload_bytes=1000)


def test_hostile_rows_are_bounded():
    with pytest.raises(MessageError, match="exceeds 100"):
        message_from_change(row(payload={"x": "y" * 200}), max_payload_bytes=100)
    with pytest.raises(MessageError, match="topic is longer than 255 bytes"):
        message_from_change(row(topic="é" * 128), max_payload_bytes=1000)
    with pytest.raises(MessageError, match="event is longer than 255 bytes"):
        message_from_change(row(event="e" * 256), max_payload_bytes=1000)
    with pytest.raises(MessageError, match="private a boolean"):
        message_from_change(row(private="yes"), max_payload_bytes=1000)


def test_frames_per_serializer_carry_meta_id():
    m = message_from_change(row(), max_payload_bytes=1000)
    source = m.fanout()
    v1 = json.loads(source.frame(V1))
    assert v1 == {
        "topic": "realtime:room:1",
        "event": "broadcast",
        "payload": {
            "type": "broadcast",
            "event": "note",
            "payload": {"text": "hi", "id": ID},
            "meta": {"id": ID},
        },
        "ref": None,
    }
    v2 = source.frame(V2)
    assert isinstance(v2, bytes)
    decoded = decode_server_binary(v2)
    assert decoded["kind"] == KIND_USER_BROADCAST
    assert (decoded["topic"], decoded["event"], decoded["encoding"]) == (
        "realtime:room:1",
        "note",
        ENCODING_JSON,
    )
    assert json.loads(decoded["metadata"]) == {"id": ID}
    assert json.loads(decoded["data"]) == {"text": "hi", "id": ID}
    assert source.frame(V2) is v2  # encoded once per version, shared by every receiver


def test_a_binary_row_is_a_binary_broadcast_for_v2_and_nothing_for_v1():
    m = message_from_change(row(payload=None, binary_payload="\\x00ff10"), max_payload_bytes=1000)
    assert (m.payload_json, m.encoding) == (b"\x00\xff\x10", ENCODING_BINARY)
    source = m.fanout()
    assert source.frame(V1) is None  # JSON frames cannot carry it, as on Supabase
    decoded = decode_server_binary(source.frame(V2))
    assert decoded["kind"] == KIND_USER_BROADCAST
    assert (decoded["event"], decoded["encoding"], decoded["data"]) == (
        "note",
        ENCODING_BINARY,
        b"\x00\xff\x10",
    )
    assert json.loads(decoded["metadata"]) == {"id": ID}


def test_hostile_binary_rows_are_refused():
    with pytest.raises(MessageError, match="both payload and binary_payload"):
        message_from_change(row(binary_payload="\\x00"), max_payload_bytes=1000)
    with pytest.raises(MessageError, match="hex form"):
        message_from_change(row(payload=None, binary_payload="00"), max_payload_bytes=1000)
    with pytest.raises(MessageError, match="not valid hex"):
        message_from_change(row(payload=None, binary_payload="\\xzz"), max_payload_bytes=1000)
    # the size is checked on the text, before any of it is parsed
    with pytest.raises(MessageError, match="exceeds 100"):
        message_from_change(row(payload=None, binary_payload="\\x" + "zz" * 101), max_payload_bytes=100)


def test_registry_sends_each_row_to_its_scope_only():
    from tests.server.test_session import Clock, Peer

    registry, clock = Registry(), Clock()
    v1, v2 = Peer(registry, clock, V1, sid=1), Peer(registry, clock, V2, sid=2)
    v1.join("realtime:room:1")
    v2.join("realtime:room:1")
    v1.out.clear()
    v2.out.clear()
    private = message_from_change(row(), max_payload_bytes=1000)
    public = message_from_change(row(private=False, event="open"), max_payload_bytes=1000)
    assert registry.broadcast_from_db(private) == 0  # nobody joined room:1 as a private channel
    assert registry.broadcast_from_db(public) == 2
    assert [json.loads(f)["payload"]["event"] for f in v1.out] == ["open"]
    assert [decode_server_binary(f)["event"] for f in v2.out if isinstance(f, bytes)] == ["open"]
    assert registry.stats.broadcasts == 2
