"""What the Inspector shows for each :class:`~harmony_lab.RealtimeEvent`: kind, event, summary, detail.

The detail of a change mirrors the payload the Supabase clients hand to a ``postgres_changes``
callback (``schema``, ``table``, ``commit_timestamp``, ``eventType``, ``new``, ``old``, ``errors``); a
broadcast's is ``{"event", "payload"}``; presence, system and status messages carry what the
manager observed. Heartbeats are not messages anyone sent and are left out.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from harmony_lab.events import EventKind, RealtimeEvent

__all__ = ["Described", "describe"]


class Described(NamedTuple):
    kind: str
    event: str
    summary: str
    detail: Any


def _compact(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _change(ev: RealtimeEvent) -> Described:
    op = ev.op or "?"
    where = f"{ev.schema}.{ev.table}"
    key = ", ".join(f"{k}={v}" for k, v in (ev.pk or {}).items())
    row = ev.new if op != "DELETE" else ev.old
    summary = f"{op} {where}" + (f" {key}" if key else "") + (f" {_compact(dict(row))}" if row else "")
    if ev.suppressed:
        summary += " (suppressed: do not disturb)"
    if ev.backfilled:
        summary += " (backfilled)"
    detail = {
        "schema": ev.schema,
        "table": ev.table,
        "commit_timestamp": _iso(ev.commit_ts),
        "eventType": op,
        "new": dict(ev.new or {}),
        "old": dict(ev.old or {}),
        "errors": list(ev.errors) if ev.errors else None,
    }
    if ev.backfilled:
        detail["backfilled"] = True
    if ev.suppressed:
        detail["suppressed"] = True
    return Described("postgres_changes", op, summary, detail)


def _presence(ev: RealtimeEvent) -> Described:
    op = ev.op or "?"
    p = ev.payload
    if op == "sync" and isinstance(p, dict):
        keys = sorted(str(k) for k in p)
        who = ", ".join(keys[:8]) + (f" +{len(keys) - 8}" if len(keys) > 8 else "")
        summary = f"sync: {len(keys)} present" + (f" ({who})" if keys else "")
    elif isinstance(p, dict) and "key" in p:
        metas = p.get("new") if op == "join" else p.get("left")
        statuses = sorted(
            {str(m.get("status")) for m in metas or () if isinstance(m, dict) and m.get("status")}
        )
        summary = f"{op} {p['key']}" + (f": {', '.join(statuses)}" if statuses else "")
    else:
        summary = f"{op} {_compact(p)}"
    return Described("presence", op, summary, p)


def _system(ev: RealtimeEvent) -> Described:
    p = ev.payload if isinstance(ev.payload, dict) else {"payload": ev.payload}
    event = str(p.get("extension") or "system")
    status = p.get("status")
    message = p.get("message") or ev.reason or ""
    summary = f"{status}: {message}" if status else str(message)
    return Described("system", event, summary, p)


def _status(ev: RealtimeEvent) -> Described:
    status = str(ev.status) if ev.status is not None else "?"
    summary = status + (f" — {ev.reason}" if ev.reason else "")
    if ev.attempt:
        summary += f" (attempt {ev.attempt})"
    extra = ev.payload if isinstance(ev.payload, dict) else {}
    detail = {"status": status, "reason": ev.reason, "attempt": ev.attempt, **extra}
    return Described("status", status, summary, detail)


def _gap(ev: RealtimeEvent) -> Described:
    p = ev.payload if isinstance(ev.payload, dict) else {}
    seconds = p.get("seconds")
    summary = "gap" + (f" of {seconds:.1f} s" if isinstance(seconds, int | float) else "")
    summary += f" — {ev.reason}" if ev.reason else ""
    if p.get("recovered") is False:
        summary += " (not recovered)"
    detail = {"gap_start": _iso(ev.gap_start), "gap_end": _iso(ev.gap_end), "reason": ev.reason, **p}
    return Described("status", "gap", summary, detail)


def describe(ev: RealtimeEvent) -> Described | None:
    """The log line for ``ev``, or None for events the Inspector leaves out (heartbeats)."""
    kind = ev.kind
    if kind is EventKind.CHANGE:
        return _change(ev)
    if kind is EventKind.BROADCAST:
        event = ev.op or "?"
        return Described("broadcast", event, _compact(ev.payload), {"event": event, "payload": ev.payload})
    if kind is EventKind.PRESENCE:
        return _presence(ev)
    if kind is EventKind.SYSTEM:
        return _system(ev)
    if kind is EventKind.STATUS:
        return _status(ev)
    if kind is EventKind.GAP:
        return _gap(ev)
    return None
