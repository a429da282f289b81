"""Wire codec of the Phoenix/Realtime channel protocol — pure functions over ``str``/``bytes``.

Two serializers, chosen per socket by the ``vsn`` query parameter:

* ``1.0.0`` (default): text frames holding JSON objects. Inbound objects need ``topic``, ``event``,
  ``payload`` and a ``ref`` key (null allowed), ``join_ref`` is optional. Outbound objects carry exactly
  ``topic``, ``event``, ``payload`` and ``ref`` — never ``join_ref``.
* ``2.0.0``: text frames holding JSON arrays ``[join_ref, ref, topic, event, payload]`` (extra items are
  ignored) plus binary frames whose first byte is the *kind*:

  ====  =====================  =================  ==================================================
  kind  name                   direction          header after the kind byte (all lengths 1 byte)
  ====  =====================  =================  ==================================================
  0     push                   client → server    join_ref, ref, topic, event lengths; strings; data
  0     push                   server → client    join_ref, topic, event lengths; strings; data
  1     reply                  server → client    join_ref, ref, topic, status lengths; strings; data
  2     broadcast              server → client    topic, event lengths; strings; data
  3     user broadcast push    client → server    join_ref, ref, topic, user_event, metadata lengths,
                                                  encoding (0 binary, 1 JSON); strings; metadata; data
  4     user broadcast         server → client    topic, user_event, metadata lengths, encoding;
                                                  strings; metadata; data
  ====  =====================  =================  ==================================================

realtime-js only understands kind 4 (and sends kind 3 for every broadcast); kinds 0–2 are implemented
for completeness and tests. Nothing here does I/O; :class:`CodecError` carries the reason a frame was
rejected, which the server logs before dropping the frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "KIND_BROADCAST",
    "KIND_PUSH",
    "KIND_REPLY",
    "KIND_USER_BROADCAST",
    "KIND_USER_BROADCAST_PUSH",
    "V1",
    "V2",
    "VSNS",
    "BinaryPayload",
    "CodecError",
    "Fanout",
    "Inbound",
    "UserBroadcast",
    "decode",
    "decode_server_binary",
    "dumps",
    "encode",
    "encode_binary_broadcast",
    "encode_binary_push",
    "encode_binary_reply",
    "encode_client_binary_push",
    "encode_user_broadcast",
    "encode_user_broadcast_push",
]

V1: Final = "1.0.0"
V2: Final = "2.0.0"
VSNS: Final = (V1, V2)
Vsn = Literal["1.0.0", "2.0.0"]

KIND_PUSH: Final = 0
KIND_REPLY: Final = 1
KIND_BROADCAST: Final = 2
KIND_USER_BROADCAST_PUSH: Final = 3
KIND_USER_BROADCAST: Final = 4

ENCODING_BINARY: Final = 0
ENCODING_JSON: Final = 1

_MAX_HEADER_FIELD = 255

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(value: Any) -> str:
    """Compact JSON (no spaces, UTF-8 kept, NaN refused) — the form every outbound frame uses."""
    return _encoder.encode(value)


class CodecError(ValueError):
    """An inbound frame that cannot be decoded; ``str(exc)`` is the reason that gets logged."""


@dataclass(frozen=True, slots=True)
class BinaryPayload:
    """The payload of a binary user broadcast (kind 3) or binary push (kind 0)."""

    data: bytes
    encoding: int = ENCODING_BINARY  # 0 binary, 1 JSON text in ``data``
    event: str | None = None  # user event (kind 3 only)
    metadata: bytes = b""  # JSON object or empty (kind 3 only)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One decoded client → server message.

    ``ref`` and ``join_ref`` keep the client's JSON values (normally strings or null) so replies echo them
    exactly. ``payload`` is whatever JSON the client sent (normally a dict), or a :class:`BinaryPayload`.
    ``binary`` tells whether the frame was a binary one.
    """

    topic: str
    event: str
    payload: Any
    ref: Any = None
    join_ref: Any = None
    binary: bool = False


# ---------------------------------------------------------------------------------------------
# decoding


