"""The Player in a real browser: play, pause and seek through the DOM; the table follows."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "player.ipynb"
PLAYER = ".jp-OutputArea-output .hl-player"
TABLE = ".jp-OutputArea-output .hl-table"


def _rows(lp) -> int:
    return int(lp.kernel("len(player.frame('messages'))"))


def test_play_pause_and_seek_from_the_dom(lab_page, artifacts, request):
    lp = lab_page
    page = lp.page
    lp.open(NOTEBOOK, request.node.name)
    lp.run_all()
    page.wait_for_selector(f"{PLAYER}[data-status='paused'][data-playing='false']", timeout=120_000)
    page.wait_for_selector(f"{TABLE}[data-nrows='0']")
    assert int(page.locator(PLAYER).get_attribute("data-nspans") or 0) >= 4  # the status track

    # play: the position moves and rows arrive in the table
    page.locator(f"{PLAYER} .hl-player-toggle[data-action='play']").click()
    page.wait_for_selector(f"{PLAYER}[data-playing='true'][data-status='playing']")
    page.wait_for_function(
        f'() => Number(document.querySelector("{TABLE}")?.dataset.nrows || 0) >= 3', timeout=30_000
    )

    # pause: the position stops, and the table shows what the kernel's frame holds
    page.locator(f"{PLAYER} .hl-player-toggle[data-action='pause']").click()
    page.wait_for_selector(f"{PLAYER}[data-playing='false'][data-status='paused']")
    held = _rows(lp)
    page.wait_for_selector(f"{TABLE}[data-nrows='{held}']")
    pos = page.locator(PLAYER).get_attribute("data-position-ms")
    page.wait_for_timeout(500)  # paused: nothing may move in half a second
    assert page.locator(PLAYER).get_attribute("data-position-ms") == pos
    assert _rows(lp) == held

    # seek by clicking the scrubber at 90 %: the table jumps to the state there
    box = page.locator(f"{PLAYER} .hl-player-scrub").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
    page.wait_for_function(
        f'() => {{ const r = document.querySelector("{PLAYER}").dataset;'
        f" return r.seeking === 'false' && Number(r.positionMs) > {pos}; }}",
        timeout=30_000,
    )
    later = _rows(lp)
    assert later > held
    assert later == int(
        lp.kernel(
            "len(LiveFrame_at := __import__('harmony_lab').LiveFrame.at(root, 'messages', player.position))"
        )
    )
    page.wait_for_selector(f"{TABLE}[data-nrows='{later}']")
    # and back to 10 %: fewer rows
    page.mouse.click(box["x"] + box["width"] * 0.1, box["y"] + box["height"] / 2)
    page.wait_for_function(
        f'() => Number(document.querySelector("{TABLE}")?.dataset.nrows || 99) < {later}', timeout=30_000
    )
    page.locator(PLAYER).screenshot(path=artifacts / "player.png")
    lp.kernel("player.close()")
