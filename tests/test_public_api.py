"""The public surface is exactly what __init__ curates; every name resolves."""

import importlib

import pytest

import harmony_lab

EXPECTED = {
    "Dashboard",
    "__version__",
    "RealtimeEvent",
    "EventKind",
    "ChannelStatus",
    "PresenceStatus",
    "LocalRealtime",
    "LocalPostgres",
    "RealtimeConnectionManager",
    "BackoffPolicy",
    "TableSubscription",
    "Backfill",
    "BroadcastReplay",
    "LiveFrame",
    "FrameChange",
    "LiveTableWidget",
    "PresenceRosterWidget",
    "StatusTimelineWidget",
    "Player",
    "dashboard",
    "Inspector",
    "Recorder",
    "read_recording",
    "connect_recording",
    "replay",
    "Simulator",
}


def test_all_is_curated():
    assert set(harmony_lab.__all__) == EXPECTED


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="NoSuchThing"):
        harmony_lab.NoSuchThing  # noqa: B018


def test_py_typed_marker_ships():
    spec = importlib.util.find_spec("harmony_lab")
    assert spec is not None
    assert spec.origin is not None
    assert (importlib.resources.files("harmony_lab") / "py.typed").is_file()


def test_lazy_table_matches_all():
    assert set(harmony_lab._EXPORTS) | {"__version__"} == set(harmony_lab.__all__)
