"""The per-socket protocol state machine and the shared topic registry — no I/O.

A :class:`Session` is one websocket. The asyncio glue feeds it every inbound frame in order
(:meth:`Session.receive`), calls :meth:`Session.tick` when :meth:`Session.next_deadline` passes, and
:meth:`Session.close` when the socket goes away. Outbound frames go straight to the ``send`` callable
given at construction (the glue's non-blocking queue). Work that needs I/O beyond sending — the
postgres_changes hub, sleeping before an error reply, closing the socket — comes back as a list of
*effects* the glue performs in order before it reads the next frame, so a push sent right after
``phx_join`` always sees the join completed.

The :class:`Registry` is shared by all sessions of a server: which channels are joined on which topic,
presence, and the fan-out of broadcasts (each fan-out message is encoded once per serializer version).
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import uuid
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harmony_lab.server._auth import AuthError, TokenVerifier
from harmony_lab.server._authz import (
    MAX_REPLAY,
    Authorizer,
    AuthzError,
    Policies,
    Replayed,
    no_longer_readable,
    unreadable,
)
from harmony_lab.server._codec import (
    ENCODING_BINARY,
    V1,
    V2,
    BinaryPayload,
    CodecError,
    Fanout,
    Inbound,
    UserBroadcast,
    decode,
    dumps,
    encode,
)
from harmony_lab.server._limits import RateWindow, ServerLimits

if TYPE_CHECKING:
    from harmony_lab.server._bfd import DbMessage

__all__ = [
    "Await",
    "Channel",
    "DeferredReply",
    "Disconnect",
    "Effect",
    "PgSubscribe",
    "PgUnsubscribe",
    "PgUpdateClaims",
    "Registry",
    "ServerStats",
    "Session",
    "Sleep",
    "default_binding_id",
    "run_inline",
]

logger = logging.getLogger(__name__)

TOPIC_PREFIX = "realtime:"
# like the real server's phash2 range; never 0, which realtime-py treats as "no id"
_BINDING_ID_SPACE = 2**27 - 1


# ---------------------------------------------------------------------------------------------
# effects the glue performs


@dataclass(frozen=True, slots=True)
class PgSubscribe:
    """Subscribe ``channel``'s postgres_changes bindings; report with :meth:`Channel.pg_result`."""

    channel: Channel
    bindings: list[dict[str, Any]]
    claims: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PgUpdateClaims:
    """New verified claims for ``channel``'s subscriptions; report with :meth:`Channel.pg_result`."""

    channel: Channel
    claims: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PgUnsubscribe:
    channel: Channel


