"""Typed records produced by change capture (the contract between ``capture`` and ``server``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final, Literal

__all__ = ["UNCHANGED_TOAST", "Change", "Column", "Op"]

Op = Literal["INSERT", "UPDATE", "DELETE", "TRUNCATE"]


class _UnchangedToast:
    """Marker for a TOASTed value that an UPDATE did not change (pgoutput tuple kind ``u``)."""

    _instance: _UnchangedToast | None = None

    def __new__(cls) -> _UnchangedToast:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED_TOAST"

    def __reduce__(self) -> str:
        return "UNCHANGED_TOAST"


UNCHANGED_TOAST: Final = _UnchangedToast()


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_name: str
    """``pg_type.typname``: ``int4``, ``text``, ``timestamptz``, ``_int4`` for arrays, enum names…"""
    type_oid: int
    is_pk: bool
    """Part of the replica identity key (the primary key for tables with a PK)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """One row change, decoded from pgoutput and converted to JSON-compatible Python values.

    Values follow Postgres' ``to_jsonb`` rendering (what Supabase sends): numbers as int/float,
    ``numeric`` as int/float, booleans, ``json``/``jsonb`` parsed, arrays as lists, timestamps as
    ISO strings (``2025-11-03T09:32:55.123+00:00``), everything else as text. A TOASTed value an
    UPDATE did not touch is :data:`UNCHANGED_TOAST`.
    """

    schema: str
    table: str
    op: Op
    commit_ts_us: int
    """Commit time, microseconds since the Unix epoch (UTC)."""
    lsn: int
    xid: int
    relation_id: int
    replica_identity: str
    """``d`` default (PK), ``f`` full, ``i`` index, ``n`` nothing."""
    columns: tuple[Column, ...]
    new: Mapping[str, Any] | None = None
    old: Mapping[str, Any] | None = None
    """The old image: key columns only (pgoutput ``K``) or the full row (``O``, REPLICA IDENTITY FULL)."""
    old_is_full: bool = False

    @property
    def pk_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.is_pk)

    @property
    def unchanged_toast(self) -> frozenset[str]:
        if self.new is None:
            return frozenset()
        return frozenset(k for k, v in self.new.items() if v is UNCHANGED_TOAST)
