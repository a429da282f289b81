"""Live DataFrames: a table's change stream as an always-current, typed pandas DataFrame."""

from harmony_lab.frames._live import FrameChange, LiveFrame

__all__ = ["FrameChange", "LiveFrame"]
