"""``harmony-lab stack``: the embedded stack plus demo traffic in the foreground, for Binder and scripts.

Once the stack is up it writes its environment (``export HARMONY_LAB_…=…`` lines) to ``--env-file``
atomically, so a shell can wait for the file and ``source`` it. It runs until SIGINT/SIGTERM, or until
the process given with ``--parent-pid`` exits (Binder's ``start`` passes its own pid, which becomes the
notebook server's after ``exec``), then stops the simulator and the stack.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TextIO

__all__ = ["run_stack"]

logger = logging.getLogger(__name__)


def _parent_alive(pid: int, created: float | None) -> bool:
    import psutil

    try:
        proc = psutil.Process(pid)
        if created is not None and abs(proc.create_time() - created) > 0.01:
            return False  # the pid was reused by another process
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run_stack(
    *,
    env_file: Path | None,
    parent_pid: int | None,
    rate: float,
    users: int,
    seed: int | None,
    traffic: bool,
    out: TextIO = sys.stdout,
) -> int:
    import psutil

    from harmony_lab._lifetime import stop_signals
    from harmony_lab.demo._background import DemoStack, write_env_file

    created = None
    if parent_pid is not None:
        try:
            created = psutil.Process(parent_pid).create_time()
        except psutil.NoSuchProcess:
            out.write(f"harmony-lab stack: --parent-pid {parent_pid} is not running\n")
            return 2
    with stop_signals() as stop:
        demo = DemoStack(rate=rate, users=users, seed=seed, traffic=traffic)
        try:
            demo.start()
            env = demo.env()
            if env_file is not None:
                write_env_file(env_file, env)
            out.write(f"harmony-lab stack: running at {demo.rt.url}\n")
            for key, value in sorted(env.items()):
                if env_file is None or key in ("HARMONY_LAB_URL", "HARMONY_LAB_TRAFFIC"):
                    out.write(f"  {key}={value}\n")
            if env_file is not None:
                out.write(f"  environment written to {env_file}\n")
            out.flush()
            while not stop.wait(1.0):
                if parent_pid is not None and not _parent_alive(parent_pid, created):
                    logger.info("parent process %d is gone; stopping", parent_pid)
                    break
            return 0
        finally:
            if env_file is not None:
                Path(env_file).unlink(missing_ok=True)
            demo.stop()
            out.write("harmony-lab stack: stopped\n")
            out.flush()
