"""End to end in a real browser: JupyterLab + Chromium, a notebook that starts LocalRealtime, a
manager, a LiveFrame and the widgets; Postgres writes, dropped connections and presence changes
must show up in the DOM."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "live_widgets.ipynb"
TYPING = (
    'await rt.execute("insert into typing_indicators (channel_id, user_id, expires_at) values '
    "(%s, %s, now() + interval '60 seconds') on conflict (channel_id, user_id) "
    'do update set expires_at = excluded.expires_at", GENERAL, BOB)'
)
RECONNECTED = "for _n in ('feed', 'typing', 'lobby'): await mgr.wait_for_status(_n, 'connected', timeout=30)"
TABLE = ".jp-OutputArea-output .hl-table"
INSERT = (
    "(await rt.execute('insert into messages (channel_id, user_id, content) values (%s, %s, %s) "
    "returning id', GENERAL, ALICE, {content!r}))[0][0]"
)


def test_live_widgets_follow_postgres_faults_and_presence(lab_page, artifacts, request):
    lp = lab_page
    page = lp.page
    lp.open(NOTEBOOK, request.node.name)
    lp.run_all()
    try:
        # the LiveFrame displays as its table widget, connected, showing the rows the channel
        # already holds (its starting snapshot), then keeps them current
        page.wait_for_selector(f"{TABLE}[data-status='connected']", timeout=120_000)
        lp.kernel("await lf.ready()")
        n0 = int(
            lp.kernel(
                "(await rt.execute('select count(*) from messages where channel_id = %s', GENERAL))[0][0]"
            )
        )
        assert n0 > 0  # the seed writes messages into GENERAL
        assert int(lp.kernel("len(lf)")) == n0
        page.wait_for_selector(f"{TABLE}[data-nrows='{n0}']")
        before = lp.kernel("lf.inserts, lf.updates, lf.deletes")
        page.wait_for_selector(".jp-OutputArea-output .hl-timeline .hl-lane[data-channel='feed']")
        page.wait_for_selector(".jp-OutputArea-output .hl-roster[data-present='1']")

        # Postgres → table DOM: inserts, an update, a delete
        ids = [int(lp.kernel(INSERT.format(content=f"hello {i}"))) for i in range(3)]
        page.wait_for_selector(f"{TABLE}[data-nrows='{n0 + 3}']")
        assert page.locator(f"{TABLE} .hl-tr[data-key='{ids[0]}']").inner_text().count("hello 0") == 1
        lp.kernel(f"await rt.execute(\"update messages set content = 'edited!' where id = %s\", {ids[1]})")
        page.wait_for_selector(
            f"{TABLE} .hl-tr[data-key='{ids[1]}'] .hl-td[data-col='content']:text('edited!')"
        )
        lp.kernel(f"await rt.execute('delete from messages where id = %s', {ids[2]})")
        page.wait_for_selector(f"{TABLE}[data-nrows='{n0 + 2}']")
        page.wait_for_selector(f"{TABLE} .hl-tr[data-key='{ids[2]}']", state="detached")
        i0, u0, d0 = (int(x) for x in before.strip("()").split(","))
        assert (
            lp.kernel("len(lf), lf.inserts, lf.updates, lf.deletes")
            == f"({n0 + 2}, {i0 + 3}, {u0 + 1}, {d0 + 1})"
        )
        page.locator(TABLE).first.screenshot(path=artifacts / "lab-table.png")

        # faults: every socket dropped → the timeline shows reconnecting, then connected again
        assert int(lp.kernel("rt.faults.drop_all()")) >= 1
        lane = ".jp-OutputArea-output .hl-timeline .hl-lane[data-channel='feed']"
        page.wait_for_selector(f"{lane} .hl-span[data-status='reconnecting']", timeout=30_000)
        page.wait_for_selector(
            f"{lane}[data-status='connected'] .hl-span[data-status='connected'][data-open='true']"
        )
        page.wait_for_selector(f"{lane} .hl-retry")
        assert "reconnecting" in (
            page.locator(f"{lane} .hl-span[data-status='reconnecting']").first.get_attribute("title") or ""
        )
        # and rows written after the reconnect still arrive
        lp.kernel(INSERT.format(content="after the drop"))
        page.wait_for_selector(f"{TABLE}[data-nrows='{n0 + 3}']", timeout=30_000)
        page.locator(".hl-timeline").first.screenshot(path=artifacts / "lab-timeline.png")

        # every channel is back before the presence and typing checks (events are not backfilled)
        lp.kernel(RECONNECTED)

        # presence: a status change reaches the roster; a typing row shows the indicator
        bob = lp.kernel("str(BOB)").strip("'")
        user = f".jp-OutputArea-output .hl-roster .hl-user[data-user='{bob}']"
        page.wait_for_selector(f"{user}[data-status='online']")
        assert page.locator(f"{user} .hl-avatar").inner_text().startswith("BB")
        lp.kernel("await me.set_status('away')")
        page.wait_for_selector(f"{user}[data-status='away'] .hl-dot[data-status='away']", timeout=30_000)
        lp.kernel(TYPING)
        page.wait_for_selector(f"{user}[data-typing='true']", timeout=30_000)
        page.locator(".hl-roster").first.screenshot(path=artifacts / "lab-roster.png")
        page.screenshot(path=artifacts / "lab-notebook.png", full_page=True)
    except Exception:
        page.screenshot(path=artifacts / "lab-failure.png", full_page=True)
        roots = page.evaluate(
            "() => [...document.querySelectorAll('.hl-root')].map((e) => ({...e.dataset, cls: e.className}))"
        )
        lanes = page.locator(".hl-lane").evaluate_all(
            "els => els.map((e) => `${e.dataset.channel}:${e.dataset.status}`)"
        )
        print(f"widget roots: {roots}\nlanes: {lanes}")
        raise
    finally:
        # stop what the notebook started (the kernel is shut down by the fixture afterwards)
        lp.kernel(
            "if 'd' in globals(): await d.aclose()\n"
            "if 'mgr' in globals(): await mgr.cleanup()\n"
            "if 'rt' in globals(): rt.stop()",
            check=False,
        )
