"""Record RealtimeEvent streams to Parquet, read them back as DataFrames, replay them as events.

* :class:`Recorder` — events → ``date=…/channel=…/part-<session>-<seq>.parquet`` + ``_session.json``
* :func:`read_recording` — a pandas DataFrame (pyarrow dataset, predicate pushdown)
* :func:`connect_recording` — a DuckDB connection with an ``events`` view, for SQL beyond memory
* :func:`replay` — the recorded events again, with their original timing

Analysis helpers live in :mod:`harmony_lab.analysis`.
"""

from __future__ import annotations

from harmony_lab.recording._duck import connect_recording
from harmony_lab.recording._parts import CorruptPartWarning
from harmony_lab.recording._reader import read_recording, replay
from harmony_lab.recording._recorder import Recorder

__all__ = ["CorruptPartWarning", "Recorder", "connect_recording", "read_recording", "replay"]
