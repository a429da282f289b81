"""Fixtures of tests/server (S1's protocol tests); the helpers live in rt_helpers.py."""

from tests.server.rt_helpers import js, make_server, raw, server

__all__ = ["js", "make_server", "raw", "server"]
