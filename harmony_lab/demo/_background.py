"""The embedded stack plus demo traffic, running on background threads of a CLI process.

Used by ``harmony-lab lab``, ``harmony-lab demo`` and ``harmony-lab stack`` (Binder). The stack runs on
``LocalRealtime``'s own thread, the simulator on its own event loop thread; the main thread stays free
for JupyterLab's subprocess, signal handling or the terminal summary.
"""

from __future__ import annotations

import logging
import os
import shlex
import tempfile
from pathlib import Path
from typing import Any

from harmony_lab.demo._env import ENV_SECRET, ENV_TRAFFIC, NOTEBOOK_USER

__all__ = ["NOTEBOOK_USER", "DemoStack", "write_env_file"]

logger = logging.getLogger(__name__)


class DemoStack:
    """``LocalRealtime`` + ``Simulator`` in this process, started and stopped as one."""

    def __init__(
        self, *, rate: float = 2.0, users: int = 12, seed: int | None = None, traffic: bool = True
    ) -> None:
        if traffic and not rate > 0:
            raise ValueError(f"--rate must be a positive number of actions per second; got {rate!r}")
        self.rate = rate
        self.users = users
        self.seed = seed
        self.traffic = traffic
        self.rt: Any = None
        self.sim: Any = None

    def start(self) -> DemoStack:
        from harmony_lab.demo._simulator import Simulator
        from harmony_lab.local import LocalRealtime

        self.rt = LocalRealtime().start()
        try:
            if self.traffic:
                self.sim = Simulator(
                    self.rt, users=self.users, rate=self.rate, seed=self.seed, exclude=(NOTEBOOK_USER,)
                ).start_in_thread()
        except BaseException:
            self.rt.stop()
            raise
        logger.info("demo stack running at %s (traffic: %s)", self.rt.url, self.sim)
        return self

    def env(self) -> dict[str, str]:
        """``HARMONY_LAB_*`` for child processes (URL, keys, DSN, JWT secret, traffic flag)."""
        env = dict(self.rt.env())
        secret = getattr(self.rt, "jwt_secret", None)
        if secret:
            env[ENV_SECRET] = secret
        if self.sim is not None:
            env[ENV_TRAFFIC] = f"{self.rate:g}"
        return env

    def stop(self) -> None:
        errors: list[BaseException] = []
        if self.sim is not None:
            try:
                self.sim.stop_in_thread()
            except BaseException as exc:
                logger.exception("stopping the simulator failed")
                errors.append(exc)
            self.sim = None
        if self.rt is not None:
            try:
                self.rt.stop()
            except BaseException as exc:
                logger.exception("stopping the stack failed")
                errors.append(exc)
            self.rt = None
        if errors:
            raise errors[0]

    def __enter__(self) -> DemoStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_env_file(path: Path, env: dict[str, str]) -> None:
    """Write ``export KEY='value'`` lines atomically (readers never see a partial file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in sorted(env.items()))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".env-", text=True)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
