"""Live DataFrames: a table's change stream as an always-current, typed pandas DataFrame."""

from harmony_lab.frames._live import LiveFrame

__all__ = ["LiveFrame"]
