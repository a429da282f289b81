"""Readable widgets, measured in Chromium: what a person sees and can reach in the live table.

The table is fed the exact messages the Python LiveTableWidget sends (captured at its comm) in the
bare-ESM harness, with the real ``messages`` columns of the demo schema; layout is read from
bounding boxes, not from class names.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from harmony_lab.frames import LiveFrame
from harmony_lab.local.schema import ALICE, BOB, CAROL
from harmony_lab.widgets import LiveTableWidget
from tests.frames.frame_events import make_change
from tests.widgets.recording_comm import RecordingComm, install

pytestmark = pytest.mark.browser

# public.messages as Realtime describes it: 9 columns
MESSAGES = (
    ("id", "int8"),
    ("channel_id", "int8"),
    ("user_id", "uuid"),
    ("content", "text"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("edited_at", "timestamptz"),
    ("deleted_at", "timestamptz"),
    ("reply_to", "int8"),
)
USERS = (ALICE, BOB, CAROL)
TRAITS = ("title", "columns", "key_columns", "height", "paused", "pending", "counters", "rate")
TRAITS += ("rate_history", "status", "reason", "mode", "names")
BOX = ".hl-table .hl-tscroll"


def row(i: int, **over: Any) -> dict[str, Any]:
    ts = f"2026-05-01T12:{i // 60 % 60:02d}:{i % 60:02d}.000001+00:00"
    out = {
        "id": i,
        "channel_id": 1 + i % 2,
        "user_id": str(USERS[i % len(USERS)]),
        "content": f"message number {i}",
        "created_at": ts,
        "updated_at": ts,
        "edited_at": None,
        "deleted_at": None,
        "reply_to": i - 1 if i % 4 == 0 and i else None,
    }
    out.update(over)
    return out


def messages_frame(n: int) -> LiveFrame:
    lf = LiveFrame(None, "messages", max_rows=None)
    for i in range(n):
        lf.apply(make_change("INSERT", row(i), columns=MESSAGES))
    return lf


class Rig:
    """A LiveTableWidget whose comm traffic is delivered to its JS view in the harness page."""

    def __init__(self, page: Any, monkeypatch: Any, frame: LiveFrame, **kw: Any) -> None:
        install(monkeypatch)
        self.page = page
        self.frame = frame
        self.widget = LiveTableWidget(frame, **kw)
        assert isinstance(self.widget.comm, RecordingComm)
        self.comm: RecordingComm = self.widget.comm
        page.evaluate(
            """(state) => {
            window.fake = makeModel(state);
            const el = document.getElementById('host');
            window.cleanup = mods.table.default.render({ model: fake.model, el });
            }""",
            {k: getattr(self.widget, k) for k in TRAITS},
        )

    def sync(self) -> None:
        for m in self.page.evaluate("() => { const s = fake.sent; fake.sent = []; return s; }"):
            self.comm.front(m)
        self.widget.flush()
        for m in self.comm.sent:
            data = m["data"]
            if m["msg_type"] != "comm_msg":
                continue
            if data.get("method") == "update":
                self.page.evaluate(
                    "(st) => { for (const [k, v] of Object.entries(st)) fake.model.set(k, v); }",
                    {k: v for k, v in data["state"].items() if k in TRAITS},
                )
            elif data.get("method") == "custom":
                self.page.evaluate(
                    "([msg, bufs]) => fake.emit(msg, bufs.map((b) => asDataView(b64(b))))",
                    [data["content"], [base64.b64encode(b).decode() for b in m["buffers"]]],
                )
        self.comm.clear()

    def box(self, sel: str = BOX) -> dict[str, float]:
        return self.page.evaluate(
            "(sel) => { const r = document.querySelector(sel).getBoundingClientRect();"
            " return { top: r.top, bottom: r.bottom, left: r.left, right: r.right, height: r.height }; }",
            sel,
        )

    def scroll(self, *, left: float | None = None, top: float | None = None) -> None:
        self.page.evaluate(
            """([sel, left, top]) => { const b = document.querySelector(sel);
            if (left !== null) b.scrollLeft = left; if (top !== null) b.scrollTop = top; }""",
            [BOX, left, top],
        )
        # a scroll event redraws on the next animation frame: wait for two
        self.page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")

    def visible_headers(self) -> list[str]:
        """Headers whose whole bounding box lies inside the scroll box's visible area."""
        return self.page.evaluate(
            """(sel) => { const b = document.querySelector(sel); const r = b.getBoundingClientRect();
            const right = r.left + b.clientWidth + 1;
            return [...b.querySelectorAll('.hl-th')].filter((th) => {
              const t = th.getBoundingClientRect();
              return t.width > 0 && t.left >= r.left - 1 && t.right <= right;
            }).map((th) => th.dataset.col); }""",
            BOX,
        )


