"""Driving the newcomer's path: ``harmony-lab lab`` as a user starts it, and notebooks run in the page.

Shared by ``tests/browser/test_user_path.py`` and ``bench/userpath.py``. Nothing here changes what a
notebook does: the lab is the real command (``harmony-lab lab --no-browser``) with its own stack and
background traffic, the kernels get exactly the environment the lab gives them. The only additions are
the ones a test needs to *watch*: JupyterLab's app object exposed to the page, a copy of the notebooks
(Lab autosaves) and a private state folder (``XDG_CACHE_HOME``) so the run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.polling import eventually_sync

ROOT = Path(__file__).resolve().parents[2]
KERNEL = "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
OUTPUT = ".jp-OutputArea-output"
USER_PATH = (
    "01_quickstart.ipynb",
    "02_presence_and_typing.ipynb",
    "03_reconnection_lab.ipynb",
    "04_record_and_analyse.ipynb",
    "05_your_supabase_project.ipynb",
)

# what each notebook's story promises, as the notebook itself prints it
PROMISES = {
    "01": ["<RemoteStack ", "content"],  # the lab's stack (not one of its own); the messages DataFrame
    "02": [
        "suppressed: <RealtimeEvent",  # the mention while on dnd arrived, marked suppressed
        "reached the notification callback: False",  # dnd suppresses notifications
        "new callbacks while dnd: 0",
        "delivered to the callback: <RealtimeEvent",  # back online, the next mention reaches it
        "Bob sees Alice as: offline",  # invisible shows as offline
        "typing events so far:",
    ],
    "03": ["frame complete", "stall detected after", "in error: <ChannelState 'messages' error"],
    "04": ["dropped=0>"],  # the recorder lost nothing
    "05": ["running against the LOCAL embedded stack"],  # Enter at the prompt: the local stack
}
# log lines a notebook provokes on purpose (03's long refusal exhausts the retries: one line for it)
EXPECTED_LOG = {"03": ["channel 'messages': reconnecting → error (gave up after 4 retries"]}
# what a notebook prints when its promise is broken (or when it had to fall back)
BROKEN = {
    "01": ["could not load the table's current rows"],
    "02": ["could not load the table's current rows"],
    "03": ["missing"],
    "05": ["not connected after", "The frame is not connected", "No changes of"],
}
# printed numbers that must hold: (pattern, check on the match, what the notebook promised)
_NUMBERS: dict[str, list[tuple[str, Callable[[re.Match[str]], bool], str]]] = {
    "02": [
        (
            r"typing events so far: (\d+) started, (\d+) stopped",
            lambda m: int(m[1]) >= 3 and int(m[2]) >= 1,
            "at least 3 typing starts and 1 stop",
        ),
        # invisible, Alice still receives the roster
        (r"Alice still sees (\d+) colleagues online", lambda m: int(m[1]) >= 1, "a colleague in view"),
    ],
    "03": [
        # faults.stall(6) with heartbeats every 2 s: noticed within two intervals (plus one of slack)
        (r"stall detected after ([\d.]+) s", lambda m: float(m[1]) <= 6.0, "the stall noticed within 6 s"),
        (r"backfilled rows: (\d+)", lambda m: int(m[1]) > 0, "rows missed in the outages backfilled"),
        (
            r"messages written after the frame subscribed \(\d+\.\.\d+\): (\d+), frame complete",
            lambda m: int(m[1]) > 0,
            "a complete frame of the messages written meanwhile",
        ),
    ],
    "04": [
        (
            r"(\d+) events in (\d+) channels",
            lambda m: int(m[1]) >= 300 and int(m[2]) >= 2,
            "a recording of at least 300 events in both channels",
        )
    ],
}


# the traffic a notebook asks for (actions/s): it must get at least that, and say what it got
TRAFFIC_ASKED = {"02": 8.0, "03": 6.0, "04": 10.0}


def _traffic_problem(key: str, text: str) -> str | None:
    asked = TRAFFIC_ASKED.get(key)
    if asked is None:
        return None
    own = re.search(r"<Simulator \w+ users=\d+ rate=([\d.]+)/s(?: \+ ([\d.]+)/s in the background)?", text)
    lab = re.search(r"<BackgroundTraffic ([\d.]+) actions/s", text)
    if own is not None:
        got = float(own[1]) + float(own[2] or 0)
    elif lab is not None:
        got = float(lab[1])
    else:
        return f"did not say what demo traffic it runs with (asked for {asked:g} actions/s)"
    return None if got >= asked - 1e-9 else f"runs with {got:g} actions/s, asked for {asked:g}"


_PROFILE_ROW = re.compile(
    r"^\s*\d+\s+(\S(?:.*?\S)?)\s{2,}(online|away|dnd|invisible|offline)\s+(online|away|dnd|offline)\s*$", re.M
)


def _profiles_problem(key: str, text: str) -> str | None:
    """02's last table: each user's chosen status beside presence as others see it. Invisible shows as
    offline, every other status as itself; one row may be caught mid-change (the profile is written
    just before presence is tracked)."""
    if key != "02":
        return None
    if "presence as others see it" not in text:
        return "did not show the chosen status beside presence"
    table = text[text.rindex("presence as others see it") :]
    rows = _PROFILE_ROW.findall(table)
    if len(rows) < 6:
        return f"the chosen-status table has {len(rows)} rows"
    wrong = [r for r in rows if r[2] != ("offline" if r[1] == "invisible" else r[1])]
    return None if len(wrong) <= 1 else f"chosen status and presence disagree for {wrong}"


def promise_problems(key: str, text: str) -> list[str]:
    """What notebook ``key`` (``"01"``…) printed against what it promises; empty when every promise holds."""
    problems = [f"did not print {p!r}" for p in PROMISES.get(key, []) if p not in text]
    problems += [f"printed {b!r}" for b in BROKEN.get(key, []) if b in text]
    for pattern, ok, what in _NUMBERS.get(key, []):
        m = re.search(pattern, text)
        if m is None:
            problems.append(f"did not print {pattern!r} ({what})")
        elif not ok(m):
            problems.append(f"printed {m[0]!r}: not {what}")
    for problem in (_traffic_problem(key, text), _profiles_problem(key, text)):
        if problem is not None:
            problems.append(problem)
    return problems


@dataclass
class RunningLab:
    proc: subprocess.Popen[str]
    base: str
    token: str
    notebooks: Path
    state: Path
    started: float
    """``time.monotonic()`` when the command was started."""
    ready_at: float
    """When the terminal printed the Lab URL (the stack and its traffic run from then on)."""
    lines: list[str] = field(default_factory=list)
    """Everything the command printed to its terminal (stdout and stderr)."""

    @property
    def lab_log(self) -> Path:
        return self.state / "harmony-lab" / "lab" / "lab.log"

    def terminal(self) -> str:
        return "".join(self.lines)


def lab_environment(state: Path) -> dict[str, str]:
    """This process's environment, as the user's shell would pass it, with a private state folder.

    ``PYTHONPATH`` puts this checkout first so the lab and its kernels import the code under test (an
    editable install does the same for a user).
    """
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(state)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def harmony_lab_command() -> list[str]:
    """The ``harmony-lab`` console script next to this Python (what ``bash dev.sh lab`` execs)."""
    script = Path(sys.executable).parent / "harmony-lab"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "harmony_lab.cli"]


@contextlib.contextmanager
def running_lab(
    workdir: Path,
    *,
    extra: tuple[str, ...] = (),
    timeout: float = 240,
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[RunningLab]:
    """``harmony-lab lab --no-browser --port 0`` on a copy of ``notebooks/``; stopped with SIGTERM after.

    ``command`` replaces ``harmony-lab lab`` (e.g. ``bash dev.sh lab``); ``env`` adds to its environment.
    """
    notebooks = workdir / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    state = workdir / "state"
    state.mkdir()
    cmd = [
        *(command or [*harmony_lab_command(), "lab"]),
        "--no-browser",
        "--port",
        "0",
        "--notebooks",
        str(notebooks),
        "--lab-arg=--LabApp.expose_app_in_browser=True",
        "--lab-arg=--JupyterNotebookApp.expose_app_in_browser=True",  # the same for Notebook 7
        *extra,
    ]
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**lab_environment(state), **(env or {})},
        cwd=workdir,
        start_new_session=True,
    )
    lines: list[str] = []
    found: dict[str, Any] = {}
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                lines.append(line)
                m = re.search(r"(http://127\.0\.0\.1:\d+)/lab/tree/\S+\?token=(\w+)", line)
                if m and not found:
                    found.update(base=m.group(1), token=m.group(2), at=time.monotonic())
                    ready.set()
        ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        if not ready.wait(timeout) or not found:
            raise RuntimeError(f"harmony-lab lab did not print its URL in {timeout:.0f} s:\n{''.join(lines)}")
        yield RunningLab(proc, found["base"], found["token"], notebooks, state, started, found["at"], lines)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            raise
        reader.join(10)


# ------------------------------------------------------------------------------------------- the page

_STATE_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = panel.content.widgets.filter((c) => c.model.type === 'code');
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return {
    counts: cells.map((c) => c.model.executionCount),
    outputs: cells.map((c) => c.model.outputs.toJSON()),
    busy: !kernel || kernel.status !== 'idle',
    stdin: document.querySelectorAll('.jp-Stdin-input').length,
  };
}"""


