"""Event factories shared by the frames and widgets tests: real RealtimeEvent envelopes, built by hand."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from harmony_lab.events import RealtimeEvent

MESSAGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "int8"),
    ("channel_id", "int4"),
    ("body", "text"),
    ("created_at", "timestamptz"),
    ("edited", "bool"),
    ("tags", "_text"),
    ("payload", "jsonb"),
)


def make_change(
    op: str,
    new: Mapping[str, Any] | None = None,
    old: Mapping[str, Any] | None = None,
    *,
    table: str = "messages",
    schema: str = "public",
    columns: tuple[tuple[str, str], ...] = MESSAGE_COLUMNS,
    pk_cols: tuple[str, ...] = ("id",),
    pk: Mapping[str, Any] | bool | None = True,
    **kw: Any,
) -> RealtimeEvent:
    """A change event like the manager emits; pk defaults to the key columns of new (old for DELETE)."""
    if pk is True:
        src = old if op == "DELETE" else new
        pk = {c: src[c] for c in pk_cols} if src and all(c in src for c in pk_cols) else None
    elif pk is False:
        pk = None
    return RealtimeEvent(
        kind="change",
        channel="messages-feed",
        schema=schema,
        table=table,
        op=op,
        new=new,
        old=old,
        pk=pk,
        columns=columns,
        commit_ts=kw.pop("commit_ts", datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        **kw,
    )


def message(i: int, **over: Any) -> dict[str, Any]:
    row = {
        "id": i,
        "channel_id": i % 3,
        "body": f"hello {i}",
        "created_at": f"2024-05-01T12:00:{i % 60:02d}.000001+00:00",
        "edited": False,
        "tags": ["a", f"t{i}"],
        "payload": {"n": i, "nested": {"ok": True}},
    }
    row.update(over)
    return row
