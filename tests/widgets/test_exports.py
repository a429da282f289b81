"""The public surface of harmony_lab.frames and harmony_lab.widgets is exactly what the lead exports."""

from __future__ import annotations

import typing

import harmony_lab
import harmony_lab.frames
import harmony_lab.widgets


def test_frames_exports_live_frame_frame_change_and_the_seek_interface():
    # LiveFrame and FrameChange for users; the seek tools for the Player (widgets), which reaches
    # frames only through these names
    assert harmony_lab.frames.__all__ == [
        "FrameChange",
        "Instant",
        "LiveFrame",
        "SeekIndex",
        "adopt",
        "connect",
        "instant_us",
        "parse_instant",
    ]
    assert harmony_lab.LiveFrame is harmony_lab.frames.LiveFrame
    # what on_change callbacks receive, importable for annotations and isinstance checks
    assert harmony_lab.FrameChange is harmony_lab.frames.FrameChange


def test_widgets_export_exactly_the_widget_types_and_dashboard():
    assert sorted(harmony_lab.widgets.__all__) == [
        "Dashboard",
        "LiveTableWidget",
        "Player",
        "PresenceRosterWidget",
        "StatusTimelineWidget",
        "dashboard",
    ]
    for name in harmony_lab.widgets.__all__:
        assert getattr(harmony_lab, name) is getattr(harmony_lab.widgets, name)
    # dashboard() builds a Dashboard: the type a user annotates or checks with isinstance
    assert typing.get_type_hints(harmony_lab.dashboard)["return"] is harmony_lab.Dashboard
