from datetime import datetime

import pytest

from harmony_lab.events import ChannelStatus, EventKind, RealtimeEvent


def test_kind_and_status_are_coerced_from_strings():
    ev = RealtimeEvent(kind="status", channel="c", status="reconnecting", reason="drop", attempt=2)
    assert ev.kind is EventKind.STATUS
    assert ev.status is ChannelStatus.RECONNECTING
    assert "reconnecting" in repr(ev)


def test_naive_timestamp_is_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        RealtimeEvent(kind="gap", channel="c", received_at=datetime(2026, 1, 1))


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="bogus"):
        RealtimeEvent(kind="bogus", channel="c")


def test_key_follows_pk_order_and_replace_copies():
    ev = RealtimeEvent(kind="change", channel="m", op="INSERT", pk={"a": 1, "b": "x"}, seq=3)
    assert ev.key == (1, "x")
    ev2 = ev.replace(backfilled=True)
    assert ev2.backfilled
    assert not ev.backfilled
    assert ev2.seq == 3
