"""PresenceRosterWidget: who is online, away, busy or gone — and who is typing."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
import traitlets

from harmony_lab._feed import EventFeed, PresenceSource, is_presence_handle
from harmony_lab._presence import PresenceState, user_of
from harmony_lab._strict import strict_kwargs
from harmony_lab.events import EventKind, RealtimeEvent
from harmony_lab.widgets import _assets
from harmony_lab.widgets._base import StateWidget
from harmony_lab.widgets._sources import Feed, display_names, to_ms

logger = logging.getLogger(__name__)

__all__ = ["PresenceRosterWidget", "display_status", "initials"]

_VISIBLE = ("online", "away", "dnd")
_ORDER = {"online": 0, "away": 1, "dnd": 2, "offline": 3}
_NAME_KEYS = ("display_name", "username", "name", "email")


def display_status(status: Any) -> str:
    """online / away / dnd as such; invisible (and anything unknown but absent) shows as offline."""
    s = str(getattr(status, "value", status) or "").lower()
    if s in _VISIBLE:
        return s
    return "offline"


def initials(name: str) -> str:
    """Up to two letters: first letters of the first two words, else the first two characters."""
    words = [w for w in name.replace("_", " ").replace(".", " ").replace("-", " ").split() if w]
    if len(words) >= 2:
        return (words[0][0] + words[1][0]).upper()
    return (words[0][:2] if words else "?").upper()


class PresenceRosterWidget(StateWidget):
    """Users with initials, a status dot (online, away, dnd; invisible shown offline), typing, last seen.

    ``source`` is a presence handle from ``await manager.join_presence(...)`` (its ``roster`` and
    ``on_change``), a manager (its presence events, of ``channel`` when given), an async iterable of
    events (a replay), or None (call :meth:`apply`). Typing comes from change events of
    ``typing_table`` (rows with ``user_id`` and, optionally, ``expires_at``; a row without expiry
    counts for ``typing_ttl_s``) delivered by the manager or replay given as ``source``, or by
    ``events`` (pass ``events=manager`` along with a presence handle). ``names`` maps user ids to
    display names (e.g. from the profiles table).
    """

    _status_of: tuple[Any, str] | None = None  # (manager, channel name) the status line follows

    _esm = _assets.esm("presence_roster.js")
    _css = _assets.css()

    title = traitlets.Unicode("Presence").tag(sync=True)
    users = traitlets.List().tag(sync=True)
    now_ms = traitlets.Int(0).tag(sync=True)

    @strict_kwargs
    def __init__(
        self,
        source: EventFeed | PresenceSource | None = None,
        *,
        channel: str | None = None,
        events: Any = None,
        typing_table: str = "typing_indicators",
        typing_ttl_s: float = 6.0,
        names: Mapping[str, str] | None = None,
        title: str = "Presence",
        max_hz: float = 10.0,
        wall_clock: Callable[[], float] = time.time,
        layout: Any = None,
    ) -> None:
        self._check_rates(max_hz, 200_000)
        kw: dict[str, Any] = {} if layout is None else {"layout": layout}
        super().__init__(title=title, **kw)
        self.channel = channel
        self.typing_table = typing_table
        self._ttl_ms = int(typing_ttl_s * 1000)
        self._names = display_names(names, "PresenceRosterWidget")
        self._wall = wall_clock
        self._users: dict[str, dict[str, Any]] = {}
        self._presence = PresenceState()
        self._typing: dict[str, int] = {}  # user → typing until (epoch ms)
        self._init_stream(max_hz=max_hz, max_bytes_per_s=200_000, stats_interval_s=1.0)
        self._feeds: list[Feed] = []
        self._remove_handle: Callable[[], Any] | None = None
        self._handle: Any = None
        if is_presence_handle(source):
            self._handle = source
            self._remove_handle = source.on_change(self._on_handle_change)
            self._from_roster(source.roster)
        elif source is not None:
            self._feeds.append(Feed(source, self.apply, "PresenceRosterWidget"))
        if events is not None and events is not source:
            self._feeds.append(Feed(events, self._apply_typing_only, "PresenceRosterWidget typing"))
        # the status line follows the presence channel: its manager and name, when known
        if self._handle is not None and callable(getattr(events, "get_status", None)):
            self._status_of = (events, str(self._handle.name))
        elif channel is not None and callable(getattr(source, "get_status", None)):
            self._status_of = (source, channel)

    # ------------------------------------------------------------------ status line

    def _channel_state(self) -> Any:
        if self._status_of is None:
            return None
        manager, name = self._status_of
        return manager.get_status(name)

    def _live_status(self) -> str:
        state = self._channel_state()
        if state is None:
            return "live"
        status = str(getattr(state.status, "value", state.status))
        return "live" if status == "connected" else status

    def _live_reason(self) -> str:
        state = self._channel_state()
        if state is None or self._live_status() == "live":
            return ""
        reason = str(state.reason or "")
        if not reason:
            return ""
        return f"{reason} · attempt {state.attempt}" if state.attempt else reason

    # ------------------------------------------------------------------ inputs

    def _on_handle_change(self, *_: Any) -> None:
        self._from_roster(self._handle.roster)

    def _entry(self, user: str) -> dict[str, Any]:
        entry = self._users.get(user)
        if entry is None:
            entry = self._users[user] = {
                "id": user,
                "name": self._names.get(user, user),
                "status": "offline",
                "last_seen_ms": None,
                "online_at_ms": None,
            }
        return entry

    def _set_meta(self, entry: dict[str, Any], meta: Mapping[str, Any]) -> None:
        for k in _NAME_KEYS:
            if meta.get(k):
                entry["name"] = str(meta[k])
                break
        else:
            entry["name"] = self._names.get(entry["id"], entry["name"])

    def _from_roster(self, roster: Mapping[str, Any]) -> None:
        """A presence handle's roster: user → {"status", "last_seen", "meta", "online_at"}."""
        seen = set()
        for user, info in roster.items():
            user = str(user)
            seen.add(user)
            info = info if isinstance(info, Mapping) else vars(info)
            entry = self._entry(user)
            entry["status"] = display_status(info.get("status"))
            self._set_meta(entry, info.get("meta") or {})
            entry["last_seen_ms"] = to_ms(info.get("last_seen")) or entry["last_seen_ms"]
            entry["online_at_ms"] = to_ms(info.get("online_at"))
        for user, entry in self._users.items():
            if user not in seen and entry["status"] != "offline":
                entry["status"] = "offline"
                entry["last_seen_ms"] = int(self._wall() * 1000)
        self._mark_dirty()

    def reset(self) -> None:
        """Forget every user, presence and typing state seen so far (the view empties)."""
        self._users.clear()
        self._typing.clear()
        self._presence = PresenceState()
        self._mark_dirty()

    def apply(self, event: RealtimeEvent) -> bool:
        """Apply a presence event (sync/join/leave) or a typing-table change; others are ignored."""
        if event.kind is EventKind.PRESENCE:
            if self.channel is not None and event.channel != self.channel:
                return False
            self._apply_presence(event)
            self._mark_dirty()
            return True
        return self._apply_typing_only(event)

    def _apply_typing_only(self, event: RealtimeEvent) -> bool:
        if event.kind is not EventKind.CHANGE or event.table != self.typing_table:
            return False
        now = to_ms(event.received_at) or int(self._wall() * 1000)
        op = (event.op or "").upper()
        row = (event.old if op == "DELETE" else event.new) or event.pk or {}
        user = row.get("user_id")
        if user is None:
            return False
        user = str(user)
        if op == "DELETE":
            self._typing.pop(user, None)
        else:
            until = to_ms(row.get("expires_at"))
            self._typing[user] = until if until is not None and until > now else now + self._ttl_ms
        self._mark_dirty()
        return True

    def _apply_presence(self, event: RealtimeEvent) -> None:
        op = (event.op or "").lower()
        if op not in ("sync", "join", "leave"):
            logger.debug("roster: ignoring presence op %r", op)
            return
        now = to_ms(event.received_at) or int(self._wall() * 1000)
        diff = self._presence.apply(op, event.payload)
        for key in self._presence.keys() if op == "sync" else diff.changed:
            meta = self._presence.latest(key)
            if meta is not None:
                self._present(key, meta, now)
        present = set(self._presence.users())
        for key, metas in diff.left.items():
            user = user_of(key, metas[-1] if metas else None)
            if user not in present:
                entry = self._entry(user)
                entry["status"] = "offline"
                entry["last_seen_ms"] = now
        if op == "sync":  # users known from elsewhere (a handle's roster) but not listed are gone
            for user, entry in self._users.items():
                if user not in present and entry["status"] != "offline":
                    entry["status"] = "offline"
                    entry["last_seen_ms"] = now

    def _present(self, key: str, meta: Mapping[str, Any], now: int) -> str:
        user = user_of(key, meta)
        entry = self._entry(user)
        entry["status"] = display_status(meta.get("status", "online"))
        self._set_meta(entry, meta)
        entry["last_seen_ms"] = now
        entry["online_at_ms"] = to_ms(meta.get("online_at"))
        return user

    # ------------------------------------------------------------------ output

    def roster(self) -> list[dict[str, Any]]:
        """What the widget shows: one dict per user, present users first."""
        now = int(self._wall() * 1000)
        out = []
        for user, e in self._users.items():
            until = self._typing.get(user)
            typing = until is not None and until > now and e["status"] != "offline"
            out.append(
                {
                    **e,
                    "initials": initials(e["name"]),
                    "typing": typing,
                    "typing_until_ms": until if typing else None,
                }
            )
        out.sort(
            key=lambda u: (
                _ORDER[u["status"]],
                -(u["last_seen_ms"] or 0) if u["status"] == "offline" else 0,
                u["name"].lower(),
            )
        )
        return out

    @property
    def df(self) -> pd.DataFrame:
        """What the widget shows, as a DataFrame: one row per user in the widget's order (present
        users first) with ``id``, ``name``, ``status``, ``typing`` (bool) and ``last_seen`` /
        ``online_at`` / ``typing_until`` (UTC timestamps)."""
        rows = self.roster()
        ms = ("last_seen_ms", "online_at_ms", "typing_until_ms")
        df = pd.DataFrame(
            {
                "id": pd.array([u["id"] for u in rows], dtype="string"),
                "name": pd.array([u["name"] for u in rows], dtype="string"),
                "status": pd.array([u["status"] for u in rows], dtype="string"),
                "typing": pd.array([u["typing"] for u in rows], dtype="boolean"),
                **{
                    col.removesuffix("_ms"): pd.to_datetime(
                        pd.array([u[col] for u in rows], dtype="Int64"), unit="ms", utc=True
                    )
                    for col in ms
                },
            }
        )
        return df

    def to_pandas(self) -> pd.DataFrame:
        """Same as :attr:`df`."""
        return self.df

    def _push(self) -> None:
        with self.hold_sync():
            self.users = self.roster()
            self.now_ms = int(self._wall() * 1000)

    def _send_stats(self) -> None:
        # typing indicators expire without an event: refresh when one did
        now = int(self._wall() * 1000)
        expired = [u for u, until in self._typing.items() if until <= now]
        for u in expired:
            del self._typing[u]
        if expired:
            self._push()

    def close(self) -> None:
        for f in self._feeds:
            f.close()
        if self._remove_handle is not None:
            self._remove_handle()
            self._remove_handle = None
        super().close()

    def __repr__(self) -> str:
        online = sum(1 for e in self._users.values() if e["status"] != "offline")
        return (
            f"<PresenceRosterWidget {online} present / {len(self._users)} known, typing={len(self._typing)}>"
        )
