"""The Inspector's message log: ring-buffer limits, filters, pause, DataFrame, and event descriptions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from harmony_lab.events import ChannelStatus, EventKind, RealtimeEvent
from harmony_lab.inspector._entries import describe
from harmony_lab.inspector._log import KINDS, LogFilter, MessageLog

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def add(log: MessageLog, i: int, *, kind: str = "broadcast", channel: str = "room", event: str = "msg", **kw):
    return log.append(
        time=T0 + timedelta(seconds=i),
        channel=channel,
        kind=kind,
        event=event,
        summary=kw.get("summary", f"message {i}"),
        detail=kw.get("detail", {"i": i}),
    )


def test_ids_increase_and_the_ring_keeps_the_newest() -> None:
    log = MessageLog(capacity=5)
    for i in range(12):
        add(log, i)
    assert len(log) == 5
    assert [e.id for e in log] == [8, 9, 10, 11, 12]
    assert log.first_id == 8
    assert log.last_id == 12
    assert log.total == 12
    assert log.evicted == 7
    assert log.get(7) is None
    got = log.get(10)
    assert got is not None
    assert got.data() == {"i": 9}


def test_the_byte_bound_evicts_oldest_first() -> None:
    log = MessageLog(capacity=1000, max_bytes=2_000)
    for i in range(100):
        add(log, i, detail={"pad": "x" * 80, "i": i})
    assert log.nbytes <= 2_000
    assert 10 < len(log) < 30
    assert [e.id for e in log][-1] == 100
    assert log.evicted == 100 - len(log)


def test_a_huge_detail_is_kept_as_a_preview_not_evicting_the_log() -> None:
    log = MessageLog(capacity=100, max_bytes=50_000, max_detail_bytes=1_000)
    for i in range(10):
        add(log, i)
    big = add(log, 99, detail={"blob": "y" * 1_000_000})
    assert len(log) == 11
    data = big.data()
    assert data["truncated"] is True
    assert data["bytes"] > 1_000_000
    assert len(big.detail) < 1_000
    assert log.truncated == 1


def test_summaries_are_one_bounded_line() -> None:
    log = MessageLog(max_summary_chars=20)
    e = add(log, 1, summary="line one\nline   two " + "z" * 100)
    assert "\n" not in e.summary
    assert e.summary.startswith("line one line two")
    assert len(e.summary) == 20
    assert e.summary.endswith("…")


def test_since_returns_what_came_after_an_id_bounded() -> None:
    log = MessageLog(capacity=10)
    for i in range(15):
        add(log, i)
    assert [e.id for e in log.since(12)] == [13, 14, 15]
    assert [e.id for e in log.since(0)] == list(range(6, 16))  # older ids were evicted
    assert [e.id for e in log.since(0, limit=3)] == [6, 7, 8]
    assert log.since(15) == []


def test_filters_by_kind_channel_event_and_text() -> None:
    log = MessageLog()
    add(log, 1, kind="broadcast", channel="room:1", event="typing", summary="alice is typing")
    add(log, 2, kind="broadcast", channel="room:2", event="Message", summary="hello there")
    add(log, 3, kind="postgres_changes", channel="room:1", event="INSERT", summary="INSERT public.messages")
    add(log, 4, kind="status", channel="room:2", event="connected", summary="connected")
    assert [e.id for e in log.select(kind="broadcast")] == [1, 2]
    assert [e.id for e in log.select(kind=["status", "postgres_changes"])] == [3, 4]
    assert [e.id for e in log.select(channel="room:1")] == [1, 3]
    assert [e.id for e in log.select(event="message")] == [2]  # case-insensitive
    assert [e.id for e in log.select(text="HELLO")] == [2]
    assert [e.id for e in log.select(text="room:2")] == [2, 4]  # the channel counts as text
    assert [e.id for e in log.select(kind="broadcast", channel="room:1", text="typing")] == [1]
    assert len(log.select()) == 4
    # text is a plain substring: pattern characters match themselves
    add(log, 5, summary="a.*b")
    assert [e.id for e in log.select(text=".*")] == [5]


def test_bad_filters_say_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="kinds are postgres_changes, broadcast"):
        LogFilter.of(kind="changes")
    with pytest.raises(ValueError, match="at most 200"):
        LogFilter.of(text="x" * 201)
    with pytest.raises(TypeError, match="collection of strings"):
        LogFilter.of(channel=[1, 2])  # type: ignore[list-item]
    assert LogFilter.of(kind=[], text="  ").active is False


def test_bad_entries_are_refused() -> None:
    log = MessageLog()
    with pytest.raises(ValueError, match="kind must be one of"):
        add(log, 1, kind="heartbeat")
    with pytest.raises(ValueError, match="timezone-aware"):
        log.append(time=datetime(2026, 1, 1), channel="c", kind="system", event="e", summary="s", detail=None)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="capacity must be a positive int"):
            MessageLog(capacity=bad)  # type: ignore[arg-type]
    assert len(log) == 0


def test_pause_counts_new_entries_and_resume_reports_them() -> None:
    log = MessageLog(capacity=3)
    add(log, 1)
    log.pause()
    assert log.paused
    assert log.new_count == 0
    assert log.visible_last_id == 1
    for i in range(5):
        add(log, i)
    assert log.new_count == 5  # counted even though the ring holds only 3
    assert log.visible_last_id == 1
    log.pause()  # a second pause keeps the first pause point
    assert log.new_count == 5
    assert log.resume() == 5
    assert not log.paused
    assert log.new_count == 0
    assert log.visible_last_id == 6


def test_log_as_dataframe() -> None:
    log = MessageLog()
    add(log, 1, channel="a", detail={"x": [1, 2]})
    add(log, 2, kind="presence", channel="b", event="join")
    df = log.to_frame()
    assert list(df.columns) == ["id", "time", "channel", "kind", "event", "summary", "detail"]
    assert df["id"].tolist() == [1, 2]
    assert str(df["time"].dt.tz) == "UTC"
    assert df["time"].iloc[1] == T0 + timedelta(seconds=2)
    assert json.loads(df["detail"].iloc[0]) == {"x": [1, 2]}
    assert df["kind"].tolist() == ["broadcast", "presence"]
    empty = MessageLog().to_frame()
    assert len(empty) == 0
    assert list(empty.columns) == list(df.columns)


def test_clear_keeps_ids_increasing() -> None:
    log = MessageLog()
    add(log, 1)
    add(log, 2)
    log.clear()
    assert len(log) == 0
    assert log.first_id == 3
    assert add(log, 3).id == 3


# ------------------------------------------------------------------ describing events


def ev(**fields) -> RealtimeEvent:
    return RealtimeEvent(channel="room", received_at=T0, **fields)


def test_a_change_reads_like_the_clients_payload() -> None:
    d = describe(
        ev(
            kind=EventKind.CHANGE,
            schema="public",
            table="messages",
            op="INSERT",
            commit_ts=T0,
            new={"id": 7, "content": "hi"},
            old={},
            pk={"id": 7},
        )
    )
    assert d is not None
    assert d.kind == "postgres_changes"
    assert d.event == "INSERT"
    assert d.summary == 'INSERT public.messages id=7 {"id":7,"content":"hi"}'
    assert d.detail == {
        "schema": "public",
        "table": "messages",
        "commit_timestamp": T0.isoformat(),
        "eventType": "INSERT",
        "new": {"id": 7, "content": "hi"},
        "old": {},
        "errors": None,
    }


def test_a_delete_summarises_the_old_row() -> None:
    d = describe(
        ev(kind=EventKind.CHANGE, schema="public", table="t", op="DELETE", old={"id": 3}, pk={"id": 3})
    )
    assert d is not None
    assert d.summary == 'DELETE public.t id=3 {"id":3}'


def test_broadcast_presence_system_status_gap() -> None:
    b = describe(ev(kind=EventKind.BROADCAST, op="typing", payload={"user": "ann"}))
    assert b is not None
    assert (b.kind, b.event, b.summary) == ("broadcast", "typing", '{"user":"ann"}')
    assert b.detail == {"event": "typing", "payload": {"user": "ann"}}

    sync = describe(ev(kind=EventKind.PRESENCE, op="sync", payload={"bob": [{}], "ann": [{}]}))
    assert sync is not None
    assert sync.summary == "sync: 2 present (ann, bob)"
    join = describe(
        ev(
            kind=EventKind.PRESENCE,
            op="join",
            payload={"key": "ann", "current": [], "new": [{"status": "away"}]},
        )
    )
    assert join is not None
    assert (join.event, join.summary) == ("join", "join ann: away")

    sysm = describe(
        ev(
            kind=EventKind.SYSTEM,
            payload={"extension": "postgres_changes", "status": "ok", "message": "Subscribed to PostgreSQL"},
        )
    )
    assert sysm is not None
    assert (sysm.kind, sysm.event, sysm.summary) == (
        "system",
        "postgres_changes",
        "ok: Subscribed to PostgreSQL",
    )

    st = describe(ev(kind=EventKind.STATUS, status=ChannelStatus.ERROR, reason="Unauthorized", attempt=2))
    assert st is not None
    assert (st.kind, st.event, st.summary) == (
        "status",
        "error",
        "error — Unauthorized (attempt 2)",
    )

    gap = describe(
        ev(kind=EventKind.GAP, reason="socket closed", payload={"seconds": 2.5, "recovered": True})
    )
    assert gap is not None
    assert (gap.kind, gap.event, gap.summary) == (
        "status",
        "gap",
        "gap of 2.5 s — socket closed",
    )

    assert describe(ev(kind=EventKind.HEARTBEAT, payload={"rtt_ms": 3.0})) is None
    assert set(KINDS) >= {b.kind, sync.kind, sysm.kind, st.kind, gap.kind}
