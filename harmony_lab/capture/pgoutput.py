"""A pure decoder for PostgreSQL's ``pgoutput`` logical replication protocol, version 1.

No I/O: :func:`parse_message` turns the bytes of one pgoutput message into a typed message, and
:class:`PgOutputDecoder` keeps the per-stream state (relation and type caches, the current
transaction) and turns row messages into :class:`~harmony_lab.capture.types.Change` records whose
values are converted like ``to_jsonb`` renders them (see :mod:`harmony_lab.capture._convert`).

Messages (protocol 1): ``B`` begin, ``C`` commit, ``O`` origin, ``R`` relation, ``Y`` type,
``I`` insert, ``U`` update (optional ``K`` key / ``O`` old tuple), ``D`` delete (``K``/``O``),
``T`` truncate, ``M`` logical message (``pg_logical_emit_message``, needs ``messages 'true'``).
Tuple values: ``n`` NULL, ``u`` unchanged TOAST, ``t`` text, ``b`` binary.

>>> decoder = PgOutputDecoder()                       # doctest: +SKIP
>>> for lsn, data in rows:                            # e.g. pg_logical_slot_get_binary_changes
...     for change in decoder.feed(data, lsn):
...         print(change.op, change.table, change.new)
"""

from __future__ import annotations

import dataclasses
import logging
import struct
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

from harmony_lab.capture._convert import Converter, converter_for
from harmony_lab.capture._pgtypes import BUILTIN_TYPES
from harmony_lab.capture.types import UNCHANGED_TOAST, Change, Column

__all__ = [
    "PG_EPOCH_OFFSET_US",
    "Begin",
    "Commit",
    "Delete",
    "Insert",
    "LogicalMessage",
    "Message",
    "Origin",
    "PgOutputDecoder",
    "PgOutputError",
    "Relation",
    "RelationColumn",
    "Truncate",
    "TypeInfo",
    "TypeMessage",
    "Update",
    "lsn_to_str",
    "parse_message",
    "str_to_lsn",
]

logger = logging.getLogger(__name__)

PG_EPOCH_OFFSET_US: Final = 946_684_800_000_000
"""Microseconds from 1970-01-01 to 2000-01-01 (PostgreSQL timestamps count from the latter)."""
FIRST_NORMAL_OID: Final = 16384
"""OIDs below this are built in (``FirstNormalObjectId``)."""

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")
_BEGIN = struct.Struct(">QqI")
_COMMIT = struct.Struct(">BQQq")


class PgOutputError(ValueError):
    """The bytes are not valid pgoutput protocol 1, or refer to a relation never described."""