def decode(frame: str | bytes, vsn: str) -> Inbound:
    """Decode one inbound frame of a socket using serializer ``vsn``; raises :class:`CodecError`."""
    if isinstance(frame, str):
        try:
            value = json.loads(frame)
        except ValueError as exc:  # JSONDecodeError and RecursionError-free subclasses
            raise CodecError(f"malformed JSON: {exc}") from None
        except RecursionError:
            raise CodecError("malformed JSON: nested too deeply") from None
        return _decode_v1(value) if vsn == V1 else _decode_v2(value)
    if vsn == V1:
        raise CodecError("binary frames are not supported by serializer 1.0.0; send JSON text frames")
    return _decode_client_binary(bytes(frame))


def _decode_v1(value: Any) -> Inbound:
    if not isinstance(value, dict):
        raise CodecError(
            f"expected a JSON object with topic, event, payload and ref (vsn 1.0.0); got {_kind(value)}"
        )
    missing = [k for k in ("topic", "event", "payload", "ref") if k not in value]
    if missing:
        raise CodecError(f"message is missing required key(s) {', '.join(missing)}")
    topic, event = value["topic"], value["event"]
    if not isinstance(topic, str) or not isinstance(event, str):
        raise CodecError(f"topic and event must be strings; got topic={_kind(topic)}, event={_kind(event)}")
    ref, join_ref = value["ref"], value.get("join_ref")
    _check_ref("ref", ref)
    _check_ref("join_ref", join_ref)
    return Inbound(topic, event, value["payload"], ref, join_ref)


def _decode_v2(value: Any) -> Inbound:
    if not isinstance(value, list) or len(value) < 5:
        raise CodecError(
            "expected a JSON array [join_ref, ref, topic, event, payload] (vsn 2.0.0); "
            f"got {_kind(value)}{f' of length {len(value)}' if isinstance(value, list) else ''}"
        )
    join_ref, ref, topic, event, payload = value[:5]
    if not isinstance(topic, str) or not isinstance(event, str):
        raise CodecError(f"topic and event must be strings; got topic={_kind(topic)}, event={_kind(event)}")
    _check_ref("ref", ref)
    _check_ref("join_ref", join_ref)
    return Inbound(topic, event, payload, ref, join_ref)


