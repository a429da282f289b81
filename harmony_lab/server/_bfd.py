"""Broadcast from Database: rows inserted into ``realtime.messages``, read from the WAL, fanned out.

``realtime.send()`` and ``realtime.broadcast_changes()`` insert a row into ``realtime.messages``.
Like Supabase Realtime, the server does not poll that table: a temporary logical replication slot on
the ``supabase_realtime_messages_publication`` (inserts only, published through the partition root)
streams each committed row, and the row becomes a broadcast on its topic:

* ``private = true`` rows reach only the channels joined with ``config.private = true`` on that topic
  (the ones Realtime Authorization admitted), ``private = false`` rows only the public ones;
* a V2 (realtime-js) socket gets the binary *user broadcast* frame (kind 4) with metadata
  ``{"id": <message id>}``; a V1 (realtime-py) socket gets the JSON ``broadcast`` message
  ``{"type": "broadcast", "event": …, "payload": …, "meta": {"id": …}}``;
* a row written by ``realtime.send_binary()`` carries ``binary_payload`` instead of ``payload``: V2
  sockets get it as a binary-encoded user broadcast; V1 sockets cannot carry binary payloads and get
  nothing, as on Supabase;
* rows of rolled-back transactions are never decoded, so never delivered; committed rows arrive in
  commit order.

A row without topic, event, id, inserted_at, private or a payload (``payload`` or ``binary_payload``)
is logged and skipped, as is a payload larger than the broadcast bound or a topic or event longer than
255 bytes (the V2 frame's limit).

:class:`MessagesJanitor` keeps the table bounded the way Supabase's janitor does: daily partitions
``realtime.messages_YYYY_MM_DD`` from yesterday to three days ahead are created, and partitions whose
day is more than 72 hours old are dropped (rows that landed in the default partition are deleted by
the same cut-off, in bounded batches). It runs when the capture starts and then every 4 hours.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any, Final

import psycopg
from psycopg import sql

from harmony_lab.capture.types import Change
from harmony_lab.server._codec import ENCODING_BINARY, ENCODING_JSON, V2, UserBroadcast, dumps
from harmony_lab.server._supervise import keep_capturing

__all__ = [
    "MESSAGES_PUBLICATION",
    "DbMessage",
    "MessagesCapture",
    "MessagesJanitor",
    "message_from_change",
]

logger = logging.getLogger(__name__)

MESSAGES_PUBLICATION: Final = "supabase_realtime_messages_publication"
RETENTION_HOURS: Final = 72
JANITOR_INTERVAL_S: Final = 4 * 3600.0
_FIELD_MAX: Final = 255
_QUEUE_MAX: Final = 20_000
_DELETE_BATCH: Final = 10_000
_PARTITION_RE: Final = re.compile(r"messages_(\d{4})_(\d{2})_(\d{2})")


class MessageError(ValueError):
    """A ``realtime.messages`` row that cannot be broadcast; ``str()`` says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class DbMessage:
    """One committed row of ``realtime.messages``, ready to fan out."""

    topic: str
    """The topic as written (without ``realtime:``)."""
    event: str
    payload_json: bytes
    """The user payload of the broadcast: the row's ``payload`` as compact JSON or, with
    ``encoding`` binary, the bytes of its ``binary_payload``."""
    private: bool
    id: str
    commit_ts_us: int
    encoding: int = ENCODING_JSON

    def fanout(self) -> DbBroadcast:
        """The frame source for :meth:`Registry.fanout` (encoded once per serializer version)."""
        meta = dumps({"id": self.id}).encode()
        return DbBroadcast(
            "realtime:" + self.topic, self.event, self.payload_json, encoding=self.encoding, metadata=meta
        )


