"""Closers run newest first at exit and on SIGTERM, then the handler installed before ours or the default."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(60)

PRELUDE = """
import os, signal, sys, threading, time
from harmony_lab._lifetime import on_exit

def closer(name):
    def close(reason):
        print(f"closed {name} ({reason})", flush=True)
    return close
"""


def run(body: str, *, sigterm: bool) -> subprocess.CompletedProcess[str]:
    code = PRELUDE + textwrap.dedent(body)
    with subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    ) as proc:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("READY"):
                break
        if sigterm:
            proc.send_signal(signal.SIGTERM)  # generated (and handled or discarded) before kill() returns
        assert proc.stdin is not None
        assert proc.stderr is not None
        with contextlib.suppress(BrokenPipeError):  # a child that does not read has exited
            proc.stdin.write("go\n")
            proc.stdin.close()
        out, err = proc.stdout.read(), proc.stderr.read()  # the reader holds what it read ahead
        proc.wait(30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines) + out, err)


def test_sigterm_runs_every_closer_newest_first_then_dies_by_sigterm():
    got = run(
        """
        on_exit("a", closer("a"))
        forget_b = on_exit("b", closer("b"))
        on_exit("c", closer("c"))
        def boom(reason):
            raise RuntimeError("closer failed")
        on_exit("boom", boom)
        forget_b()  # stopped normally: not closed again
        print("READY", flush=True)
        time.sleep(30)
        """,
        sigterm=True,
    )
    assert got.returncode == -signal.SIGTERM
    assert got.stdout.splitlines()[1:] == ["closed c (SIGTERM)", "closed a (SIGTERM)"]
    assert "stopping boom failed" in got.stderr
    assert "closer failed" in got.stderr


def test_sigterm_chains_to_the_handler_installed_before():
    got = run(
        """
        def mine(signum, frame):
            print("previous handler", flush=True)
            sys.exit(3)
        signal.signal(signal.SIGTERM, mine)
        on_exit("a", closer("a"))
        print("READY", flush=True)
        time.sleep(30)
        """,
        sigterm=True,
    )
    assert got.returncode == 3
    assert got.stdout.splitlines()[1:] == ["closed a (SIGTERM)", "previous handler"]


def test_a_handler_installed_later_is_chained_at_the_next_registration():
    got = run(
        """
        on_exit("a", closer("a"))
        def later(signum, frame):
            print("later handler", flush=True)
            sys.exit(4)
        signal.signal(signal.SIGTERM, later)
        on_exit("b", closer("b"))
        print("READY", flush=True)
        time.sleep(30)
        """,
        sigterm=True,
    )
    assert got.returncode == 4
    assert got.stdout.splitlines()[1:] == ["closed b (SIGTERM)", "closed a (SIGTERM)", "later handler"]


def test_an_ignored_sigterm_stays_ignored_and_closers_run_at_exit():
    got = run(
        """
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        on_exit("a", closer("a"))
        print("READY", flush=True)
        sys.stdin.readline()  # the parent writes after its SIGTERM
        print("still running", flush=True)
        """,
        sigterm=True,
    )
    assert got.returncode == 0
    assert got.stdout.splitlines()[1:] == ["still running", "closed a (interpreter exit)"]


def test_registration_off_the_main_thread_still_closes_at_exit():
    got = run(
        """
        t = threading.Thread(target=lambda: on_exit("t", closer("t")))
        t.start(); t.join()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        print("READY", flush=True)
        """,
        sigterm=False,
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines()[1:] == ["closed t (interpreter exit)"]


def test_inside_stop_signals_sigterm_only_asks_to_stop_then_the_closers_answer_again():
    got = run(
        """
        from harmony_lab._lifetime import stop_signals
        on_exit("a", closer("a"))
        with stop_signals() as stop:
            print("READY", flush=True)
            assert stop.wait(20)
            print("asked to stop", flush=True)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        """,
        sigterm=True,
    )
    assert got.returncode == -signal.SIGTERM, got.stderr
    assert got.stdout.splitlines()[1:] == ["asked to stop", "closed a (SIGTERM)"]


def test_async_stop_signals_wakes_the_loop_on_sigint_and_restores_the_handlers():
    got = run(
        """
        import asyncio
        from harmony_lab._lifetime import async_stop_signals
        async def main():
            with async_stop_signals() as stop:
                print("READY", flush=True)
                os.kill(os.getpid(), signal.SIGINT)
                await asyncio.wait_for(stop.wait(), 20)
                print("stopped by SIGINT", flush=True)
                with async_stop_signals() as inner:  # the innermost block gets the signal
                    os.kill(os.getpid(), signal.SIGTERM)
                    await asyncio.wait_for(inner.wait(), 20)
                    print("inner stopped by SIGTERM", flush=True)
        asyncio.run(main())
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # nothing registered: as before
        print("handlers restored", flush=True)
        """,
        sigterm=False,
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines()[1:] == [
        "stopped by SIGINT",
        "inner stopped by SIGTERM",
        "handlers restored",
    ]
