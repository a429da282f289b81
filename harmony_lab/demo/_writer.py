"""Applies planned actions to the Harmony tables through one psycopg 3 async connection.

Each action is one transaction. Channels are resolved by name and messages by the planner's handle
(mapped to the ``messages.id`` the insert returned), so the plan never depends on identity values.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Final

import psycopg

from harmony_lab.demo._plan import Action, ChannelSpec, UserSpec

__all__ = ["PgWriter"]

logger = logging.getLogger(__name__)

_MAX_HANDLES: Final = 50_000


class PgWriter:
    """Writes the simulation into Postgres (a superuser/owner DSN: writes bypass RLS like a backend)."""

    def __init__(self, dsn: str, *, statuses: bool = True) -> None:
        self.dsn = dsn
        self.statuses = statuses  # False: profiles.status belongs to another simulator on the stack
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._channel_ids: dict[str, int] = {}
        self._message_ids: OrderedDict[str, int] = OrderedDict()
        self.rows: dict[str, int] = {}  # table -> rows written (inserted/updated/deleted)

    async def open(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @property
    def conn(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            raise RuntimeError("the simulator's Postgres connection is not open (call start() first)")
        return self._conn

    def _count(self, table: str, n: int = 1) -> None:
        self.rows[table] = self.rows.get(table, 0) + n

    # -- setup ----------------------------------------------------------------------------------

    async def setup(self, users: Iterable[UserSpec], channels: Iterable[ChannelSpec]) -> None:
        """Create missing users (auth.users → profiles via the signup trigger) and memberships;
        mark the simulated users offline and clear their typing indicators."""
        users = list(users)
        async with self.conn.transaction():
            for u in users:
                meta = json.dumps({"username": u.username, "display_name": u.display_name})
                await self.conn.execute(
                    "INSERT INTO auth.users (id, email, raw_user_meta_data) VALUES (%s, %s, %s::jsonb) "
                    "ON CONFLICT (id) DO NOTHING",
                    (u.id, f"{u.username}@harmony.test", meta),
                )
                await self.conn.execute(
                    "INSERT INTO public.profiles (id, username, display_name) VALUES (%s, %s, %s) "
                    "ON CONFLICT (id) DO NOTHING",
                    (u.id, u.username, u.display_name),
                )
            ids = [u.id for u in users]
            if self.statuses:
                await self.conn.execute(
                    "UPDATE public.profiles SET status = 'offline' WHERE id = ANY(%s::uuid[]) "
                    "AND status <> 'offline'",
                    (ids,),
                )
            await self.conn.execute(
                "DELETE FROM public.typing_indicators WHERE user_id = ANY(%s::uuid[])", (ids,)
            )
            for ch in channels:
                cid = await self._channel_id(ch.name, ch.kind, ch.owner)
                for member in sorted(ch.members):
                    await self.conn.execute(
                        "INSERT INTO public.channel_members (channel_id, user_id) VALUES (%s, %s) "
                        "ON CONFLICT DO NOTHING",
                        (cid, member),
                    )

    async def teardown(self, users: Iterable[str]) -> None:
        """Everyone simulated goes offline; typing indicators are cleared."""
        ids = list(users)
        async with self.conn.transaction():
            if self.statuses:
                await self.conn.execute(
                    "UPDATE public.profiles SET status = 'offline', last_seen_at = now() "
                    "WHERE id = ANY(%s::uuid[]) AND status <> 'offline'",
                    (ids,),
                )
            await self.conn.execute(
                "DELETE FROM public.typing_indicators WHERE user_id = ANY(%s::uuid[])", (ids,)
            )

    async def _channel_id(self, name: str, kind: str, owner: str | None) -> int:
        cid = self._channel_ids.get(name)
        if cid is not None:
            return cid
        cur = await self.conn.execute(
            "SELECT id FROM public.channels WHERE name = %s AND kind = %s ORDER BY id LIMIT 1", (name, kind)
        )
        row = await cur.fetchone()
        if row is None:
            cur = await self.conn.execute(
                "INSERT INTO public.channels (name, kind, created_by) VALUES (%s, %s, %s) RETURNING id",
                (name, kind, owner),
            )
            row = await cur.fetchone()
            assert row is not None
            self._count("channels")
        self._channel_ids[name] = int(row[0])
        return int(row[0])

    def _message_id(self, handle: str | None) -> int | None:
        if handle is None:
            return None
        mid = self._message_ids.get(handle)
        if mid is not None:
            self._message_ids.move_to_end(handle)
        return mid

    # -- actions --------------------------------------------------------------------------------

    async def apply(self, a: Action) -> bool:
        """Apply one action in one transaction; False when it referred to something never written."""
        async with self.conn.transaction():
            return await getattr(self, f"_do_{a.kind}")(a)

    async def _stop_typing(self, a: Action) -> None:
        if a.stop_typing is None:
            return
        cid = self._channel_ids.get(a.stop_typing)
        if cid is not None:
            cur = await self.conn.execute(
                "DELETE FROM public.typing_indicators WHERE channel_id = %s AND user_id = %s", (cid, a.actor)
            )
            self._count("typing_indicators", cur.rowcount)

    async def _notify(self, a: Action, extra: dict[str, Any]) -> None:
        for user, kind in a.notify:
            payload = {"from": a.actor, "channel": a.channel, **extra}
            await self.conn.execute(
                "INSERT INTO public.notifications (user_id, kind, payload) VALUES (%s, %s, %s::jsonb)",
                (user, kind, json.dumps(payload)),
            )
            self._count("notifications")

    async def _do_presence(self, a: Action) -> bool:
        assert a.status is not None
        await self._stop_typing(a)
        if not self.statuses:
            return True
        await self.conn.execute(
            "UPDATE public.profiles SET status = %s, last_seen_at = now() WHERE id = %s",
            (str(a.status), a.actor),
        )
        self._count("profiles")
        return True

    async def _do_typing_start(self, a: Action) -> bool:
        assert a.channel is not None
        cid = self._channel_ids[a.channel]
        await self.conn.execute(
            "INSERT INTO public.typing_indicators (channel_id, user_id) VALUES (%s, %s) "
            "ON CONFLICT (channel_id, user_id) DO UPDATE "
            "SET started_at = now(), expires_at = now() + interval '5 seconds'",
            (cid, a.actor),
        )
        self._count("typing_indicators")
        return True

    async def _do_typing_stop(self, a: Action) -> bool:
        await self._stop_typing(a)
        return True

    async def _do_message(self, a: Action) -> bool:
        assert a.channel is not None
        assert a.message is not None
        cid = self._channel_ids[a.channel]
        cur = await self.conn.execute(
            "INSERT INTO public.messages (channel_id, user_id, content, reply_to) "
            "VALUES (%s, %s, %s, %s) RETURNING id",
            (cid, a.actor, a.text, self._message_id(a.reply_to)),
        )
        row = await cur.fetchone()
        assert row is not None
        mid = int(row[0])
        self._message_ids[a.message] = mid
        if len(self._message_ids) > _MAX_HANDLES:
            self._message_ids.popitem(last=False)
        self._count("messages")
        await self._stop_typing(a)
        excerpt = (a.text or "")[:80]
        await self._notify(a, {"message_id": mid, "channel_id": cid, "excerpt": excerpt})
        return True

    async def _do_edit(self, a: Action) -> bool:
        mid = self._message_id(a.message)
        if mid is None:
            return False
        await self.conn.execute(
            "UPDATE public.messages SET content = %s, edited_at = now() WHERE id = %s", (a.text, mid)
        )
        self._count("messages")
        return True

    async def _do_delete(self, a: Action) -> bool:
        mid = self._message_id(a.message)
        if mid is None:
            return False
        await self.conn.execute(
            "UPDATE public.messages SET deleted_at = now() WHERE id = %s AND deleted_at IS NULL", (mid,)
        )
        self._count("messages")
        return True

    async def _do_react(self, a: Action) -> bool:
        mid = self._message_id(a.message)
        if mid is None:
            return False
        await self.conn.execute(
            "INSERT INTO public.message_reactions (message_id, user_id, emoji) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            (mid, a.actor, a.emoji),
        )
        self._count("message_reactions")
        await self._notify(a, {"message_id": mid, "emoji": a.emoji})
        return True

    async def _do_unreact(self, a: Action) -> bool:
        mid = self._message_id(a.message)
        if mid is None:
            return False
        await self.conn.execute(
            "DELETE FROM public.message_reactions WHERE message_id = %s AND user_id = %s AND emoji = %s",
            (mid, a.actor, a.emoji),
        )
        self._count("message_reactions")
        return True

    async def _do_key_share(self, a: Action) -> bool:
        assert a.channel is not None
        cid = self._channel_ids[a.channel]
        for recipient in a.users:
            await self.conn.execute(
                "INSERT INTO public.megolm_session_shares "
                "(session_id, sender_id, recipient_id, channel_id, encrypted_key) "
                "VALUES (%s, %s, %s, %s, %s)",
                (a.session, a.actor, recipient, cid, a.text),
            )
            self._count("megolm_session_shares")
        return True

    async def _do_read(self, a: Action) -> bool:
        cur = await self.conn.execute(
            "UPDATE public.notifications SET read_at = now() WHERE user_id = %s AND read_at IS NULL",
            (a.actor,),
        )
        self._count("notifications", cur.rowcount)
        return True

    async def _do_join(self, a: Action) -> bool:
        assert a.channel is not None
        cid = self._channel_ids[a.channel]
        await self.conn.execute(
            "INSERT INTO public.channel_members (channel_id, user_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (cid, a.actor),
        )
        self._count("channel_members")
        return True

    async def _do_leave(self, a: Action) -> bool:
        assert a.channel is not None
        await self._stop_typing(a)
        cid = self._channel_ids[a.channel]
        await self.conn.execute(
            "DELETE FROM public.channel_members WHERE channel_id = %s AND user_id = %s", (cid, a.actor)
        )
        self._count("channel_members")
        return True

    async def _do_open_dm(self, a: Action) -> bool:
        assert a.channel is not None
        cid = await self._channel_id(a.channel, "dm", a.actor)
        for member in (a.actor, *a.users):
            await self.conn.execute(
                "INSERT INTO public.channel_members (channel_id, user_id) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                (cid, member),
            )
            self._count("channel_members")
        return True