def lsn_to_str(lsn: int) -> str:
    """``0x16B3748`` → ``'0/16B3748'`` (PostgreSQL's LSN text form)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def str_to_lsn(text: str) -> int:
    """``'0/16B3748'`` → ``0x16B3748``."""
    hi, sep, lo = text.partition("/")
    if not sep:
        raise ValueError(f"not an LSN (expected 'X/Y' in hex): {text!r}")
    return (int(hi, 16) << 32) | int(lo, 16)


# ---------------------------------------------------------------------------------------------
# messages

TupleValue = Any
"""A raw column value: ``str`` (text), ``bytes`` (binary), ``None`` (NULL) or :data:`UNCHANGED_TOAST`."""


@dataclasses.dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int
    commit_ts_us: int
    """Microseconds since the Unix epoch."""
    xid: int


@dataclasses.dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts_us: int


@dataclasses.dataclass(frozen=True, slots=True)
class Origin:
    origin_lsn: int
    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class RelationColumn:
    name: str
    type_oid: int
    type_modifier: int
    is_key: bool
    """Part of the replica identity (every column when the identity is FULL)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Relation:
    relation_id: int
    schema: str
    """The namespace; pgoutput sends ``''`` for ``pg_catalog``, reported here as ``pg_catalog``."""
    table: str
    replica_identity: str
    columns: tuple[RelationColumn, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class TypeMessage:
    type_oid: int
    schema: str
    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class Insert:
    relation_id: int
    new: tuple[TupleValue, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Update:
    relation_id: int
    old_kind: Literal["K", "O"] | None
    old: tuple[TupleValue, ...] | None
    new: tuple[TupleValue, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Delete:
    relation_id: int
    old_kind: Literal["K", "O"]
    old: tuple[TupleValue, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Truncate:
    relation_ids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclasses.dataclass(frozen=True, slots=True)
class LogicalMessage:
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Message = (
    Begin | Commit | Origin | Relation | TypeMessage | Insert | Update | Delete | Truncate | LogicalMessage
)


class _Reader:
    __slots__ = ("data", "pos", "tag")

    def __init__(self, data: bytes, start: int = 0) -> None:
        self.data = data
        self.pos = start + 1  # after the message type byte
        self.tag = chr(data[start])

    def _need(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise PgOutputError(
                f"truncated {self.tag!r} message: needed {n} bytes at offset {self.pos}, "
                f"have {len(self.data) - self.pos}"
            )

    def unpack(self, st: struct.Struct) -> tuple[Any, ...]:
        self._need(st.size)
        out = st.unpack_from(self.data, self.pos)
        self.pos += st.size
        return out

    def byte(self) -> int:
        self._need(1)
        b = self.data[self.pos]
        self.pos += 1
        return b

    def string(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise PgOutputError(f"unterminated string in {self.tag!r} message at {self.pos}")
        try:
            s = self.data[self.pos : end].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PgOutputError(f"a name in {self.tag!r} message is not UTF-8: {exc}") from None
        self.pos = end + 1
        return s

    def tuple_data(self) -> tuple[TupleValue, ...]:
        data = self.data
        (n,) = self.unpack(_I16)
        values: list[TupleValue] = []
        append = values.append
        pos = self.pos
        size = len(data)
        try:
            for _ in range(n):
                kind = data[pos]  # IndexError when truncated
                pos += 1
                if kind == 0x74 or kind == 0x62:  # 't' text, 'b' binary
                    if pos + 4 > size:
                        raise IndexError
                    (length,) = _I32.unpack_from(data, pos)
                    pos += 4
                    end = pos + length
                    if length < 0 or end > size:
                        raise IndexError
                    append(data[pos:end].decode("utf-8") if kind == 0x74 else data[pos:end])
                    pos = end
                elif kind == 0x6E:  # 'n'
                    append(None)
                elif kind == 0x75:  # 'u'
                    append(UNCHANGED_TOAST)
                else:
                    raise PgOutputError(f"unknown tuple value kind {chr(kind)!r} at offset {pos - 1}")
        except IndexError:
            raise PgOutputError(f"truncated tuple data in {self.tag!r} message at offset {pos}") from None
        except UnicodeDecodeError as exc:
            raise PgOutputError(f"a text value in {self.tag!r} message is not UTF-8: {exc}") from None
        self.pos = pos
        return tuple(values)

    def done(self) -> None:
        if self.pos != len(self.data):
            raise PgOutputError(
                f"{len(self.data) - self.pos} unexpected trailing bytes in {self.tag!r} message"
            )


def _old_kind(r: _Reader) -> Literal["K", "O"]:
    kind = r.byte()
    if kind == 0x4B:
        return "K"
    if kind == 0x4F:
        return "O"
    raise PgOutputError(f"expected 'K' or 'O' old tuple, got {chr(kind)!r}")


def parse_message(data: bytes | bytearray | memoryview, start: int = 0) -> Message:
    """Parse one pgoutput (protocol 1) message, found at ``data[start:]``."""
    if not isinstance(data, bytes):
        data = bytes(data)
    if len(data) <= start:
        raise PgOutputError("empty pgoutput message")
    r = _Reader(data, start)
    tag = data[start]
    msg: Message
    if tag == 0x49:  # I
        (relid,) = r.unpack(_U32)
        if r.byte() != 0x4E:
            raise PgOutputError("insert without a 'N' new tuple")
        msg = Insert(relid, r.tuple_data())
    elif tag == 0x55:  # U
        (relid,) = r.unpack(_U32)
        kind = r.byte()
        old_kind: Literal["K", "O"] | None = None
        old = None
        if kind in (0x4B, 0x4F):
            old_kind = "K" if kind == 0x4B else "O"
            old = r.tuple_data()
            kind = r.byte()
        if kind != 0x4E:
            raise PgOutputError(f"update: expected 'N' new tuple, got {chr(kind)!r}")
        msg = Update(relid, old_kind, old, r.tuple_data())
    elif tag == 0x44:  # D
        (relid,) = r.unpack(_U32)
        kind_d = _old_kind(r)
        msg = Delete(relid, kind_d, r.tuple_data())
    elif tag == 0x42:  # B
        final_lsn, ts, xid = r.unpack(_BEGIN)
        msg = Begin(final_lsn, ts + PG_EPOCH_OFFSET_US, xid)
    elif tag == 0x43:  # C
        flags, commit_lsn, end_lsn, ts = r.unpack(_COMMIT)
        msg = Commit(flags, commit_lsn, end_lsn, ts + PG_EPOCH_OFFSET_US)
    elif tag == 0x52:  # R
        (relid,) = r.unpack(_U32)
        schema = r.string() or "pg_catalog"
        table = r.string()
        ident = chr(r.byte())
        (ncols,) = r.unpack(_I16)
        cols = []
        for _ in range(ncols):
            flags = r.byte()
            name = r.string()
            type_oid, typmod = r.unpack(_U32) + r.unpack(_I32)
            cols.append(RelationColumn(name, type_oid, typmod, bool(flags & 1)))
        msg = Relation(relid, schema, table, ident, tuple(cols))
    elif tag == 0x59:  # Y
        (oid,) = r.unpack(_U32)
        schema = r.string() or "pg_catalog"
        msg = TypeMessage(oid, schema, r.string())
    elif tag == 0x54:  # T
        (nrels,) = r.unpack(_I32)
        options = r.byte()
        relids = tuple(r.unpack(_U32)[0] for _ in range(nrels))
        msg = Truncate(relids, bool(options & 1), bool(options & 2))
    elif tag == 0x4D:  # M
        flags = r.byte()
        (lsn,) = r.unpack(_U64)
        prefix = r.string()
        (length,) = r.unpack(_I32)
        r._need(length)
        content = data[r.pos : r.pos + length]
        r.pos += length
        msg = LogicalMessage(bool(flags & 1), lsn, prefix, content)
    elif tag == 0x4F:  # O
        (origin_lsn,) = r.unpack(_U64)
        msg = Origin(origin_lsn, r.string())
    else:
        raise PgOutputError(
            f"unknown pgoutput message type {chr(tag)!r} (0x{tag:02x}); only protocol version 1 is "
            "supported (start replication with proto_version '1')"
        )
    r.done()
    return msg


# ---------------------------------------------------------------------------------------------
# stateful decoding into Change records


@dataclasses.dataclass(frozen=True, slots=True)
class TypeInfo:
    """What the decoder knows about a type OID."""

    name: str
    """``pg_type.typname`` (reported in :attr:`Column.type_name`)."""
    conv: str
    """The type whose conversion applies: the base type of a domain (``int4`` for a domain over
    int4), ``_<element base>`` for arrays, else the name itself."""


TypeResolver = Callable[[int], TypeInfo | None]
KeyResolver = Callable[[int], Sequence[str] | None]


@dataclasses.dataclass(slots=True)
class _RelState:
    msg: Relation
    columns: tuple[Column, ...]
    names: tuple[str, ...]
    converters: tuple[Converter, ...]
    key_names: frozenset[str]


def _convert_tuple(state: _RelState, values: tuple[TupleValue, ...]) -> dict[str, Any]:
    if len(values) != len(state.names):
        raise PgOutputError(
            f"{state.msg.schema}.{state.msg.table}: tuple has {len(values)} values, relation has "
            f"{len(state.names)} columns"
        )
    out: dict[str, Any] = {}
    for name, conv, v in zip(state.names, state.converters, values, strict=True):
        if v.__class__ is str:
            try:
                out[name] = conv(v)
            except (ValueError, TypeError) as exc:
                raise PgOutputError(
                    f"{state.msg.schema}.{state.msg.table}.{name}: cannot convert {v!r}: {exc}"
                ) from exc
        else:
            out[name] = v  # None, UNCHANGED_TOAST, or bytes for binary values
    return out


class PgOutputDecoder:
    """Stateful pgoutput decoder: feed it messages in stream order, get :class:`Change` records.

    ``type_resolver(oid)`` is asked once per unknown non-builtin type OID (e.g. an array of an
    enum, a domain) when a relation arrives; return a :class:`TypeInfo` or ``None``.
    ``key_resolver(relation_id)`` is asked once per relation for its primary-key columns, so
    :attr:`Column.is_pk` names the real primary key even under ``REPLICA IDENTITY FULL`` (where
    pgoutput flags every column as part of the identity). Both are optional. Logical messages
    (``M``) go to ``on_logical_message``.
    """

    def __init__(
        self,
        *,
        type_resolver: TypeResolver | None = None,
        key_resolver: KeyResolver | None = None,
        on_logical_message: Callable[[LogicalMessage], None] | None = None,
    ) -> None:
        self._type_resolver = type_resolver
        self._key_resolver = key_resolver
        self._on_logical_message = on_logical_message
        self.types: dict[int, TypeInfo] = {}
        self._resolved_types: set[int] = set()
        self.primary_keys: dict[int, tuple[str, ...]] = {}
        self._relations: dict[int, _RelState] = {}
        self.xid = 0
        self.commit_ts_us = 0
        self.final_lsn = 0
        self.in_transaction = False
        self.origin: str | None = None
        self.last_commit: Commit | None = None

    def __repr__(self) -> str:
        tx = f" in transaction xid={self.xid}" if self.in_transaction else ""
        return f"<PgOutputDecoder relations={len(self._relations)} types={len(self.types)}{tx}>"

    # -- metadata ---------------------------------------------------------------------------

    def register_type(self, oid: int, name: str, conv: str | None = None, *, resolved: bool = True) -> None:
        """Record a type (from a ``Y`` message, a ``pg_type`` query, or by hand)."""
        self.types[oid] = TypeInfo(name, conv or name)
        if resolved:
            self._resolved_types.add(oid)

    def unresolved_types(self, relation: Relation) -> list[int]:
        """Non-builtin type OIDs of ``relation`` not yet resolved (for an async consumer to look up)."""
        return [
            c.type_oid
            for c in relation.columns
            if c.type_oid not in BUILTIN_TYPES and c.type_oid not in self._resolved_types
        ]

    def relation(self, relation_id: int) -> Relation | None:
        state = self._relations.get(relation_id)
        return state.msg if state else None

    def type_info(self, oid: int) -> TypeInfo:
        builtin = BUILTIN_TYPES.get(oid)
        if builtin is not None:
            return TypeInfo(builtin, builtin)
        if oid not in self._resolved_types and self._type_resolver is not None:
            self._resolved_types.add(oid)
            info = self._type_resolver(oid)
            if info is not None:
                self.types[oid] = info
        known = self.types.get(oid)
        return known if known is not None else TypeInfo(f"oid{oid}", "text")

    # -- decoding ---------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview, lsn: int = 0) -> list[Change]:
        """Decode one pgoutput message; ``lsn`` is its WAL position (``w`` message start / row lsn)."""
        return self.handle(parse_message(data), lsn)

    def handle(self, msg: Message, lsn: int = 0) -> list[Change]:
        """Apply one parsed message; returns the row changes it carries (often none)."""
        if isinstance(msg, Insert):
            st = self._rel(msg.relation_id)
            return [self._change(st, "INSERT", lsn, _convert_tuple(st, msg.new), None, False)]
        if isinstance(msg, Update):
            st = self._rel(msg.relation_id)
            new = _convert_tuple(st, msg.new)
            old = self._old(st, msg.old_kind, msg.old) if msg.old is not None else None
            return [self._change(st, "UPDATE", lsn, new, old, msg.old_kind == "O")]
        if isinstance(msg, Delete):
            st = self._rel(msg.relation_id)
            old = self._old(st, msg.old_kind, msg.old)
            return [self._change(st, "DELETE", lsn, None, old, msg.old_kind == "O")]
        if isinstance(msg, Begin):
            self.in_transaction = True
            self.xid, self.commit_ts_us, self.final_lsn = msg.xid, msg.commit_ts_us, msg.final_lsn
            self.origin = None
            return []
        if isinstance(msg, Commit):
            self.in_transaction = False
            self.last_commit = msg
            return []
        if isinstance(msg, Relation):
            self._add_relation(msg)
            return []
        if isinstance(msg, TypeMessage):
            if msg.type_oid not in self._resolved_types:
                self.types[msg.type_oid] = TypeInfo(msg.name, msg.name)
            return []
        if isinstance(msg, Truncate):
            return [
                self._change(self._rel(relid), "TRUNCATE", lsn, None, None, False)
                for relid in msg.relation_ids
            ]
        if isinstance(msg, LogicalMessage):
            if self._on_logical_message is not None:
                self._on_logical_message(msg)
            return []
        if isinstance(msg, Origin):
            self.origin = msg.name
            return []
        raise PgOutputError(f"not a pgoutput message: {msg!r}")  # pragma: no cover

    def _rel(self, relation_id: int) -> _RelState:
        st = self._relations.get(relation_id)
        if st is None:
            raise PgOutputError(
                f"row for relation id {relation_id}, which no 'R' message described; the decoder must "
                "see the stream from its start (one decoder per replication session)"
            )
        return st

    def _add_relation(self, msg: Relation) -> None:
        pk = self.primary_keys.get(msg.relation_id)
        if pk is None and self._key_resolver is not None:
            found = self._key_resolver(msg.relation_id)
            if found is not None:
                pk = tuple(found)
                self.primary_keys[msg.relation_id] = pk
        infos = [self.type_info(c.type_oid) for c in msg.columns]
        if pk is not None:
            pk_set = set(pk)
            flags = [c.name in pk_set for c in msg.columns]
        else:
            flags = [c.is_key for c in msg.columns]
        columns = tuple(
            Column(c.name, info.name, c.type_oid, flag)
            for c, info, flag in zip(msg.columns, infos, flags, strict=True)
        )
        self._relations[msg.relation_id] = _RelState(
            msg=msg,
            columns=columns,
            names=tuple(c.name for c in msg.columns),
            converters=tuple(converter_for(info.conv) for info in infos),
            key_names=frozenset(c.name for c in msg.columns if c.is_key),
        )

    def _old(
        self, st: _RelState, kind: Literal["K", "O"] | None, values: tuple[TupleValue, ...]
    ) -> dict[str, Any]:
        old = _convert_tuple(st, values)
        if kind == "K":  # only the identity columns are meaningful; the rest are sent as NULL
            return {k: v for k, v in old.items() if k in st.key_names}
        return old

    def _change(
        self,
        st: _RelState,
        op: Literal["INSERT", "UPDATE", "DELETE", "TRUNCATE"],
        lsn: int,
        new: dict[str, Any] | None,
        old: dict[str, Any] | None,
        old_is_full: bool,
    ) -> Change:
        rel = st.msg
        return Change(
            schema=rel.schema,
            table=rel.table,
            op=op,
            commit_ts_us=self.commit_ts_us,
            lsn=lsn or self.final_lsn,
            xid=self.xid,
            relation_id=rel.relation_id,
            replica_identity=rel.replica_identity,
            columns=st.columns,
            new=new,
            old=old,
            old_is_full=old_is_full,
        )
