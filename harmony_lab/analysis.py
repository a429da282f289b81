"""Analyse recorded Realtime streams: rates, commit→receive lag, presence sessions, status time, gaps.

Pass the DataFrame from :func:`harmony_lab.read_recording`, or, for recordings larger than memory,
the recording path (or a DuckDB relation from :func:`harmony_lab.connect_recording`): the work then
runs in DuckDB and only the small result comes back::

    from harmony_lab import read_recording
    from harmony_lab import analysis

    df = read_recording("recordings/today")
    analysis.lag_summary(df)
    analysis.plot_status_timeline(df)
    analysis.lag_summary("recordings/today")     # the same answer, out of core
"""

from __future__ import annotations

from harmony_lab.recording.analysis import (
    event_rates,
    gaps,
    lag_summary,
    parse_json,
    plot_rates,
    plot_status_timeline,
    presence_sessions,
    status_durations,
)

__all__ = [
    "event_rates",
    "gaps",
    "lag_summary",
    "parse_json",
    "plot_rates",
    "plot_status_timeline",
    "presence_sessions",
    "status_durations",
]
