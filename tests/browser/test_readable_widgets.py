"""Readable widgets, measured in Chromium: what a person sees and can reach in the live table.

The table is fed the exact messages the Python LiveTableWidget sends (captured at its comm) in the
bare-ESM harness, with the real ``messages`` columns of the demo schema; layout is read from
bounding boxes, not from class names.
"""

from __future__ import annotations

import ast
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from harmony_lab.frames import LiveFrame
from harmony_lab.local.schema import ALICE, BOB, CAROL
from tests.browser.table_rig import TableRig
from tests.frames.frame_events import make_change

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
BOX = ".hl-table .hl-tscroll"
ROOT = Path(__file__).resolve().parents[2]


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


class Rig(TableRig):
    """The table rig with the box measurements these tests read."""

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
    # the keyboard scrolls it too: focus the box, End goes to the last rows
    harness.focus(BOX)
    harness.keyboard.press("End")
    harness.wait_for_selector(".hl-tr[data-index='59']")
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
    # sorting the column orders rows by the names shown (ids without a name keep their own value)
    harness.click(".hl-th[data-col='user_id']")
    harness.wait_for_selector(".hl-table[data-sort='user_id:asc']")
    order = harness.evaluate(
        """() => [...document.querySelectorAll(".hl-tr")].sort((a, b) => +a.dataset.index - +b.dataset.index)
        .map((r) => r.querySelector(".hl-td[data-col='user_id']").textContent)"""
    )
    # Carol has no name: her id ("0000…") sorts before the letters of the names
    assert order == [f"…{str(CAROL)[-12:]}", "Alice Liddell", "Bob Builder"]
    harness.click(".hl-th[data-col='user_id']")
    harness.click(".hl-th[data-col='user_id']")
    harness.wait_for_selector(".hl-table[data-sort='']")
    # names change live (a new profile): the cell follows
    rig.widget.names = {**names, str(CAROL): "Carol Danvers"}
    rig.sync()
    harness.wait_for_selector(f"{cell.format(2)}:text('Carol Danvers')")


def test_a_narrow_table_fills_the_box_without_scrolling(harness, monkeypatch):
    cols = (("channel_id", "int8"), ("user_id", "uuid"), ("started_at", "timestamptz"))
    lf = LiveFrame(None, "typing_indicators", max_rows=None)
    for i, u in enumerate(USERS):
        new = {"channel_id": 1, "user_id": str(u), "started_at": row(i)["created_at"]}
        lf.apply(make_change("INSERT", new, table="typing_indicators", columns=cols, pk_cols=("user_id",)))
    rig = Rig(harness, monkeypatch, lf)
    rig.sync()
    harness.wait_for_selector(".hl-table[data-nrows='3'][data-ncols='3']")
    sw, cw = harness.evaluate(
        f"() => {{ const b = document.querySelector('{BOX}'); return [b.scrollWidth, b.clientWidth]; }}"
    )
    assert sw == cw  # nothing to scroll sideways
    box = rig.box()
    last = rig.box(".hl-th[data-col='started_at']")
    assert box["right"] - last["right"] < 4  # the columns share the spare width: no blank strip
    first = rig.box(".hl-th[data-col='channel_id']")
    assert first["left"] - box["left"] < 4


def test_an_empty_roster_on_an_unhealthy_channel_says_why(harness):
    harness.evaluate(
        """(state) => { window.fake = makeModel(state);
        const el = document.getElementById('host');
        window.cleanup = mods.roster.default.render({ model: fake.model, el }); }""",
        {"users": [], "now_ms": 0, "title": "Lobby", "status": "disconnected", "reason": "not subscribed"},
    )
    harness.wait_for_selector(".hl-roster[data-status='disconnected'][data-reason='not subscribed']")
    assert harness.locator(".hl-roster .hl-pill").inner_text() == "disconnected · not subscribed"
    assert (
        harness.locator(".hl-roster .hl-empty").inner_text()
        == "no presence: the channel is disconnected (see above)"
    )
    # once the channel is live, an empty roster is an empty room
    harness.evaluate("() => { fake.model.set('status', 'live'); fake.model.set('reason', ''); }")
    harness.wait_for_selector(".hl-roster[data-status='live'][data-reason='']")
    assert harness.locator(".hl-roster .hl-empty").inner_text() == "nobody here yet"
    assert harness.locator(".hl-roster .hl-pill").inner_text() == "live"


# ------------------------------------------------------------------ JupyterLab on the real stack

NOTEBOOK = "readable_widgets.ipynb"
OUT = ".jp-OutputArea-output"
ROSTER = f"{OUT} .hl-roster"
TYPING = (
    'await rt.execute("insert into typing_indicators (channel_id, user_id, expires_at) values '
    "(%s, %s, now() + interval '60 seconds') on conflict (channel_id, user_id) "
    'do update set expires_at = excluded.expires_at", GENERAL, BOB)'
)
STOP_TYPING = 'await rt.execute("delete from typing_indicators where user_id = %s", BOB)'
DF = (
    "[[u, n, s, bool(t)] for u, n, s, t in "
    "roster.df[['id', 'name', 'status', 'typing']].itertuples(index=False)]"
)
SHOWN = f"""() => [...document.querySelectorAll("{ROSTER} .hl-user")].map((li) => [li.dataset.user,
  li.querySelector(".hl-name").textContent, li.dataset.status, li.dataset.typing === "true"])"""


