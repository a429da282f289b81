"""A Python LiveTableWidget driving its JS view in the bare-browser harness page (no Jupyter)."""

from __future__ import annotations

import base64
from typing import Any

from harmony_lab.frames import LiveFrame
from harmony_lab.widgets import LiveTableWidget
from tests.widgets.recording_comm import RecordingComm, install

TABLE_TRAITS = ("title", "columns", "key_columns", "height", "paused", "pending", "counters", "rate")
TABLE_TRAITS += ("rate_history", "status", "reason", "mode", "names")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class TableRig:
    """A Python LiveTableWidget whose comm messages are delivered to the JS view in the page."""

    def __init__(self, page: Any, monkeypatch: Any, frame: LiveFrame, **kw: Any) -> None:
        install(monkeypatch)
        self.page = page
        self.frame = frame
        self.widget = LiveTableWidget(frame, **kw)
        assert isinstance(self.widget.comm, RecordingComm)
        self.comm: RecordingComm = self.widget.comm
        state = {k: getattr(self.widget, k) for k in TABLE_TRAITS}
        page.evaluate(
            """(state) => {
            window.fake = makeModel(state);
            const el = document.getElementById('host');
            window.cleanup = mods.table.default.render({ model: fake.model, el });
            }""",
            state,
        )

    def from_front(self) -> list[dict[str, Any]]:
        sent = self.page.evaluate("() => { const s = fake.sent; fake.sent = []; return s; }")
        for m in sent:
            self.comm.front(m)
        return sent

    def to_front(self) -> None:
        """Deliver trait updates and custom messages sent since the last call (DataView buffers)."""
        for m in self.comm.sent:
            data = m["data"]
            if m["msg_type"] != "comm_msg":
                continue
            if data.get("method") == "update":
                self.page.evaluate(
                    "(st) => { for (const [k, v] of Object.entries(st)) fake.model.set(k, v); }",
                    {k: v for k, v in data["state"].items() if k in TABLE_TRAITS},
                )
            elif data.get("method") == "custom":
                self.page.evaluate(
                    "([msg, bufs]) => fake.emit(msg, bufs.map((b) => asDataView(b64(b))))",
                    [data["content"], [b64(b) for b in m["buffers"]]],
                )
        self.comm.clear()

    def sync(self) -> None:
        self.from_front()
        self.widget.flush()
        self.to_front()

    def state(self) -> dict[str, str]:
        return self.page.evaluate("() => ({ ...document.querySelector('.hl-table').dataset })")

    def row_keys(self) -> list[str]:
        return self.page.evaluate(
            """() => [...document.querySelectorAll('.hl-tr')]
                 .sort((a, b) => +a.dataset.index - +b.dataset.index).map((r) => r.dataset.key)"""
        )
