"""Record RealtimeEvent streams to Parquet, read them back as DataFrames, replay them as events.

* :class:`Recorder` — events → ``date=…/channel=…/part-<session>-<seq>.parquet`` + ``_session.json``
* :func:`read_recording` — a pandas DataFrame (pyarrow dataset, predicate pushdown)
* :func:`connect_recording` — a DuckDB connection with an ``events`` view, for SQL beyond memory
* :func:`replay` — the recorded events again, with their original timing
* for readers of the part files themselves (``LiveFrame.at``, the Player): :func:`part_files` (the
  readable parts in order), :func:`events_from_table` (stored rows back to events) and
  :func:`decode_json` (one JSON column value with its recorded types)

Analysis helpers live in :mod:`harmony_lab.analysis`.
"""

from __future__ import annotations

from harmony_lab.recording._codec import decode_json, events_from_table
from harmony_lab.recording._duck import connect_recording
from harmony_lab.recording._parts import CorruptPartWarning, part_files
from harmony_lab.recording._reader import read_recording, replay
from harmony_lab.recording._recorder import Recorder

__all__ = [
    "CorruptPartWarning",
    "Recorder",
    "connect_recording",
    "decode_json",
    "events_from_table",
    "part_files",
    "read_recording",
    "replay",
]
