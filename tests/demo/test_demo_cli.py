"""``harmony-lab lab``, ``demo`` and ``stack`` as real subprocesses: they start, serve, and stop cleanly."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.demo.demo_jupyter_kernel import KernelSession

ROOT = Path(__file__).resolve().parents[2]


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARMONY_LAB_")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONUNBUFFERED="1", JUPYTER_PLATFORM_DIRS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def assert_all_gone(procs: list[psutil.Process], timeout: float = 20.0) -> None:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    assert not alive, f"left running: {[(p.pid, p.name()) for p in alive]}"


class Lines:
    """Collects a subprocess's stdout lines on a thread; wait for a line matching a pattern."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._done = False
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                with self._cond:
                    self.lines.append(line.rstrip("\n"))
                    self._cond.notify_all()
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        checked = 0
        with self._cond:
            while True:
                for line in self.lines[checked:]:
                    m = rx.search(line)
                    if m:
                        return m
                checked = len(self.lines)
                remaining = deadline - time.monotonic()
                if self._done or remaining <= 0:
                    break
                self._cond.wait(remaining)
        raise AssertionError(f"no line matching {pattern!r} (exit={self.proc.poll()}):\n{self.text()}")

    def finish(self, timeout: float) -> str:
        self.proc.wait(timeout)
        with self._cond:
            self._cond.wait_for(lambda: self._done, timeout)
        return self.text()

    def text(self) -> str:
        return "\n".join(self.lines[-80:])


def test_demo_prints_a_live_summary_and_exits(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "harmony_lab.cli", "demo", "--duration", "6", "--rate", "25", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=cli_env(tmp_path),
    )
    lines = Lines(proc)
    lines.wait_for(r"^  messages\s+[\d.]+\s+[1-9]\d*$", 90)
    kids = descendants(proc.pid)
    assert kids, "the embedded Postgres should be a child process"
    lines.finish(60)
    text = "\n".join(lines.lines)
    assert proc.returncode == 0, text
    assert "harmony: connected" in text
    assert "presence:lobby: connected" in text
    totals = dict(re.findall(r"^  (\w+)\s+[\d.]+\s+(\d+)$", text, re.M))
    for table in ("messages", "typing_indicators", "notifications", "message_reactions"):
        assert int(totals[table]) > 0, (table, text)
    online = [int(n) for n in re.findall(r"presence: online (\d+)", text)]
    assert max(online) > 0
    assert "harmony-lab demo: stopped." in text
    assert_all_gone(kids)


def test_stack_writes_its_environment_and_follows_its_parent(tmp_path):
    parent = subprocess.Popen(["sleep", "300"])
    env_file = tmp_path / "state" / "stack.env"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harmony_lab.cli", "stack", "--env-file", str(env_file), "--parent-pid",
         str(parent.pid), "--rate", "10", "--users", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env(tmp_path),
    )  # fmt: skip
    lines = Lines(proc)
    try:
        lines.wait_for(r"environment written to", 90)
        values = dict(re.findall(r"^export (\w+)=(.*)$", env_file.read_text(), re.M))
        assert set(values) == {
            "HARMONY_LAB_URL", "HARMONY_LAB_ANON_KEY", "HARMONY_LAB_SERVICE_ROLE_KEY", "HARMONY_LAB_DSN",
            "HARMONY_LAB_JWT_SECRET", "HARMONY_LAB_TRAFFIC",
        }  # fmt: skip
        assert values["HARMONY_LAB_TRAFFIC"] == "10"
        # the stack answers
        url = values["HARMONY_LAB_URL"].strip("'")
        with urllib.request.urlopen(url + "/", timeout=10) as resp:
            assert resp.status < 500
        kids = descendants(proc.pid)
    finally:
        parent.kill()
        parent.wait()
    out = lines.finish(60)  # it notices its parent is gone and stops by itself
    assert proc.returncode == 0, out
    assert "harmony-lab stack: stopped" in out
    assert not env_file.exists()
    assert_all_gone(kids)


def secrets_in_argv(secrets: list[str]) -> list[tuple[int, str]]:
    """(pid, argument) for every process argument, of any process on the machine, holding a secret.

    ``/proc/<pid>/cmdline`` is readable by every local user, so a secret passed as an argument is
    public on a shared machine.
    """
    wanted = [s for s in secrets if s and len(s) >= 8]
    assert len(wanted) == len(secrets), "every secret checked must be a real one"
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        for arg in p.info["cmdline"] or []:
            if any(s in arg for s in wanted):
                found.append((p.info["pid"], arg))
    return found


@pytest.mark.slow
def test_lab_serves_jupyterlab_and_the_quickstart_runs_in_its_kernel(tmp_path):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harmony_lab.cli", "lab", "--no-browser", "--notebooks", str(notebooks),
         "--rate", "5", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env(tmp_path),
        start_new_session=True,
    )  # fmt: skip
    lines = Lines(proc)
    kids: list[psutil.Process] = []
    secrets: list[str] = []
    try:
        m = lines.wait_for(r"(http://127\.0\.0\.1:\d+)/lab/tree/01_quickstart\.ipynb\?token=(\w+)", 180)
        base, token = m.group(1), m.group(2)
        with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=10) as resp:
            assert resp.status == 200
            assert "started" in json.loads(resp.read())
        nb = json.loads((notebooks / "01_quickstart.ipynb").read_text())
        cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
        cells.insert(
            1, "from harmony_lab.demo._stack import RemoteStack\nassert isinstance(rt, RemoteStack), rt"
        )
        cells.insert(2, "assert type(sim).__name__ == 'BackgroundTraffic', sim")
        import asyncio

        async def run_cells() -> list[str]:
            outputs = []
            async with KernelSession(base, token, "01_quickstart.ipynb") as kernel:
                for code in cells:
                    r = await kernel.execute(code, timeout=120)
                    assert r.status == "ok", f"{code}\n--> {r.error}\n{r.stderr}"
                    outputs.append("\n".join(r.results))
                kids.extend(descendants(proc.pid))  # kernel included, while it runs
                r = await kernel.execute(
                    "import urllib.parse\n"
                    "[rt.service_role_key, rt.jwt_secret, urllib.parse.urlsplit(rt.dsn).password]",
                    timeout=30,
                )
                secrets.extend(ast.literal_eval(r.results[0]))
                # while Lab, the stack, Postgres and the kernel all run: no secret in anyone's argv
                exposed = secrets_in_argv([token, *secrets])
                assert exposed == [], exposed
            return outputs

        outputs = asyncio.run(run_cells())
        assert "RemoteStack" in outputs[0]
        assert "content" in outputs[-2]  # the DataFrame of messages
        assert not (notebooks / "01_quickstart.ipynb").read_text().count('"output_type"')  # not saved
    finally:
        kids.extend(p for p in descendants(proc.pid) if p not in kids)
        proc.send_signal(signal.SIGTERM)
        try:
            text = lines.finish(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, text
    assert "harmony-lab: stopped." in text
    assert len(kids) >= 3, kids  # postgres (+ its workers), Lab, the kernel
    assert_all_gone(kids)
