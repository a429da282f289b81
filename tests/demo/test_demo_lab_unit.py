"""harmony-lab lab without starting anything: notebook discovery, the copy, the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmony_lab.demo import _lab

ROOT = Path(__file__).resolve().parents[2]


def test_the_checkout_notebooks_are_served_by_default():
    assert _lab.find_notebooks(None) == ROOT / "notebooks"


def test_explicit_folder_wins_and_must_exist(tmp_path):
    assert _lab.find_notebooks(tmp_path) == tmp_path.resolve()
    with pytest.raises(FileNotFoundError, match="no such folder"):
        _lab.find_notebooks(tmp_path / "missing")


def test_installed_from_a_wheel_copies_the_shipped_notebooks_once(tmp_path, monkeypatch):
    shipped = tmp_path / "pkg" / "notebooks"
    shipped.mkdir(parents=True)
    for name in ("01_quickstart.ipynb", "02_presence_and_typing.ipynb"):
        (shipped / name).write_text(f'{{"name": "{name}"}}')
    monkeypatch.setattr(_lab, "_repo_notebooks", lambda: None)
    monkeypatch.setattr(_lab, "_shipped_notebooks", lambda: shipped)
    target = tmp_path / "work"
    assert _lab.find_notebooks(None, copy_to=target) == target.resolve()
    assert sorted(p.name for p in target.iterdir()) == ["01_quickstart.ipynb", "02_presence_and_typing.ipynb"]
    (target / "01_quickstart.ipynb").write_text("my edits")
    _lab.find_notebooks(None, copy_to=target)
    assert (target / "01_quickstart.ipynb").read_text() == "my edits"  # never overwritten

    monkeypatch.setattr(_lab, "_shipped_notebooks", lambda: None)
    with pytest.raises(FileNotFoundError, match="--notebooks DIR"):
        _lab.find_notebooks(None)


def test_lab_command_is_offline_quiet_and_local(tmp_path):
    cmd = _lab.lab_command(
        port=9999, root_dir=tmp_path, settings_dir=tmp_path / "s", open_browser=False,
        default_url="/lab/tree/01_quickstart.ipynb", extra=["--LabApp.expose_app_in_browser=True"],
    )  # fmt: skip
    assert cmd[1:3] == ["-m", "jupyterlab"]
    for flag in (
        "--ip=127.0.0.1",
        "--port=9999",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={tmp_path}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        "--ServerApp.open_browser=False",
        "--ServerApp.default_url=/lab/tree/01_quickstart.ipynb",
        "--LabApp.expose_app_in_browser=True",
    ):
        assert flag in cmd, flag
    assert not any("token" in arg.lower() for arg in cmd)  # the token travels in the environment


def test_free_port_prefers_the_requested_one():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        busy = s.getsockname()[1]
        assert _lab.free_port(busy) != busy
    port = _lab.free_port(None)
    assert 0 < port < 65536


def test_the_terminal_gets_one_line_per_notable_event_and_the_log_file_gets_everything(tmp_path):
    import io
    import logging

    root = logging.getLogger()
    terminal = io.StringIO()
    handler = logging.StreamHandler(terminal)  # what logging.basicConfig gives the command line
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    log = tmp_path / "state" / "harmony-lab.log"
    try:
        with _lab._quiet_terminal(log):
            logging.getLogger("realtime._async.client").error("Connection closed: lost")
            logging.getLogger("websockets.client").error("connection lost")
            logging.getLogger("harmony_lab.demo._presence").warning("presence of bob: track failed")
            logging.getLogger("harmony_lab.demo._simulator").error("simulator stopped by an unexpected error")
            logging.getLogger("harmony_lab.demo._lab").warning("JupyterLab did not exit; killing it")
            logging.getLogger("harmony_lab.demo._background").info("demo stack running")
        logging.getLogger("realtime._async.client").error("after: back on the terminal")
        restored = (root.level, handler.level, handler.filters)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert terminal.getvalue().splitlines() == [
        "simulator stopped by an unexpected error",
        "JupyterLab did not exit; killing it",
        "after: back on the terminal",
    ]
    written = log.read_text()
    for text in ("Connection closed: lost", "track failed", "killing it", "demo stack running"):
        assert text in written
    assert "after:" not in written
    assert restored == (logging.WARNING, logging.NOTSET, [])