def open_notebook(page: Any, lab: RunningLab, name: str, workspace: str) -> None:
    """Open ``name`` in its own workspace (no restored tabs) and wait for its kernel to be idle."""
    page.goto(f"{lab.base}/lab/workspaces/{workspace}/tree/{name}?token={lab.token}&reset")
    page.wait_for_function(
        f"""() => {{ try {{ const k = {KERNEL};
        return k.connectionStatus === 'connected' && k.status === 'idle'; }} catch {{ return false; }} }}"""
    )


def notebook_state(page: Any) -> dict[str, Any]:
    return dict(page.evaluate(_STATE_JS))


def run_all(
    page: Any,
    *,
    timeout_s: float,
    answers: list[str] | None = None,
    on_poll: Callable[[dict[str, Any]], None] | None = None,
    start: bool = True,
) -> dict[str, Any]:
    """Run All (JupyterLab's own command) and wait until every code cell ran and the kernel is idle.

    ``answers`` are typed into the input prompts the notebook shows (``input()`` / ``getpass``), in
    order, each followed by Enter, as a user would. Returns the final notebook state. Raises
    TimeoutError (with the state) if Run All does not finish within ``timeout_s``.
    """
    answers = list(answers or [])
    # not awaited: the command's promise settles only when the last cell has run, and a cell waiting
    # for input never does until the loop below answers it
    if start:  # else Run All was already started
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    deadline = time.monotonic() + timeout_s
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = notebook_state(page)
        if on_poll is not None:
            on_poll(state)
        if state["stdin"]:
            if not answers:
                raise AssertionError("the notebook asks for input nobody planned to give")
            box = page.locator(".jp-Stdin-input").last
            handle = box.element_handle()
            box.fill(answers.pop(0))
            box.press("Enter")
            # the answered box is replaced by text (the next prompt may follow at once)
            page.wait_for_function("(el) => !el.isConnected", arg=handle)
            continue
        if all(c is not None for c in state["counts"]) and not state["busy"]:
            return state
        time.sleep(0.25)
    raise TimeoutError(f"Run All did not finish within {timeout_s:.0f} s: counts {state.get('counts')}")


