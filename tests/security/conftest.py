"""Fixtures shared by the security tests: the server fixtures of tests/server and helpers for attacks.

The attacks run against real components (Postgres, the server, real clients). Helpers here are small
and generic so each finding's test file stays self-contained.
"""

from __future__ import annotations

import os
import pwd

import pytest

from tests.server.rt_helpers import make_server, raw, server

__all__ = ["make_server", "other_uid", "raw", "server"]


def _unused_uid() -> int:
    """A uid with no passwd entry and no running process: a stranger on the same machine."""
    taken = {p.pw_uid for p in pwd.getpwall()}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                taken.add(os.stat(f"/proc/{pid}").st_uid)
            except OSError:
                continue
    for uid in range(45000, 46000):
        if uid not in taken:
            return uid
    raise RuntimeError("no unused uid in 45000-45999")


@pytest.fixture
def other_uid() -> int:
    """An unused uid a subprocess can switch to (``preexec_fn=lambda: os.setuid(uid)``); needs root."""
    if os.geteuid() != 0:
        pytest.skip("switching to another uid needs root")
    return _unused_uid()
