"""What happens to running things when the process ends: one behaviour for everything that holds a resource.

An object that must not be left running (a recorder with unwritten events, a PostgreSQL server)
registers a *closer* with :func:`on_exit` when it starts and calls the returned function when it
stops. Closers run, newest first, each at most once:

* at interpreter exit (``atexit``: the end of a script, a Jupyter kernel shutdown or restart);
* on SIGTERM. Then, once every closer has run, the handler that was installed before ours runs
  (when there was one), else the default action happens: the process ends *by SIGTERM* (exit
  status -15 / 143 in a shell) exactly as it would have without us. A process that ignores SIGTERM
  (``SIG_IGN``) keeps ignoring it: nothing is stopped, because the process goes on running.

The SIGTERM handler can only be installed from the main thread; an object started on another
thread is still closed at exit. Each registration from the main thread checks the handler again,
so a handler installed after ours is chained to as well. A closer that raises is logged and the
others still run. SIGKILL cannot be caught: what it leaves behind is each owner's own business
(the recorder's files are always complete; PostgreSQL has a watchdog process).

A command that stops gracefully (``harmony-lab serve``, ``record``, ``demo``) asks for it with
:func:`stop_signals` (a thread waits on a ``threading.Event``) or :func:`async_stop_signals` (a
coroutine awaits an ``asyncio.Event``): inside that block SIGINT and SIGTERM only set the event —
the closers do not run from the signal, the command stops its objects itself — and on leaving it
the handlers in place before are back (so the closers answer SIGTERM again, and Ctrl-C raises
``KeyboardInterrupt``). Blocks nest; the innermost one gets the signal.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["async_stop_signals", "on_exit", "stop_all", "stop_signals"]

Closer = Callable[[str], None]
"""Called with the reason (``"interpreter exit"`` or ``"SIGTERM"``); must be idempotent and quick."""

_lock = threading.RLock()  # re-entrant: the SIGTERM handler may interrupt a registration on its thread
_closers: dict[int, tuple[str, Closer]] = {}
_ids = itertools.count()
_atexit_installed = False
_previous: Any = signal.SIG_DFL
_graceful: list[Callable[[], None]] = []  # the stop requests of the open stop_signals blocks, innermost last


def on_exit(name: str, closer: Closer) -> Callable[[], None]:
    """Run ``closer`` at interpreter exit and on SIGTERM; returns the function that unregisters it."""
    global _atexit_installed
    with _lock:
        key = next(_ids)
        _closers[key] = (name, closer)
        if not _atexit_installed:
            atexit.register(stop_all, "interpreter exit")
            _atexit_installed = True
    _install_sigterm()

    def forget() -> None:
        with _lock:
            _closers.pop(key, None)

    return forget


def stop_all(reason: str) -> None:
    """Run every registered closer now, newest first (each is unregistered before it runs)."""
    with _lock:
        pending = sorted(_closers.items(), reverse=True)
        _closers.clear()
    if pending:
        logger.info("%s: stopping %d running object(s)", reason, len(pending))
    for _, (name, closer) in pending:
        try:
            closer(reason)
        except Exception:
            logger.exception("%s: stopping %s failed", reason, name)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if _graceful:  # a command stops gracefully: it stops its objects itself
        _graceful[-1]()
        return
    stop_all("SIGTERM")
    previous = _previous
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_sigterm() -> None:
    global _previous
    if threading.current_thread() is not threading.main_thread():
        logger.debug("not on the main thread: stopping on SIGTERM is not installed (exit still is)")
        return
    current = signal.getsignal(signal.SIGTERM)
    if current is _on_sigterm or current == signal.SIG_IGN:
        return
    _previous = current
    signal.signal(signal.SIGTERM, _on_sigterm)


@contextlib.contextmanager
def _requests(request: Callable[[], None]) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("stop_signals() must be entered on the main thread (signals are delivered there)")

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %d: stopping", signum)
        request()

    previous_int = signal.getsignal(signal.SIGINT)
    previous_term = signal.getsignal(signal.SIGTERM)
    with _lock:
        _graceful.append(request)
    signal.signal(signal.SIGINT, on_sigint)
    _install_sigterm()
    try:
        yield
    finally:
        with _lock:
            _graceful.remove(request)
        signal.signal(signal.SIGINT, previous_int)
        with _lock:
            closers_left = bool(_closers)
        # ours stays while something registered still needs stopping on SIGTERM
        if not closers_left and signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, previous_term)


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """A ``threading.Event`` that SIGINT and SIGTERM set while the block runs (see the module text)."""
    stop = threading.Event()
    with _requests(stop.set):
        yield stop


@contextlib.contextmanager
def async_stop_signals() -> Iterator[asyncio.Event]:
    """An ``asyncio.Event`` of the running loop that SIGINT and SIGTERM set while the block runs."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    with _requests(lambda: loop.call_soon_threadsafe(stop.set)):
        yield stop
