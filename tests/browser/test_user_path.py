"""The newcomer's path is the test: ``harmony-lab lab`` exactly as the README starts it, demo traffic for a
minute, then Run All on notebooks 01-05 in JupyterLab under Chromium.

No test-only shortcuts: the kernels get the lab's ``HARMONY_LAB_*`` environment and nothing else, the
notebooks have no fast or CI mode. For every notebook: Run All finishes, no cell shows an error or
writes to stderr, every promise it prints holds; afterwards the showcase widgets of 01, 02 and 03 are
still live (read from the DOM: the table's rows, the roster, the timeline's "now" edge change within
10 s). Then 05 once more with a project URL nobody listens on: the table's status line and one log
line in the cell say why within seconds. Last, the lab's terminal: at most one line per notable event,
and realtime-py's connection-loss errors went to the log file instead.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import free_port
from tests.browser.userpath_driver import (
    EXPECTED_LOG,
    KERNEL,
    OUTPUT,
    TABLE_SIG,
    USER_PATH,
    RunningLab,
    changes_within,
    errors_in,
    first_live_row,
    kernel_stdout,
    open_notebook,
    output_text,
    promise_problems,
    run_all,
    run_new_cell,
    running_lab,
    shutdown_kernel,
    still_live,
)
from tests.demo.plain_text import not_plain
from tests.polling import eventually_sync

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(1200)]

WARM_UP_S = 60.0  # the tables already hold a minute of demo traffic when the newcomer starts
RUN_ALL_S = {"01": 120, "02": 240, "03": 300, "04": 240, "05": 120}

ANSWERS = {"05": [""]}  # the project URL prompt: Enter, as a newcomer without a project does

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def user_lab(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[RunningLab]:
    with running_lab(tmp_path_factory.mktemp("user-path")) as lab:
        yield lab
        art = Path(__file__).resolve().parents[2] / "test-artifacts"
        art.mkdir(exist_ok=True)
        (art / "user-path-terminal.txt").write_text(lab.terminal())
        if lab.lab_log.exists():
            (art / "user-path-lab.log").write_text(lab.lab_log.read_text(errors="replace"))


@pytest.fixture
def page(browser: Any, user_lab: RunningLab) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.route(re.compile(r"^https?://(?!127\.0\.0\.1)"), lambda r: r.abort())
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    ctx.close()


def _warm(lab: RunningLab) -> None:
    """Let the demo traffic run for a minute before the first notebook (a wait on purpose, not a sync)."""
    left = WARM_UP_S - (time.monotonic() - lab.ready_at)
    if left > 0:
        time.sleep(left)


TYPING_SHOWN = f"""() => [...document.querySelectorAll("{OUTPUT} .hl-roster .hl-user[data-typing='true']")]
  .map((li) => [li.dataset.user, (li.querySelector('.hl-typing') || {{}}).textContent])"""
ROSTER_SHOWN = f"""() => [...document.querySelectorAll("{OUTPUT} .hl-roster .hl-user")].map((li) => [
  li.dataset.user, li.querySelector(".hl-name").textContent, li.dataset.status,
  li.dataset.typing === "true"])"""
ROSTER_DF = (
    "import json as _json\n"
    "from harmony_lab import PresenceRosterWidget as _Roster\n"
    "_r = [v for v in Out.values() if isinstance(v, _Roster)][-1]\n"
    "print(_json.dumps([[u, n, s, bool(t)] for u, n, s, t in "
    "_r.df[['id', 'name', 'status', 'typing']].itertuples(index=False)]))"
)
NAMES_SHOWN = f"""() => [...document.querySelectorAll("{OUTPUT} .hl-table .hl-td[data-col='user_id']")]
  .slice(0, 20).map((td) => td.textContent)"""


def _roster_agrees(page: Any, within: float = 15.0) -> None:
    """What 02's roster shows (users in order: id, name, status, typing) equals its ``df``."""
    deadline = time.monotonic() + within
    while True:
        shown = page.evaluate(ROSTER_SHOWN)
        df = json.loads(kernel_stdout(page, ROSTER_DF))
        if shown == df:
            assert shown, "02's roster is empty"
            return
        assert time.monotonic() < deadline, f"the roster shows {shown}\nbut its df has {df}"
        time.sleep(0.2)


TIMELINE_COUNTS = f"""() => {{
  const el = document.querySelector("{OUTPUT} .hl-timeline .hl-lane[data-channel='messages']");
  const n = (sel) => el.querySelectorAll(sel).length;
  return {{reconnecting: n(".hl-span[data-status='reconnecting']"), error: n(".hl-span[data-status='error']"),
          retries: n(".hl-retry"), gaps: n(".hl-gap"),
          open: n(".hl-span[data-status='connected'][data-open='true']")}}; }}"""


