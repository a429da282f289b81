"""``harmony-lab lab``: the embedded stack + demo traffic + JupyterLab on the notebooks.

JupyterLab runs as a child process (``python -m jupyterlab``) in its own session, so a Ctrl-C in the
terminal reaches only us: we then stop Lab with SIGTERM (it shuts its kernels down), the simulator
and the stack, in that order. The child gets ``HARMONY_LAB_*`` in its environment, so
``harmony_lab.demo.stack()`` in a notebook finds the running stack instead of starting another.
The flags keep Lab offline-quiet (no news, no update check, read-only extension manager) and its
settings and workspaces in harmony-lab's own folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final, TextIO

from harmony_lab._lifetime import stop_signals

__all__ = ["LabProcess", "find_notebooks", "lab_command", "state_dir"]

logger = logging.getLogger(__name__)

FIRST_NOTEBOOK: Final = "01_quickstart.ipynb"
_NOTIFICATION_SETTINGS: Final = {"fetchNews": "false", "checkForUpdates": False}


def state_dir() -> Path:
    """Where harmony-lab keeps Lab settings, workspaces and logs (``$XDG_CACHE_HOME/harmony-lab``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "harmony-lab"


def _repo_notebooks() -> Path | None:
    """``notebooks/`` of the checkout this package was imported from (editable installs), if any."""
    pkg = Path(__file__).resolve().parent.parent  # harmony_lab/
    candidate = pkg.parent / "notebooks"
    if candidate.is_dir() and (candidate / FIRST_NOTEBOOK).is_file():
        return candidate
    return None


def _shipped_notebooks() -> Any:
    """The notebooks inside the installed package (``harmony_lab/demo/notebooks``), if shipped."""
    try:
        folder = resources.files("harmony_lab.demo").joinpath("notebooks")
    except ModuleNotFoundError:  # pragma: no cover - the package itself is missing
        return None
    return folder if folder.is_dir() and folder.joinpath(FIRST_NOTEBOOK).is_file() else None


def find_notebooks(explicit: str | os.PathLike[str] | None, *, copy_to: Path | None = None) -> Path:
    """The folder Lab should serve.

    ``explicit`` wins. Else the checkout's ``notebooks/``. Else (installed from a wheel) the notebooks
    shipped in the package are copied into ``copy_to`` (default ``./harmony-lab-notebooks``) — files
    that already exist there are kept, so your edits survive.
    """
    if explicit is not None:
        path = Path(explicit).expanduser().resolve()
        if not path.is_dir():
            raise FileNotFoundError(f"--notebooks {explicit}: no such folder")
        return path
    repo = _repo_notebooks()
    if repo is not None:
        return repo
    shipped = _shipped_notebooks()
    if shipped is None:
        raise FileNotFoundError(
            "no notebooks found: run from a harmony_lab checkout (it has notebooks/), or pass --notebooks DIR"
        )
    target = (copy_to or Path.cwd() / "harmony-lab-notebooks").resolve()
    target.mkdir(parents=True, exist_ok=True)
    for entry in shipped.iterdir():
        if entry.name.endswith(".ipynb") and not (target / entry.name).exists():
            (target / entry.name).write_bytes(entry.read_bytes())
    logger.info("copied the shipped notebooks to %s", target)
    return target


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """``preferred`` when it can be bound, else a free ephemeral port."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free TCP port")  # pragma: no cover


def lab_command(
    *,
    port: int,
    root_dir: Path,
    settings_dir: Path,
    open_browser: bool,
    ip: str = "127.0.0.1",
    default_url: str | None = None,
    python: str = sys.executable,
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``python -m jupyterlab`` command line, offline-safe: no news, no update checks, no browser.

    It holds no secret: the server's token goes in the child's environment (``JUPYTER_TOKEN``), which
    only its own user can read, never on the command line, which every local user can read in
    ``/proc/<pid>/cmdline``.
    """
    cmd = [
        python,
        "-m",
        "jupyterlab",
        f"--ip={ip}",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root_dir}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        f"--LabApp.user_settings_dir={settings_dir / 'user-settings'}",
        f"--LabApp.workspaces_dir={settings_dir / 'workspaces'}",
        "--ServerApp.open_browser=False",  # we open it ourselves once the server answers
    ]
    if default_url:
        cmd.append(f"--ServerApp.default_url={default_url}")
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    cmd += list(extra)
    del open_browser  # kept in the signature for callers; opening happens in LabProcess
    return cmd


