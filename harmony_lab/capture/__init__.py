"""Change capture: PostgreSQL row changes over logical replication (pgoutput) as :class:`Change` records.

* :class:`ChangeStream` — asyncio consumer of a streaming replication connection (temporary slot);
* :func:`poll_changes` — synchronous fallback over ``pg_logical_slot_get_binary_changes``;
* :class:`PgOutputDecoder` — the pure decoder both use;
* :func:`to_json_value` — one value's text form (as pgoutput sends it) as the Python value of its type.
"""

from __future__ import annotations

from harmony_lab.capture._convert import to_json_value
from harmony_lab.capture.pgoutput import PgOutputDecoder, PgOutputError
from harmony_lab.capture.stream import ChangeStream, ChangeStreamError, poll_changes
from harmony_lab.capture.types import UNCHANGED_TOAST, Change, Column, Op

__all__ = [
    "UNCHANGED_TOAST",
    "Change",
    "ChangeStream",
    "ChangeStreamError",
    "Column",
    "Op",
    "PgOutputDecoder",
    "PgOutputError",
    "poll_changes",
    "to_json_value",
]