def _run_notebook(page: Any, lab: RunningLab, artifacts: Path, name: str, answers: list[str]) -> str:
    key = name[:2]
    open_notebook(page, lab, name, f"user-path-{key}")
    started = time.monotonic()
    try:
        state = run_all(page, timeout_s=RUN_ALL_S[key], answers=answers)
    except BaseException:
        page.screenshot(path=artifacts / f"user-path-{key}-failure.png", full_page=True)
        raise
    TIMINGS[name] = time.monotonic() - started
    problems = [p for p in errors_in(state["outputs"]) if not any(x in p for x in EXPECTED_LOG.get(key, ()))]
    assert problems == [], f"{name}: {problems}"
    text = output_text(state["outputs"])
    (artifacts / f"user-path-{key}-output.txt").write_text(text)
    assert promise_problems(key, text) == [], f"{name}:\n{text[-3000:]}"
    return text


def test_quickstart_widgets_render_in_notebook_7(user_lab, page, artifacts):
    """The ``lab`` extra brings Notebook 7 too: from its file browser (/tree) to 01, Run All, and the
    live table shows rows and keeps following the table. (Runs while the demo traffic warms up.)"""
    nb = "01_in_notebook_7.ipynb"
    (user_lab.notebooks / nb).write_bytes((user_lab.notebooks / USER_PATH[0]).read_bytes())
    page.goto(f"{user_lab.base}/tree?token={user_lab.token}")
    page.locator(".jp-DirListing-item", has_text=nb).first.wait_for()  # Notebook 7's file browser
    page.goto(f"{user_lab.base}/notebooks/{nb}")  # where it opens the notebook (in a new tab)
    page.wait_for_function(
        f"""() => {{ try {{ const k = {KERNEL};
        return k.connectionStatus === 'connected' && k.status === 'idle'; }} catch {{ return false; }} }}"""
    )
    try:
        state = run_all(page, timeout_s=180)
        assert errors_in(state["outputs"]) == []
        first_live_row(page, 30_000)
        changes_within(page, TABLE_SIG, "new rows in 01's live table in Notebook 7", within=20)
        page.screenshot(path=artifacts / "user-path-notebook7.png")
    finally:
        shutdown_kernel(page)


