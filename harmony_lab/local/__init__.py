"""The embedded default: PostgreSQL with logical replication plus the Realtime-compatible server."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "LocalPostgres": "harmony_lab.local.postgres",
    "PostgresError": "harmony_lab.local.postgres",
    "LocalRealtime": "harmony_lab.local.stack",
}
__all__ = ["LocalPostgres", "LocalRealtime", "PostgresError"]

if TYPE_CHECKING:  # pragma: no cover
    from harmony_lab.local.postgres import LocalPostgres, PostgresError
    from harmony_lab.local.stack import LocalRealtime


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harmony_lab.local' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
