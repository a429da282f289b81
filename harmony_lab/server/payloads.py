"""The ``data`` object of a ``postgres_changes`` message, built like Supabase's ``realtime.apply_rls``.

Pure functions. Every key is present::

    {"schema", "table", "commit_timestamp", "type", "columns", "errors", "record" | "old_record" …}

* ``columns``: ``[{name, type}]`` in ``attnum`` order — only columns the role may SELECT and, with
  ``select``, only the selected ones plus the primary key;
* ``record`` (INSERT, UPDATE): the new row, same column rule; ``old_record`` (UPDATE, DELETE): the
  old identity image (the primary key only unless REPLICA IDENTITY FULL; for an UPDATE that did not
  change the key, Postgres sends no old image and the key is taken from the new row, as wal2json's
  ``identity`` does); a DELETE on a table with RLS enabled is cut to the primary key;
* ``errors``: ``null``, or ``["Error 413: Payload Too Large"]`` when the change is larger than
  ``max_record_bytes`` (then only values whose JSON is ≤ 64 bytes are kept);
* tables without a primary key (INSERT/UPDATE) and roles that may not SELECT the primary key get the
  real server's error rows: only ``schema``, ``table``, ``type``, a null ``commit_timestamp``, empty
  ``columns``/``record`` and ``errors`` ``["Error 400: Bad Request, no primary key"]`` /
  ``["Error 401: Unauthorized"]``. (realtime-py drops those because ``commit_timestamp`` is null;
  the real server sends them all the same.)
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Mapping
from typing import Any, Final

from harmony_lab.capture.types import UNCHANGED_TOAST, Change
from harmony_lab.server.rls import TableInfo

__all__ = [
    "ERROR_400",
    "ERROR_401",
    "ERROR_413",
    "SMALL_VALUE_BYTES",
    "build_data",
    "commit_timestamp",
    "error_data",
    "old_image",
    "record_bytes",
]

ERROR_400: Final = "Error 400: Bad Request, no primary key"
ERROR_401: Final = "Error 401: Unauthorized"
ERROR_413: Final = "Error 413: Payload Too Large"
SMALL_VALUE_BYTES: Final = 64

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def commit_timestamp(commit_ts_us: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC, milliseconds truncated (``to_char(… 'MS')``)."""
    ts = _EPOCH + dt.timedelta(microseconds=commit_ts_us)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def record_bytes(change: Change) -> int:
    """Size of the change as wal2json would render it (column names, types and values)."""
    total = 64 + len(change.schema) + len(change.table)
    for image in (change.new, change.old):
        if not image:
            continue
        for name, value in image.items():
            total += 48 + len(name)
            if value is UNCHANGED_TOAST or value is None:
                total += 4
            elif isinstance(value, str):
                total += len(value) + 2 if value.isascii() else _json_bytes(value)
            elif isinstance(value, (int, float, bool)):
                total += 24
            else:
                total += _json_bytes(value)
    for col in change.columns:
        total += 16 + len(col.type_name)
    return total


def old_image(change: Change, pk: Collection[str]) -> dict[str, Any]:
    """The old identity image; for an UPDATE without one, the primary key of the new row."""
    if change.old is not None:
        return {k: v for k, v in change.old.items() if v is not UNCHANGED_TOAST}
    if change.op == "UPDATE" and change.new is not None:
        return {k: change.new[k] for k in pk if k in change.new}
    return {}


def error_data(change: Change, error: str) -> dict[str, Any]:
    """The 400/401 rows: Supabase sends only schema/table/type, the rest defaulted."""
    data: dict[str, Any] = {
        "schema": change.schema,
        "table": change.table,
        "commit_timestamp": None,
        "type": change.op,
        "columns": [],
        "errors": [error],
    }
    if change.op in ("INSERT", "UPDATE"):
        data["record"] = {}
    if change.op in ("UPDATE", "DELETE"):
        data["old_record"] = {}
    return data


def _keep(value: Any, oversize: bool) -> bool:
    if value is UNCHANGED_TOAST:
        return False
    return not oversize or _json_bytes(value) <= SMALL_VALUE_BYTES


def build_data(
    change: Change,
    table: TableInfo,
    role: str,
    selected: Collection[str] | None,
    *,
    oversize: bool = False,
) -> dict[str, Any]:
    """The ``data`` object for subscribers of ``role`` with the given ``select`` (``None`` = all)."""
    allowed = table.selectable.get(role, frozenset())
    pk = set(table.pk)

    def visible(name: str) -> bool:
        return name in allowed and (selected is None or name in selected or name in pk)

    columns = [{"name": c.name, "type": c.typname} for c in table.columns if visible(c.name)]
    data: dict[str, Any] = {
        "schema": change.schema,
        "table": change.table,
        "commit_timestamp": commit_timestamp(change.commit_ts_us),
        "type": change.op,
        "columns": columns,
        "errors": [ERROR_413] if oversize else None,
    }
    old = old_image(change, table.pk) if change.op in ("UPDATE", "DELETE") else {}
    if change.op in ("INSERT", "UPDATE"):
        new: Mapping[str, Any] = change.new or {}
        record = {}
        for c in table.columns:
            name = c.name
            if not visible(name):
                continue
            if name in new and new[name] is not UNCHANGED_TOAST:
                value = new[name]
            elif name in old:
                value = old[name]  # an unchanged TOAST value, known from a FULL old image
            else:
                continue
            if _keep(value, oversize):
                record[name] = value
        data["record"] = record
    if change.op in ("UPDATE", "DELETE"):
        cut_to_pk = change.op == "DELETE" and table.rls
        data["old_record"] = {
            name: value
            for name, value in old.items()
            if visible(name) and (not cut_to_pk or name in pk) and _keep(value, oversize)
        }
    return data
