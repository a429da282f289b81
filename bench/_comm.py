"""A comm that counts what a widget would send to its front end, for the widget-traffic benchmarks."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import comm
from comm.base_comm import BaseComm


class CountingComm(BaseComm):
    """Counts messages, custom messages and bytes (JSON plus buffers) and logs each comm message as
    ``(monotonic time, method, bytes)``."""

    def __init__(self, **kwargs: Any) -> None:
        self.messages = 0
        self.customs = 0
        self.bytes = 0
        self.log: list[tuple[float, str, int]] = []
        super().__init__(**kwargs)

    def publish_msg(
        self,
        msg_type: str,
        data: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        buffers: list[Any] | None = None,
        **keys: Any,
    ) -> None:
        size = len(json.dumps(data or {}, default=str)) + sum(len(memoryview(b)) for b in buffers or ())
        self.messages += 1
        self.bytes += size
        method = str((data or {}).get("method", "?"))
        if method == "custom":
            self.customs += 1
        if msg_type == "comm_msg":
            self.log.append((time.monotonic(), method, size))

    def ready(self) -> None:
        """What the front end sends once it has rendered."""
        ready = {"method": "custom", "content": {"type": "ready"}}
        self.handle_msg({"content": {"data": ready}, "buffers": []})

    def reset(self) -> None:
        self.messages = self.customs = self.bytes = 0
        self.log.clear()


@contextlib.contextmanager
def counting_comms() -> Iterator[list[CountingComm]]:
    """Within the block every widget gets a :class:`CountingComm`; yields the list of those made."""
    made: list[CountingComm] = []
    original = comm.create_comm

    def create(*args: Any, **kwargs: Any) -> CountingComm:
        c = CountingComm(*args, **kwargs)
        made.append(c)
        return c

    comm.create_comm = create
    try:
        yield made
    finally:
        comm.create_comm = original
