"""The promise checker the user-path and Binder tests apply to what each notebook printed: it accepts what
a healthy run prints and catches every broken promise (a missing line, a fallback, a wrong number)."""

from __future__ import annotations

import pytest

from tests.browser.userpath_driver import PROMISES, USER_PATH, promise_problems

HEALTHY = {
    "01": "<RemoteStack http://127.0.0.1:5 (started by another process; faults over HTTP)>\n"
    "   id  channel_id  user_id  content\n",
    "02": "<Simulator running users=12 rate=6/s + 2/s in the background seed=None actions=3 errors=0>\n"
    "typing events so far: 4 started, 2 stopped\n"
    "suppressed: <RealtimeEvent #41 change 'my-notifications' INSERT public.notifications suppressed>\n"
    "reached the notification callback: False | new callbacks while dnd: 0\n"
    "delivered to the callback: <RealtimeEvent #45 change 'my-notifications' INSERT public.notifications>\n"
    "Bob sees Alice as: offline | Alice still sees 7 colleagues online\n"
    "                 name chosen status presence as others see it\n"
    "0       Alice Liddell       offline                   offline\n"
    "1         Bob Builder        online                    online\n"
    "2       Carol Danvers        online                    online\n"
    "3     Erin Brockovich     invisible                   offline\n"
    "4        Grace Hopper           dnd                       dnd\n"
    "5        Ken Thompson          away                      away\n"
    "6       Linus Pauling       offline                   offline\n",
    "03": "<BackgroundTraffic 6 actions/s, run by the process that started the stack>\n"
    "stall detected after 4.1 s (heartbeat interval 2 s)\n"
    "in error: <ChannelState 'messages' error reason='gave up after 4 retries'>\n"
    "backfilled rows: 64 | live inserts: 10\n"
    "messages written after the frame subscribed (11..84): 74, frame complete\n",
    "04": "<Simulator running users=12 rate=10/s seed=None actions=0 errors=0 presence[online=3]>\n"
    "<Recorder stopped events=312 written=312 files=2 gaps=2 dropped=0>\n"
    "312 events in 2 channels, 31 s\n",
    "05": "running against the LOCAL embedded stack at http://127.0.0.1:5 instead.\n   id  content\n",
}


def test_every_user_path_notebook_has_promises():
    assert sorted(PROMISES) == sorted(n[:2] for n in USER_PATH)


@pytest.mark.parametrize("key", sorted(HEALTHY))
def test_a_healthy_run_keeps_every_promise(key):
    assert promise_problems(key, HEALTHY[key]) == []


@pytest.mark.parametrize(
    ("key", "old", "new", "problem"),
    [
        ("01", "<RemoteStack", "<LocalRealtime", "'<RemoteStack '"),  # started its own stack
        ("02", "new callbacks while dnd: 0", "new callbacks while dnd: 2", "'new callbacks while dnd: 0'"),
        ("02", "4 started, 2 stopped", "4 started, 0 stopped", "at least 3 typing starts and 1 stop"),
        ("03", "after 4.1 s", "after 9.8 s", "the stall noticed within 6 s"),
        ("03", "backfilled rows: 64", "backfilled rows: 0", "rows missed in the outages backfilled"),
        ("03", "74, frame complete", "74, frame 3 missing (first: [12])", "'frame complete'"),
        ("04", "312 events in 2", "151 events in 2", "at least 300 events"),
        ("04", "dropped=0>", "dropped=4>", "'dropped=0>'"),
        ("02", "rate=6/s + 2/s in the background", "rate=6/s", "runs with 6 actions/s, asked for 8"),
        (
            "02",  # an invisible user shown online and an away one offline: not one row caught mid-change
            "invisible                   offline\n4        Grace Hopper           dnd"
            "                       dnd",
            "invisible                   online\n4        Grace Hopper           dnd"
            "                   offline",
            "chosen status and presence disagree",
        ),
        ("03", "<BackgroundTraffic 6", "<BackgroundTraffic 2", "runs with 2 actions/s, asked for 6"),
        ("04", "<Simulator running users=12 rate=10/s", "<Sim", "did not say what demo traffic"),
    ],
)
def test_a_broken_promise_is_named(key, old, new, problem):
    broken = HEALTHY[key].replace(old, new)
    assert broken != HEALTHY[key]
    problems = promise_problems(key, broken)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    ("key", "fallback"),
    [
        ("01", "LiveFrame public.messages: could not load the table's current rows (needs a database)"),
        ("05", "not connected after 30 s (reconnecting: connect failed)"),
        ("05", "The frame is not connected (reconnecting): fix the URL or key above"),
        ("05", "No changes of messages yet: insert or edit a row"),
    ],
)
def test_a_fallback_message_breaks_the_promise(key, fallback):
    assert promise_problems(key, HEALTHY[key] + fallback) != []


def test_one_row_caught_mid_change_is_tolerated():
    text = HEALTHY["02"].replace(
        "Ken Thompson          away                      away",
        "Ken Thompson          away                    online",
    )
    assert text != HEALTHY["02"]
    assert promise_problems("02", text) == []
