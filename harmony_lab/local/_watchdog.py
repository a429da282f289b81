"""Stops a postmaster when the Python process that started it goes away, however it goes.

Started by :class:`~harmony_lab.local.postgres.LocalPostgres` with a pipe on stdin. The parent
never writes to it; when the parent exits (cleanly, by exception, by SIGKILL) the pipe closes, the
read returns EOF, and this process stops PostgreSQL with a fast shutdown. Standard library only,
so it starts quickly and cannot fail on an import.

Usage: ``python -m harmony_lab.local._watchdog <data_dir> <delete: 0|1> [<socket_dir to delete>]``
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path


def _pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def stop(data_dir: Path) -> None:
    pid = _pid(data_dir)
    if pid is None:
        return
    for sig, wait in ((signal.SIGINT, 15.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.05)


def cleanup(data_dir: Path, delete: bool, socket_dir: Path | None) -> None:
    stop(data_dir)
    if socket_dir is not None:
        shutil.rmtree(socket_dir, ignore_errors=True)
    if delete:
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4) or argv[2] not in ("0", "1"):
        sys.stderr.write(__doc__ or "")
        return 2
    data_dir, delete = Path(argv[1]), argv[2] == "1"
    socket_dir = Path(argv[3]) if len(argv) == 4 and argv[3] else None
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the terminal is for the parent
    signal.signal(signal.SIGTERM, lambda *_: (cleanup(data_dir, delete, socket_dir), os._exit(0)))
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except OSError:
        pass
    cleanup(data_dir, delete, socket_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
