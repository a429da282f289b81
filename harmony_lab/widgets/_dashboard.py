"""dashboard(): live tables, the presence roster and the status timeline in one layout."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets

from harmony_lab.frames import LiveFrame
from harmony_lab.widgets._roster import PresenceRosterWidget
from harmony_lab.widgets._sources import display_names
from harmony_lab.widgets._table import LiveTableWidget
from harmony_lab.widgets._timeline import StatusTimelineWidget

logger = logging.getLogger(__name__)

__all__ = ["Dashboard", "dashboard"]


class Dashboard(ipywidgets.VBox):
    """The composed layout. ``frames``/``tables`` by table name, ``roster`` and ``timeline``."""

    def __init__(
        self,
        children: list[Any],
        *,
        frames: dict[str, LiveFrame],
        tables: dict[str, LiveTableWidget],
        roster: PresenceRosterWidget | None,
        timeline: StatusTimelineWidget | None,
    ) -> None:
        super().__init__(children=children)
        self.frames = frames
        self.tables = tables
        self.roster = roster
        self.timeline = timeline

    async def aclose(self) -> None:
        """Close every widget and stop every frame this dashboard created."""
        for w in (*self.tables.values(), self.roster, self.timeline):
            if w is not None:
                w.close()
        for f in self.frames.values():
            await f.aclose()
        self.close()

    def __repr__(self) -> str:
        return (
            f"<Dashboard tables={list(self.tables)} roster={self.roster is not None} "
            f"timeline={self.timeline is not None}>"
        )


def dashboard(
    manager: Any,
    tables: Sequence[str | LiveFrame] = (),
    presence: Any = None,
    *,
    max_rows: int = 10_000,
    timeline: bool = True,
    height: int = 320,
    names: Mapping[Any, str] | None = None,
) -> Dashboard:
    """Compose live tables, a presence roster and the status timeline (ipywidgets VBox/HBox).

    ``tables``: table names (a :class:`LiveFrame` per name subscribes through ``manager``) or
    LiveFrames you built. ``presence``: a presence handle (``await manager.join_presence(...)``), a
    presence channel name (the roster follows that channel's presence events on ``manager``) or None.
    Call it in a notebook cell (the frames subscribe on the running loop); ``await d.aclose()``
    undoes everything. With several tables they sit in tabs. ``names`` (user id → display name,
    e.g. from the profiles table) is shown by every table and the roster in place of the ids.
    """
    shown = display_names(names, "dashboard")
    if isinstance(tables, str):
        tables = [tables]
    frames: dict[str, LiveFrame] = {}
    for t in tables:
        if isinstance(t, LiveFrame):
            frames[t.table] = t
        elif isinstance(t, str):
            frames[t] = LiveFrame(manager, t, max_rows=max_rows)
        else:
            raise TypeError(f"tables must hold table names or LiveFrames; got {type(t).__name__}")
    table_widgets = {name: LiveTableWidget(f, height=height, names=shown) for name, f in frames.items()}

    roster: PresenceRosterWidget | None = None
    if presence is not None:
        if isinstance(presence, str):
            roster = PresenceRosterWidget(manager, channel=presence, names=shown)
        else:
            roster = PresenceRosterWidget(presence, events=manager, names=shown)
    status = StatusTimelineWidget(manager) if timeline else None

    children: list[Any] = []
    if len(table_widgets) == 1:
        children.append(next(iter(table_widgets.values())))
    elif table_widgets:
        tab = ipywidgets.Tab(children=list(table_widgets.values()))
        for i, name in enumerate(table_widgets):
            tab.set_title(i, name)
        children.append(tab)
    bottom = [w for w in (roster, status) if w is not None]
    if bottom:
        if roster is not None:
            roster.layout = ipywidgets.Layout(width="280px", flex="0 0 auto", margin="0 8px 0 0")
        if status is not None:
            status.layout = ipywidgets.Layout(flex="1 1 auto", min_width="0")
        children.append(ipywidgets.HBox(bottom, layout=ipywidgets.Layout(width="100%")))
    return Dashboard(children, frames=frames, tables=table_widgets, roster=roster, timeline=status)