@pytest.mark.parametrize("name", USER_PATH)
def test_run_all_on_the_user_path(name, user_lab, page, artifacts):
    _warm(user_lab)
    key = name[:2]
    before_run_all = time.time()
    try:
        text = _run_notebook(page, user_lab, artifacts, name, ANSWERS.get(key, []))
        still_live(page, key)  # 01's table, 02's roster, 03's timeline change within 10 s
        if key == "01":
            # the table shows what the table already held before Run All (messages are only ever
            # soft-deleted), then keeps following it
            held = int(
                kernel_stdout(
                    page,
                    "print((await rt.execute('SELECT count(*) FROM public.messages "
                    f"WHERE created_at < to_timestamp({before_run_all})'))[0][0])",
                )
            )
            assert held >= 20, f"a minute of demo traffic left only {held} messages in the table"
            n = int(page.locator(f"{OUTPUT} .hl-table").first.get_attribute("data-nrows") or 0)
            assert n >= held, f"the table held {held} messages before Run All; the live table shows {n}"
            # user ids show display names (names= from the profiles table)
            names = json.loads(
                kernel_stdout(page, "import json as _json\nprint(_json.dumps(sorted(set(names.values()))))")
            )
            shown = page.evaluate(NAMES_SHOWN)
            assert shown, "01's live table shows no user_id cells"
            assert set(shown) <= set(names), f"user ids shown as {shown[:5]}, not display names"
        elif key == "02":
            # a colleague types: the roster says so, and its DataFrame view agrees with what it shows
            eventually_sync(lambda: page.evaluate(TYPING_SHOWN), within=30, what="'typing…' in 02's roster")
            assert {t for _, t in page.evaluate(TYPING_SHOWN)} <= {"typing…"}
            _roster_agrees(page)
        elif key == "03":
            assert "missing" not in text
            # five outages (drop, refused retries, rapid closes, stall, long refusal), one ending in error
            counts = page.evaluate(TIMELINE_COUNTS)
            assert counts["reconnecting"] >= 5, counts
            assert counts["error"] >= 1, counts
            assert counts["retries"] >= 5, counts
            assert counts["gaps"] >= 5, counts
            assert counts["open"] == 1, counts
        page.screenshot(path=artifacts / f"user-path-{key}.png", full_page=False)
    except BaseException as exc:
        (artifacts / f"user-path-{key}-failure.txt").write_text(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        shutdown_kernel(page)
    (artifacts / "user-path-timings.json").write_text(json.dumps(TIMINGS, indent=1))


def test_wrong_project_url_says_why_in_the_cell(user_lab, page, artifacts):
    """05 with a project URL nobody listens on: within seconds the table's status line names the refused
    connection and the cell shows one log line about it; the notebook then says plainly it is not
    connected (no endless ``[*]``)."""
    _warm(user_lab)
    nb = "05_wrong_url.ipynb"
    (user_lab.notebooks / nb).write_bytes((user_lab.notebooks / USER_PATH[4]).read_bytes())
    open_notebook(page, user_lab, nb, "user-path-05-wrong-url")
    url = f"http://127.0.0.1:{free_port()}"  # bound and released: connections are refused
    fake_key = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb2xlIjoiYW5vbiJ9.bm90LWEtcmVhbC1rZXk"
    seen: dict[str, float] = {}
    started: list[float] = []

    def watch(state: dict[str, Any]) -> None:
        if not started and state["stdin"] == 0 and any(state["outputs"]):
            started.append(time.monotonic())
        status = page.evaluate(
            f"() => {{ const t = document.querySelector('{OUTPUT} .hl-table');"
            " return t ? [t.dataset.status, t.dataset.reason || ''] : null; }"
        )
        if status and status[0] in ("reconnecting", "error") and "refused" in status[1].lower():
            seen.setdefault("status", time.monotonic())
        if "is reconnecting: connect failed" in output_text(state["outputs"]):
            seen.setdefault("log", time.monotonic())

    try:
        state = run_all(page, timeout_s=120, answers=[url, fake_key], on_poll=watch)
        # then, in a new cell, the lab's real project with that wrong key: 401 in the cell within seconds
        wrong_key = run_new_cell(page, WRONG_KEY_CELL.format(key=fake_key))
        unauthorized = _cell_says_why(page, wrong_key, "401")
    finally:
        page.screenshot(path=artifacts / "user-path-05-wrong-url.png", full_page=True)
        shutdown_kernel(page)
    assert "401" in unauthorized["reason"], unauthorized
    assert unauthorized["status"] in ("reconnecting", "error"), unauthorized
    assert unauthorized["seconds"] < 10, unauthorized
    (line,) = unauthorized["log"]  # one log line about it in the cell, not one per retry
    assert "401" in line, unauthorized
    assert "status" in seen, "the table's status line never named the refused connection"
    assert "log" in seen, "no log line about the refused connection in the cell"
    assert started
    assert seen["status"] - started[0] < 10, seen
    assert seen["log"] - started[0] < 10, seen
    text = output_text(state["outputs"])
    assert text.count("is reconnecting: connect failed") == 1, text  # one line per outage, not per retry
    assert "not connected after 30 s" in text
    assert "The frame is not connected" in text
    assert [e for e in errors_in(state["outputs"]) if "Traceback" in e] == []


WRONG_KEY_CELL = """import os
wrong = RealtimeConnectionManager(os.environ["HARMONY_LAB_URL"], "{key}")  # the lab's project, a wrong key
unauthorized = LiveFrame(wrong, "messages")
unauthorized"""


def _cell_says_why(page: Any, index: int, needle: str, within: float = 20.0) -> dict[str, Any]:
    """Wait until cell ``index`` (``WRONG_KEY_CELL``) shows a live table whose status line names ``needle``;
    then, after three retries, its status, reason, the seconds it took and its log lines in the cell."""
    started = time.monotonic()
    js = """(i) => { const cell = window.jupyterapp.shell.currentWidget.content.widgets[i];
      const t = cell.node.querySelector('.hl-table');
      const log = cell.model.outputs.toJSON().filter((o) => o.output_type === 'stream')
        .map((o) => [].concat(o.text).join('')).join('').split('\\n')
        .filter((l) => l.includes('LiveFrame') && l.includes("' is "));
      return {status: t ? t.dataset.status : null, reason: t ? t.dataset.reason || '' : '', log}; }"""

    def says_why() -> bool:
        state = page.evaluate(js, index)
        return state["status"] in ("reconnecting", "error") and needle in state["reason"]

    eventually_sync(says_why, within=within, what=f"{needle!r} on cell {index}'s status line", interval=0.25)
    took = time.monotonic() - started
    # a few retries more: they must not add log lines
    retries = "print(wrong.get_status(unauthorized.name).attempt)"
    eventually_sync(lambda: int(kernel_stdout(page, retries)) >= 3, within=30, what="3 retries", interval=0.5)
    state = dict(page.evaluate(js, index))
    state["seconds"] = took
    return state


def test_the_terminal_stays_quiet(user_lab):
    """After every notebook (03 drops every connection five times, also the background simulator's), the
    terminal holds the start banner and at most one line per notable event; realtime-py's
    connection-loss errors for the connections the lab owns went to the log file."""
    lines = [line for line in user_lab.terminal().splitlines() if line.strip()]
    banner = [line for line in lines if line.startswith(("harmony-lab:", "    "))]
    others = [line for line in lines if line not in banner]
    assert len(banner) == 4, lines  # stack, Lab, URL, log + Ctrl-C
    assert not [line for line in others if "realtime._async" in line], others
    assert len(others) <= 10, "\n".join(others)
    assert not_plain(user_lab.terminal()) == []
    log = user_lab.lab_log.parent / "harmony-lab.log"
    assert log.exists(), f"no log file next to {user_lab.lab_log}"