def test_all_nine_columns_are_reachable_and_the_header_sticks(harness, monkeypatch, artifacts):
    rig = Rig(harness, monkeypatch, messages_frame(60), height=300)
    rig.sync()
    harness.wait_for_selector(".hl-table[data-nrows='60'][data-ncols='9']")
    dims = harness.evaluate(
        f"() => {{ const b = document.querySelector('{BOX}'); return [b.scrollWidth, b.clientWidth]; }}"
    )
    assert dims[0] > dims[1]  # 9 columns are wider than the 1100 px host: the box scrolls sideways
    at_start = rig.visible_headers()
    assert at_start[0] == "id"
    assert "reply_to" not in at_start
    seen = set(at_start)
    step = dims[1] // 2
    for x in range(step, dims[0] + step, step):
        rig.scroll(left=x)
        seen.update(rig.visible_headers())
    assert seen == {name for name, _ in MESSAGES}
    # scrolled fully right: the last column is in view and its cells line up under its header
    assert "reply_to" in rig.visible_headers()
    th = rig.box(".hl-th[data-col='reply_to']")
    td = rig.box(".hl-tr[data-index='0'] .hl-td[data-col='reply_to']")
    assert abs(th["left"] - td["left"]) < 1
    assert abs(th["right"] - td["right"]) < 1
    harness.screenshot(path=artifacts / "readable-table-right.png")

    # vertical scrolling: the header stays at the top of the box, the rows move under it
    rig.scroll(left=0, top=0)
    box, head = rig.box(), rig.box(".hl-table .hl-thead")
    assert abs(head["top"] - box["top"]) <= 1.5
    rig.scroll(top=600)
    head2 = rig.box(".hl-table .hl-thead")
    assert abs(head2["top"] - box["top"]) <= 1.5
    top_row = harness.evaluate(
        """() => { const h = document.querySelector('.hl-table .hl-thead').getBoundingClientRect();
        const rows = [...document.querySelectorAll('.hl-tr')].filter((r) => {
          const t = r.getBoundingClientRect(); return t.bottom > h.bottom + 2; });
        rows.sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top);
        return +rows[0].dataset.index; }"""
    )
    assert 20 <= top_row <= 25  # 600 px down at 26 px a row: row ~22 is right under the header
    harness.screenshot(path=artifacts / "readable-table-scrolled.png")


