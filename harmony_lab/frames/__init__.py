"""Live DataFrames: :class:`LiveFrame` (a table kept current by change events) and :class:`FrameChange`.

For the Player and other readers that seek through a recording many times: :class:`SeekIndex` (one
table of a recording indexed for many ``at`` calls), :func:`adopt` (a frame takes another frame's rows,
its listeners see one ``reset``), :func:`connect` (an in-memory DuckDB connection set up for reading
recordings), :func:`parse_instant` and :func:`instant_us` (instants as recordings store them);
``Instant`` is what ``LiveFrame.at`` and a seek accept (an aware ``datetime`` or an ISO 8601 string).
"""

from harmony_lab.frames._at import Instant, SeekIndex, adopt, connect, instant_us, parse_instant
from harmony_lab.frames._live import FrameChange, LiveFrame

__all__ = [
    "FrameChange",
    "Instant",
    "LiveFrame",
    "SeekIndex",
    "adopt",
    "connect",
    "instant_us",
    "parse_instant",
]
