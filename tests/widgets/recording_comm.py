"""A Comm that records what a widget would send to its front end (and lets tests answer).

``comm.create_comm`` is the documented hook for providing the Comm implementation (ipykernel
installs its own); :func:`install` swaps in this one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import comm
import pyarrow as pa
from comm.base_comm import BaseComm


class RecordingComm(BaseComm):
    def __init__(self, **kwargs: Any) -> None:
        self.sent: list[dict[str, Any]] = []
        super().__init__(**kwargs)

    def publish_msg(
        self,
        msg_type: str,
        data: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        buffers: list[Any] | None = None,
        **keys: Any,
    ) -> None:
        self.sent.append(
            {
                "msg_type": msg_type,
                "data": data or {},
                "buffers": [bytes(b) for b in buffers or []],
                "t": time.monotonic(),
            }
        )

    # helpers for tests -------------------------------------------------------------------
    def customs(self, kind: str | None = None) -> list[dict[str, Any]]:
        out = []
        for m in self.sent:
            d = m["data"]
            if m["msg_type"] == "comm_msg" and d.get("method") == "custom":
                content = d["content"]
                if kind is None or content.get("type") == kind:
                    out.append({**content, "_buffers": m["buffers"], "_t": m["t"]})
        return out

    def updates(self) -> list[dict[str, Any]]:
        return [
            m["data"]["state"]
            for m in self.sent
            if m["msg_type"] == "comm_msg" and m["data"].get("method") == "update"
        ]

    def front(self, content: Mapping[str, Any]) -> None:
        """Deliver a custom message from the front end."""
        self.handle_msg({"content": {"data": {"method": "custom", "content": dict(content)}}, "buffers": []})

    def front_state(self, **state: Any) -> None:
        """Deliver a trait change from the front end (like model.save_changes())."""
        self.handle_msg({"content": {"data": {"method": "update", "state": state}}, "buffers": []})

    def clear(self) -> None:
        self.sent.clear()


def install(monkeypatch: Any) -> list[RecordingComm]:
    """Make every new widget use a RecordingComm; returns the list they are appended to."""
    made: list[RecordingComm] = []

    def create(*args: Any, **kwargs: Any) -> RecordingComm:
        c = RecordingComm(*args, **kwargs)
        made.append(c)
        return c

    monkeypatch.setattr(comm, "create_comm", create)
    return made


def rows_of(buffer: bytes) -> list[dict[str, Any]]:
    return pa.ipc.open_stream(buffer).read_all().to_pylist()
