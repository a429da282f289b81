"""The Realtime Inspector: join channels, watch every message with its JSON, filter, send, listen as."""

from harmony_lab.inspector._inspector import Inspector
from harmony_lab.inspector._log import KINDS, LogEntry, MessageLog

__all__ = ["KINDS", "Inspector", "LogEntry", "MessageLog"]
