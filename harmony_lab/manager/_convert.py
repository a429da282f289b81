"""Pure helpers: wire payloads → envelope fields, primary keys, token expiry, versions for dedup."""

from __future__ import annotations

import base64
import binascii
import collections
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

__all__ = [
    "DELETED",
    "Seen",
    "SeenRows",
    "change_fields",
    "guess_primary_key",
    "jwt_claims",
    "parse_commit_ts",
    "pk_of",
    "row_fingerprint",
    "row_version",
]


def parse_commit_ts(value: object) -> datetime | None:
    """``"2025-11-19T00:22:40.877Z"`` → aware UTC datetime; None for missing/unparseable values."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace(" ", "T", 1) if "T" not in value else value
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def pk_of(pk_columns: Sequence[str] | None, *records: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The PK dict taken from the first record that has every PK column, else None."""
    if not pk_columns:
        return None
    for record in records:
        if record and all(col in record for col in pk_columns):
            return {col: record[col] for col in pk_columns}
    return None


def guess_primary_key(
    columns: Sequence[tuple[str, str]], op: str | None, old: Mapping[str, Any] | None
) -> tuple[str, ...] | None:
    """Best effort when nothing better is known.

    Under the default replica identity a DELETE's ``old_record`` holds exactly the PK columns, so
    when it carries fewer keys than the table has columns those keys are the PK. Otherwise ``id``
    if the table has such a column. None when neither applies.
    """
    names = [name for name, _ in columns]
    if op == "DELETE" and old and names and 0 < len(old) < len(names):
        return tuple(k for k in names if k in old) or tuple(old)
    if "id" in names:
        return ("id",)
    return None


def change_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Envelope fields of a realtime-py postgres_changes payload (``{"data": {...}, "ids": [...]}``)."""
    data = payload.get("data") or {}
    op = data.get("type")
    op = getattr(op, "value", op)
    columns = tuple(
        (str(c.get("name")), str(c.get("type")))
        for c in (data.get("columns") or ())
        if isinstance(c, Mapping)
    )
    errors = data.get("errors")
    if isinstance(errors, str):
        errors = (errors,)
    elif errors is not None:
        errors = tuple(str(e) for e in errors)
    record = data.get("record")
    old_record = data.get("old_record")
    return {
        "schema": data.get("schema"),
        "table": data.get("table"),
        "op": str(op) if op is not None else None,
        "commit_ts": parse_commit_ts(data.get("commit_timestamp")),
        "new": dict(record) if record else None,
        "old": dict(old_record) if old_record else None,
        "columns": columns,
        "errors": errors or None,
    }


def jwt_claims(token: str | None) -> dict[str, Any] | None:
    """The (unverified) claims of a JWT, or None if ``token`` is not a JWT."""
    if not token or token.count(".") != 2:
        return None
    body = token.split(".")[1]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def row_version(value: object) -> object:
    """A comparable version for dedup: ISO timestamps → UTC datetimes truncated to milliseconds.

    Live events carry the server's JSON rendering and backfills the database's; comparing at
    millisecond precision makes both agree.
    """
    if isinstance(value, datetime):
        ts = value if value.tzinfo else value.replace(tzinfo=UTC)
        ts = ts.astimezone(UTC)
        return ts.replace(microsecond=ts.microsecond // 1000 * 1000)
    if isinstance(value, str):
        ts = parse_commit_ts(value)
        if ts is not None and len(value) >= 10 and value[4] == "-":
            return ts.replace(microsecond=ts.microsecond // 1000 * 1000)
    return value


def _normalise(value: object) -> object:
    if isinstance(value, str):
        return row_version(value)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def row_fingerprint(row: Mapping[str, Any]) -> int:
    """A hash of a whole row that is equal for the live and the database rendering of the same row
    (timestamps compared like :func:`row_version`)."""
    return hash(tuple(sorted((name, _normalise(value)) for name, value in row.items())))


class Seen(NamedTuple):
    """What was last delivered for a row: its backfill-column ``version`` (:data:`DELETED` after a
    DELETE), ``source`` (``live`` or ``backfill``) and, for backfilled rows, a :func:`row_fingerprint`."""

    version: object
    source: str
    fingerprint: int | None = None


class _Deleted:
    def __repr__(self) -> str:
        return "DELETED"


DELETED: Any = _Deleted()
"""The :attr:`Seen.version` of a row whose DELETE was the last thing delivered."""


class SeenRows:
    """Recently delivered rows: (schema, table, pk) → :class:`Seen`. Bounded (LRU)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._rows: collections.OrderedDict[tuple[Any, ...], Seen] = collections.OrderedDict()

    @staticmethod
    def key(schema: str | None, table: str | None, pk: Mapping[str, Any]) -> tuple[Any, ...]:
        return (schema, table, tuple(sorted((k, json.dumps(v, default=str)) for k, v in pk.items())))

    def get(self, key: tuple[Any, ...]) -> Seen | None:
        return self._rows.get(key)

    def add(self, key: tuple[Any, ...], version: object, source: str, fingerprint: int | None = None) -> None:
        self._rows[key] = Seen(version, source, fingerprint)
        self._rows.move_to_end(key)
        while len(self._rows) > self.capacity:
            self._rows.popitem(last=False)

    def __len__(self) -> int:
        return len(self._rows)
