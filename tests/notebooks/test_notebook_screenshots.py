"""The newcomer's path in a real browser: ``harmony-lab lab`` serves the notebooks, Chromium runs them.

Opens 01_quickstart, 02_presence_and_typing and 03_reconnection_lab in JupyterLab (served by
``harmony-lab lab --no-browser`` with its background stack and traffic), runs the cells through
JupyterLab's own commands, waits for the live widgets to show data (and, in the reconnection lab, every
fault on the status timeline), and saves README-worthy screenshots to ``test-artifacts/notebook-*.png``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import CHROMIUM, skip_or_fail

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
KERNEL = "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
OUTPUT = ".jp-OutputArea-output"


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        skip_or_fail(f"chromium not found at {CHROMIUM} (apt-get install chromium)")
    root = tmp_path_factory.mktemp("shots")
    notebooks = root / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARMONY_LAB_")}
    env.update(XDG_CACHE_HOME=str(root / "cache"), PYTHONUNBUFFERED="1", NOTEBOOK_FAST="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "harmony_lab.cli", "lab", "--no-browser", "--port", "0", "--rate", "6",
         "--notebooks", str(notebooks), "--lab-arg=--LabApp.expose_app_in_browser=True"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    found: dict[str, str] = {}
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                lines.append(line)
                m = re.search(r"(http://127\.0\.0\.1:\d+)/lab/tree/\S+\?token=(\w+)", line)
                if m:
                    found.update(base=m.group(1), token=m.group(2))
                    ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert ready.wait(180), "".join(lines[-40:])
        assert found, "".join(lines[-40:])
        yield found["base"], found["token"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, "".join(lines[-40:])


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.route(re.compile(r"^https?://(?!127\.0\.0\.1)"), lambda r: r.abort())
    pg = ctx.new_page()
    pg.set_default_timeout(120_000)
    yield pg
    try:
        pg.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    finally:
        ctx.close()


def open_notebook(page, base: str, token: str, name: str, workspace: str) -> None:
    page.goto(f"{base}/lab/workspaces/{workspace}/tree/{name}?token={token}&reset")
    page.wait_for_function(
        f"""() => {{ try {{ const k = {KERNEL};
        return k.connectionStatus === 'connected' && k.status === 'idle'; }} catch {{ return false; }} }}"""
    )


def open_and_run(page, base: str, token: str, name: str, workspace: str) -> None:
    open_notebook(page, base, token, name, workspace)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")


def run_from(page, index: int, command: str) -> None:
    """Make cell ``index`` active and run ``notebook:run-all-above`` or ``notebook:run-all-below``."""
    page.evaluate(
        """([index, command]) => {
          window.jupyterapp.shell.currentWidget.content.activeCellIndex = index;
          return window.jupyterapp.commands.execute(command);
        }""",
        [index, command],
    )


def wait_cells_ran(page, timeout_s: float, below: int | None = None) -> None:
    """Every code cell (the ones before index ``below`` if given) has an execution count, none shows an
    error, and the kernel is idle."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = page.evaluate(
            """(below) => {
              const panel = window.jupyterapp.shell.currentWidget;
              const cells = panel.content.widgets
                .filter((c, i) => c.model.type === 'code' && (below === null || i < below));
              const errors = cells.flatMap(c => c.model.outputs.toJSON())
                .filter(o => o.output_type === 'error').map(e => e.ename + ': ' + e.evalue);
              return {ran: cells.every(c => c.model.executionCount !== null), errors,
                      busy: panel.sessionContext.session.kernel.status !== 'idle'};
            }""",
            below,
        )
        assert not state["errors"], state["errors"]
        if state["ran"] and not state["busy"]:
            return
        time.sleep(0.5)
    raise AssertionError("the notebook did not finish running")


def test_quickstart_in_lab(lab_server, page, artifacts):
    base, token = lab_server
    open_and_run(page, base, token, "01_quickstart.ipynb", "quickstart")
    page.wait_for_selector(f"{OUTPUT} .hl-table[data-status='connected']")
    page.wait_for_function(
        f"() => Number(document.querySelector('{OUTPUT} .hl-table')?.dataset.nrows || 0) >= 3"
    )
    page.locator(f"{OUTPUT} .hl-table").first.scroll_into_view_if_needed()
    page.screenshot(path=artifacts / "notebook-01_quickstart.png")
    wait_cells_ran(page, 180)


def test_presence_notebook_in_lab(lab_server, page, artifacts):
    base, token = lab_server
    open_and_run(page, base, token, "02_presence_and_typing.ipynb", "presence")
    page.wait_for_function(
        f"() => Number(document.querySelector('{OUTPUT} .hl-roster')?.dataset.present || 0) >= 3"
    )
    page.locator(f"{OUTPUT} .hl-roster").first.scroll_into_view_if_needed()
    page.locator(f"{OUTPUT} .hl-roster").first.screenshot(path=artifacts / "notebook-02_roster.png")
    wait_cells_ran(page, 240)


def test_reconnection_lab_in_lab(lab_server, page, artifacts):
    """Every experiment of 03 leaves its mark on the real timeline: reconnecting spans with retry markers,
    an ``error`` span (retries exhausted) that the health check ended, gaps; then the lane is connected."""
    base, token = lab_server
    open_notebook(page, base, token, "03_reconnection_lab.ipynb", "reconnection")
    cleanup = page.evaluate(
        """() => window.jupyterapp.shell.currentWidget.content.widgets
             .findIndex(c => c.model.sharedModel.getSource().includes('await manager.cleanup()'))"""
    )
    assert cleanup > 0, "03_reconnection_lab has no clean-up cell"
    run_from(page, cleanup, "notebook:run-all-above")  # every experiment, not the clean-up
    wait_cells_ran(page, 420, below=cleanup)
    lane = f"{OUTPUT} .hl-timeline .hl-lane[data-channel='messages']"
    page.wait_for_selector(f"{lane}[data-status='connected']")
    counts = page.evaluate(
        """(lane) => {
          const el = document.querySelector(lane);
          const n = (sel) => el.querySelectorAll(sel).length;
          return {reconnecting: n(".hl-span[data-status='reconnecting']"),
                  error: n(".hl-span[data-status='error']"), retries: n(".hl-retry"), gaps: n(".hl-gap"),
                  open: n(".hl-span[data-status='connected'][data-open='true']")};
        }""",
        lane,
    )
    # five outages (drop, refused retries, rapid closes, stall, long refusal), one ending in error
    assert counts["reconnecting"] >= 5, counts
    assert counts["error"] >= 1, counts
    assert counts["retries"] >= 5, counts
    assert counts["gaps"] >= 5, counts
    assert counts["open"] == 1, counts
    timeline = page.locator(f"{OUTPUT} .hl-timeline").first
    timeline.scroll_into_view_if_needed()
    timeline.screenshot(path=artifacts / "notebook-03_timeline.png")
    run_from(page, cleanup, "notebook:run-all-below")
    wait_cells_ran(page, 120)