def _write_settings(settings_dir: Path) -> None:
    target = settings_dir / "user-settings" / "@jupyterlab" / "apputils-extension"
    target.mkdir(parents=True, exist_ok=True)
    path = target / "notification.jupyterlab-settings"
    if not path.exists():
        path.write_text(json.dumps(_NOTIFICATION_SETTINGS))
    (settings_dir / "workspaces").mkdir(parents=True, exist_ok=True)


@dataclass
class LabProcess:
    """A running JupyterLab child process."""

    proc: subprocess.Popen[bytes]
    url: str
    token: str
    root_dir: Path
    log_path: Path

    @property
    def lab_url(self) -> str:
        return f"{self.url}/lab/tree/{FIRST_NOTEBOOK}?token={self.token}"

    @classmethod
    def launch(
        cls,
        *,
        root_dir: Path,
        env: dict[str, str],
        port: int | None = None,
        ip: str = "127.0.0.1",
        settings_dir: Path | None = None,
        log: TextIO | None = None,
        extra: Sequence[str] = (),
    ) -> LabProcess:
        settings_dir = settings_dir or state_dir() / "lab"
        _write_settings(settings_dir)
        port = free_port(8888, ip) if port is None else (port or free_port(None, ip))
        token = secrets.token_hex(16)
        default_url = f"/lab/tree/{FIRST_NOTEBOOK}" if (root_dir / FIRST_NOTEBOOK).exists() else None
        cmd = lab_command(
            port=port,
            root_dir=root_dir,
            settings_dir=settings_dir,
            open_browser=False,
            ip=ip,
            default_url=default_url,
            extra=extra,
        )
        log_path = settings_dir / "lab.log"
        child_env = {**os.environ, "JUPYTER_PLATFORM_DIRS": "1", **env, "JUPYTER_TOKEN": token}
        out: Any = log if log is not None else open(log_path, "wb")  # noqa: SIM115 - owned by the child
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=root_dir,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # terminal Ctrl-C reaches us, not Lab (no "Shutdown? y/n")
            )
        finally:
            if log is None:
                out.close()
        host = ip if ip not in ("0.0.0.0", "::") else "127.0.0.1"
        return cls(proc, f"http://{host}:{port}", token, root_dir, log_path)

    def wait_ready(self, timeout: float = 120.0, stop: threading.Event | None = None) -> None:
        """Poll ``/api/status`` until Lab answers; raise with the log tail if it exits or times out."""
        deadline = time.monotonic() + timeout
        status_url = f"{self.url}/api/status?token={self.token}"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.proc.returncode}:\n{self.log_tail()}")
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt
            try:
                with urllib.request.urlopen(status_url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise TimeoutError(f"JupyterLab did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (Lab shuts its kernels down), then SIGKILL to the whole session if it lingers."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("JupyterLab did not exit within %.0f s; killing it", timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


_TERMINAL_QUIET: Final = ("harmony_lab.demo._presence", "harmony_lab.demo._simulator")
"""Loggers whose warnings (one per simulated user per outage) go to the log file only; errors still show."""


class _TerminalFilter(logging.Filter):
    """What the terminal shows: harmony_lab's warnings and errors, one line per notable event.

    realtime-py and websockets log every lost connection of every simulated user (dozens of lines per
    outage, each an ERROR); those, and the demo traffic's per-user warnings, go to the log file only.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("harmony_lab"):
            return record.levelno >= logging.CRITICAL
        if record.name.startswith(_TERMINAL_QUIET):
            return record.levelno >= logging.ERROR
        return True


@contextlib.contextmanager
def _quiet_terminal(log_path: Path) -> Iterator[None]:
    """Send every record at INFO and above to ``log_path``; filter the terminal's handlers.

    The terminal's handlers (plain stream handlers on the root logger, as the command line sets them
    up) keep the level the root logger had and get :class:`_TerminalFilter`; they are restored after.
    """
    root = logging.getLogger()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(log_path, encoding="utf-8")
    file_handler.setLevel(logging.INFO)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    terminal = [h for h in root.handlers if type(h) is logging.StreamHandler]
    old_root_level = root.level
    old_levels = [h.level for h in terminal]
    quiet = _TerminalFilter()
    for h in terminal:
        h.setLevel(max(h.level, old_root_level))
        h.addFilter(quiet)
    root.addHandler(file_handler)
    root.setLevel(min(old_root_level, logging.INFO) if old_root_level else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(file_handler)
        file_handler.close()
        root.setLevel(old_root_level)
        for h, level in zip(terminal, old_levels, strict=True):
            h.removeFilter(quiet)
            h.setLevel(level)


def run_lab(
    *,
    port: int | None,
    open_browser: bool,
    notebooks: str | None,
    rate: float,
    users: int,
    seed: int | None,
    ip: str = "127.0.0.1",
    out: TextIO = sys.stdout,
    extra: Sequence[str] = (),
) -> int:
    from harmony_lab.demo._background import DemoStack

    if not _have_jupyterlab():
        raise RuntimeError(
            "JupyterLab is not installed in this environment: pip install 'harmony-lab[lab]' "
            "(or run `bash dev.sh lab` in a checkout, which creates the environment)"
        )
    root = find_notebooks(notebooks)
    stack_log = state_dir() / "lab" / "harmony-lab.log"
    with stop_signals() as stop, _quiet_terminal(stack_log):
        demo = DemoStack(rate=rate, users=users, seed=seed)
        lab: LabProcess | None = None
        try:
            demo.start()
            if stop.is_set():
                return 0
            lab = LabProcess.launch(root_dir=root, env=demo.env(), port=port, ip=ip, extra=extra)
            lab.wait_ready(stop=stop)
            out.write(
                f"harmony-lab: embedded Realtime at {demo.rt.url} with demo traffic ({rate:g} actions/s)\n"
                f"harmony-lab: JupyterLab serving {root}\n"
                f"    {lab.lab_url}\n"
                f"    (logs: {lab.log_path}, {stack_log})  Press Ctrl-C to stop.\n"
            )
            out.flush()
            if open_browser:
                webbrowser.open(lab.lab_url)
            while not stop.wait(0.5):
                if lab.proc.poll() is not None:
                    out.write(f"harmony-lab: JupyterLab exited ({lab.proc.returncode}):\n{lab.log_tail()}\n")
                    return lab.proc.returncode or 1
            return 0
        except KeyboardInterrupt:
            return 0
        finally:
            _say(out, "harmony-lab: stopping JupyterLab, the simulator and the stack…\n")
            try:
                if lab is not None:
                    lab.stop()
            finally:
                demo.stop()
            _say(out, "harmony-lab: stopped.\n")


def _say(out: TextIO, text: str) -> None:
    """Write to the terminal while shutting down; a terminal that has gone away must not stop the
    shutdown (JupyterLab, its kernels and the stack would be left running)."""
    try:
        out.write(text)
        out.flush()
    except OSError as exc:  # BrokenPipeError: whoever read our output has exited
        logger.info("the terminal is gone (%s); shutting down anyway", exc)


def _have_jupyterlab() -> bool:
    import importlib.util

    return importlib.util.find_spec("jupyterlab") is not None
