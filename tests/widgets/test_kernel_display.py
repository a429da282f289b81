"""In a real kernel (nbclient, no browser): a LiveFrame displays as its widget plus static HTML."""

from __future__ import annotations

import nbformat
from nbclient import NotebookClient

SETUP = """
from harmony_lab import LiveFrame, RealtimeEvent
cols = (("id", "int8"), ("body", "text"))
lf = LiveFrame(None, "messages")
for i in range(3):
    lf.apply(RealtimeEvent(kind="change", channel="c", schema="public", table="messages", op="INSERT",
                           new={"id": i, "body": f"<i>row {i}</i>"}, pk={"id": i}, columns=cols))
"""


def test_live_frame_bundle_has_widget_view_and_static_html(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(SETUP), nbformat.v4.new_code_cell("lf")]
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=60,
        store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    (out,) = nb.cells[1].outputs
    data = out["data"]
    assert set(data) == {"text/plain", "text/html", "application/vnd.jupyter.widget-view+json"}
    assert "&lt;i&gt;row 2&lt;/i&gt;" in data["text/html"]  # the nbviewer/GitHub fallback
    assert "rows=3/10000" in data["text/plain"]
    model_id = data["application/vnd.jupyter.widget-view+json"]["model_id"]
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"][model_id]
    assert state["model_module"] == "anywidget"
    s = state["state"]
    assert s["_anywidget_id"] == "harmony_lab.widgets._table.LiveTableWidget"
    assert "decodeStream" in s["_esm"]
    assert "import {" not in s["_esm"]
    assert ".hl-table" in s["_css"] or ".hl-root" in s["_css"]
    assert [c[0] for c in s["columns"]] == ["id", "body"]
    assert s["status"] == "waiting"  # no front end said ready: nothing was streamed
