"""The Inspector widget: join channels, watch every message, filter, send, track, listen as a role.

Traffic (the widgets' discipline, :class:`~harmony_lab.widgets.base.StreamingWidget`): nothing is sent
before a view says ``ready``; then at most ``max_hz`` (≤ 10) messages a second carry everything — new
log rows as one Arrow IPC buffer, channel states and counters in the same message — within
``max_bytes_per_s``. Details travel only when a view asks for one.

Wire protocol (custom messages):

* kernel → front end: ``{"type": "snapshot", "seq", "part", "parts", "first_id", "last_id",
  "channels", "stats"}`` + one buffer per part (part 0 replaces the view's rows); ``{"type": "delta",
  "seq", "first_id", "last_id", "channels"?, "stats"?}`` + zero or one buffer of new rows (the view
  drops rows with ids below ``first_id``); ``{"type": "pending", "n"}`` while paused; ``{"type":
  "detail", "id", "detail"}`` (JSON text, or null once evicted); ``{"type": "done", "action", "ok",
  "message"}`` after an action the view asked for.
* front end → kernel: ``ready`` / ``bye`` / ``resync``; ``{"type": "detail", "id"}``; actions
  ``join``, ``leave``, ``send``, ``track``, ``untrack``, ``listen_as`` (fields as the Python methods).

Rows: ``id`` int64, ``t`` float64 (ms since the epoch), ``channel``, ``kind``, ``event``, ``summary``.
Traits: ``filters`` and ``paused`` (both ways), ``identity``, ``hosted``, ``user_hints``, ``error``,
``height``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import pyarrow as pa
import traitlets

from harmony_lab._strict import strict_kwargs
from harmony_lab.events import EventKind, PresenceStatus, RealtimeEvent, utc_now
from harmony_lab.inspector._channels import ChannelConfig, join_on, parse_events, parse_tables
from harmony_lab.inspector._entries import describe
from harmony_lab.inspector._identity import Identity, claims_of, sign
from harmony_lab.inspector._log import LogEntry, LogFilter, MessageLog
from harmony_lab.manager import RealtimeConnectionManager
from harmony_lab.widgets.base import StreamingWidget, css, esm

if TYPE_CHECKING:
    from harmony_lab.recording import Recorder

logger = logging.getLogger(__name__)

__all__ = ["Inspector"]

_ACTIONS = ("join", "leave", "send", "track", "untrack", "listen_as")
_MAX_PENDING_ACTIONS = 16
_MAX_PAYLOAD = 256_000
_CLOSING: set[asyncio.Task[Any]] = set()
_ROW_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("t", pa.float64()),
        ("channel", pa.string()),
        ("kind", pa.string()),
        ("event", pa.string()),
        ("summary", pa.string()),
    ]
)


def ipc_bytes(batch: pa.RecordBatch) -> bytes:
    """One record batch as an Arrow IPC stream (schema, batch, end-of-stream marker)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def rows_batch(entries: list[LogEntry]) -> pa.RecordBatch:
    """Log entries as the record batch the front end reads (no details: those travel on request)."""
    return pa.RecordBatch.from_arrays(
        [
            pa.array([e.id for e in entries], type=pa.int64()),
            pa.array([e.time.timestamp() * 1000.0 for e in entries], type=pa.float64()),
            pa.array([e.channel for e in entries], type=pa.string()),
            pa.array([e.kind for e in entries], type=pa.string()),
            pa.array([e.event for e in entries], type=pa.string()),
            pa.array([e.summary for e in entries], type=pa.string()),
        ],
        schema=_ROW_SCHEMA,
    )


