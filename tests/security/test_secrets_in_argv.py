"""No secret on a command line: another local user reads every process's argv, never its environment.

The attack: ``/proc/<pid>/cmdline`` is world-readable, so the Jupyter token that ``harmony-lab lab``
passed as ``--ServerApp.token=…`` and the key ``harmony-lab record --key …`` took were public on a
shared machine. Both now travel in the child's environment, which ``/proc/<pid>/environ`` shows only
to the process's own user. The stranger here is a process switched to an unused uid reading /proc.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harmony_lab.demo._lab import LabProcess
from tests.polling import eventually
from tests.server.rt_helpers import ANON

ROOT = Path(__file__).resolve().parents[2]


def argv_holding(secret: str) -> list[tuple[int, str]]:
    """(pid, argument) for every argument of every process on the machine that contains ``secret``."""
    assert len(secret) >= 16, "a real secret, so that finding none means something"
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        found += [(p.info["pid"], arg) for arg in p.info["cmdline"] or [] if secret in arg]
    return found


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def read_as(uid: int, path: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["/bin/cat", path], env={"PATH": "/usr/bin:/bin"}, capture_output=True, timeout=10,
        user=uid, group=uid, extra_groups=[], cwd="/",
    )  # fmt: skip


def assert_hidden_from(uid: int, pid: int, secret: str) -> None:
    """A stranger reads the process's argv (it is public) without the secret, and not its environment."""
    argv = read_as(uid, f"/proc/{pid}/cmdline")
    assert argv.returncode == 0, argv.stderr  # the channel the attack used is open to everyone...
    assert argv.stdout, "no command line read"
    assert secret.encode() not in argv.stdout  # ...and carries nothing secret
    env = read_as(uid, f"/proc/{pid}/environ")
    assert env.returncode != 0, "a stranger read the environment"
    assert b"Permission denied" in env.stderr, env.stderr
    assert secret.encode() not in env.stdout


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabProcess]:
    (tmp_path / "nb").mkdir()
    with (tmp_path / "lab.log").open("w") as log:
        lab = LabProcess.launch(
            root_dir=tmp_path / "nb", env={}, port=0, settings_dir=tmp_path / "settings", log=log
        )
        try:
            yield lab
        finally:
            stop(lab.proc)


@pytest.mark.timeout(60)
def test_jupyterlab_gets_its_token_through_its_environment(lab: LabProcess, other_uid: int) -> None:
    # Lab's own process is checked as it starts; the full lab run (Lab, stack, kernel: every process's
    # argv while the quickstart runs, and the token accepted by Lab) is tests/demo/test_demo_cli.py
    assert len(lab.token) >= 32
    assert psutil.Process(lab.proc.pid).cmdline()[1:3] == ["-m", "jupyterlab"]
    assert environ_of(lab.proc.pid)["JUPYTER_TOKEN"] == lab.token
    assert argv_holding(lab.token) == []
    assert_hidden_from(other_uid, lab.proc.pid, lab.token)


@pytest.mark.timeout(60)
async def test_record_reads_its_key_from_the_environment(server, tmp_path: Path, other_uid: int) -> None:
    env = {**os.environ, "SUPABASE_ANON_KEY": ANON, "SUPABASE_URL": f"http://127.0.0.1:{server.port}"}
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env.pop("SUPABASE_KEY", None)
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "harmony_lab.cli", "record", "--table", "messages", "--out",
         str(tmp_path / "rec"), "--duration", "30"],
        env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        # the server accepts a socket only with a valid key: the one from the environment was used
        await eventually(lambda: server.stats["joins"] >= 1, 30, what="record joined with its key")
        assert proc.poll() is None, "record stopped early"
        assert argv_holding(ANON) == []
        await asyncio.to_thread(assert_hidden_from, other_uid, proc.pid, ANON)
    finally:
        await asyncio.to_thread(stop, proc)
        assert proc.stderr is not None
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        print(err)  # shown when the test fails
    assert "--key" not in err, err  # no warning: nothing was given on the command line
