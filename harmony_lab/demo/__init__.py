"""Demo traffic and the notebook conveniences: :class:`Simulator` drives realistic Harmony traffic
(messages, DMs, edits, soft deletes, reactions, typing, notifications, megolm key shares, presence)
into a running stack; :func:`stack` finds or starts the stack a notebook should use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harmony_lab._lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
