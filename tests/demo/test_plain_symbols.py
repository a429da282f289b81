"""Printed reports (doctor, the demo summary, the command line's help) use symbols that render without an
emoji font: on a bare Linux console or a minimal container every character must still be drawn."""

from __future__ import annotations

import pytest

from harmony_lab.cli import build_parser
from harmony_lab.demo._console import Summary
from harmony_lab.events import EventKind, RealtimeEvent
from harmony_lab.manager._doctor import Check, DoctorReport
from tests.demo.plain_text import not_plain


def test_the_checker_catches_emoji():
    found = set(not_plain("✅ OK ❌ 🚀 ❤️"))
    assert found == {"U+2705 ✅", "U+274C ❌", "U+2764 ❤", "U+FE0F \ufe0f", "U+1F680 🚀"}
    assert not_plain("messages — 3 rows · 0.5 ev/s … ≤ ∞ → ok │ █") == []


@pytest.mark.parametrize("ok", [True, False])
def test_doctor_report_is_plain(ok):
    checks = (
        Check("publication", True, "public.messages is in supabase_realtime"),
        Check(
            "rls",
            ok,
            "row level security hides every row from anon",
            fix="alter publication supabase_realtime add table public.messages;",
        ),
        Check("replica identity", False, "DELETEs carry only the key", severity="warning"),
    )
    report = DoctorReport("public", "messages", "anon", checks)
    for text in (repr(report), report._repr_markdown_()):
        assert ("OK" if ok else "PROBLEMS") in text
        assert not_plain(text) == [], text


def test_demo_summary_is_plain():
    summary = Summary(("messages", "reactions"))
    summary.feed(RealtimeEvent(kind=EventKind.CHANGE, channel="harmony", table="messages"))
    summary.tick()
    text = summary.render(
        header="harmony-lab demo — embedded Realtime at http://127.0.0.1:1 — 12 users",
        roster={"u1": {"status": "online"}, "u2": {"status": "dnd"}},
        channels={},
        simulator=None,
    )
    assert "messages" in text
    assert "presence: online 1" in text
    assert not_plain(text) == [], text


def test_every_help_text_is_plain():
    parser = build_parser()
    texts = [parser.format_help()]
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    texts += [p.format_help() for p in sub.choices.values()]
    assert len(texts) >= 4  # lab, demo, stack, serve, record, ...
    for text in texts:
        assert not_plain(text) == [], text
