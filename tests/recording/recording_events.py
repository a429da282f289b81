"""Realistic RealtimeEvent sequences for the recording tests (every kind, awkward values).

A uniquely named helper module (not conftest) so test files can import it unambiguously.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from harmony_lab.events import ChannelStatus, EventKind, RealtimeEvent

T0 = datetime(2025, 11, 3, 9, 30, 0, 123456, tzinfo=UTC)


def every_kind(t0: datetime = T0, seq0: int = 1, channel: str = "room:lobby") -> list[RealtimeEvent]:
    """One or more events of every kind, with the payload shapes the manager produces."""
    evs: list[RealtimeEvent] = []

    def add(**kw: object) -> None:
        i = len(evs)
        evs.append(
            RealtimeEvent(
                seq=seq0 + i,
                received_at=t0 + timedelta(milliseconds=37 * i),
                received_mono_ns=10_000_000_000 + 37_000_000 * i,
                topic=f"realtime:{kw.get('channel', channel)}",
                **{"channel": channel, **kw},  # type: ignore[arg-type]
            )
        )

    add(kind=EventKind.STATUS, status=ChannelStatus.CONNECTING, reason="subscribe", attempt=0)
    add(kind="status", status="connected", reason="SUBSCRIBED", attempt=0, payload={"delay_s": 0.0})
    add(
        kind="system",
        payload={"status": "ok", "message": "Subscribed to PostgreSQL", "extension": "postgres_changes"},
        reason="subscribed",
    )
    cols = (("id", "int8"), ("body", "text"), ("created_at", "timestamptz"), ("meta", "jsonb"))
    add(
        kind="change",
        schema="public",
        table="messages",
        op="INSERT",
        commit_ts=t0 - timedelta(milliseconds=12),
        new={
            "id": 1,
            "body": 'héllo 👋 "quoted" \\ back',
            "created_at": "2025-11-03T09:29:59.111+00:00",
            "meta": {"tags": ["a", "b"], "n": None, "f": 1.25},
        },
        pk={"id": 1},
        columns=cols,
    )
    add(
        kind="change",
        schema="public",
        table="messages",
        op="UPDATE",
        commit_ts=t0,
        new={"id": 1, "body": "edited", "created_at": "2025-11-03T09:29:59.111+00:00", "meta": {}},
        old={"id": 1},
        pk={"id": 1},
        columns=cols,
        errors=("Error 413: Payload Too Large",),
        suppressed=True,
    )
    add(
        kind="change",
        schema="public",
        table="messages",
        op="DELETE",
        commit_ts=t0 + timedelta(milliseconds=5),
        old={"id": 1},
        pk={"id": 1},
        columns=cols,
        errors=(),
    )
    add(
        kind="change",
        schema="public",
        table="reactions",
        op="INSERT",
        commit_ts=None,
        new={"message_id": 7, "user_id": "u-1", "emoji": "🎉"},
        pk={"message_id": 7, "user_id": "u-1"},
        columns=(("message_id", "int8"), ("user_id", "uuid"), ("emoji", "text")),
        backfilled=True,
    )
    add(kind="broadcast", op="typing", payload={"user": "u-1", "typing": True})
    add(kind="broadcast", op="cursor", payload=[1, 2.5, "x", None, True])
    add(kind="broadcast", op="scalar", payload="just a string")
    add(
        kind="presence",
        op="sync",
        payload={"u-1": [{"phx_ref": "F1", "status": "online", "name": "Ada"}]},
    )
    add(
        kind="presence",
        op="join",
        payload={"key": "u-2", "current": [], "new": [{"phx_ref": "F2", "status": "away"}]},
    )
    add(
        kind="presence",
        op="leave",
        payload={"key": "u-2", "current": [], "left": [{"phx_ref": "F2", "status": "away"}]},
    )
    add(kind="heartbeat", payload={"rtt_ms": 12.5})
    add(kind="heartbeat", payload={"timeout": True})
    add(
        kind="gap",
        gap_start=t0 - timedelta(seconds=3),
        gap_end=t0 - timedelta(seconds=1, microseconds=7),
        reason="socket closed (1006) while connected",
    )
    add(kind="status", status="reconnecting", reason="heartbeat timeout", attempt=3, payload={"delay_s": 4.2})
    add(kind="status", status="error", reason="CHANNEL_ERROR: bad filter", attempt=None)
    add(kind="status", status="disconnected", reason="closed by user")
    # Python values JSON cannot express: they come back with their types
    add(
        kind="broadcast",
        op="exotic",
        payload={
            "t": (1, (2, 3), [4, (5,)]),
            "when": datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
            "naive": datetime(2025, 1, 2, 3, 4, 5),
            "day": datetime(2025, 1, 2).date(),
            "dur": timedelta(days=-1, seconds=5, microseconds=7),
            "money": Decimal("12.3400"),
            "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "raw": b"\x00\xffbytes",
            "ints": {1: "one", 2: ("two",)},
            "inf": float("inf"),
            "tags": frozenset({"a", "b"}),
        },
    )
    add(kind="change", schema="public", table="messages", op="INSERT", new={"id": Decimal(5)}, pk={"id": 5})
    return evs
