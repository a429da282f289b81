"""The newcomer's path, timed: from starting the lab to the first live row in the browser, and Run All
per notebook, in JupyterLab under Debian's Chromium.

What is timed is ``bash dev.sh lab`` on a warm environment: dev.sh checks its stamp file and execs
``harmony-lab lab``. The environment is this Python's (``HARMONY_LAB_VENV`` points dev.sh at a folder
whose ``bin/python`` and ``bin/harmony-lab`` are this environment's, with a current stamp), so dev.sh
never reinstalls into it. Baseline, in the same run: JupyterLab alone (``python -m jupyterlab``, no
stack, no traffic) until its API answers.

    python bench/userpath.py            # 01-05 after the first row
    python bench/userpath.py --quick    # only the time to the first live row
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _table import parse_quick, print_table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser.userpath_driver import (  # noqa: E402
    USER_PATH,
    first_live_row,
    lab_environment,
    open_notebook,
    run_all,
    running_lab,
    shutdown_kernel,
)
from tests.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402


def _jupyterlab_alone(workdir: Path) -> float:
    port = _free_port()
    token = secrets.token_hex(16)
    env = {**lab_environment(workdir), "JUPYTER_TOKEN": token}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
         f"--port={port}", f"--ServerApp.root_dir={workdir}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while time.monotonic() - started < 120:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2):
                    return time.monotonic() - started
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("JupyterLab did not answer in 120 s")
    finally:
        proc.terminate()
        proc.wait(30)


def _warm_venv(folder: Path) -> Path:
    """A folder dev.sh takes for a warm environment: this Python's ``python`` and ``harmony-lab``, and a
    stamp saying the ``lab`` extra is installed for the current pyproject.toml."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True)
    here = Path(sys.executable).parent
    for name in ("python", "harmony-lab"):
        (bin_dir / name).symlink_to(here / name)
    cksum = subprocess.run(
        ["cksum"], input=(ROOT / "pyproject.toml").read_bytes(), capture_output=True, check=True
    ).stdout.decode()
    (folder / ".harmony-lab-installed").write_text(f"lab {cksum}")
    return folder


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    quick = parse_quick(__doc__, argv)
    from playwright.sync_api import sync_playwright

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = _jupyterlab_alone(Path(tmp))
        rows.append(
            {"metric": "JupyterLab alone: start to API answering (baseline)", "value": base, "unit": "s"}
        )
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                workdir = Path(tmp) / "lab"
                workdir.mkdir()
                dev_sh = ["bash", str(ROOT / "dev.sh"), "lab"]
                venv = {"HARMONY_LAB_VENV": str(_warm_venv(Path(tmp) / "venv"))}
                with running_lab(workdir, command=dev_sh, env=venv) as lab:
                    up = lab.ready_at - lab.started
                    rows.append({"metric": "bash dev.sh lab: start to URL printed", "value": up, "unit": "s"})
                    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                    page.set_default_timeout(120_000)
                    page.context.route(re.compile(r"^https?://(?!127\.0\.0\.1)"), lambda r: r.abort())
                    for i, name in enumerate(USER_PATH[:1] if quick else USER_PATH):
                        open_notebook(page, lab, name, f"bench-{i}")
                        started = time.monotonic()
                        if i == 0:
                            page.evaluate(
                                "() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }"
                            )
                            first_live_row(page, 180_000)
                            rows.append({
                                "metric": "bash dev.sh lab: start to the first live row in the browser",
                                "value": time.monotonic() - lab.started, "unit": "s",
                            })  # fmt: skip
                        answers = [""] if name.startswith("05") else []
                        run_all(page, timeout_s=400, answers=answers, start=i != 0)
                        rows.append(
                            {"metric": f"Run All {name}", "value": time.monotonic() - started, "unit": "s"}
                        )
                        shutdown_kernel(page)
            finally:
                browser.close()
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