@dataclass(frozen=True, slots=True)
class Sleep:
    """Hold the socket (no further frames processed) before sending what follows — error backoff."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the websocket after the frames queued so far."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class DeferredReply:
    """A join error reply, sent after a preceding :class:`Sleep` (the real server's error backoff).

    The glue calls :meth:`run`; for a superseded V2 channel it also sends that channel's ``phx_close``.
    """

    session: Session
    msg: Inbound
    reason: str
    superseded: Channel | None = None

    def run(self) -> None:
        self.session._reply(self.msg, "error", {"reason": self.reason})
        if self.superseded is not None and self.session.vsn == V2:
            self.session._close_push(self.superseded)


@dataclass(frozen=True, slots=True)
class Await:
    """Database work (Realtime Authorization): the glue awaits ``run()`` and performs the effects it
    returns, before the next frame of the socket is read (so the socket's frames stay in order)."""

    run: Callable[[], Awaitable[list[Effect]]]


Effect = PgSubscribe | PgUpdateClaims | PgUnsubscribe | Sleep | Disconnect | DeferredReply | Await

NO_DATABASE = (
    "UnableToConnectToProject: Realtime was unable to connect to the project database: this server runs "
    "without a database, so private channels (Realtime Authorization) cannot be authorised"
)
PRIVATE_ONLY = "PrivateOnly: This project only allows private channels"


# ---------------------------------------------------------------------------------------------
# helpers


def default_binding_id(binding: Mapping[str, Any]) -> int:
    """A deterministic id in 1..2^27-1 for a postgres_changes binding (identical maps → identical ids)."""
    try:
        canonical = json.dumps(binding, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        canonical = repr(sorted(binding.items(), key=lambda kv: str(kv[0])))
    return zlib.crc32(canonical.encode()) % _BINDING_ID_SPACE + 1


_MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z in epoch milliseconds
_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def _is_int(value: Any) -> bool:
    """A JSON integer (not a boolean, not a float)."""
    return isinstance(value, int) and not isinstance(value, bool)


def flexible_bool(value: Any, default: bool = False) -> bool:
    """JSON booleans or the strings ``"true"``/``"false"`` (any case); anything else → ``default``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low == "true":
            return True
        if low == "false":
            return False
    return default


_phx_counter = itertools.count(1)
_phx_salt = int.from_bytes(os.urandom(6), "big")


def new_phx_ref() -> str:
    """A unique, opaque presence ref in the style of Phoenix (16 url-safe characters)."""
    n = (next(_phx_counter) << 48) ^ _phx_salt
    return base64.urlsafe_b64encode(n.to_bytes(12, "big")).decode()


@dataclass(slots=True)
class ServerStats:
    """Counters of one server (also the answer of the admin ``stats`` endpoint)."""

    connections: int = 0
    connections_total: int = 0
    frames_in: int = 0
    frames_out: int = 0
    joins: int = 0
    broadcasts: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    dropped_outbound: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "connections": self.connections, "connections_total": self.connections_total,
            "frames_in": self.frames_in, "frames_out": self.frames_out, "joins": self.joins,
            "broadcasts": self.broadcasts, "rejected": dict(self.rejected),
            "dropped_outbound": self.dropped_outbound,
        }  # fmt: skip


# ---------------------------------------------------------------------------------------------
# registry


@dataclass(slots=True)
class _Presence:
    key: str
    meta: dict[str, Any]
    user: dict[str, Any]  # the payload as tracked, for the identical-retrack check


class Registry:
    """Topics → joined channels, presence per topic, and fan-out. Shared by every session."""

    def __init__(self) -> None:
        self._topics: dict[tuple[str, bool], dict[Channel, None]] = {}
        self._presence: dict[tuple[str, bool], dict[Channel, _Presence]] = {}
        self.stats = ServerStats()
        # the JSON of the last postgres change fanned out: one ``data`` object is shared by every
        # subscriber of that change, so it is encoded once per change, not once per subscriber
        self.pg_json = _PgFrameCache()

    def members(self, topic: str, private: bool = False) -> list[Channel]:
        return list(self._topics.get((topic, private), ()))

    def topics(self) -> list[str]:
        return sorted({t for t, _ in self._topics})

    def add(self, channel: Channel) -> None:
        self._topics.setdefault(channel.scope, {})[channel] = None

    def remove(self, channel: Channel) -> None:
        """Forget ``channel``; its presence (if any) leaves, and everyone else on the topic hears it."""
        members = self._topics.get(channel.scope)
        if members is not None:
            members.pop(channel, None)
            if not members:
                del self._topics[channel.scope]
        self.untrack(channel)

    def fanout(
        self,
        scope: tuple[str, bool],
        message: Fanout | UserBroadcast,
        exclude: Channel | None = None,
        message_id: str | None = None,
    ) -> int:
        """Send ``message`` to every channel on ``scope`` but ``exclude`` (and those that replayed the
        stored message ``message_id`` at join); returns how many got it."""
        n = 0
        for ch in tuple(self._topics.get(scope, ())):
            if ch is exclude or not ch.reads("broadcast") or message_id in ch.replayed_ids:
                continue
            frame = message.frame(ch.session.vsn)
            if frame is not None and ch.session.emit(frame):
                n += 1
        return n

    def broadcast(self, topic: str, event: str, payload: Any, *, private: bool = False) -> int:
        """A text broadcast from outside any socket (REST); payload is the user payload."""
        message = Fanout(topic, "broadcast", {"type": "broadcast", "event": event, "payload": payload})
        self.stats.broadcasts += 1
        return self.fanout((topic, private), message)

    def broadcast_from_db(self, message: DbMessage) -> int:
        """A row of ``realtime.messages`` read from the WAL (Broadcast from Database): to the topic's
        private channels if the row is private, else to its public ones, with ``meta.id``."""
        self.stats.broadcasts += 1
        return self.fanout(
            (TOPIC_PREFIX + message.topic, message.private), message.fanout(), message_id=message.id
        )

    def broadcast_binary(self, topic: str, event: str, data: bytes, *, private: bool = False) -> int:
        self.stats.broadcasts += 1
        return self.fanout((topic, private), UserBroadcast(topic, event, data, ENCODING_BINARY))

    # -- presence ------------------------------------------------------------------------------

    def presence_state(self, scope: tuple[str, bool]) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for p in self._presence.get(scope, {}).values():
            state.setdefault(p.key, {"metas": []})["metas"].append(p.meta)
        return state

    def track(self, channel: Channel, payload: dict[str, Any]) -> None:
        table = self._presence.setdefault(channel.scope, {})
        old = table.get(channel)
        if old is not None and old.user == payload:
            return  # identical re-track: no-op
        meta = {**payload, "phx_ref": new_phx_ref()}
        leaves: dict[str, Any] = {}
        if old is not None:
            meta["phx_ref_prev"] = old.meta["phx_ref"]
            leaves = {old.key: {"metas": [old.meta]}}
        table[channel] = _Presence(channel.presence_key, meta, payload)
        self._presence_diff(channel.scope, {channel.presence_key: {"metas": [meta]}}, leaves)

    def untrack(self, channel: Channel) -> None:
        table = self._presence.get(channel.scope)
        if not table or channel not in table:
            return
        old = table.pop(channel)
        if not table:
            del self._presence[channel.scope]
        self._presence_diff(channel.scope, {}, {old.key: {"metas": [old.meta]}})

    def _presence_diff(self, scope: tuple[str, bool], joins: dict[str, Any], leaves: dict[str, Any]) -> None:
        message = Fanout(scope[0], "presence_diff", {"joins": joins, "leaves": leaves})
        for ch in tuple(self._topics.get(scope, ())):
            if ch.presence_enabled and ch.reads("presence"):
                ch.session.emit(message.frame(ch.session.vsn))


# ---------------------------------------------------------------------------------------------
# channel


class Channel:
    """One joined topic on one socket — also the *subscriber* handed to the postgres_changes hub."""

    __slots__ = (
        "ack",
        "bindings",
        "claims",
        "exp",
        "join_ref",
        "policies",
        "presence_calls",
        "presence_enabled",
        "presence_key",
        "private",
        "replayed_ids",
        "self_broadcast",
        "session",
        "token",
        "topic",
    )

    def __init__(self, session: Session, topic: str, join_ref: Any) -> None:
        self.session = session
        self.topic = topic
        self.join_ref = join_ref
        self.ack = False
        self.self_broadcast = False
        self.presence_enabled = False
        self.presence_key = ""
        self.private = False
        self.bindings: list[dict[str, Any]] = []
        self.claims: dict[str, Any] = {}
        self.token = ""
        self.exp: float | None = None
        self.presence_calls: RateWindow | None = None
        # Realtime Authorization of a private channel (None on a public one): evaluated at join,
        # writes on first use, all again when the token changes
        self.policies: Policies | None = None
        # ids of the stored broadcasts replayed at join: not delivered again when they arrive live
        self.replayed_ids: frozenset[str] = frozenset()

    def reads(self, extension: str) -> bool:
        """Whether this channel may receive ``extension`` (``broadcast`` / ``presence``) messages."""
        if not self.private:
            return True
        return self.policies is not None and self.policies.get(extension, "read") is True

    @property
    def channel_name(self) -> str:
        """The topic without ``realtime:`` (what ``system`` messages call ``channel``)."""
        return self.topic[len(TOPIC_PREFIX) :]

    @property
    def scope(self) -> tuple[str, bool]:
        """Public and private channels of the same name are separate topics, as on the real server."""
        return (self.topic, self.private)

    @property
    def open(self) -> bool:
        return self.session.channels.get(self.topic) is self

    def push(self, event: str, payload: Any) -> None:
        """A message pushed by the channel: carries the join_ref (V2), ``ref`` null."""
        self.session.emit(encode(self.session.vsn, self.topic, event, payload, None, self.join_ref))

    def system(self, extension: str, status: str, message: str) -> None:
        self.push(
            "system",
            {"channel": self.channel_name, "extension": extension, "message": message, "status": status},
        )

    def deliver(self, ids: list[int], data: Mapping[str, Any]) -> None:
        """One postgres change for this channel (called by the hub; non-blocking)."""
        if not self.open:
            return
        frame = _pg_change_frame(self.session.registry.pg_json, self.session.vsn, self.topic, ids, data)
        self.session.emit(frame)

    def pg_result(self, error: str | None) -> None:
        """Outcome of a hub subscribe / claims update: the ``system`` message the real server sends."""
        if not self.open:
            return
        if error is None:
            self.system("postgres_changes", "ok", "Subscribed to PostgreSQL")
        else:
            self.system("postgres_changes", "error", error)

    def __repr__(self) -> str:
        return f"<Channel {self.topic} join_ref={self.join_ref!r} socket={self.session.sid}>"


class _PgFrameCache:
    """postgres_changes ``data`` is the same object for every subscriber of one change: JSON it once."""

    __slots__ = ("data", "text")

    def __init__(self) -> None:
        self.data: Any = None
        self.text = ""


def _pg_change_frame(
    cache: _PgFrameCache, vsn: str, topic: str, ids: list[int], data: Mapping[str, Any]
) -> str:
    if cache.data is not data:
        cache.text = dumps(data)
        cache.data = data
    payload = '{"ids":' + dumps(list(ids)) + ',"data":' + cache.text + "}"
    if vsn == V1:
        return (
            '{"topic":' + dumps(topic) + ',"event":"postgres_changes","payload":' + payload + ',"ref":null}'
        )
    return "[null,null," + dumps(topic) + ',"postgres_changes",' + payload + "]"


# ---------------------------------------------------------------------------------------------
# session


class Session:
    """The protocol state of one websocket (see the module docstring).

    ``apikey`` / ``apikey_claims`` are the socket's verified project key; ``clock`` returns epoch
    seconds (tests pass a fake); ``send`` takes one outbound frame (``str`` → text, ``bytes`` → binary).
    """

    def __init__(
        self,
        *,
        sid: int,
        vsn: str,
        apikey: str,
        verifier: TokenVerifier,
        registry: Registry,
        send: Callable[[str | bytes], None],
        clock: Callable[[], float],
        limits: ServerLimits | None = None,
        binding_id: Callable[[Mapping[str, Any]], int] = default_binding_id,
        pg_available: bool = True,
        authorizer: Authorizer | None = None,
        private_only: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if vsn not in (V1, V2):
            raise ValueError(f"vsn must be {V1!r} or {V2!r}; got {vsn!r}")
        self.sid = sid
        self.vsn = vsn
        self.apikey = apikey
        self.verifier = verifier
        self.registry = registry
        self.limits = limits or ServerLimits()
        self._send = send
        self.clock = clock
        self.binding_id = binding_id
        self.pg_available = pg_available
        self.authorizer = authorizer
        self.private_only = private_only
        self.headers: Mapping[str, str] = dict(headers or {})
        """The ``x-*`` headers of the websocket request: ``request.headers`` in authorization checks."""
        self.channels: dict[str, Channel] = {}
        lim = self.limits
        self._joins = RateWindow.per_second(lim.max_joins_per_second, lim.rate_window_s)
        self._events = RateWindow.per_second(lim.max_events_per_second, lim.rate_window_s)
        self._presence_events = RateWindow.per_second(lim.max_presence_events_per_second, lim.rate_window_s)
        self.closed = False

    # -- output --------------------------------------------------------------------------------

    def emit(self, frame: str | bytes) -> bool:
        """Queue one frame; frames a V1 client could not receive (> 1 MiB) are dropped and logged."""
        if self.closed:
            return False
        if self.vsn == V1 and len(frame) * 4 > self.limits.max_v1_outbound_bytes:
            n = len(frame) if isinstance(frame, bytes) else len(frame.encode())
            if n > self.limits.max_v1_outbound_bytes:
                logger.warning(
                    "socket %d: dropped a %d-byte outbound frame: V1 (realtime-py) clients close the "
                    "connection on frames over %d bytes",
                    self.sid, n, self.limits.max_v1_outbound_bytes,
                )  # fmt: skip
                self.registry.stats.dropped_outbound += 1
                return False
        self.registry.stats.frames_out += 1
        self._send(frame)
        return True

    def _reply(self, msg: Inbound, status: str, response: Any) -> None:
        self.emit(
            encode(self.vsn, msg.topic, "phx_reply", {"status": status, "response": response}, msg.ref,
                   msg.join_ref)
        )  # fmt: skip

    def _close_push(self, ch: Channel) -> None:
        self.emit(encode(self.vsn, ch.topic, "phx_close", {}, ch.join_ref, ch.join_ref))

    def _reject(self, reason: str, frame: str | bytes | Inbound | None = None) -> None:
        """Log a rejected/dropped inbound frame with its reason; the socket keeps going."""
        short = reason.split(":", 1)[0] if len(reason) > 60 else reason
        self.registry.stats.rejected[short] += 1
        if isinstance(frame, Inbound):
            shown = f"{frame.event!s:.120} on {frame.topic!r:.200} ref={frame.ref!r:.60}"
        else:
            shown = repr(frame[:120]) if frame is not None else ""
        logger.info("socket %d: rejected frame (%s) %s", self.sid, reason, shown)

    # -- input ---------------------------------------------------------------------------------

    def receive(self, frame: str | bytes) -> list[Effect]:
        """Process one inbound frame; returns effects to perform (in order) before the next one."""
        if self.closed:
            return []
        self.registry.stats.frames_in += 1
        try:
            msg = decode(frame, self.vsn)
        except CodecError as exc:
            self._reject(str(exc), frame)
            return []
        try:
            return self._dispatch(msg, frame)
        except Exception:
            # A bug must not kill the socket (or the server): log it with the frame, and answer like a
            # crashed Phoenix channel — "join crashed" for a join, else phx_error and the channel is gone.
            logger.exception("socket %d: internal error handling %s on %r", self.sid, msg.event, msg.topic)
            self.registry.stats.rejected["internal error"] += 1
            return self._crashed(msg)

    def _crashed(self, msg: Inbound) -> list[Effect]:
        try:
            if msg.event == "phx_join":
                self._reply(msg, "error", {"reason": "join crashed"})
            ch = self.channels.get(msg.topic)
            if ch is None:
                return []
            self.emit(encode(self.vsn, ch.topic, "phx_error", {}, ch.join_ref, ch.join_ref))
            return self._close_channel(ch, send_close=False)
        except Exception:
            logger.exception("socket %d: cleaning up after an internal error failed", self.sid)
            return []

    def _dispatch(self, msg: Inbound, frame: str | bytes) -> list[Effect]:
        if msg.topic == "phoenix" and msg.event == "heartbeat":
            self._reply(msg, "ok", {})
            return []
        if msg.event == "phx_join":
            return self._join(msg)
        ch = self.channels.get(msg.topic)
        if ch is None:
            if msg.event == "phx_leave":
                self._reply(msg, "ok", {})
                return []
            self._reject("unmatched topic", msg)
            self._reply(msg, "error", {"reason": "unmatched topic"})
            return []
        if msg.join_ref is not None and ch.join_ref is not None and msg.join_ref != ch.join_ref:
            self._reject(f"stale join_ref {msg.join_ref!r} (current {ch.join_ref!r})", msg)
            return []
        if msg.event == "phx_leave":
            self._reply(msg, "ok", {})
            return self._close_channel(ch, send_close=True)
        if self._events.hit(self.clock()):
            self._reject("Too many messages per second", msg)
            return self._shutdown(ch, "Too many messages per second")
        if msg.event == "broadcast":
            return self._broadcast(ch, msg, frame)
        if msg.event == "presence":
            return self._presence(ch, msg, frame)
        if msg.event == "access_token":
            return self._access_token(ch, msg)
        # the real server logs unexpected events and answers nothing
        self._reject(f"unexpected event {msg.event!r}", msg)
        return []

    # -- join / leave --------------------------------------------------------------------------

    def _join_error(
        self, msg: Inbound, reason: str, old: Channel | None, extra: Iterable[Effect] = ()
    ) -> list[Effect]:
        self._reject(f"join refused: {reason}", msg)
        effects: list[Effect] = []
        if self.limits.join_error_delay_s > 0:
            effects.append(Sleep(self.limits.join_error_delay_s))
        effects.append(DeferredReply(self, msg, reason, old))
        effects.extend(extra)
        return effects

    def _join(self, msg: Inbound) -> list[Effect]:
        topic = msg.topic
        if not topic.startswith(TOPIC_PREFIX):
            self._reject("unmatched topic", msg)
            self._reply(msg, "error", {"reason": "unmatched topic"})
            return []
        effects: list[Effect] = []
        old = self.channels.get(topic)
        if old is not None:
            # Duplicate join: the old channel ends first (its presence leaves, subscriptions stop).
            effects += self._close_channel(old, send_close=False)
        now = self.clock()
        if self._joins.hit(now):
            return effects + self._join_error(
                msg,
                "ClientJoinRateLimitReached: Too many joins per second",
                old,
                [Disconnect(1008, "Too many joins per second")],
            )
        if len(topic) == len(TOPIC_PREFIX):
            return effects + self._join_error(msg, "TopicNameRequired: You must provide a topic name", old)
        if len(topic) > self.limits.max_topic_bytes or len(topic.encode()) > self.limits.max_topic_bytes:
            return effects + self._join_error(
                msg, f"TopicNameTooLong: a topic may be at most {self.limits.max_topic_bytes} bytes", old
            )
        if len(self.channels) >= self.limits.max_channels_per_connection:
            return effects + self._join_error(msg, "ChannelRateLimitReached: Too many channels", old)
        payload = msg.payload if isinstance(msg.payload, dict) else {}
        if not isinstance(msg.payload, dict):
            self._reject("join payload is not an object; joining with defaults", msg)
        config = payload.get("config")
        config = config if isinstance(config, dict) else {}
        broadcast = config.get("broadcast") if isinstance(config.get("broadcast"), dict) else {}
        presence = config.get("presence") if isinstance(config.get("presence"), dict) else {}
        private = flexible_bool(config.get("private"))
        if self.private_only and not private:
            return effects + self._join_error(msg, PRIVATE_ONLY, old)
        if isinstance(broadcast.get("replay"), dict) and not private:
            return effects + self._join_error(
                msg, "UnableToReplayMessages: Replay is not allowed for public channels", old
            )
        token = self._channel_token(payload)
        try:
            claims = self.verifier.verify(token, now)
        except AuthError as exc:
            return effects + self._join_error(msg, str(exc), old)

        ch = Channel(self, topic, msg.join_ref)
        ch.ack = flexible_bool(broadcast.get("ack"))
        ch.self_broadcast = flexible_bool(broadcast.get("self"))
        ch.presence_enabled = flexible_bool(presence.get("enabled"))
        key = presence.get("key")
        ch.presence_key = str(key) if key not in (None, "") else str(uuid.uuid4())
        ch.private = private
        raw_bindings = config.get("postgres_changes")
        bindings: list[dict[str, Any]] = []
        if isinstance(raw_bindings, list):
            for b in raw_bindings:
                if isinstance(b, dict):
                    bindings.append(b)
                elif b is not None:
                    self._reject(f"postgres_changes entry is not an object: {b!r}", msg)
        ch.bindings = bindings
        ch.claims = claims
        ch.token = token
        ch.exp = float(claims["exp"])
        lim = self.limits
        ch.presence_calls = RateWindow(lim.max_presence_calls, lim.presence_window_s)
        if private:
            replay = broadcast.get("replay")
            return effects + self._authorize_join(ch, msg, old, replay if isinstance(replay, dict) else None)
        return effects + self._admit(ch, msg, old)

    def _admit(self, ch: Channel, msg: Inbound, old: Channel | None) -> list[Effect]:
        """The join is allowed: register the channel, reply ok, start presence and postgres_changes."""
        effects: list[Effect] = []
        topic, bindings, claims = ch.topic, ch.bindings, ch.claims
        self.channels[topic] = ch
        self.registry.add(ch)
        self.registry.stats.joins += 1
        echo = [{**b, "id": self.binding_id(b)} for b in bindings]
        self._reply(msg, "ok", {"postgres_changes": echo})
        if old is not None and self.vsn == V2:
            # Phoenix closes the superseded channel after replying to the new join; phoenix.js drops
            # the close because its join_ref is the old one. Over V1 we deliberately do NOT send it:
            # realtime-py routes by topic only and would close its *new* subscription —
            # that happens on every rejoin after a `system` error, e.g. a postgres_changes filter error.
            self._close_push(old)
        if ch.presence_enabled and ch.reads("presence"):
            ch.push("presence_state", self.registry.presence_state(ch.scope))
        if bindings:
            most = self.limits.max_postgres_changes_per_channel
            if len(bindings) > most:
                ch.system(
                    "postgres_changes", "error",
                    f"Unable to subscribe to changes with given parameters: a channel may have at most "
                    f"{most} postgres_changes bindings, this join has {len(bindings)}",
                )  # fmt: skip
            elif self.pg_available:
                effects.append(PgSubscribe(ch, bindings, claims))
            else:
                ch.system(
                    "postgres_changes", "error",
                    "Realtime was unable to connect to the project database: this server runs without "
                    "a postgres_changes hub (broadcast and presence only)",
                )  # fmt: skip
        return effects

    # -- Realtime Authorization (private channels) ----------------------------------------------

    def _authorize_join(
        self, ch: Channel, msg: Inbound, old: Channel | None, replay: Mapping[str, Any] | None
    ) -> list[Effect]:
        """Admit a private join only if the token's role may read broadcast or presence of the topic.

        ``replay`` (the join's ``broadcast.replay``: ``since`` in epoch ms, ``limit``) needs broadcast
        read; the stored private broadcasts it asks for are pushed right after the join's reply, marked
        ``meta.replayed``, and not delivered a second time if they also arrive live.
        """
        authorizer = self.authorizer
        if authorizer is None:
            return self._join_error(msg, NO_DATABASE, old)
        name = ch.channel_name

        async def run() -> list[Effect]:
            try:
                policies = await authorizer.read(
                    name, ch.claims, presence=ch.presence_enabled, headers=self.headers
                )
            except AuthzError as exc:
                return self._join_error(msg, exc.join_reason(name), old)
            if not policies.can_read or (replay is not None and policies.broadcast_read is False):
                return self._join_error(msg, f"Unauthorized: {unreadable(name)}", old)
            replayed: list[Replayed] = []
            if replay is not None:
                since, limit = replay.get("since"), replay.get("limit") or MAX_REPLAY
                if not (_is_int(since) and _is_int(limit) and _MIN_MS <= since <= _MAX_MS):
                    return self._join_error(msg, "UnableToReplayMessages: Replay params are not valid", old)
                try:
                    replayed = await authorizer.replay(name, since, limit)
                except AuthzError as exc:
                    logger.warning("replay on %s failed: %s", name, exc)
                    return self._join_error(
                        msg, "UnableToReplayMessages: Realtime was unable to replay messages", old
                    )
            if self.closed:
                return []
            ch.policies = policies
            ch.replayed_ids = frozenset(m.id for m in replayed)
            effects = self._admit(ch, msg, old)
            for m in replayed:
                meta = {"replayed": True, "id": m.id}
                if m.binary is None:
                    ch.push(
                        "broadcast",
                        {"payload": m.payload, "event": m.event, "type": "broadcast", "meta": meta},
                    )
                elif self.vsn == V2:  # V1 JSON frames cannot carry a binary payload: not replayed there
                    frame = UserBroadcast(
                        ch.topic, m.event or "", m.binary, ENCODING_BINARY, dumps(meta).encode()
                    ).frame(V2)
                    if frame is not None:
                        self.emit(frame)
            return effects

        return [self._await(run, msg)]

    def _write_gate(
        self, ch: Channel, extension: str, msg: Inbound, retry: Callable[[], list[Effect]]
    ) -> list[Effect] | None:
        """``None`` if ``ch`` may write ``extension``; else the effects of refusing it, or of
        evaluating the write policies first (then ``retry`` runs again), as on the first send."""
        policies = ch.policies
        allowed = None if policies is None else policies.get(extension, "write")
        if allowed is True:
            return None
        if allowed is False or policies is None or self.authorizer is None:
            return self._refuse_write(ch, extension, msg, "no INSERT policy on realtime.messages allows it")
        authorizer, name = self.authorizer, ch.channel_name

        async def run() -> list[Effect]:
            try:
                if extension == "presence" and policies.presence_read is None:
                    await authorizer.read(
                        name, ch.claims, presence=True, policies=policies, headers=self.headers
                    )
                await authorizer.write(name, ch.claims, policies=policies, headers=self.headers)
            except AuthzError as exc:
                return self._refuse_write(ch, extension, msg, f"the write check failed: {exc}")
            if not ch.open or ch.policies is not policies:
                return []
            return retry()

        return [self._await(run, msg)]

    def _refuse_write(self, ch: Channel, extension: str, msg: Inbound, why: str) -> list[Effect]:
        """A refused broadcast is dropped without a reply (as Supabase does, ack or not); a refused
        presence track is answered with an error reply."""
        self._reject(
            f"{extension} on private {ch.channel_name!r} refused for role {ch.claims.get('role')!r}: {why}",
            msg,
        )
        if extension == "presence":
            self._reply(msg, "error", {})
        return []

    def _await(self, run: Callable[[], Awaitable[list[Effect]]], msg: Inbound) -> Await:
        """An :class:`Await` whose failure is handled like a failure in :meth:`receive`."""

        async def guarded() -> list[Effect]:
            try:
                return await run()
            except Exception:
                logger.exception(
                    "socket %d: internal error authorising %s on %r", self.sid, msg.event, msg.topic
                )
                self.registry.stats.rejected["internal error"] += 1
                return self._crashed(msg)

        return Await(guarded)

    def _reauthorize(self, ch: Channel, msg: Inbound, then: list[Effect]) -> list[Effect]:
        """A new token on a private channel: evaluate reading again; a channel that may no longer read
        is closed with the real server's ``system`` error, else ``then`` follows."""
        authorizer, name = self.authorizer, ch.channel_name
        previous = ch.policies or Policies()
        if authorizer is None:
            return self._shutdown(ch, "Realtime was unable to connect to the project database")

        async def run() -> list[Effect]:
            try:
                fresh = await authorizer.read(
                    name, ch.claims, presence=ch.presence_enabled, headers=self.headers
                )
            except AuthzError as exc:
                return self._shutdown(ch, exc.shutdown_message(name)) if ch.open else []
            if not ch.open:
                return []
            if not fresh.can_read:
                return self._shutdown(ch, unreadable(name))
            if fresh.revoked_since(previous):
                return self._shutdown(ch, no_longer_readable(name))
            ch.policies = fresh
            return then

        return [self._await(run, msg)]

    def _channel_token(self, payload: Mapping[str, Any]) -> str:
        access, user = payload.get("access_token"), payload.get("user_token")
        first = access or user
        if isinstance(first, str) and first.startswith("sb_"):
            return self.apikey
        if isinstance(user, str) and user:
            return user
        if isinstance(access, str) and access:
            return access
        return self.apikey

    def _close_channel(self, ch: Channel, *, send_close: bool) -> list[Effect]:
        if self.channels.get(ch.topic) is ch:
            del self.channels[ch.topic]
        if send_close:
            self._close_push(ch)
        self.registry.remove(ch)
        return [PgUnsubscribe(ch)] if ch.bindings else []

    def _shutdown(self, ch: Channel, message: str) -> list[Effect]:
        """The real server's shutdown_response: ``system`` error, then ``phx_close``."""
        ch.system("system", "error", message)
        return self._close_channel(ch, send_close=True)

    # -- broadcast -----------------------------------------------------------------------------

    def _broadcast(self, ch: Channel, msg: Inbound, frame: str | bytes) -> list[Effect]:
        if ch.private:
            gate = self._write_gate(ch, "broadcast", msg, lambda: self._broadcast(ch, msg, frame))
            if gate is not None:
                return gate
        payload = msg.payload
        message: Fanout | UserBroadcast
        if isinstance(payload, BinaryPayload):
            if payload.event is None:
                self._reject("binary push (kind 0) broadcast is not supported; use kind 3", msg)
                return []
            size = len(payload.data)
            message = UserBroadcast(ch.topic, payload.event, payload.data, payload.encoding)
        else:
            size = len(frame)
            if size > self.limits.max_broadcast_bytes:
                size = len(dumps(payload).encode())
            message = Fanout(ch.topic, "broadcast", payload)
        if size > self.limits.max_broadcast_bytes:
            self._reject(f"broadcast payload of {size} bytes exceeds {self.limits.max_broadcast_bytes}", msg)
            if ch.ack:
                self._reply(msg, "error", {"error": "payload_size_exceeded"})
            return []
        self.registry.stats.broadcasts += 1
        self.registry.fanout(ch.scope, message, exclude=None if ch.self_broadcast else ch)
        if ch.ack:
            self._reply(msg, "ok", {})
        return []

    # -- presence ------------------------------------------------------------------------------

    def _presence(self, ch: Channel, msg: Inbound, frame: str | bytes) -> list[Effect]:
        payload = msg.payload
        if not isinstance(payload, dict):
            self._reject("presence payload is not an object", msg)
            self._reply(msg, "error", {"reason": "Presence track payload must be a map"})
            return []
        event = payload.get("event")
        if not isinstance(event, str):
            self._reply(msg, "ok", {})  # a map without event is accepted as a no-op
            return []
        event = event.lower()
        now = self.clock()
        if event in ("track", "untrack"):
            assert ch.presence_calls is not None
            if ch.presence_calls.hit(now):
                self._reject("Client presence rate limit exceeded", msg)
                return self._shutdown(ch, "Client presence rate limit exceeded")
            if self._presence_events.hit(now):
                self._reject("Too many presence messages per second", msg)
                return self._shutdown(ch, "Too many presence messages per second")
        if event == "track":
            return self._track(ch, msg, frame, payload)
        if event == "untrack":
            self.registry.untrack(ch)
        self._reply(msg, "ok", {})
        return []

    def _track(self, ch: Channel, msg: Inbound, frame: str | bytes, payload: dict[str, Any]) -> list[Effect]:
        if ch.private:
            gate = self._write_gate(ch, "presence", msg, lambda: self._track(ch, msg, frame, payload))
            if gate is not None:
                return gate
        data = payload.get("payload")
        if not isinstance(data, dict):
            self._reject("Presence track payload must be a map", msg)
            self._reply(msg, "error", {"reason": "Presence track payload must be a map"})
            return []
        size = len(frame)
        if size > self.limits.max_track_bytes:
            size = len(dumps(data).encode())
        if size > self.limits.max_track_bytes:
            self._reject(f"track payload of {size} bytes exceeds {self.limits.max_track_bytes}", msg)
            return self._shutdown(ch, "Track message size exceeded")
        if not ch.presence_enabled:
            # tracking turns presence on for this channel (it then hears diffs, like the real one)
            ch.presence_enabled = True
        self.registry.track(ch, data)
        self._reply(msg, "ok", {})
        return []

    # -- tokens --------------------------------------------------------------------------------

    def _access_token(self, ch: Channel, msg: Inbound) -> list[Effect]:
        payload = msg.payload if isinstance(msg.payload, dict) else {}
        token = payload.get("access_token")
        if token is None or token == ch.token or (isinstance(token, str) and token.startswith("sb_")):
            return []
        try:
            claims = self.verifier.verify(token, self.clock())
        except AuthError as exc:
            self._reject(f"access_token refused: {exc}", msg)
            return self._shutdown(ch, exc.message)
        ch.token, ch.claims, ch.exp = token, claims, float(claims["exp"])
        then: list[Effect] = [PgUpdateClaims(ch, claims)] if ch.bindings and self.pg_available else []
        if ch.private:
            return self._reauthorize(ch, msg, then)
        return then

    # -- time ----------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """Epoch seconds of the earliest channel token expiry, or None."""
        exps = [ch.exp for ch in self.channels.values() if ch.exp is not None]
        return min(exps) if exps else None

    def tick(self) -> list[Effect]:
        """Close channels whose token expired: ``system`` error then ``phx_close``."""
        now = self.clock()
        effects: list[Effect] = []
        for ch in list(self.channels.values()):
            if ch.exp is not None and ch.exp <= now:
                logger.info("socket %d: token of %s expired", self.sid, ch.topic)
                effects += self._shutdown(ch, f"Token has expired {int(now - ch.exp)} seconds ago")
        return effects

    def close(self) -> list[Effect]:
        """The socket went away: every channel leaves (presence leaves are broadcast)."""
        effects: list[Effect] = []
        for ch in list(self.channels.values()):
            effects += self._close_channel(ch, send_close=False)
        self.closed = True
        return effects

    def __repr__(self) -> str:
        return f"<Session {self.sid} vsn={self.vsn} channels={len(self.channels)}>"


def run_inline(effects: list[Effect]) -> list[Effect]:
    """Perform the effects that need no I/O (deferred replies, sleeps skipped); return the rest."""
    rest: list[Effect] = []
    for e in effects:
        if isinstance(e, DeferredReply):
            e.run()
        elif not isinstance(e, Sleep):
            rest.append(e)
    return rest
