"""Notebook widgets (anywidget): live table, presence roster, status timeline, and a dashboard."""

from harmony_lab.widgets._dashboard import Dashboard, dashboard
from harmony_lab.widgets._player import Player
from harmony_lab.widgets._roster import PresenceRosterWidget
from harmony_lab.widgets._table import LiveTableWidget
from harmony_lab.widgets._timeline import StatusTimelineWidget

__all__ = [
    "Dashboard",
    "LiveTableWidget",
    "Player",
    "PresenceRosterWidget",
    "StatusTimelineWidget",
    "dashboard",
]
