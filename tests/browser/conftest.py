"""Browser fixtures: Debian's Chromium driven by Playwright (never a downloaded browser).

* ``browser`` — one headless Chromium per session, flags from shared/browser-widget-testing.md.
* ``harness`` — a page that loads the widgets' built ES modules from ``harmony_lab/widgets/static/``
  (what the wheel ships; served by request interception, no server) with a fake anywidget model,
  for the JS logic.
* ``lab`` / ``lab_page`` — a JupyterLab server on 127.0.0.1 with a temp copy of the notebooks,
  driven through ``window.jupyterapp``.

Skipped where chromium or playwright is missing, but failing when ``CI`` is set.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARTIFACTS

ROOT = Path(__file__).resolve().parents[2]
WIDGETS = ROOT / "harmony_lab" / "widgets" / "static"
HERE = Path(__file__).resolve().parent

KERNEL = "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
HARNESS = "http://harness.test/"

_HARNESS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="stylesheet" href="harmony.css"></head>
<body><div id="host" style="width: 1100px"></div>
<script type="module">
import * as table from "./live_table.js";
import * as roster from "./presence_roster.js";
import * as timeline from "./status_timeline.js";
window.mods = { arrow: { decodeStream: table.decodeStream }, table, roster, timeline };
window.b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
window.asDataView = (u8) => new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
// a fake anywidget model: get/set/on/off/send/save_changes, plus helpers for tests
window.makeModel = (state) => {
  const handlers = new Map();
  const fake = { sent: [], saves: 0, state };
  fake.model = {
    get: (k) => state[k],
    set: (k, v) => { state[k] = v; for (const f of [...(handlers.get(`change:${k}`) || [])]) f(); },
    on: (ev, f) => { if (!handlers.has(ev)) handlers.set(ev, []); handlers.get(ev).push(f); },
    off: (ev, f) => { const l = handlers.get(ev) || []; const i = l.indexOf(f); if (i >= 0) l.splice(i, 1); },
    send: (msg) => { fake.sent.push(msg); },
    save_changes: () => { fake.saves += 1; },
  };
  fake.emit = (msg, buffers) => { for (const f of [...(handlers.get("msg:custom") || [])]) f(msg, buffers); };
  fake.listeners = (ev) => (handlers.get(ev) || []).length;
  return fake;
};
window.harnessReady = true;
</script></body></html>
"""


def _new_context(browser: Any) -> Any:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    return ctx


@pytest.fixture
def harness(browser: Any) -> Iterator[Any]:
    ctx = _new_context(browser)

    def serve(route: Any) -> None:
        name = route.request.url[len(HARNESS) :].split("?")[0] or "index.html"
        if name == "index.html":
            route.fulfill(status=200, content_type="text/html", body=_HARNESS_HTML)
            return
        path = WIDGETS / name
        if not path.is_file() or path.parent != WIDGETS:
            route.fulfill(status=404, body="not found")
            return
        ctype = "text/css" if name.endswith(".css") else "text/javascript"
        route.fulfill(status=200, content_type=ctype, body=path.read_text(encoding="utf-8"))

    ctx.route(re.compile(r"^http://harness\.test/"), serve)
    ctx.route(re.compile(r"^https?://(?!harness\.test/|127\.0\.0\.1)"), lambda r: r.abort())
    page = ctx.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(HARNESS + "index.html")
    page.wait_for_function("() => window.harnessReady === true")
    page.js_errors = errors
    yield page
    ctx.close()
    assert not errors, f"uncaught errors in the page: {errors}"


# ---------------------------------------------------------------------------------------------- Lab


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, *, timeout: float, proc: subprocess.Popen[Any], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"JupyterLab did not answer {url} within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[tuple[str, str, Path]]:
    root = tmp_path_factory.mktemp("lab")
    for nb in (HERE / "notebooks").glob("*.ipynb"):
        shutil.copy(nb, root)  # Lab may autosave: never serve the repository's files
    settings = root / ".settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}'
    )
    port, token = free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(root / ".cfg"),
        JUPYTER_RUNTIME_DIR=str(root / ".rt"),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    log = root / "lab.log"
    args = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        f"--LabApp.user_settings_dir={root / '.settings'}",
        f"--LabApp.workspaces_dir={root / '.ws'}",
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            args, cwd=root, env={**env, "JUPYTER_TOKEN": token}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=90, proc=proc, log=log)
        yield f"http://127.0.0.1:{port}", token, root
    finally:
        proc.terminate()  # SIGTERM: the server shuts its kernels down too
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        artifacts = ARTIFACTS
        artifacts.mkdir(exist_ok=True)
        shutil.copy(log, artifacts / "browser-lab.log")


class LabPage:
    """One notebook (its own copy and kernel) open in its own workspace."""

    def __init__(self, page: Any, url: str, token: str, root: Path) -> None:
        self.page = page
        self.url = url
        self.token = token
        self.root = root

    def open(self, notebook: str, name: str) -> None:
        nb = f"{name}.ipynb"
        shutil.copy(self.root / notebook, self.root / nb)
        self.page.goto(f"{self.url}/lab/workspaces/{name}/tree/{nb}?token={self.token}&reset")
        self.page.wait_for_function(
            f"""() => {{ try {{ const k = {KERNEL};
            return k.connectionStatus === 'connected' && k.status === 'idle';
            }} catch {{ return false; }} }}"""
        )

    def run_all(self) -> None:
        self.page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

    def kernel(self, code: str, *, check: bool = True) -> str | None:
        """Run code in the notebook's kernel; returns the text/plain of its last expression."""
        status, out, err = self.page.evaluate(
            f"""async code => {{
            const f = {KERNEL}.requestExecute({{code, store_history: false}});
            let out = null; let err = null;
            f.onIOPub = m => {{
              if (m.header.msg_type === 'execute_result') out = m.content.data['text/plain'];
              if (m.header.msg_type === 'error') err = m.content.ename + ': ' + m.content.evalue;
            }};
            const r = await f.done; return [r.content.status, out, err]; }}""",
            code,
        )
        if check:
            assert status == "ok", f"kernel code failed: {err}\n{code}"
        return out


@pytest.fixture
def lab_page(lab: tuple[str, str, Path], browser: Any) -> Iterator[LabPage]:
    url, token, root = lab
    ctx = _new_context(browser)
    ctx.route(re.compile(r"^https?://(?!127\.0\.0\.1)"), lambda r: r.abort())
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    lp = LabPage(page, url, token, root)
    yield lp
    try:
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    finally:
        ctx.close()