def run_new_cell(page: Any, code: str) -> int:
    """Add a code cell holding ``code`` at the end of the notebook and run it, as a user would; returns its
    index among the notebook's cells. Does not wait for it to finish."""
    return int(
        page.evaluate(
            """(code) => { const nb = window.jupyterapp.shell.currentWidget.content;
                 const n = nb.model.cells.length;
                 nb.model.sharedModel.insertCell(n, {cell_type: 'code', source: code});
                 nb.activeCellIndex = n;
                 window.jupyterapp.commands.execute('notebook:run-cell');
                 return n; }""",
            code,
        )
    )


def kernel_stdout(page: Any, code: str, timeout_ms: int = 30_000) -> str:
    """Run ``code`` in the notebook's kernel (after Run All, to measure) and return what it printed.

    Raises RuntimeError with the traceback if the code raised.
    """
    return str(
        page.evaluate(
            """([code, ms]) => new Promise((resolve, reject) => {
                 const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
                 const future = kernel.requestExecute({code, store_history: false});
                 let out = '';
                 const timer = setTimeout(() => reject(new Error('kernel code did not finish')), ms);
                 future.onIOPub = (msg) => {
                   if (msg.header.msg_type === 'stream') out += msg.content.text;
                   if (msg.header.msg_type === 'error') {
                     clearTimeout(timer); reject(new Error(msg.content.traceback.join('\\n')));
                   }
                 };
                 future.done.then(() => { clearTimeout(timer); resolve(out); }, reject);
               })""",
            [code, timeout_ms],
        )
    )