def _check_ref(name: str, ref: Any) -> None:
    if (ref is not None and not isinstance(ref, str | int)) or isinstance(ref, bool):
        raise CodecError(f"{name} must be a string or null; got {_kind(ref)}")


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf, self.pos = buf, pos

    def lengths(self, n: int, what: str) -> list[int]:
        if len(self.buf) < self.pos + n:
            raise CodecError(f"{what}: header truncated ({len(self.buf)} bytes)")
        out = list(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def text(self, size: int, name: str) -> str:
        raw = self.raw(size, name)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise CodecError(f"{name} is not valid UTF-8") from None

    def raw(self, size: int, name: str) -> bytes:
        end = self.pos + size
        if end > len(self.buf):
            raise CodecError(f"{name} runs past the end of the frame")
        out = self.buf[self.pos : end]
        self.pos = end
        return out

    def rest(self) -> bytes:
        return self.buf[self.pos :]


def _decode_client_binary(buf: bytes) -> Inbound:
    if not buf:
        raise CodecError("empty binary frame")
    kind = buf[0]
    r = _Reader(buf, 1)
    if kind == KIND_USER_BROADCAST_PUSH:
        jl, rl, tl, el, ml, encoding = r.lengths(6, "user broadcast push (kind 3)")
        if encoding not in (ENCODING_BINARY, ENCODING_JSON):
            raise CodecError(f"user broadcast push: unknown payload encoding {encoding} (0 binary, 1 JSON)")
        join_ref = r.text(jl, "join_ref") or None
        ref = r.text(rl, "ref") or None
        topic = r.text(tl, "topic")
        user_event = r.text(el, "user event")
        metadata = r.raw(ml, "metadata")
        data = r.rest()
        if encoding == ENCODING_JSON:
            try:
                json.loads(data)
            except (ValueError, RecursionError):
                raise CodecError("user broadcast push: JSON-encoded payload is not valid JSON") from None
        if metadata:
            try:
                meta = json.loads(metadata)
            except (ValueError, RecursionError):
                raise CodecError("user broadcast push: metadata is not valid JSON") from None
            if not isinstance(meta, dict):
                raise CodecError("user broadcast push: metadata must be a JSON object")
        payload = BinaryPayload(data, encoding, user_event, metadata)
        return Inbound(topic, "broadcast", payload, ref, join_ref, binary=True)
    if kind == KIND_PUSH:
        jl, rl, tl, el = r.lengths(4, "push (kind 0)")
        join_ref = r.text(jl, "join_ref") or None
        ref = r.text(rl, "ref") or None
        topic = r.text(tl, "topic")
        event = r.text(el, "event")
        return Inbound(topic, event, BinaryPayload(r.rest()), ref, join_ref, binary=True)
    raise CodecError(f"unsupported binary frame kind {kind}; clients may send kinds 0 (push) and 3")


# ---------------------------------------------------------------------------------------------
# encoding (server → client)


def encode(vsn: str, topic: str, event: str, payload: Any, ref: Any = None, join_ref: Any = None) -> str:
    """A text frame for one outbound message (V1 object without join_ref, or V2 array)."""
    if vsn == V1:
        return (
            f'{{"topic":{dumps(topic)},"event":{dumps(event)},"payload":{dumps(payload)},"ref":{dumps(ref)}}}'
        )
    return dumps([join_ref, ref, topic, event, payload])


def _field(value: str | bytes, name: str) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    if len(raw) > _MAX_HEADER_FIELD:
        raise ValueError(f"{name} is {len(raw)} bytes; binary frames allow at most {_MAX_HEADER_FIELD}")
    return raw


def encode_user_broadcast(
    topic: str, user_event: str, data: bytes, *, encoding: int = ENCODING_JSON, metadata: bytes = b""
) -> bytes:
    """Kind 4: the binary broadcast realtime-js decodes (``{type, event, payload, meta?}``)."""
    t, e, m = _field(topic, "topic"), _field(user_event, "user event"), _field(metadata, "metadata")
    return bytes((KIND_USER_BROADCAST, len(t), len(e), len(m), encoding)) + t + e + m + data


def encode_user_broadcast_push(
    join_ref: str | None,
    ref: str | None,
    topic: str,
    user_event: str,
    data: bytes,
    *,
    encoding: int = ENCODING_JSON,
    metadata: bytes = b"",
) -> bytes:
    """Kind 3, as realtime-js sends it (used by tests and the fuzzer)."""
    j, r = _field(join_ref or "", "join_ref"), _field(ref or "", "ref")
    t, e, m = _field(topic, "topic"), _field(user_event, "user event"), _field(metadata, "metadata")
    header = bytes((KIND_USER_BROADCAST_PUSH, len(j), len(r), len(t), len(e), len(m), encoding))
    return header + j + r + t + e + m + data


def encode_client_binary_push(
    join_ref: str | None, ref: str | None, topic: str, event: str, data: bytes
) -> bytes:
    """Kind 0 as a Phoenix client sends it (join_ref, ref, topic, event)."""
    j, r = _field(join_ref or "", "join_ref"), _field(ref or "", "ref")
    t, e = _field(topic, "topic"), _field(event, "event")
    return bytes((KIND_PUSH, len(j), len(r), len(t), len(e))) + j + r + t + e + data


def encode_binary_push(join_ref: str | None, topic: str, event: str, data: bytes) -> bytes:
    """Kind 0 server → client (Phoenix layout: join_ref, topic, event)."""
    j, t, e = _field(join_ref or "", "join_ref"), _field(topic, "topic"), _field(event, "event")
    return bytes((KIND_PUSH, len(j), len(t), len(e))) + j + t + e + data


def encode_binary_reply(join_ref: str | None, ref: str | None, topic: str, status: str, data: bytes) -> bytes:
    """Kind 1 server → client (a reply with a binary response)."""
    j, r = _field(join_ref or "", "join_ref"), _field(ref or "", "ref")
    t, s = _field(topic, "topic"), _field(status, "status")
    return bytes((KIND_REPLY, len(j), len(r), len(t), len(s))) + j + r + t + s + data


def encode_binary_broadcast(topic: str, event: str, data: bytes) -> bytes:
    """Kind 2 server → client (Phoenix binary broadcast)."""
    t, e = _field(topic, "topic"), _field(event, "event")
    return bytes((KIND_BROADCAST, len(t), len(e))) + t + e + data


def decode_server_binary(buf: bytes) -> dict[str, Any]:
    """Decode a server → client binary frame (kinds 0, 1, 2, 4) into a dict — for tests and tools."""
    if not buf:
        raise CodecError("empty binary frame")
    kind, r = buf[0], _Reader(buf, 1)
    if kind == KIND_USER_BROADCAST:
        tl, el, ml, encoding = r.lengths(4, "user broadcast (kind 4)")
        topic, event = r.text(tl, "topic"), r.text(el, "user event")
        metadata = r.raw(ml, "metadata")
        return {"kind": kind, "topic": topic, "event": event, "metadata": metadata,
                "encoding": encoding, "data": r.rest()}  # fmt: skip
    if kind == KIND_PUSH:
        jl, tl, el = r.lengths(3, "push (kind 0)")
        return {"kind": kind, "join_ref": r.text(jl, "join_ref") or None, "topic": r.text(tl, "topic"),
                "event": r.text(el, "event"), "data": r.rest()}  # fmt: skip
    if kind == KIND_REPLY:
        jl, rl, tl, sl = r.lengths(4, "reply (kind 1)")
        return {"kind": kind, "join_ref": r.text(jl, "join_ref") or None, "ref": r.text(rl, "ref") or None,
                "topic": r.text(tl, "topic"), "status": r.text(sl, "status"), "data": r.rest()}  # fmt: skip
    if kind == KIND_BROADCAST:
        tl, el = r.lengths(2, "broadcast (kind 2)")
        return {"kind": kind, "topic": r.text(tl, "topic"), "event": r.text(el, "event"), "data": r.rest()}
    raise CodecError(f"unknown server binary frame kind {kind}")


# ---------------------------------------------------------------------------------------------
# messages that go to many sockets: encoded once per serializer, then shared


@dataclass(slots=True, eq=False)
class Fanout:
    """A fastlane message (``join_ref`` and ``ref`` null): identical bytes for every receiver of a vsn."""

    topic: str
    event: str
    payload: Any
    _cache: dict[str, str] = field(default_factory=dict, repr=False)

    def frame(self, vsn: str) -> str:
        out = self._cache.get(vsn)
        if out is None:
            out = self._cache[vsn] = encode(vsn, self.topic, self.event, self.payload)
        return out


@dataclass(slots=True, eq=False)
class UserBroadcast:
    """A broadcast that arrived as a kind-3 binary push (or binary REST): kind 4 to V2 receivers.

    V1 receivers get the JSON text form when the user payload is JSON; binary-encoded payloads are not
    delivered to V1 sockets (``frame`` returns None), like the real server.
    """

    topic: str
    user_event: str
    data: bytes
    encoding: int = ENCODING_JSON
    metadata: bytes = b""
    _v1: str | None = field(default=None, repr=False)
    _v2: bytes | None = field(default=None, repr=False)

    def frame(self, vsn: str) -> str | bytes | None:
        if vsn == V2:
            if self._v2 is None:
                self._v2 = encode_user_broadcast(
                    self.topic, self.user_event, self.data, encoding=self.encoding, metadata=self.metadata
                )
            return self._v2
        if self.encoding != ENCODING_JSON:
            return None
        if self._v1 is None:
            payload = (
                '{"type":"broadcast","event":' + dumps(self.user_event) + ',"payload":'
                + self.data.decode() + "}"
            )  # fmt: skip
            self._v1 = f'{{"topic":{dumps(self.topic)},"event":"broadcast","payload":{payload},"ref":null}}'
        return self._v1
