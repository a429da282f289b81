"""Binder rehearsal: build the environment from ``binder/`` only, as a non-root user, and Run All 01-04.

What mybinder (repo2docker) does, as closely as this machine allows:

1. a fresh virtualenv (Debian's python3), ``pip install -r binder/requirements.txt`` from the repository
   root (a copy owned by the notebook user);
2. ``binder/postBuild`` (settings + the build-time self-check);
3. ``binder/start <command>`` as the notebook user: the stack and the simulator start in the
   background, ``HARMONY_LAB_*`` is exported and the command runs — here JupyterLab, as on Binder;
   after a minute of demo traffic Chromium runs notebooks 01-04 in it (Run All), and they must use
   that stack (a ``RemoteStack`` with background traffic), not start their own.

Run as root, the test creates a throwaway user (``useradd``) and removes it afterwards; otherwise it
runs as the current (already non-root) user. Needs network access to PyPI. Slow (a few minutes).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from tests.browser.conftest import free_port
from tests.browser.userpath_driver import (
    EXPECTED_LOG,
    USER_PATH,
    errors_in,
    open_notebook,
    output_text,
    promise_problems,
    run_all,
    shutdown_kernel,
    still_live,
)
from tests.conftest import ARTIFACTS, skip_or_fail
from tests.polling import eventually_sync

ROOT = Path(__file__).resolve().parents[2]
PYTHON = shutil.which("python3", path="/usr/bin:/usr/local/bin") or sys.executable

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(1800)]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@dataclass
class NotebookUser:
    name: str
    uid: int
    gid: int
    home: Path
    created: bool

    def run(
        self, cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self.created:
            kwargs = {"user": self.uid, "group": self.gid, "extra_groups": []}
        return subprocess.run(
            cmd, cwd=cwd, env=env, timeout=timeout, capture_output=True, text=True, check=False, **kwargs
        )

    def processes(self) -> list[psutil.Process]:
        mine = []
        for p in psutil.process_iter(["uids", "environ"]):
            try:
                if self.created:
                    if p.info["uids"] and p.info["uids"].real == self.uid:
                        mine.append(p)
                elif (p.info["environ"] or {}).get("HARMONY_LAB_BINDER_TEST") == self.name:
                    mine.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return mine


@pytest.fixture
def notebook_user() -> Iterator[NotebookUser]:
    # not pytest's tmp_path: its parents are private to root; the notebook user must reach this one
    base = Path(tempfile.mkdtemp(prefix="harmony-binder-"))
    base.chmod(0o755)
    home = base / "home"
    if os.geteuid() != 0:
        home.mkdir()
        try:
            yield NotebookUser(pwd.getpwuid(os.getuid()).pw_name, os.getuid(), os.getgid(), home, False)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        return
    if not shutil.which("useradd"):
        skip_or_fail("useradd is not available to create a throwaway notebook user")
    name = f"hlbinder{secrets.token_hex(3)}"
    subprocess.run(
        ["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash", name], check=True
    )
    pw = pwd.getpwnam(name)
    user = NotebookUser(name, pw.pw_uid, pw.pw_gid, home, True)
    try:
        yield user
    finally:
        for p in user.processes():  # the test asserts there are none; never leave any behind
            p.kill()
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def copy_repo(dest: Path) -> None:
    """The tracked files of the checkout (as a clone would have them), in their working-tree state."""
    files = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, files):
        src = ROOT / rel
        if not src.is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def chown_tree(path: Path, user: NotebookUser) -> None:
    if not user.created:
        return
    for dirpath, _dirs, files in os.walk(path):
        os.chown(dirpath, user.uid, user.gid)
        for f in files:
            os.chown(os.path.join(dirpath, f), user.uid, user.gid, follow_symlinks=False)


def test_binder_start_runs_notebooks_01_to_04_in_the_browser_as_the_notebook_user(notebook_user, browser):
    user = notebook_user
    repo = user.home / "repo"
    copy_repo(repo)
    chown_tree(user.home, user)
    venv = user.home / "venv"
    env = {
        "HOME": str(user.home),
        "USER": user.name,
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "JUPYTER_PLATFORM_DIRS": "1",
        "HARMONY_LAB_BINDER_TEST": user.name,
        "TMPDIR": str(user.home / "tmp"),
    }
    (user.home / "tmp").mkdir(exist_ok=True)
    chown_tree(user.home / "tmp", user)

    def step(cmd: list[str], timeout: float, cwd: Path = repo) -> str:
        started = time.monotonic()
        r = user.run(cmd, cwd=cwd, env=env, timeout=timeout)
        took = time.monotonic() - started
        assert r.returncode == 0, (
            f"{cmd} failed ({r.returncode}) after {took:.0f} s:\n{r.stdout[-4000:]}\n{r.stderr[-6000:]}"
        )
        return r.stdout + r.stderr

    step([PYTHON, "-m", "venv", str(venv)], 300)
    step([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"], 1500)
    out = step(["bash", "binder/postBuild"], 600)
    assert "self-check ok" in out
    settings = user.home / ".jupyter/lab/user-settings/@jupyterlab/apputils-extension"
    assert json.loads((settings / "notification.jupyterlab-settings").read_text())["fetchNews"] == "false"

    # binder/start runs the notebook server as the notebook user; Chromium runs 01-04 on it (Run All)
    port, token = free_port(), secrets.token_hex(16)
    lab_log = user.home / "lab.log"
    server = [
        "binder/start", "python", "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--ServerApp.root_dir={repo / 'notebooks'}",
        "--LabApp.expose_app_in_browser=True",
    ]  # fmt: skip
    kwargs: dict[str, object] = (
        {"user": user.uid, "group": user.gid, "extra_groups": []} if user.created else {}
    )
    with open(lab_log, "wb") as log:
        proc = subprocess.Popen(
            server, cwd=repo, env={**env, "JUPYTER_TOKEN": token}, stdout=log, stderr=subprocess.STDOUT,
            **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip
    lab = SimpleNamespace(base=f"http://127.0.0.1:{port}", token=token)
    try:
        deadline = time.monotonic() + 300
        while not _answers(f"{lab.base}/api/status?token={token}"):
            assert proc.poll() is None, lab_log.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, lab_log.read_text(errors="replace")[-4000:]
            time.sleep(0.5)
        ready = time.monotonic()
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        ctx.route(re.compile(r"^https?://(?!127\.0\.0\.1)"), lambda r: r.abort())
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        time.sleep(max(0.0, 60 - (time.monotonic() - ready)))  # a minute of demo traffic first, on purpose
        for name in USER_PATH[:4]:
            key = name[:2]
            open_notebook(page, lab, name, f"binder-{key}")
            try:
                state = run_all(page, timeout_s=300)
                expected = EXPECTED_LOG.get(key, ())
                problems = [p for p in errors_in(state["outputs"]) if not any(x in p for x in expected)]
                assert problems == [], f"{name} on Binder: {problems}"
                text = output_text(state["outputs"])
                assert promise_problems(key, text) == [], f"{name} on Binder:\n{text[-3000:]}"
                still_live(page, key)  # 01's table, 02's roster, 03's timeline change within 10 s
            except BaseException:
                page.screenshot(path=ARTIFACTS / f"binder-{key}-failure.png", full_page=True)
                raise
            finally:
                shutdown_kernel(page)
        ctx.close()
    finally:
        proc.terminate()  # SIGTERM: the server (binder/start exec'd it) shuts its kernels down
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(lab_log, ARTIFACTS / "binder-lab.log")
    assert "binder/start: harmony-lab stack running" in lab_log.read_text(errors="replace")

    # the stack follows the command: once it has exited, nothing of the user's is left running
    eventually_sync(
        lambda: not user.processes(),
        within=60,
        interval=0.5,
        what=f"the user's processes to end after the command exited ({user.processes()})",
    )