def shutdown_kernel(page: Any, timeout_ms: int = 30_000) -> None:
    """Shut the notebook's kernel down (bounded: ``evaluate`` itself has no timeout)."""
    page.evaluate(
        """(ms) => Promise.race([
             window.jupyterapp.shell.currentWidget.sessionContext.shutdown(),
             new Promise((_, reject) => setTimeout(() => reject(new Error('kernel shutdown hung')), ms)),
           ])""",
        timeout_ms,
    )


def first_live_row(page: Any, timeout_ms: float) -> None:
    """Wait until a live table in the page is connected and shows at least one row."""
    page.wait_for_function(
        f"""() => [...document.querySelectorAll('{OUTPUT} .hl-table')].some(
              (t) => t.dataset.status === 'connected' && Number(t.dataset.nrows || 0) > 0
                     && t.querySelector('.hl-tr'))""",
        timeout=timeout_ms,
    )


def changes_within(page: Any, js: str, what: str, within: float = 10.0) -> None:
    """``js`` reads a live widget's state from the DOM (null once it is no longer live): it must change
    to another live state within ``within`` seconds."""
    before = page.evaluate(js)
    assert before, f"{what}: nothing to watch in the page"

    def changed() -> bool:
        now = page.evaluate(js)
        return bool(now) and now != before

    eventually_sync(changed, within=within, what=what, interval=0.25)


TABLE_SIG = f"""() => {{ const t = document.querySelector('{OUTPUT} .hl-table');
  if (!t || t.dataset.status !== 'connected') return null;
  return [t.dataset.seq, t.dataset.nrows, [...t.querySelectorAll('.hl-tr')].slice(0, 5)
          .map((r) => r.dataset.key + ':' + r.dataset.ver).join(',')].join('|'); }}"""
ROSTER_SIG = f"""() => {{ const r = document.querySelector('{OUTPUT} .hl-roster');
  if (!r) return null;
  return [...r.querySelectorAll('.hl-user')].map(
    (u) => `${{u.dataset.user}}:${{u.dataset.status}}:${{u.dataset.typing}}`).join(','); }}"""
_LANE = f"{OUTPUT} .hl-timeline .hl-lane[data-channel='messages'][data-status='connected']"
# the "now" edge is redrawn by the page's own clock; the RTT history comes from the kernel's heartbeats
NOW_EDGE_SIG = f"""() => {{ const edge = document.querySelector("{_LANE} .hl-now");
  return edge ? edge.title : null; }}"""
HEARTBEAT_SIG = f"""() => {{ const meta = document.querySelector("{_LANE} .hl-rtt");
  return meta && meta.title ? meta.title : null; }}"""


def still_live(page: Any, key: str, within: float = 10.0) -> None:
    """After Run All the showcase widget of notebook ``key`` is still live: 01's table rows, 02's roster
    and 03's timeline (its "now" edge and the heartbeats the kernel receives) change within seconds."""
    if key == "01":
        changes_within(page, TABLE_SIG, "new rows in 01's live table after Run All", within)
    elif key == "02":
        changes_within(page, ROSTER_SIG, "02's roster after Run All", within)
    elif key == "03":
        changes_within(page, NOW_EDGE_SIG, "the 'now' edge of 03's timeline after Run All", within)
        changes_within(page, HEARTBEAT_SIG, "heartbeats reaching 03's timeline after Run All", within)


# ------------------------------------------------------------------------------------ reading outputs


def errors_in(outputs: list[list[dict[str, Any]]]) -> list[str]:
    """Error outputs and tracebacks printed to stderr."""
    found = []
    for cell in outputs:
        for out in cell:
            if out.get("output_type") == "error":
                found.append(f"{out.get('ename')}: {out.get('evalue')}")
            elif out.get("output_type") == "stream" and out.get("name") == "stderr":
                found.append(_text(out.get("text")))
    return found


def output_text(outputs: list[list[dict[str, Any]]]) -> str:
    parts = []
    for cell in outputs:
        for out in cell:
            if out.get("output_type") == "stream":
                parts.append(_text(out.get("text")))
            elif "text/plain" in (out.get("data") or {}):
                parts.append(_text(out["data"]["text/plain"]))
    return "\n".join(parts)


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(value)
    return str(value or "")
