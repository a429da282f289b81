"""realtime-py's connection-loss log lines, while the manager owns the connection.

realtime-py logs every socket loss and failed connect at ERROR ("WebSocket connection closed with
code: 1012", "Auto-reconnect disabled, terminating connection", "Connection attempt failed: …").
For a connection the manager drives, that is noise that reads like a failure: the manager reconnects
and reports the same fact as a status event (``reconnecting`` with the reason). Changing a record's
level in a filter does not help: a logger's filters run *after* its level check, and handlers print
whatever reaches them, so a re-labelled record still prints under
``logging.basicConfig(level=logging.WARNING)``.

So :class:`RealtimePyConnectionLogs`, a filter on realtime-py's client logger, **drops** those records
and re-emits each at DEBUG on ``harmony_lab.manager`` with the channel's name (``extra``:
``channel``, ``realtime_logger``, ``realtime_level``), where the usual level check applies. It acts
only on

* the connection-loss lines (:data:`CONNECTION_LOSS_PREFIXES`) — every other realtime-py line passes
  untouched, at its own level;
* logged from a task of a connection the manager owns: the task that runs ``client.connect()`` for a
  channel and that client's listener and heartbeat tasks (:func:`own`). A ``realtime`` client used
  directly, next to a manager, keeps its ERROR lines.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

__all__ = ["CONNECTION_LOSS_PREFIXES", "RealtimePyConnectionLogs", "install", "own"]

logger = logging.getLogger("harmony_lab.manager")

#: the logger realtime-py's ``AsyncRealtimeClient`` logs connection losses on
REALTIME_CLIENT_LOGGER = "realtime._async.client"

#: the start of each connection-loss line of realtime-py 2.34 (``realtime/_async/client.py``)
CONNECTION_LOSS_PREFIXES = (
    "WebSocket connection closed with code",
    "Auto-reconnect disabled",
    "Connection attempt failed",
    "Connection failed permanently",
)

# task -> name of the manager channel whose connection the task belongs to
_OWNED: weakref.WeakKeyDictionary[asyncio.Task[Any], str] = weakref.WeakKeyDictionary()


def own(task: asyncio.Task[Any] | None, channel: str) -> None:
    """Mark ``task`` as working for the manager's channel ``channel`` (forgotten when the task is)."""
    if task is not None:
        _OWNED[task] = channel


def owner_of_current_task() -> str | None:
    """The manager channel the running task works for, or None (not ours, or no running loop)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return None
    return _OWNED.get(task) if task is not None else None


class RealtimePyConnectionLogs(logging.Filter):
    """Drops realtime-py's connection-loss lines of manager-owned connections; re-emits them at DEBUG
    on ``harmony_lab.manager`` (see the module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a malformed record: let logging report it as usual
            return True
        if not text.startswith(CONNECTION_LOSS_PREFIXES):
            return True
        channel = owner_of_current_task()
        if channel is None:
            return True
        logger.debug(
            "channel %r: realtime-py %s (the manager reconnects and reports it as a status event): %s",
            channel,
            record.levelname,
            text,
            extra={"channel": channel, "realtime_logger": record.name, "realtime_level": record.levelname},
        )
        return False

    def __repr__(self) -> str:
        return f"<RealtimePyConnectionLogs on {REALTIME_CLIENT_LOGGER!r}>"


def install() -> None:
    """Add the filter to realtime-py's client logger (idempotent)."""
    target = logging.getLogger(REALTIME_CLIENT_LOGGER)
    if not any(isinstance(f, RealtimePyConnectionLogs) for f in target.filters):
        target.addFilter(RealtimePyConnectionLogs())
