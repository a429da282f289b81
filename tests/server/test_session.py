"""The sans-I/O session state machine and registry, with a fake clock and list sinks (no sockets)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harmony_lab.server._auth import TokenVerifier, make_token
from harmony_lab.server._codec import V1, V2, decode_server_binary, encode_user_broadcast_push
from harmony_lab.server._limits import RateWindow, ServerLimits
from harmony_lab.server._session import (
    NO_DATABASE,
    Disconnect,
    PgSubscribe,
    PgUnsubscribe,
    PgUpdateClaims,
    Registry,
    Session,
    Sleep,
    default_binding_id,
    flexible_bool,
    run_inline,
)

SECRET = "session-test-secret-0123456789abcdef"
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def tok(role: str = "anon", exp: float = T0 + 3600, secret: str = SECRET, **claims: Any) -> str:
    return make_token(secret, {"role": role, "exp": exp, **claims})


APIKEY = tok(exp=T0 + 10**8)


class Peer:
    """A session plus the frames it sent, decoded."""

    def __init__(self, registry: Registry, clock: Clock, vsn: str = V1, sid: int = 1, **kw: Any) -> None:
        self.out: list[str | bytes] = []
        self.session = Session(
            sid=sid, vsn=vsn, apikey=APIKEY, verifier=TokenVerifier(SECRET), registry=registry,
            send=self.out.append, clock=clock, **kw,
        )  # fmt: skip
        self.vsn = vsn
        self._ref = 0
        self.effects: list[Any] = []

    def ref(self) -> str:
        self._ref += 1
        return str(self._ref)

    def send(self, topic: str, event: str, payload: Any, ref: Any = None, join_ref: Any = None) -> list[Any]:
        if self.vsn == V1:
            frame = json.dumps(
                {"topic": topic, "event": event, "payload": payload, "ref": ref, "join_ref": join_ref}
            )
        else:
            frame = json.dumps([join_ref, ref, topic, event, payload])
        effects = run_inline(self.session.receive(frame))
        self.effects += effects
        return effects

    def join(self, topic: str, config: dict[str, Any] | None = None, **extra: Any) -> str:
        ref = self.ref()
        self.send(topic, "phx_join", {"config": config or {}, **extra}, ref, ref)
        return ref

    def msgs(self) -> list[dict[str, Any]]:
        out = []
        for f in self.out:
            if isinstance(f, bytes):
                out.append({"event": "broadcast", "binary": decode_server_binary(f)})
                continue
            v = json.loads(f)
            if isinstance(v, list):
                v = dict(zip(("join_ref", "ref", "topic", "event", "payload"), v, strict=True))
            out.append(v)
        return out

    def events(self) -> list[str]:
        return [m["event"] for m in self.msgs()]

    def take(self) -> list[dict[str, Any]]:
        m = self.msgs()
        self.out.clear()
        return m


@pytest.fixture
def env():
    registry, clock = Registry(), Clock()
    return registry, clock


def test_heartbeat_replies_echo_ref_null_and_string(env):
    a = Peer(*env)
    a.send("phoenix", "heartbeat", {}, None)
    assert a.take() == [
        {"topic": "phoenix", "event": "phx_reply", "payload": {"status": "ok", "response": {}}, "ref": None}
    ]
    b = Peer(*env, vsn=V2)
    b.send("phoenix", "heartbeat", {}, "8")
    assert b.take() == [{"join_ref": None, "ref": "8", "topic": "phoenix", "event": "phx_reply",
                         "payload": {"status": "ok", "response": {}}}]  # fmt: skip


def test_join_echoes_bindings_verbatim_in_order_with_int_ids(env):
    a = Peer(*env)
    bindings = [
        {"event": "INSERT", "schema": "public", "table": "todos", "filter": "id=eq.1"},
        {"event": "*", "schema": "public"},
        {"table": "messages", "event": "*", "select": ["id"], "unknown": True},
    ]
    ref = a.join("realtime:room", {"postgres_changes": [*bindings, None, "junk"]})
    reply = a.take()[0]
    assert reply["ref"] == ref
    assert reply["payload"]["status"] == "ok"
    echoed = reply["payload"]["response"]["postgres_changes"]
    assert [{k: v for k, v in e.items() if k != "id"} for e in echoed] == bindings
    assert [list(e) for e in echoed] == [[*b, "id"] for b in bindings]  # key order kept, id appended
    assert all(isinstance(e["id"], int) and e["id"] >= 1 for e in echoed)
    assert echoed[0]["id"] == default_binding_id(bindings[0])
    assert [type(e).__name__ for e in a.effects] == ["PgSubscribe"]
    assert a.effects[0].bindings == bindings


def test_join_reply_has_empty_postgres_changes_and_presence_state_when_enabled(env):
    a = Peer(*env)
    a.join("realtime:room", {"presence": {"enabled": "TRUE", "key": ""}, "broadcast": {"self": "false"}})
    msgs = a.take()
    assert msgs[0]["payload"] == {"status": "ok", "response": {"postgres_changes": []}}
    assert msgs[1] == {"topic": "realtime:room", "event": "presence_state", "payload": {}, "ref": None}
    a.join("realtime:other", {"presence": {"enabled": False}})
    assert a.events() == ["phx_reply"]


def test_lenient_join_payloads(env):
    a = Peer(*env)
    a.send("realtime:x", "phx_join", "not an object", "1", "1")
    a.send("realtime:y", "phx_join", {"config": "nope", "version": "realtime-js/2.119.1"}, "2", "2")
    a.send("realtime:z", "phx_join", {"config": {"broadcast": [], "presence": None, "private": 7}}, "3", "3")
    assert [m["payload"]["status"] for m in a.take()] == ["ok", "ok", "ok"]
    assert flexible_bool("True")
    assert not flexible_bool("no")
    assert flexible_bool(1, True)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"access_token": tok(exp=T0 - 5)}, "InvalidJWTToken: Token has expired 5 seconds ago"),
        (
            {"access_token": make_token(SECRET, {"role": "anon"})},
            "InvalidJWTToken: Fields `role` and `exp` are required in JWT",
        ),
        ({"access_token": "garbage"}, "MalformedJWT: The token provided is not a valid JWT"),
        (
            {"user_token": tok(secret="another-secret-another-secret-xx")},
            "JwtSignatureError: Failed to validate JWT signature",
        ),
        (
            {"config": {"broadcast": {"replay": {"since": 1}}}},
            "UnableToReplayMessages: Replay is not allowed for public channels",
        ),
    ],
)
def test_join_errors_carry_real_reasons(env, payload, reason):
    a = Peer(*env)
    a.send("realtime:room", "phx_join", payload, "1", "1")
    assert a.take() == [{"topic": "realtime:room", "event": "phx_reply", "ref": "1",
                         "payload": {"status": "error", "response": {"reason": reason}}}]  # fmt: skip
    assert not a.session.channels


def test_topic_name_required_and_unmatched_topics(env):
    a = Peer(*env)
    a.send("realtime:", "phx_join", {}, "1", "1")
    a.send("lobby", "phx_join", {}, "2", "2")
    a.send("realtime:never", "broadcast", {"event": "e"}, "3", "3")
    reasons = [m["payload"]["response"]["reason"] for m in a.take()]
    assert reasons == [
        "TopicNameRequired: You must provide a topic name",
        "unmatched topic",
        "unmatched topic",
    ]
    assert env[0].stats.rejected["unmatched topic"] == 2


def test_token_resolution_user_token_access_token_apikey_and_sb_prefix(env):
    a = Peer(*env)
    user = tok("authenticated", sub="u1")
    a.join("realtime:a", access_token=user)
    a.join("realtime:b", user_token=user, access_token=tok())
    a.join("realtime:c")
    a.join("realtime:d", access_token="sb_publishable_xyz")
    chans = a.session.channels
    assert chans["realtime:a"].claims["sub"] == "u1"
    assert chans["realtime:b"].claims["sub"] == "u1"
    assert chans["realtime:c"].token == APIKEY
    assert chans["realtime:d"].token == APIKEY


def test_leave_replies_ok_then_closes_with_join_ref(env):
    a = Peer(*env, vsn=V2)
    jref = a.join("realtime:room")
    a.take()
    a.send("realtime:room", "phx_leave", {}, "9", jref)
    assert a.take() == [
        {"join_ref": jref, "ref": "9", "topic": "realtime:room", "event": "phx_reply",
         "payload": {"status": "ok", "response": {}}},
        {"join_ref": jref, "ref": jref, "topic": "realtime:room", "event": "phx_close", "payload": {}},
    ]  # fmt: skip
    a.send("realtime:room", "phx_leave", {}, "10", jref)  # no channel: immediate ok
    assert [m["payload"]["status"] for m in a.take()] == ["ok"]


def test_stale_join_ref_is_dropped_missing_join_ref_is_routed(env):
    a = Peer(*env)
    jref = a.join("realtime:room", {"broadcast": {"ack": True}})
    a.take()
    a.send("realtime:room", "broadcast", {"event": "e", "payload": {}}, "5", "old")
    assert a.take() == []
    assert any("stale join_ref" in k for k in env[0].stats.rejected)
    a.send("realtime:room", "broadcast", {"event": "e", "payload": {}}, "6", None)
    a.send("realtime:room", "broadcast", {"event": "e", "payload": {}}, "7", jref)
    assert [m["ref"] for m in a.take()] == ["6", "7"]


def test_duplicate_join_v1_no_close_v2_close_with_old_join_ref(env):
    a = Peer(*env, vsn=V1)
    a.join("realtime:room")
    a.join("realtime:room")
    # no phx_close over V1: realtime-py would close its new subscription
    assert a.events() == ["phx_reply", "phx_reply"]
    b = Peer(*env, vsn=V2, sid=2)
    old = b.join("realtime:room")
    new = b.join("realtime:room")
    msgs = b.msgs()
    assert [m["event"] for m in msgs] == ["phx_reply", "phx_reply", "phx_close"]
    assert msgs[1]["join_ref"] == new
    assert msgs[2]["join_ref"] == old
    assert msgs[2]["ref"] == old
    assert len(env[0].members("realtime:room")) == 2  # one channel per socket


def test_broadcast_fanout_self_ack_and_exclusion(env):
    a, b = Peer(*env, sid=1), Peer(*env, vsn=V2, sid=2)
    ja = a.join("realtime:room", {"broadcast": {"ack": True}})
    b.join("realtime:room", {"broadcast": {"self": True}})
    a.take(), b.take()
    a.send("realtime:room", "broadcast", {"type": "broadcast", "event": "hi", "payload": {"n": 1}}, "2", ja)
    assert a.take() == [{"topic": "realtime:room", "event": "phx_reply", "ref": "2",
                         "payload": {"status": "ok", "response": {}}}]  # fmt: skip
    assert b.take() == [{"join_ref": None, "ref": None, "topic": "realtime:room", "event": "broadcast",
                         "payload": {"type": "broadcast", "event": "hi", "payload": {"n": 1}}}]  # fmt: skip
    # binary kind 3 from V2 with self: V2 sender gets kind 4, V1 gets JSON text
    b.session.receive(encode_user_broadcast_push("1", None, "realtime:room", "bin", b'{"z":true}'))
    [mb] = b.take()
    assert mb["binary"]["kind"] == 4
    assert mb["binary"]["data"] == b'{"z":true}'
    [ma] = a.take()
    assert ma["payload"] == {"type": "broadcast", "event": "bin", "payload": {"z": True}}
    # binary-encoded payload: not delivered to V1
    b.session.receive(encode_user_broadcast_push("1", None, "realtime:room", "raw", b"\x00\x01", encoding=0))
    assert a.take() == []
    assert b.take()[0]["binary"]["encoding"] == 0


def test_private_joins_need_a_database_and_private_only_refuses_public_joins(env):
    """Without an authorizer a private join cannot be authorised: refused, never admitted unchecked.
    (Admission by policy, and public/private separation, run against Postgres in test_authz_conformance.)"""
    a = Peer(*env, sid=1)
    ref = a.join("realtime:room", {"private": True})
    assert a.take() == [{"topic": "realtime:room", "event": "phx_reply", "ref": ref,
                         "payload": {"status": "error", "response": {"reason": NO_DATABASE}}}]  # fmt: skip
    assert a.session.channels == {}
    assert env[0].members("realtime:room", private=True) == []
    p = Peer(*env, sid=2, private_only=True)
    p.join("realtime:room")
    [reply] = p.take()
    assert reply["payload"]["response"] == {
        "reason": "PrivateOnly: This project only allows private channels"
    }
    p.join("realtime:room", {"private": "true"})
    assert p.take()[0]["payload"]["response"] == {"reason": NO_DATABASE}
    assert env[0].topics() == []


def test_oversize_broadcast_dropped_error_reply_only_with_ack(env):
    registry, clock = env
    limits = ServerLimits(max_broadcast_bytes=100)
    a, b = Peer(registry, clock, sid=1, limits=limits), Peer(registry, clock, sid=2, limits=limits)
    ja = a.join("realtime:room", {"broadcast": {"ack": True}})
    jb = b.join("realtime:room")
    a.take(), b.take()
    big = {"type": "broadcast", "event": "x", "payload": {"s": "x" * 200}}
    a.send("realtime:room", "broadcast", big, "5", ja)
    b.send("realtime:room", "broadcast", big, "5", jb)
    error = {"status": "error", "response": {"error": "payload_size_exceeded"}}
    assert a.take() == [{"topic": "realtime:room", "event": "phx_reply", "ref": "5", "payload": error}]
    assert b.take() == []


def test_presence_track_update_untrack_and_leave_on_close(env):
    a, b = Peer(*env, sid=1), Peer(*env, vsn=V2, sid=2)
    ja = a.join("realtime:room", {"presence": {"enabled": True, "key": "alice"}})
    b.join("realtime:room", {"presence": {"enabled": True}})
    a.take(), b.take()
    a.send("realtime:room", "presence", {"event": "TRACK", "payload": {"status": "online"}}, "2", ja)
    ra = a.take()
    diff_a = next(m for m in ra if m["event"] == "presence_diff")
    assert next(m for m in ra if m["event"] == "phx_reply")["payload"]["status"] == "ok"
    meta = diff_a["payload"]["joins"]["alice"]["metas"][0]
    assert meta["status"] == "online"
    assert isinstance(meta["phx_ref"], str)
    assert diff_a["payload"]["leaves"] == {}
    assert b.take()[0]["payload"] == diff_a["payload"]  # every subscriber, including the tracker
    # identical re-track: no diff
    a.send(
        "realtime:room",
        "presence",
        {"type": "presence", "event": "track", "payload": {"status": "online"}},
        "3",
        ja,
    )
    assert [m["event"] for m in a.take()] == ["phx_reply"]
    # update: leave old meta + join new with phx_ref_prev
    a.send("realtime:room", "presence", {"event": "track", "payload": {"status": "away"}}, "4", ja)
    upd = next(m for m in a.take() if m["event"] == "presence_diff")["payload"]
    new = upd["joins"]["alice"]["metas"][0]
    assert upd["leaves"]["alice"]["metas"][0]["phx_ref"] == meta["phx_ref"]
    assert new["phx_ref_prev"] == meta["phx_ref"]
    assert new["phx_ref"] != meta["phx_ref"]
    # a late joiner gets the state
    c = Peer(*env, sid=3)
    c.join("realtime:room", {"presence": {"enabled": True}})
    assert c.msgs()[1]["payload"] == {"alice": {"metas": [new]}}
    # the socket goes away: others see the leave
    b.take()
    assert a.session.close() == []
    assert b.take()[0]["payload"] == {"joins": {}, "leaves": {"alice": {"metas": [new]}}}


def test_presence_errors_and_client_rate_limit(env):
    a = Peer(*env)
    ja = a.join("realtime:room", {"presence": {"enabled": True}})
    a.take()
    a.send("realtime:room", "presence", {"event": "track", "payload": [1]}, "2", ja)
    a.send("realtime:room", "presence", "nope", "3", ja)
    a.send("realtime:room", "presence", {"payload": {}}, "4", ja)  # no event: ok no-op
    replies = [m["payload"] for m in a.take()]
    assert replies == [
        {"status": "error", "response": {"reason": "Presence track payload must be a map"}},
        {"status": "error", "response": {"reason": "Presence track payload must be a map"}},
        {"status": "ok", "response": {}},
    ]
    for i in range(5):  # 5 calls per 30 s allowed (the first was the bad track)
        a.send("realtime:room", "presence", {"event": "track", "payload": {"i": i}}, str(10 + i), ja)
    msgs = a.take()
    system = [m for m in msgs if m["event"] == "system"]
    assert system[0]["payload"] == {"channel": "room", "extension": "system", "status": "error",
                                    "message": "Client presence rate limit exceeded"}  # fmt: skip
    assert msgs[-1]["event"] == "phx_close"
    assert "realtime:room" not in a.session.channels


def test_track_size_limit_closes_channel(env):
    registry, clock = env
    a = Peer(registry, clock, limits=ServerLimits(max_track_bytes=50))
    ja = a.join("realtime:room")
    a.take()
    a.send("realtime:room", "presence", {"event": "track", "payload": {"s": "y" * 100}}, "2", ja)
    assert [m["event"] for m in a.take()] == ["system", "phx_close"]


def test_access_token_no_reply_updates_claims_or_closes(env):
    a = Peer(*env)
    ja = a.join("realtime:room", {"postgres_changes": [{"event": "*", "schema": "public"}]})
    a.take()
    a.effects.clear()
    user = tok("authenticated", sub="u2")
    a.send("realtime:room", "access_token", {"access_token": user}, "3", ja)
    assert a.take() == []
    assert isinstance(a.effects[-1], PgUpdateClaims)
    assert a.effects[-1].claims["sub"] == "u2"
    a.send("realtime:room", "access_token", {"access_token": user}, "4", ja)  # same: ignored
    a.send("realtime:room", "access_token", {"access_token": "sb_secret_x"}, "5", ja)  # ignored
    a.send("realtime:room", "access_token", {"access_token": None}, "6", ja)  # ignored
    assert a.take() == []
    assert len(a.effects) == 1
    a.send("realtime:room", "access_token", {"access_token": tok(exp=T0 - 1)}, "7", ja)
    msgs = a.take()
    assert [m["event"] for m in msgs] == ["system", "phx_close"]
    assert msgs[0]["payload"]["message"] == "Token has expired 1 seconds ago"
    assert msgs[1]["ref"] == ja
    assert isinstance(a.effects[-1], PgUnsubscribe)


def test_token_expiry_tick_sends_system_error_then_close(env):
    registry, clock = env
    a = Peer(registry, clock)
    ja = a.join("realtime:room", access_token=tok("authenticated", exp=T0 + 30))
    a.take()
    assert a.session.next_deadline() == T0 + 30
    clock.now = T0 + 29
    assert a.session.tick() == []
    assert a.take() == []
    clock.now = T0 + 30
    a.session.tick()
    msgs = a.take()
    assert msgs[0]["payload"] == {"channel": "room", "extension": "system", "status": "error",
                                  "message": "Token has expired 0 seconds ago"}  # fmt: skip
    assert msgs[1] == {"topic": "realtime:room", "event": "phx_close", "payload": {}, "ref": ja}
    assert a.session.next_deadline() is None


def test_channel_and_join_rate_limits(env):
    registry, clock = env
    a = Peer(registry, clock, limits=ServerLimits(max_channels_per_connection=2))
    for t in ("a", "b", "c"):
        a.join(f"realtime:{t}")
    assert a.msgs()[-1]["payload"]["response"]["reason"] == "ChannelRateLimitReached: Too many channels"
    b = Peer(registry, clock, sid=2, limits=ServerLimits(max_joins_per_second=1, rate_window_s=2))
    b.join("realtime:x")
    b.join("realtime:y")  # 1/s averaged over 2 s: two joins fit
    assert b.msgs()[-1]["payload"]["status"] == "ok"
    assert not b.effects
    b.join("realtime:z")
    assert (
        b.msgs()[-1]["payload"]["response"]["reason"]
        == "ClientJoinRateLimitReached: Too many joins per second"
    )
    assert isinstance(b.effects[-1], Disconnect)


def test_join_error_delay_is_an_effect(env):
    registry, clock = env
    a = Peer(registry, clock, limits=ServerLimits(join_error_delay_s=5))
    effects = a.session.receive(
        json.dumps({"topic": "realtime:", "event": "phx_join", "payload": {}, "ref": "1"})
    )
    assert isinstance(effects[0], Sleep)
    assert effects[0].seconds == 5
    assert a.out == []  # nothing before the delay
    run_inline(effects)
    assert a.msgs()[0]["payload"]["status"] == "error"


def test_events_per_second_closes_the_channel(env):
    registry, clock = env
    a = Peer(registry, clock, limits=ServerLimits(max_events_per_second=1, rate_window_s=3))
    ja = a.join("realtime:room")
    a.take()
    for i in range(4):
        a.send("realtime:room", "broadcast", {"event": "e", "payload": {}}, str(i), ja)
    msgs = a.take()
    assert [m["event"] for m in msgs] == ["system", "phx_close"]
    assert msgs[0]["payload"]["message"] == "Too many messages per second"
    clock.now += 10
    a.join("realtime:room")
    a.send("realtime:room", "broadcast", {"event": "e", "payload": {}}, "9", None)
    assert "system" not in a.events()


def test_v1_outbound_over_one_mib_is_dropped(env):
    registry, clock = env
    limits = ServerLimits(max_broadcast_bytes=3 * 1024 * 1024)
    a, b = Peer(registry, clock, sid=1, limits=limits), Peer(registry, clock, vsn=V2, sid=2, limits=limits)
    a.join("realtime:room")
    jb = b.join("realtime:room", {"broadcast": {"self": True}})
    a.take(), b.take()
    b.send("realtime:room", "broadcast", {"event": "e", "payload": {"s": "é" * 600_000}}, None, jb)
    assert a.take() == []
    assert registry.stats.dropped_outbound == 1
    assert len(b.take()) == 1  # V2 receivers are not capped


def test_pg_subscribe_effect_and_system_messages(env):
    a = Peer(*env)
    a.join("realtime:room", {"postgres_changes": [{"event": "*", "schema": "public", "table": "t"}]})
    [eff] = a.effects
    assert isinstance(eff, PgSubscribe)
    assert eff.channel.channel_name == "room"
    a.take()
    eff.channel.pg_result(None)
    eff.channel.pg_result('Error parsing `filter` params: ["x"]')
    sys_msgs = [m["payload"] for m in a.take()]
    assert sys_msgs[0] == {"channel": "room", "extension": "postgres_changes", "status": "ok",
                           "message": "Subscribed to PostgreSQL"}  # fmt: skip
    assert sys_msgs[1]["status"] == "error"
    assert "realtime:room" in a.session.channels
    eff.channel.deliver([5, 7], {"type": "INSERT", "record": {"id": 1}})
    assert a.take()[0]["payload"] == {"ids": [5, 7], "data": {"type": "INSERT", "record": {"id": 1}}}


def test_without_hub_pg_bindings_get_a_system_error(env):
    a = Peer(*env, pg_available=False)
    a.join("realtime:room", {"postgres_changes": [{"event": "*", "schema": "public"}]})
    msgs = a.take()
    assert msgs[0]["payload"]["status"] == "ok"
    assert msgs[1]["event"] == "system"
    assert msgs[1]["payload"]["status"] == "error"
    assert a.effects == []


def test_unexpected_events_and_garbage_are_logged_not_answered(env):
    a = Peer(*env)
    ja = a.join("realtime:room")
    a.take()
    a.send("realtime:room", "whatever", {}, "2", ja)
    a.session.receive("{{{")
    a.session.receive(b"\x03")
    assert a.take() == []
    rejected = env[0].stats.rejected
    assert rejected["unexpected event 'whatever'"] == 1
    assert sum(rejected.values()) >= 3


def test_rate_window():
    w = RateWindow(2, 1.0)
    assert [w.hit(t) for t in (0.0, 0.1, 0.2, 1.05, 1.2)] == [False, False, True, False, False]
    assert RateWindow.per_second(100, 10).capacity == 1000
    with pytest.raises(ValueError, match="positive"):
        RateWindow(1, 0)


def test_server_limits_validation():
    with pytest.raises(ValueError, match="max_channels_per_connection"):
        ServerLimits(max_channels_per_connection=-1)
    with pytest.raises(ValueError, match="rate_window_s must be positive"):
        ServerLimits(rate_window_s=0)
    with pytest.raises(TypeError, match="unknown ServerLimits field"):
        ServerLimits().replace(nope=1)
    assert ServerLimits().replace(idle_timeout_s=None).idle_timeout_s is None


def test_internal_errors_answer_like_a_crashed_channel(env, monkeypatch):
    """A bug in a handler (injected here) must not kill the socket: phx_error, channel gone, rest works."""
    a = Peer(*env, vsn=V2)
    ja = a.join("realtime:room", {"presence": {"enabled": True}})
    a.take()

    def boom(*args: Any) -> None:
        raise RuntimeError("injected bug")

    monkeypatch.setattr(a.session, "_broadcast", boom)
    a.send("realtime:room", "broadcast", {"event": "e", "payload": {}}, "2", ja)
    assert a.take() == [
        {"join_ref": ja, "ref": ja, "topic": "realtime:room", "event": "phx_error", "payload": {}}
    ]
    assert "realtime:room" not in a.session.channels
    monkeypatch.setattr(a.session, "_join", boom)
    a.send("realtime:other", "phx_join", {}, "3", "3")
    assert a.take()[0]["payload"] == {"status": "error", "response": {"reason": "join crashed"}}
    a.send("phoenix", "heartbeat", {}, "4")
    assert a.take()[0]["payload"]["status"] == "ok"
    assert env[0].stats.rejected["internal error"] == 2
