"""The pure wire codec: V1 objects, V2 arrays, binary kinds 0–4."""

from __future__ import annotations

import json

import pytest

from harmony_lab.server._codec import (
    V1,
    V2,
    BinaryPayload,
    CodecError,
    Fanout,
    UserBroadcast,
    decode,
    decode_server_binary,
    encode,
    encode_binary_broadcast,
    encode_binary_push,
    encode_binary_reply,
    encode_client_binary_push,
    encode_user_broadcast,
    encode_user_broadcast_push,
)


def test_v1_decode_requires_ref_key_and_keeps_values():
    m = decode('{"topic":"realtime:a","event":"phx_join","payload":{"x":1},"ref":"1","join_ref":"1"}', V1)
    assert (m.topic, m.event, m.payload, m.ref, m.join_ref) == ("realtime:a", "phx_join", {"x": 1}, "1", "1")
    m = decode('{"topic":"phoenix","event":"heartbeat","payload":{},"ref":null}', V1)
    assert m.ref is None
    assert m.join_ref is None
    with pytest.raises(CodecError, match="missing required key"):
        decode('{"topic":"phoenix","event":"heartbeat","payload":{}}', V1)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("{not json", "malformed JSON"),
        ("[1,2,3,4,5]", "expected a JSON object"),
        ('{"topic":1,"event":"x","payload":{},"ref":null}', "must be strings"),
        ('{"topic":"t","event":"x","payload":{},"ref":[1]}', "ref must be a string"),
        ('{"topic":"t","event":"x","payload":{},"ref":true}', "ref must be a string"),
        ("[" * 100000, "malformed JSON"),
    ],
)
def test_v1_decode_errors_name_the_problem(frame, reason):
    with pytest.raises(CodecError, match=reason):
        decode(frame, V1)


def test_v1_rejects_binary_frames():
    with pytest.raises(CodecError, match="binary frames are not supported"):
        decode(b"\x03abc", V1)


def test_v2_decode_arrays_ignores_extra_items():
    m = decode('["1","2","realtime:a","broadcast",{"event":"e"},"extra"]', V2)
    assert (m.join_ref, m.ref, m.topic, m.event, m.payload) == (
        "1",
        "2",
        "realtime:a",
        "broadcast",
        {"event": "e"},
    )
    with pytest.raises(CodecError, match="expected a JSON array"):
        decode('{"topic":"a"}', V2)
    with pytest.raises(CodecError, match="of length 4"):
        decode('[null,null,"t","e"]', V2)


def test_encode_v1_has_exactly_four_keys_and_never_join_ref():
    out = json.loads(encode(V1, "realtime:a", "phx_reply", {"status": "ok"}, "3", "1"))
    assert out == {"topic": "realtime:a", "event": "phx_reply", "payload": {"status": "ok"}, "ref": "3"}
    out = json.loads(encode(V1, "realtime:a", "presence_state", {}))
    assert "ref" in out
    assert out["ref"] is None


def test_encode_v2_array_order():
    assert json.loads(encode(V2, "t", "e", {"a": 1}, "5", "2")) == ["2", "5", "t", "e", {"a": 1}]


def test_kind3_roundtrip_as_realtime_js_sends_it():
    frame = encode_user_broadcast_push("6", "7", "realtime:room1", "hello", b'{"a":1}')
    m = decode(frame, V2)
    assert m.binary
    assert m.event == "broadcast"
    assert (m.join_ref, m.ref, m.topic) == ("6", "7", "realtime:room1")
    assert m.payload == BinaryPayload(b'{"a":1}', 1, "hello", b"")
    # empty refs decode to None
    m = decode(encode_user_broadcast_push(None, None, "t", "e", b"\x00\xff", encoding=0), V2)
    assert m.ref is None
    assert m.join_ref is None
    assert m.payload.data == b"\x00\xff"


def test_kind3_utf8_lengths_are_bytes():
    frame = encode_user_broadcast_push("1", "2", "realtime:café", "événement", b"{}")
    m = decode(frame, V2)
    assert m.topic == "realtime:café"
    assert m.payload.event == "événement"


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "empty binary frame"),
        (b"\x03\x01", "header truncated"),
        (b"\x03\x05\x00\x00\x00\x00\x01ab", "runs past the end"),
        (b"\x03\x00\x00\x01\x01\x00\x07ab{}", "unknown payload encoding"),
        (b"\x03\x00\x00\x01\x01\x00\x01ab{nope", "not valid JSON"),
        (b"\x03\x00\x00\x01\x01\x02\x01ab[]{}", "metadata must be a JSON object"),
        (b"\x03\x00\x00\x01\x01\x00\x01\xffb{}", "not valid UTF-8"),
        (b"\x09", "unsupported binary frame kind 9"),
    ],
)
def test_binary_decode_errors(frame, reason):
    with pytest.raises(CodecError, match=reason):
        decode(frame, V2)


def test_kind0_client_push():
    m = decode(encode_client_binary_push("1", "2", "realtime:x", "custom", b"\x01\x02"), V2)
    assert (m.event, m.ref, m.join_ref, m.payload.data, m.payload.event) == (
        "custom",
        "2",
        "1",
        b"\x01\x02",
        None,
    )


def test_server_binary_kinds_roundtrip():
    k4 = decode_server_binary(encode_user_broadcast("realtime:a", "ev", b'{"x":1}', metadata=b'{"id":"1"}'))
    assert k4 == {"kind": 4, "topic": "realtime:a", "event": "ev", "metadata": b'{"id":"1"}', "encoding": 1,
                  "data": b'{"x":1}'}  # fmt: skip
    assert decode_server_binary(encode_binary_push("1", "t", "e", b"d"))["join_ref"] == "1"
    r = decode_server_binary(encode_binary_reply("1", "2", "t", "ok", b"d"))
    assert (r["ref"], r["status"], r["data"]) == ("2", "ok", b"d")
    assert decode_server_binary(encode_binary_broadcast("t", "e", b"d"))["event"] == "e"


def test_header_fields_over_255_bytes_are_refused():
    with pytest.raises(ValueError, match="at most 255"):
        encode_user_broadcast("t" * 256, "e", b"")


def test_fanout_encodes_once_per_vsn():
    f = Fanout("realtime:a", "broadcast", {"type": "broadcast", "event": "e", "payload": {}})
    assert f.frame(V1) is f.frame(V1)
    assert json.loads(f.frame(V2)) == [None, None, "realtime:a", "broadcast", f.payload]


def test_user_broadcast_v1_form_and_binary_not_for_v1():
    ub = UserBroadcast("realtime:a", "ev", b'{"k": [1, 2]}')
    assert json.loads(ub.frame(V1)) == {
        "topic": "realtime:a", "event": "broadcast", "ref": None,
        "payload": {"type": "broadcast", "event": "ev", "payload": {"k": [1, 2]}},
    }  # fmt: skip
    assert decode_server_binary(ub.frame(V2))["data"] == b'{"k": [1, 2]}'  # relayed byte for byte
    assert UserBroadcast("realtime:a", "ev", b"\x00", encoding=0).frame(V1) is None
