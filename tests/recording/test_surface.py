"""The public surface of the recording area is exactly what the lead exports."""

from __future__ import annotations

import harmony_lab
import harmony_lab.analysis
import harmony_lab.recording


def test_recording_exports():
    assert set(harmony_lab.recording.__all__) == {
        "CorruptPartWarning",
        "Recorder",
        "connect_recording",
        "read_recording",
        "replay",
        # the package's interface to the other readers of part files (LiveFrame.at, the Player)
        "decode_json",
        "events_from_table",
        "part_files",
    }
    for name in ("Recorder", "connect_recording", "read_recording", "replay"):
        assert getattr(harmony_lab, name) is getattr(harmony_lab.recording, name)
    assert issubclass(harmony_lab.recording.CorruptPartWarning, UserWarning)


def test_analysis_exports():
    assert set(harmony_lab.analysis.__all__) == {
        "event_rates",
        "gaps",
        "lag_summary",
        "parse_json",
        "plot_rates",
        "plot_status_timeline",
        "presence_sessions",
        "status_durations",
    }
    for name in harmony_lab.analysis.__all__:
        assert callable(getattr(harmony_lab.analysis, name))
