"""Demo traffic and the notebook conveniences: :class:`Simulator` drives realistic Harmony traffic
(messages, DMs, edits, soft deletes, reactions, typing, notifications, megolm key shares, presence)
into a running stack; :func:`stack` finds or starts the stack a notebook should use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Simulator": "harmony_lab.demo._simulator",
    "PRESENCE_CHANNEL": "harmony_lab.demo._simulator",
    "NOTEBOOK_USER": "harmony_lab.demo._env",
    "stack": "harmony_lab.demo._stack",
    "traffic": "harmony_lab.demo._stack",
    "until": "harmony_lab.demo._wait",
}
__all__ = ["NOTEBOOK_USER", "PRESENCE_CHANNEL", "Simulator", "stack", "traffic", "until"]

if TYPE_CHECKING:  # pragma: no cover
    from harmony_lab.demo._env import NOTEBOOK_USER
    from harmony_lab.demo._simulator import PRESENCE_CHANNEL, Simulator
    from harmony_lab.demo._stack import stack, traffic
    from harmony_lab.demo._wait import until


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harmony_lab.demo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