class Inspector(StreamingWidget):
    """Join any channel and watch every message with its JSON, like the dashboard's Realtime Inspector.

    ``Inspector(rt)`` for a :class:`~harmony_lab.LocalRealtime`; ``Inspector(client)`` for a
    supabase-py ``AsyncClient``; ``Inspector(url=..., key=...)`` for any project (URL and anon key).
    The Python API mirrors the UI::

        insp = Inspector(rt); insp                         # the widget
        await insp.join("room:1", postgres_changes={"table": "messages", "filter": "channel_id=eq.1"},
                        broadcast="*", presence=True)
        await insp.send("room:1", "hello", {"text": "hi"})
        await insp.track("room:1", "online")
        await insp.listen_as("service_role")               # every channel joins again with that token
        insp.log                                           # everything observed, as a DataFrame
        rec = insp.record("recordings/inspector")          # a harmony_lab recording from now on

    ``capacity`` bounds the log (entries; ``max_bytes`` its text); the oldest go first.
    ``manager_options`` are passed to every :class:`~harmony_lab.RealtimeConnectionManager` the
    Inspector creates (one per identity).
    """

    _esm = esm("inspector.js")
    _css = css() + "\n" + css("inspector.css")

    filters = traitlets.Dict().tag(sync=True)
    paused = traitlets.Bool(False).tag(sync=True)
    identity = traitlets.Unicode("anon").tag(sync=True)
    hosted = traitlets.Bool(False).tag(sync=True)
    user_hints = traitlets.List().tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    height = traitlets.Int(420).tag(sync=True)
    capacity = traitlets.Int(100_000).tag(sync=True)

    @strict_kwargs
    def __init__(
        self,
        source: Any = None,
        *,
        url: str | None = None,
        key: str | None = None,
        service_role_key: str | None = None,
        dsn: str | None = None,
        capacity: int = 100_000,
        max_bytes: int = 100_000_000,
        height: int = 420,
        max_hz: float = 10.0,
        max_bytes_per_s: float = 1_000_000,
        rows_per_message: int = 20_000,
        manager_options: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        layout: Any = None,
    ) -> None:
        self._stack: Any = None
        self._client: Any = None
        self._service_role_key: str | None = service_role_key
        self._dsn: str | None = dsn
        if source is not None:
            if callable(getattr(source, "token_for", None)) and hasattr(source, "anon_key"):
                self._stack = source
                url, key = source.url, source.anon_key
                self._service_role_key = self._service_role_key or source.service_role_key
                self._dsn = self._dsn or source.dsn
            elif hasattr(source, "supabase_url") and hasattr(source, "auth"):
                self._client = source
                url, key = str(source.supabase_url), source.supabase_key
            else:
                raise TypeError(
                    "Inspector(source) takes a LocalRealtime or a supabase AsyncClient; or pass "
                    f"url= and key= (the project's URL and anon key); got {type(source).__name__}"
                )
        if not isinstance(url, str) or not isinstance(key, str) or not key:
            raise ValueError(
                "Inspector needs a project: Inspector(rt) for a LocalRealtime, Inspector(client) for a "
                "supabase AsyncClient, or Inspector(url='https://<ref>.supabase.co', key='<anon key>')"
            )
        from harmony_lab.manager import realtime_url

        realtime_url(url)  # the manager's URL check, before anything else
        self._url, self._key = url, key
        manager_options = dict(manager_options or {})
        for bad in ("access_token", "dsn"):
            if bad in manager_options:
                raise ValueError(
                    f"manager_options cannot set {bad!r}: the Inspector sets it (listen_as, dsn=)"
                )
        self._manager_options = manager_options
        max_hz = float(max_hz)
        max_bytes_per_s = float(max_bytes_per_s)
        self._check_rates(max_hz, max_bytes_per_s)
        if (
            isinstance(rows_per_message, bool)
            or not isinstance(rows_per_message, int)
            or rows_per_message < 1
        ):
            raise ValueError(f"rows_per_message must be a positive int; got {rows_per_message!r}")
        self._log = MessageLog(capacity, max_bytes=max_bytes)
        kw: dict[str, Any] = {} if layout is None else {"layout": layout}
        super().__init__(
            height=int(height),
            capacity=self._log.capacity,
            hosted=self._stack is None,
            filters=LogFilter().as_dict(),
            **kw,
        )
        self._rows_per_message = rows_per_message
        self._configs: dict[str, ChannelConfig] = {}
        self._who = Identity("anon", "anon")
        self._manager: RealtimeConnectionManager | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._presence_key = f"inspector-{secrets.token_hex(3)}"
        self._tracking: dict[str, str] = {}  # topic -> tracked status
        self._recorder: Any = None
        self._record_seq = itertools.count(1)
        self._filter = LogFilter()
        self._sent_id = 0
        self._seq = 0
        self._channels_dirty = False
        self._stats_dirty = False
        self._sent_pending = 0
        self._actions: set[asyncio.Task[Any]] = set()
        self._switching: asyncio.Lock | None = None
        if self._stack is not None:
            self.user_hints = self._seed_users()
        self._init_stream(
            max_hz=max_hz,
            max_bytes_per_s=max_bytes_per_s,
            stats_interval_s=None,
            clock=clock,
        )
        self.observe(self._on_filters, names="filters")
        self.observe(self._on_paused, names="paused")

    @staticmethod
    def _seed_users() -> list[list[str]]:
        try:
            from harmony_lab.local.schema import USERS
        except ImportError:  # pragma: no cover - the schema ships with the package
            return []
        return [[name, str(uid)] for name, uid in USERS.items()]

    # ------------------------------------------------------------------ reading

    @property
    def log(self) -> Any:
        """Every message held (oldest first) as a DataFrame: id, time, channel, kind, event, summary,
        detail (JSON text)."""
        return self._log.to_frame()

    @property
    def visible(self) -> Any:
        """The messages the view's filters show, as a DataFrame."""
        return self._log.to_frame(self._log.select(self._filter))

    @property
    def messages(self) -> MessageLog:
        """The underlying :class:`MessageLog` (ring buffer)."""
        return self._log

    def detail(self, entry_id: int) -> Any:
        """The JSON detail of log entry ``entry_id``, parsed (KeyError once it left the ring)."""
        entry = self._log.get(entry_id)
        if entry is None:
            raise KeyError(f"log entry {entry_id} is not held (ids {self._log.first_id}-{self._log.last_id})")
        return entry.data()

    @property
    def channels(self) -> dict[str, dict[str, Any]]:
        """Per topic: status, reason, attempt, private, bindings, tracked presence status."""
        return {row["topic"]: row for row in self._channel_rows()}

    @property
    def manager(self) -> RealtimeConnectionManager | None:
        """The connection manager of the current identity (None before the first join)."""
        return self._manager

    def filter(
        self,
        *,
        kind: str | Collection[str] | None = None,
        channel: str | Collection[str] | None = None,
        event: str | Collection[str] | None = None,
        text: str | None = None,
    ) -> Any:
        """Show only matching messages (in the view too); no arguments clears the filters. Returns
        :attr:`visible`."""
        flt = LogFilter.of(kind=kind, channel=channel, event=event, text=text)
        self._filter = flt
        self.filters = flt.as_dict()
        return self.visible

    def pause(self) -> None:
        """Freeze the view (messages keep arriving and are counted as new)."""
        self.paused = True

    def resume(self) -> int:
        """Unfreeze the view; returns how many messages arrived while paused."""
        n = self._log.new_count
        self.paused = False
        return n

    # ------------------------------------------------------------------ channels

    async def join(
        self,
        topic: str,
        *,
        private: bool = False,
        postgres_changes: Any = None,
        broadcast: bool | str | Collection[str] = True,
        presence: bool | str = False,
    ) -> Any:
        """Join ``topic`` (without the ``realtime:`` prefix) and log what it receives.

        ``postgres_changes``: a table name, ``{"table", "schema", "event", "filter"}`` mapping,
        ``TableSubscription`` or a list of them (validated with the manager's errors);
        ``broadcast``: events to show (``True``/``"*"`` all, ``False`` none, names);
        ``presence``: ``True`` (the Inspector's own key) or a presence key — the roster is logged, and
        :meth:`track` shows you to others. Joining a topic again replaces its bindings. Returns the
        channel's state once its first attempt settled (its status and reason are also logged).
        """
        if isinstance(presence, str):
            key: str | None = presence.strip() or None
            if key is None or len(key) > 200:
                raise ValueError(f"presence key must be 1-200 characters; got {presence!r}")
        elif presence is True:
            key = self._presence_key
        elif presence is False or presence is None:
            key = None
        else:
            raise TypeError(f"presence must be True, False or a presence key string; got {presence!r}")
        cfg = ChannelConfig(
            topic,
            private=private,
            tables=parse_tables(postgres_changes),
            broadcast=parse_events(broadcast),
            presence_key=key,
        )
        manager = self._ensure_manager()
        previous = self._configs.get(cfg.topic)
        if previous is not None and previous != cfg:
            await manager.unsubscribe(cfg.topic)  # new bindings: a fresh join, never a merge
        self._configs[cfg.topic] = cfg
        self._tracking.pop(cfg.topic, None)
        try:
            state = await join_on(manager, cfg)
        except BaseException:
            self._configs.pop(cfg.topic, None)
            raise
        self._channels_changed()
        return state

    async def leave(self, topic: str) -> None:
        """Leave ``topic`` (no error if it was not joined)."""
        self._configs.pop(topic, None)
        self._tracking.pop(topic, None)
        if self._manager is not None:
            await self._manager.unsubscribe(topic)
        self._channels_changed()

    async def send(self, channel: str, event: str, payload: Any = None) -> None:
        """Broadcast ``event`` with ``payload`` (a JSON object, or its text) on the joined ``channel``."""
        if not isinstance(event, str) or not event.strip() or len(event) > 200:
            raise ValueError(f"event must be a name of 1-200 characters; got {event!r}")
        if isinstance(payload, str | bytes):
            if len(payload) > _MAX_PAYLOAD:
                raise ValueError(f"payload is {len(payload)} bytes; at most {_MAX_PAYLOAD}")
            try:
                payload = json.loads(payload) if payload.strip() else {}
            except ValueError as exc:
                raise ValueError(
                    f'payload is not JSON ({exc}); write an object like {{"text": "hi"}}'
                ) from None
        payload = {} if payload is None else payload
        if not isinstance(payload, dict):
            raise TypeError(f"payload must be a JSON object (a dict); got {type(payload).__name__}")
        if len(json.dumps(payload, default=str)) > _MAX_PAYLOAD:
            raise ValueError(f"payload is larger than {_MAX_PAYLOAD} bytes of JSON")
        manager = self._joined(channel)
        await manager.broadcast(channel, event.strip(), payload)
        self._append(
            channel,
            "broadcast",
            event.strip(),
            "sent " + json.dumps(payload, default=str, ensure_ascii=False, separators=(",", ":")),
            {"event": event.strip(), "payload": payload, "sent": True},
        )

    async def track(
        self, channel: str, status: PresenceStatus | str = "online", meta: dict[str, Any] | None = None
    ) -> None:
        """Show the Inspector in ``channel``'s presence with ``status`` (online, away, dnd) and ``meta``.
        Joins presence on the channel first if it was joined without it."""
        st = PresenceStatus(status) if not isinstance(status, PresenceStatus) else status
        if st is PresenceStatus.INVISIBLE:
            await self.untrack(channel)
            return
        handle = await self._presence_handle(channel)
        await handle.set_status(st, meta)
        self._tracking[channel] = st.value
        self._channels_changed()

    async def untrack(self, channel: str) -> None:
        """Stop showing the Inspector in ``channel``'s presence (it still receives the roster)."""
        handle = await self._presence_handle(channel)
        await handle.set_status(PresenceStatus.INVISIBLE)
        self._tracking.pop(channel, None)
        self._channels_changed()

    async def _presence_handle(self, channel: str) -> Any:
        manager = self._joined(channel)
        cfg = self._configs[channel]
        if cfg.presence_key is None:
            await self.join(
                channel,
                private=cfg.private,
                postgres_changes=list(cfg.tables),
                broadcast=True if cfg.broadcast is None else sorted(cfg.broadcast),
                presence=True,
            )
            manager = self._joined(channel)
        handle = manager.presence_handle(channel)
        if handle is None:
            raise RuntimeError(f"channel {channel!r} has no presence; join it with presence=True")
        await manager.wait_for_status(channel, "connected", timeout=manager.join_timeout + 5)
        return handle

    def _joined(self, channel: str) -> RealtimeConnectionManager:
        if channel not in self._configs or self._manager is None:
            known = ", ".join(sorted(self._configs)) or "none"
            raise KeyError(
                f"channel {channel!r} is not joined (joined: {known}); await insp.join({channel!r})"
            )
        return self._manager

    # ------------------------------------------------------------------ identity

    async def listen_as(
        self,
        who: str = "anon",
        *,
        jwt_secret: str | None = None,
        token: str | None = None,
        session: Any = None,
        role: str = "authenticated",
    ) -> Identity:
        """Listen as ``"anon"``, ``"service_role"`` or a user id; every joined channel joins again with
        the new token, so RLS and Realtime Authorization apply to what arrives from then on.

        On the embedded stack users get ``LocalRealtime.token_for(user)``. On a hosted project pass
        ``session=client`` (a signed-in supabase-py client), ``token=`` (an access token), or
        ``jwt_secret=`` (the project's JWT secret: a token is signed with it and the secret is
        dropped, never stored). ``role`` is the user token's role claim.
        """
        identity = self._identity(who, jwt_secret=jwt_secret, token=token, session=session, role=role)
        del jwt_secret
        if self._switching is None:
            self._switching = asyncio.Lock()
        async with self._switching:
            old, remove = self._manager, self._remove_listener
            self._manager, self._remove_listener = None, None
            if remove is not None:
                remove()
            if old is not None:
                await old.aclose()
            self._who = identity
            self.identity = identity.label
            self._append(
                "*",
                "system",
                "listen_as",
                f"listening as {identity.label} (role {identity.role})",
                {"identity": identity.label, "role": identity.role},
            )
            tracking = dict(self._tracking)
            self._tracking.clear()
            manager = self._ensure_manager()
            for cfg in list(self._configs.values()):
                try:
                    await join_on(manager, cfg)
                except Exception as exc:
                    logger.warning(
                        "inspector: joining %r again as %s failed: %s", cfg.topic, identity.label, exc
                    )
                    self._append(cfg.topic, "system", "error", f"join failed: {exc}", {"error": str(exc)})
            for topic, status in tracking.items():
                if topic in self._configs:
                    await self.track(topic, status)
        self._channels_changed()
        return identity

    def _identity(
        self, who: str, *, jwt_secret: str | None, token: str | None, session: Any, role: str
    ) -> Identity:
        if session is not None:
            if not hasattr(session, "auth") or not hasattr(session, "supabase_url"):
                raise TypeError(
                    "session must be a signed-in supabase AsyncClient (await acreate_client(...))"
                )
            return Identity("session user", "authenticated", session=session)
        if token is not None:
            claims = claims_of(token)
            sub = claims.get("sub")
            label = f"user {sub}" if sub else str(claims.get("role") or "token")
            return Identity(label, str(claims.get("role") or "?"), access_token=token)
        if not isinstance(who, str) or not who.strip():
            raise ValueError("listen_as takes 'anon', 'service_role' or a user id")
        who = who.strip()
        if who == "anon":
            return Identity("anon", "anon")
        if who == "service_role":
            if self._service_role_key:
                return Identity("service_role", "service_role", access_token=self._service_role_key)
            if jwt_secret:
                return Identity(
                    "service_role", "service_role", access_token=sign(jwt_secret, None, "service_role")
                )
            raise ValueError(
                "listening as service_role on a hosted project needs its key: "
                "Inspector(url=..., key=..., service_role_key=...) or "
                "listen_as('service_role', jwt_secret=...)"
            )
        if len(who) > 200:
            raise ValueError("a user id is at most 200 characters")
        if self._stack is not None and not jwt_secret:
            return Identity(f"user {who}", role, access_token=self._stack.token_for(who, role=role))
        if jwt_secret:
            return Identity(f"user {who}", role, access_token=sign(jwt_secret, who, role))
        raise ValueError(
            f"listening as user {who!r} on a hosted project needs a token: pass session=<signed-in "
            "supabase client>, token=<access token> or jwt_secret=<the project's JWT secret, not stored>"
        )

    def _ensure_manager(self) -> RealtimeConnectionManager:
        if self._manager is None:
            who = self._who
            if who.session is not None:
                manager = RealtimeConnectionManager.from_supabase(who.session, **self._manager_options)
            else:
                manager = RealtimeConnectionManager(
                    self._url,
                    self._key,
                    access_token=who.access_token,
                    dsn=self._dsn,
                    **self._manager_options,
                )
            self._remove_listener = manager.add_listener(self._on_event)
            self._manager = manager
        return self._manager

    # ------------------------------------------------------------------ recording

    def record(self, path: str | Path, **options: Any) -> Recorder:
        """Record every event the Inspector observes from now on into ``path`` (a
        :class:`~harmony_lab.Recorder` recording, read with ``read_recording``); returns the running
        Recorder (``rec.stop()`` or ``await rec.aclose()`` ends it; so does :meth:`aclose`)."""
        from harmony_lab.recording import Recorder

        if self._recorder is not None and self._recorder.state == "recording":
            raise RuntimeError(f"already recording into {self._recorder.path}; stop that recorder first")
        self._recorder = Recorder(None, path, **options).start()
        return self._recorder

    # ------------------------------------------------------------------ events in

    def _on_event(self, ev: RealtimeEvent) -> None:
        rec = self._recorder
        if rec is not None and rec.state == "recording":
            rec.write(ev.replace(seq=next(self._record_seq)))
        if ev.kind is EventKind.STATUS:
            self._channels_changed()
        d = describe(ev)
        if d is None:
            return
        if d.kind == "broadcast":
            cfg = self._configs.get(ev.channel)
            if cfg is not None and not cfg.shows_broadcast(d.event):
                return
        self._append(ev.channel, d.kind, d.event, d.summary, d.detail, at=ev)

    def _append(
        self,
        channel: str,
        kind: str,
        event: str,
        summary: str,
        detail: Any,
        *,
        at: RealtimeEvent | None = None,
    ) -> None:
        self._log.append(
            time=at.received_at if at is not None else utc_now(),
            channel=channel,
            kind=kind,
            event=event,
            summary=summary,
            detail=detail,
        )
        self._stats_dirty = True
        self._mark_dirty()

    def _channels_changed(self) -> None:
        self._channels_dirty = True
        self._mark_dirty()

    def _channel_rows(self) -> list[dict[str, Any]]:
        states = self._manager.channels if self._manager is not None else {}
        rows = []
        for topic, cfg in self._configs.items():
            st = states.get(topic)
            rows.append(
                {
                    "topic": topic,
                    "private": cfg.private,
                    "status": str(st.status) if st is not None else "disconnected",
                    "reason": st.reason if st is not None else "not joined",
                    "attempt": st.attempt if st is not None else 0,
                    "bindings": cfg.bindings(),
                    "presence": cfg.presence_key is not None,
                    "tracking": self._tracking.get(topic),
                }
            )
        return rows

    def _stats(self) -> dict[str, Any]:
        log = self._log
        return {"total": log.total, "held": len(log), "evicted": log.evicted, "capacity": log.capacity}

    # ------------------------------------------------------------------ front end

    def _on_filters(self, change: dict[str, Any]) -> None:
        new = change["new"] or {}
        try:
            self._filter = LogFilter.of(
                kind=new.get("kind") or None,
                channel=new.get("channel") or None,
                event=new.get("event") or None,
                text=new.get("text") or None,
            )
        except (TypeError, ValueError) as exc:
            self.error = f"filter not applied (the previous one still is): {exc}"
        else:
            if self.error.startswith("filter not applied"):
                self.error = ""

    def _on_paused(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._log.pause()
        else:
            self._log.resume()
            self._sent_pending = 0
        self.status = self._live_status()
        self._mark_dirty()

    def _live_status(self) -> str:
        return "paused" if self._log.paused else "live"

    def _snapshot(self) -> None:
        log = self._log
        entries = log.since(0)
        last = log.visible_last_id
        entries = [e for e in entries if e.id <= last] if log.paused else entries
        size = self._rows_per_message
        parts = max(1, -(-len(entries) // size))
        self._seq += 1
        for part in range(parts):
            chunk = entries[part * size : (part + 1) * size]
            content: dict[str, Any] = {
                "type": "snapshot",
                "seq": self._seq,
                "part": part,
                "parts": parts,
                "first_id": log.first_id,
                "last_id": chunk[-1].id if chunk else last,
            }
            if part == 0:
                content.update(channels=self._channel_rows(), stats=self._stats(), pending=log.new_count)
            self._send_custom(content, [ipc_bytes(rows_batch(chunk))])
        self._sent_id = entries[-1].id if entries else last
        self._channels_dirty = self._stats_dirty = False
        self._sent_pending = log.new_count

    def _flush_changes(self) -> bool:
        log = self._log
        content: dict[str, Any] = {"seq": self._seq + 1}
        if self._channels_dirty:
            content["channels"] = self._channel_rows()
            self._channels_dirty = False
        if self._stats_dirty:
            content["stats"] = self._stats()
            self._stats_dirty = False
        if log.paused:
            if log.new_count != self._sent_pending:
                self._sent_pending = log.new_count
                content["pending"] = log.new_count
            if len(content) == 1:
                return False
            content["type"] = "pending"
            self._seq += 1
            self._send_custom(content)
            return False
        entries = log.since(self._sent_id, limit=self._rows_per_message)
        if not entries and len(content) == 1:
            return False
        content.update(
            type="delta", first_id=log.first_id, last_id=entries[-1].id if entries else self._sent_id
        )
        self._seq += 1
        self._send_custom(content, [ipc_bytes(rows_batch(entries))] if entries else None)
        if entries:
            self._sent_id = entries[-1].id
        return self._sent_id < log.last_id

    def _send_custom(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> int:
        """The base class's accounting, through the widget's own custom-message send: on an Inspector
        ``send`` is the broadcast of the Python API."""
        size = sum(len(b) for b in buffers or ())
        anywidget.AnyWidget.send(self, content, buffers=buffers or None)
        self.messages_sent += 1
        self.bytes_sent += size
        self._tokens -= size
        return size

    def _on_other_msg(self, content: dict[str, Any], buffers: list[Any]) -> None:
        kind = content.get("type")
        if kind == "detail":
            entry_id = content.get("id")
            entry = self._log.get(entry_id) if isinstance(entry_id, int) else None
            self._send_custom({"type": "detail", "id": entry_id, "detail": entry.detail if entry else None})
            return
        if kind in _ACTIONS:
            self._start_action(str(kind), content)
            return
        super()._on_other_msg(content, buffers)

    def _start_action(self, action: str, content: dict[str, Any]) -> None:
        if len(self._actions) >= _MAX_PENDING_ACTIONS:
            self.error = f"{action}: too many actions still running; wait for them to finish"
            return
        loop = self._grab_loop() or self._loop
        if loop is None:
            self.error = f"{action}: no event loop is running in this kernel"
            return
        task = loop.create_task(self._run_action(action, content))
        self._actions.add(task)
        task.add_done_callback(self._actions.discard)

    async def _run_action(self, action: str, c: dict[str, Any]) -> None:
        def text(name: str, default: str = "") -> str:
            value = c.get(name, default)
            return value if isinstance(value, str) else default

        try:
            if action == "join":
                tables = c.get("postgres_changes") or None
                if isinstance(tables, list):
                    tables = [t for t in tables if isinstance(t, dict) and t.get("table")] or None
                await self.join(
                    text("topic").strip(),
                    private=c.get("private") is True,
                    postgres_changes=tables,
                    broadcast=text("broadcast", "*"),
                    presence=c.get("presence") is True,
                )
            elif action == "leave":
                await self.leave(text("topic"))
            elif action == "send":
                await self.send(text("channel"), text("event"), text("payload", "{}"))
            elif action == "track":
                meta = c.get("meta")
                await self.track(
                    text("channel"), text("status", "online"), meta if isinstance(meta, dict) else None
                )
            elif action == "untrack":
                await self.untrack(text("channel"))
            elif action == "listen_as":
                await self.listen_as(
                    text("who", "anon"),
                    jwt_secret=text("jwt_secret") or None,
                    token=text("token") or None,
                )
        except Exception as exc:
            message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            logger.info("inspector: %s from the view failed: %s", action, message)
            self.error = f"{action}: {message}"
            self._send_custom({"type": "done", "action": action, "ok": False, "message": message})
            return
        self.error = ""
        self._send_custom({"type": "done", "action": action, "ok": True, "message": ""})

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Leave every channel, stop a recording, close the widget."""
        manager, rec = self._detach()
        if manager is not None:
            await manager.aclose()
        if rec is not None and rec.state == "recording":
            await rec.aclose()
        super().close()

    def _detach(self) -> tuple[RealtimeConnectionManager | None, Any]:
        for task in list(getattr(self, "_actions", ())):
            task.cancel()
        remove, self._remove_listener = getattr(self, "_remove_listener", None), None
        if remove is not None:
            remove()
        manager, self._manager = getattr(self, "_manager", None), None
        rec, self._recorder = getattr(self, "_recorder", None), None
        return manager, rec

    def close(self) -> None:
        """Close the widget; its channels are left and a recording stopped in the background (on the
        running event loop; without one, use ``await insp.aclose()``)."""
        manager, rec = self._detach()
        if manager is not None or (rec is not None and rec.state == "recording"):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                task = loop.create_task(self._finish(manager, rec))
                _CLOSING.add(task)
                task.add_done_callback(_CLOSING.discard)
            else:
                if rec is not None and rec.state == "recording":
                    rec.stop()
                if manager is not None:
                    logger.warning(
                        "Inspector closed without a running event loop: its channels stay open until "
                        "the process ends; use `await insp.aclose()`"
                    )
        super().close()

    @staticmethod
    async def _finish(manager: RealtimeConnectionManager | None, rec: Any) -> None:
        if manager is not None:
            await manager.aclose()
        if rec is not None and rec.state == "recording":
            await rec.aclose()

    def __repr__(self) -> str:
        chans = ", ".join(f"{t}={row['status']}" for t, row in self.channels.items()) or "no channels"
        return (
            f"<Inspector as {self._who.label}: {chans}; {len(self._log)} messages "
            f"({self._log.evicted} evicted) views={self.views}>"
        )
