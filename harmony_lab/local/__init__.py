"""The embedded default: PostgreSQL with logical replication plus the Realtime-compatible server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harmony_lab._lazy import lazy_exports

_EXPORTS = {
    "LocalPostgres": "harmony_lab.local.postgres",
    "PostgresError": "harmony_lab.local.postgres",
    "LocalRealtime": "harmony_lab.local.stack",
}
__all__ = ["LocalPostgres", "LocalRealtime", "PostgresError"]

if TYPE_CHECKING:  # pragma: no cover
    from harmony_lab.local.postgres import LocalPostgres, PostgresError
    from harmony_lab.local.stack import LocalRealtime


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