class DbBroadcast(UserBroadcast):
    """A user broadcast carrying ``meta``: kind 4 with metadata over V2, ``meta`` in the V1 JSON."""

    __slots__ = ()

    def frame(self, vsn: str) -> str | bytes | None:
        if vsn == V2:
            return UserBroadcast.frame(self, vsn)
        if self.encoding != ENCODING_JSON:
            return None  # V1 JSON frames cannot carry a binary payload
        if self._v1 is None:
            self._v1 = (
                '{"topic":' + dumps(self.topic) + ',"event":"broadcast","payload":{"type":"broadcast",'
                '"event":' + dumps(self.user_event) + ',"payload":' + self.data.decode()
                + ',"meta":' + self.metadata.decode() + '},"ref":null}'
            )  # fmt: skip
        return self._v1


def message_from_change(change: Change, *, max_payload_bytes: int) -> DbMessage:
    """The broadcast an insert into ``realtime.messages`` stands for; :class:`MessageError` if none."""
    row = change.new or {}
    for name in ("inserted_at", "event", "id", "topic", "private"):
        if row.get(name) is None:
            raise MessageError(f"the row has no {name}")
    binary = row.get("binary_payload")
    if binary is None and row.get("payload") is None:
        raise MessageError("the row has no payload")
    if binary is not None and row.get("payload") is not None:
        raise MessageError("the row has both payload and binary_payload")
    topic, event = row["topic"], row["event"]
    if not isinstance(topic, str) or not isinstance(event, str) or not isinstance(row["private"], bool):
        raise MessageError("topic and event must be text and private a boolean")
    for label, value in (("topic", topic), ("event", event)):
        if len(value.encode()) > _FIELD_MAX:
            raise MessageError(f"the {label} is longer than {_FIELD_MAX} bytes")
    if binary is not None:
        payload, encoding = _bytea(binary, max_payload_bytes), ENCODING_BINARY
    else:
        text = json.dumps(row["payload"], separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        payload, encoding = text.encode(), ENCODING_JSON
    if len(payload) > max_payload_bytes:
        raise MessageError(f"the payload of {len(payload)} bytes exceeds {max_payload_bytes}")
    return DbMessage(topic, event, payload, row["private"], str(row["id"]), change.commit_ts_us, encoding)


def _bytea(value: Any, max_bytes: int) -> bytes:
    """The bytes of a ``bytea`` column as decoded from the WAL (its hex text form ``\\x…``), bounded
    by ``max_bytes`` before the text is parsed."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if not isinstance(value, str) or not value.startswith("\\x"):
        raise MessageError("binary_payload is not in bytea's hex form")
    size = (len(value) - 2) // 2
    if size > max_bytes:
        raise MessageError(f"the payload of {size} bytes exceeds {max_bytes}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError as exc:
        raise MessageError(f"binary_payload is not valid hex: {exc}") from None


Sink = Callable[[DbMessage], int]
"""Receives each message; returns how many channels got it (the server's registry fan-out)."""


class MessagesCapture:
    """Streams ``realtime.messages`` inserts from their own temporary slot and hands them to a sink.

    ``sink`` may be set later (:meth:`attach`); messages arriving without one are counted and dropped
    (nobody can be subscribed before the server exists). The capture restarts on failure, like the
    postgres_changes one; messages committed while it is down are lost, as with Supabase's slot.
    """

    def __init__(
        self,
        dsn: str,
        *,
        publication: str = MESSAGES_PUBLICATION,
        max_payload_bytes: int = 256 * 1024,
        janitor: bool = True,
    ) -> None:
        if not isinstance(max_payload_bytes, int) or max_payload_bytes <= 0:
            raise ValueError(f"max_payload_bytes must be a positive int, got {max_payload_bytes!r}")
        self._dsn = dsn
        self._publication = publication
        self._max_payload = max_payload_bytes
        self._sink: Sink | None = None
        self._stream: Any = None
        self._queue: asyncio.Queue[Change] = asyncio.Queue(_QUEUE_MAX)
        self._tasks: list[asyncio.Task[None]] = []
        self._janitor = MessagesJanitor(dsn) if janitor else None
        self._closed = False
        self._counts: dict[str, int] = dict.fromkeys(
            ("messages", "delivered_to", "skipped", "unattached", "sink_errors", "capture_restarts"), 0
        )
        self._process_s = 0.0
        self._last_latency_ms: float | None = None

    def attach(self, sink: Sink) -> None:
        """Deliver messages to ``sink`` from now on (the server's ``Registry.broadcast_from_db``)."""
        self._sink = sink

    @staticmethod
    async def available(conn: psycopg.AsyncConnection[Any], publication: str = MESSAGES_PUBLICATION) -> bool:
        """Whether the database has the messages publication (the ``realtime`` schema is applied)."""
        cur = await conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", [publication])
        return await cur.fetchone() is not None

    async def start(self) -> None:
        """Create the slot (messages committed from now on are delivered) and start the tasks."""
        if self._janitor is not None:
            await self._janitor.run_once()
        self._stream = await self._open_stream()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._capture_loop(), name="bfd-capture"),
            loop.create_task(self._process_loop(), name="bfd-process"),
        ]
        if self._janitor is not None:
            self._tasks.append(loop.create_task(self._janitor.loop(), name="bfd-janitor"))
        logger.info("Broadcast from Database capture started on publication %r", self._publication)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        for task in self._tasks:
            if not task.cancelled() and (exc := task.exception()) is not None:
                logger.error("Broadcast from Database: task %s had failed", task.get_name(), exc_info=exc)
        if self._stream is not None:
            await self._stream.aclose()
        self._sink = None

    @property
    def stats(self) -> dict[str, Any]:
        return {
            **self._counts,
            "queued": self._queue.qsize(),
            "process_s": round(self._process_s, 3),
            "last_latency_ms": self._last_latency_ms,
            "slot": self._stream.slot_name if self._stream is not None else None,
            "janitor": self._janitor.stats if self._janitor is not None else None,
        }

    async def _open_stream(self) -> Any:
        from harmony_lab.capture.stream import ChangeStream

        stream = ChangeStream(self._dsn, publication=self._publication, on_reconnect=self._on_reconnect)
        await stream.start()
        return stream

    def _on_reconnect(self, reason: str) -> None:
        logger.warning(
            "Broadcast from Database capture reconnected after %s; messages committed meanwhile were lost",
            reason,
        )

    async def _capture_loop(self) -> None:
        await keep_capturing(
            "Broadcast from Database capture",
            stream=lambda: self._stream,
            put=self._queue.put,
            reopen=self._reopen,
            closed=lambda: self._closed,
        )

    async def _reopen(self) -> None:
        self._stream = await self._open_stream()
        self._counts["capture_restarts"] += 1

    async def _process_loop(self) -> None:
        while True:
            change = await self._queue.get()
            t0 = time.perf_counter()
            self._handle(change)
            self._process_s += time.perf_counter() - t0

    def _handle(self, change: Change) -> None:
        if change.op != "INSERT" or change.schema != "realtime" or not change.table.startswith("messages"):
            return
        self._counts["messages"] += 1
        try:
            message = message_from_change(change, max_payload_bytes=self._max_payload)
        except (MessageError, ValueError, TypeError) as exc:
            self._counts["skipped"] += 1
            row = change.new or {}
            logger.warning(
                "Broadcast from Database: not broadcasting realtime.messages row id=%s topic=%r: %s",
                row.get("id"),
                row.get("topic"),
                exc,
            )
            return
        sink = self._sink
        if sink is None:
            self._counts["unattached"] += 1
            logger.debug("Broadcast from Database: no server attached; message %s dropped", message.id)
            return
        try:
            self._counts["delivered_to"] += sink(message)
        except Exception:
            self._counts["sink_errors"] += 1
            logger.exception("Broadcast from Database: fanning out message %s failed", message.id)
        self._last_latency_ms = max(0.0, (time.time_ns() // 1000 - message.commit_ts_us) / 1000)


class MessagesJanitor:
    """Daily partitions ahead, old ones dropped: ``realtime.messages`` stays bounded (module docstring)."""

    def __init__(
        self,
        dsn: str,
        *,
        retention_hours: int = RETENTION_HOURS,
        interval_s: float = JANITOR_INTERVAL_S,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        if retention_hours <= 0 or interval_s <= 0:
            raise ValueError("retention_hours and interval_s must be positive")
        self._dsn = dsn
        self._retention = dt.timedelta(hours=retention_hours)
        self._interval = interval_s
        self._clock = clock
        self.stats: dict[str, int] = dict.fromkeys(
            ("runs", "failures", "partitions_created", "partitions_dropped", "rows_deleted"), 0
        )

    async def loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.run_once()

    async def run_once(self) -> None:
        """One maintenance pass; failures are logged (the next pass retries), never raised."""
        self.stats["runs"] += 1
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, application_name="harmony_lab_realtime_janitor"
            )
        except psycopg.Error:
            self.stats["failures"] += 1
            logger.exception("realtime.messages janitor: cannot connect; retrying at the next pass")
            return
        try:
            await conn.execute("SET statement_timeout = '30s'")
            await self._drop_old(conn)
            await self._create_partitions(conn)
        except psycopg.Error:
            self.stats["failures"] += 1
            logger.exception("realtime.messages janitor: a maintenance pass failed")
        finally:
            await conn.close()

    def _cutoff(self) -> tuple[dt.date, dt.datetime]:
        now = self._clock()
        limit = now - self._retention
        return limit.date(), limit.replace(tzinfo=None)

    async def _drop_old(self, conn: psycopg.AsyncConnection[Any]) -> None:
        day_limit, ts_limit = self._cutoff()
        cur = await conn.execute(
            """SELECT child.relname::text FROM pg_inherits
               JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
               JOIN pg_class child ON child.oid = pg_inherits.inhrelid
               JOIN pg_namespace n ON n.oid = parent.relnamespace
               WHERE n.nspname = 'realtime' AND parent.relname = 'messages'"""
        )
        for (name,) in await cur.fetchall():
            m = _PARTITION_RE.fullmatch(name)
            if m is None:
                continue
            day = dt.date(int(m[1]), int(m[2]), int(m[3]))
            if day < day_limit:
                await conn.execute(sql.SQL("DROP TABLE IF EXISTS realtime.{}").format(sql.Identifier(name)))
                self.stats["partitions_dropped"] += 1
                logger.info("realtime.messages janitor: dropped partition %s", name)
        while True:
            cur = await conn.execute(
                """DELETE FROM realtime.messages_default WHERE ctid IN (
                     SELECT ctid FROM realtime.messages_default WHERE inserted_at < %s LIMIT %s)""",
                [ts_limit, _DELETE_BATCH],
            )
            self.stats["rows_deleted"] += cur.rowcount
            if cur.rowcount < _DELETE_BATCH:
                break

    async def _create_partitions(self, conn: psycopg.AsyncConnection[Any]) -> None:
        today = self._clock().date()
        for offset in range(-1, 4):
            day = today + dt.timedelta(days=offset)
            name = f"messages_{day:%Y_%m_%d}"
            cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", [f"realtime.{name}"])
            row = await cur.fetchone()
            if row is not None and row[0]:
                continue
            ident = sql.Identifier(name)
            try:
                async with conn.transaction():
                    await conn.execute(
                        sql.SQL(
                            "CREATE TABLE realtime.{} PARTITION OF realtime.messages"
                            " FOR VALUES FROM ({}) TO ({})"
                        ).format(
                            ident,
                            sql.Literal(day.isoformat()),
                            sql.Literal((day + dt.timedelta(days=1)).isoformat()),
                        )
                    )
                    await conn.execute(
                        sql.SQL("ALTER TABLE realtime.{} OWNER TO supabase_realtime_admin").format(ident)
                    )
            except psycopg.errors.DuplicateTable:
                continue
            except psycopg.errors.CheckViolation:
                # rows of that day already sit in the default partition; they age out from there
                logger.info("realtime.messages janitor: %s stays in the default partition (it has rows)", day)
                continue
            self.stats["partitions_created"] += 1
