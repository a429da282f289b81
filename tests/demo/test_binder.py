"""Binder rehearsal: build the environment from ``binder/`` only, as a non-root user, and run the quickstart.

What mybinder (repo2docker) does, as closely as this machine allows:

1. a fresh virtualenv (Debian's python3), ``pip install -r binder/requirements.txt`` from the repository
   root (a copy owned by the notebook user);
2. ``binder/postBuild`` (settings + the build-time self-check);
3. ``binder/start <command>`` as the notebook user: the stack and the simulator start in the
   background, ``HARMONY_LAB_*`` is exported and the command runs — here nbclient executing
   ``notebooks/01_quickstart.ipynb``, which must use that stack (a ``RemoteStack`` with background
   traffic), not start its own.

Run as root, the test creates a throwaway user (``useradd``) and removes it afterwards; otherwise it
runs as the current (already non-root) user. Needs network access to PyPI. Slow (a few minutes).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.conftest import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
PYTHON = shutil.which("python3", path="/usr/bin:/usr/local/bin") or sys.executable

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


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


RUN_QUICKSTART = textwrap.dedent(
    """
    import json, os, shutil, sys
    import nbformat
    from nbclient import NotebookClient

    work = os.path.join(os.environ["HOME"], "run")
    shutil.copytree("notebooks", work, dirs_exist_ok=True)
    nb = nbformat.read(os.path.join(work, "01_quickstart.ipynb"), as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=180, startup_timeout=120,
                   resources={"metadata": {"path": work}}).execute()
    outputs = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            outputs.append(out.get("data", {}).get("text/plain") or out.get("text") or out.get("ename", ""))
    env = sorted(k for k in os.environ if k.startswith("HARMONY_LAB_"))
    print("RESULT " + json.dumps({"outputs": outputs, "env": env}))
    """
)


def test_binder_environment_runs_the_quickstart_as_the_notebook_user(notebook_user):
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

    out = step(["binder/start", "python", "-c", RUN_QUICKSTART], 900)
    result = json.loads(
        next(line for line in out.splitlines() if line.startswith("RESULT "))[len("RESULT ") :]
    )
    assert "HARMONY_LAB_URL" in result["env"]
    assert "HARMONY_LAB_TRAFFIC" in result["env"]
    outputs = "\n".join(result["outputs"])
    assert "RemoteStack" in outputs, outputs  # the notebook used the stack `start` runs
    assert "content" in outputs  # and showed the messages DataFrame
    assert "binder/start: harmony-lab stack running" in out

    # the stack follows the command: once it has exited, nothing of the user's is left running
    deadline = time.monotonic() + 60
    while user.processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    left = [(p.pid, p.name()) for p in user.processes()]
    assert not left, f"left running after the command exited: {left}"