def kernel_json(lp: Any, expr: str) -> Any:
    """The value of a Python expression in the notebook's kernel, through JSON."""
    out = lp.kernel(f"import json as _json\n_json.dumps({expr})")
    assert out is not None, expr
    return json.loads(ast.literal_eval(out))


def roster_agrees(lp: Any, timeout: float = 15.0) -> list[list[Any]]:
    """What the roster shows (users in order, name, status, typing) equals roster.df; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        shown = lp.page.evaluate(SHOWN)
        df = kernel_json(lp, DF)
        if shown == df:
            return shown
        if time.monotonic() > deadline:
            raise AssertionError(f"the roster shows {shown}\nbut roster.df has {df}")
        lp.page.wait_for_timeout(200)


@pytest.mark.slow
def test_roster_names_and_status_line_on_the_real_stack(lab_page, artifacts, request):
    lp = lab_page
    page = lp.page
    lp.open(NOTEBOOK, request.node.name)
    lp.run_all()
    try:
        bob = str(BOB)
        user = f"{ROSTER} .hl-user[data-user='{bob}']"
        page.wait_for_selector(f"{ROSTER}[data-status='live']", timeout=120_000)
        page.wait_for_selector(f"{user}[data-status='online']", timeout=30_000)
        names = kernel_json(lp, "names")
        assert page.locator(f"{user} .hl-name").text_content() == names[bob]
        assert page.locator(f"{user} .hl-name").get_attribute("title") == bob
        assert page.locator(f"{ROSTER} .hl-pill").text_content() == "live"
        roster_agrees(lp)

        # a real typing_indicators insert: the roster says "typing…" and roster.df agrees
        lp.kernel(TYPING)
        page.wait_for_selector(f"{user}[data-typing='true']", timeout=30_000)
        assert page.locator(f"{user} .hl-typing").text_content() == "typing…"
        assert [bob, names[bob], "online", True] in roster_agrees(lp)
        page.locator(".hl-roster").first.screenshot(path=artifacts / "readable-roster-typing.png")
        # a presence update from Bob's own client, then the typing row goes away
        lp.kernel("await bob.set_status('away')")
        page.wait_for_selector(f"{user}[data-status='away'][data-typing='true']", timeout=30_000)
        lp.kernel(STOP_TYPING)
        page.wait_for_selector(f"{user}[data-status='away'][data-typing='false']", timeout=30_000)
        assert page.locator(f"{user} .hl-typing").count() == 0
        assert [bob, names[bob], "away", False] in roster_agrees(lp)

        # the live table: user ids as display names, the id on hover
        table = f"{OUT} .hl-table[data-status='connected']"
        page.wait_for_selector(f"{table} .hl-td[data-col='user_id']")
        ids = kernel_json(lp, "[str(u) for u in lf.df['user_id']]")
        assert ids
        cells = page.locator(f"{table} .hl-td[data-col='user_id']")
        shown = cells.evaluate_all("els => els.map((e) => [e.textContent, e.dataset.full])")
        assert shown
        assert all(text == names[full] for text, full in shown)
        assert {full for _, full in shown} <= set(ids)
        # in Lab's output area too, the last of the 9 columns is reached by scrolling the box
        box = f"{table} .hl-tscroll"
        page.locator(box).evaluate("b => { b.scrollLeft = b.scrollWidth; }")
        reached = page.locator(box).evaluate(
            """b => { const r = b.getBoundingClientRect();
            const t = b.querySelector(".hl-th[data-col='reply_to']").getBoundingClientRect();
            return t.left >= r.left - 1 && t.right <= r.left + b.clientWidth + 1; }"""
        )
        assert reached
        page.locator(table).screenshot(path=artifacts / "readable-lab-table.png")

        # a refused URL: the table's status line says so within seconds, with the reason
        bad = f"{OUT} .hl-table[data-status='reconnecting']"
        page.wait_for_selector(f"{bad}:not([data-reason=''])", timeout=30_000)
        pill = page.locator(f"{bad} .hl-pill").text_content()
        assert pill.startswith("reconnecting · ")
        assert "refused" in pill.lower()
        page.locator(bad).screenshot(path=artifacts / "readable-refused.png")
        # the timeline of that manager: the worst channel, named, and why
        channel = lp.kernel("bad_lf.name").strip("'")
        timeline = f"{OUT} .hl-timeline[data-status='reconnecting']"
        page.wait_for_selector(f"{timeline}:not([data-reason=''])", timeout=30_000)
        line = page.locator(f"{timeline} .hl-pill").text_content() or ""
        assert line.startswith(f"reconnecting · {channel}: ")
        assert "refused" in line.lower()
        page.locator(timeline).screenshot(path=artifacts / "readable-refused-timeline.png")
    except Exception:
        page.screenshot(path=artifacts / "readable-lab-failure.png", full_page=True)
        roots = page.evaluate("() => [...document.querySelectorAll('.hl-root')].map((e) => ({...e.dataset}))")
        print(f"widget roots: {roots}")
        raise
    finally:
        lp.kernel(
            "for _m in ('bad', 'bob_mgr', 'mgr'):\n"
            "    if _m in globals(): await globals()[_m].cleanup()\n"
            "if 'rt' in globals(): rt.stop()",
            check=False,
        )