def test_uuids_show_their_distinctive_tail_with_the_full_value_on_hover_and_copy(harness, monkeypatch):
    rig = Rig(harness, monkeypatch, messages_frame(3))
    rig.sync()
    harness.wait_for_selector(".hl-table[data-nrows='3']")
    cells = harness.locator(".hl-td[data-col='user_id']")
    texts = sorted(cells.all_inner_texts())
    assert texts == sorted(f"…{str(u)[-12:]}" for u in USERS)
    assert len(set(texts)) == 3  # the shared 00000000-0000-4000-a000 prefix is gone
    alice = harness.locator(".hl-tr[data-key='0'] .hl-td[data-col='user_id']")
    assert alice.get_attribute("title") == str(ALICE)
    # a random v4 uuid: the tail is its last group
    r = uuid.uuid4()
    rig.frame.apply(make_change("INSERT", row(3, user_id=str(r)), columns=MESSAGES))
    rig.sync()
    harness.wait_for_selector(".hl-table[data-nrows='4']")
    new_cell = harness.locator(".hl-tr[data-key='3'] .hl-td[data-col='user_id']")
    assert new_cell.inner_text() == f"…{r.hex[-12:]}"

    # copying a selection of cells copies the whole values (tab-separated)
    copy = """(sel) => {
      const cells = document.querySelectorAll(sel);
      const range = document.createRange();
      range.setStartBefore(cells[0]); range.setEndAfter(cells[cells.length - 1]);
      const s = window.getSelection(); s.removeAllRanges(); s.addRange(range);
      let got = null;
      const grab = (e) => { got = e.clipboardData.getData('text/plain'); };
      document.addEventListener('copy', grab);
      document.execCommand('copy');
      document.removeEventListener('copy', grab);
      s.removeAllRanges();
      return got; }"""
    one = ".hl-tr[data-key='0'] .hl-td[data-col='user_id']"
    assert harness.evaluate(copy, one) == str(ALICE)
    three = ".hl-tr[data-key='0'] .hl-td:is([data-col='id'], [data-col='channel_id'], [data-col='user_id'])"
    assert harness.evaluate(copy, three) == f"0\t1\t{ALICE}"


def test_the_box_sizes_to_its_rows_up_to_its_height(harness, monkeypatch):
    rig = Rig(harness, monkeypatch, messages_frame(0), height=400)
    rig.sync()
    harness.wait_for_selector(".hl-table[data-nrows='0']")
    assert rig.box()["height"] < 40  # no rows: no empty 400 px box
    assert harness.locator(".hl-empty").is_visible()
    for i in range(3):
        rig.frame.apply(make_change("INSERT", row(i), columns=MESSAGES))
    rig.sync()
    harness.wait_for_selector(".hl-table[data-nrows='3']")
    head = rig.box(".hl-table .hl-thead")["height"]
    assert 15 < head < 40
    scrollbar = harness.evaluate(  # borders and, when the columns overflow, the horizontal scrollbar
        f"() => {{ const b = document.querySelector('{BOX}'); return b.offsetHeight - b.clientHeight; }}"
    )
    three = rig.box()["height"]
    assert abs(three - (head + 3 * 26 + scrollbar)) <= 2  # header + 3 rows
    assert harness.locator(".hl-empty").is_hidden()
    for i in range(3, 100):
        rig.frame.apply(make_change("INSERT", row(i), columns=MESSAGES))
    rig.sync()
    harness.wait_for_selector(".hl-table[data-nrows='100']")
    assert abs(rig.box()["height"] - 400) <= 1  # bounded: the rest scrolls
    sh, ch = harness.evaluate(
        f"() => {{ const b = document.querySelector('{BOX}'); return [b.scrollHeight, b.clientHeight]; }}"
    )
    assert sh > ch
    assert harness.locator(".hl-tr").count() < 40  # still virtualised


def test_user_ids_show_display_names_with_the_id_on_hover(harness, monkeypatch):
    names = {str(ALICE): "Alice Liddell", str(BOB): "Bob Builder"}
    rig = Rig(harness, monkeypatch, messages_frame(3), names=names)
    rig.sync()
    harness.wait_for_selector(".hl-table[data-nrows='3']")
    cell = ".hl-tr[data-key='{}'] .hl-td[data-col='user_id']"
    assert harness.locator(cell.format(0)).inner_text() == "Alice Liddell"
    assert harness.locator(cell.format(1)).inner_text() == "Bob Builder"
    assert str(ALICE) in (harness.locator(cell.format(0)).get_attribute("title") or "")
    assert harness.locator(cell.format(2)).inner_text() == f"…{str(CAROL)[-12:]}"  # no name: the uuid
    # search finds rows by the name they show
    harness.fill(".hl-search", "liddell")
    harness.wait_for_selector(".hl-table[data-nshown='1']")
    harness.fill(".hl-search", "")
    harness.wait_for_selector(".hl-table[data-nshown='3']")
    # names change live (a new profile): the cell follows
    rig.widget.names = {**names, str(CAROL): "Carol Danvers"}
    rig.sync()
    harness.wait_for_selector(f"{cell.format(2)}:text('Carol Danvers')")
