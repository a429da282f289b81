"""Status-event factory for the timeline tests."""

from __future__ import annotations

from datetime import UTC, datetime

from harmony_lab.events import RealtimeEvent


def status_event(
    channel: str, status: str, *, at: float, attempt: int | None = None, reason: str | None = None
) -> RealtimeEvent:
    return RealtimeEvent(
        kind="status",
        channel=channel,
        status=status,
        attempt=attempt,
        reason=reason,
        received_at=datetime.fromtimestamp(at, UTC),
    )
