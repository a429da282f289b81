"""The Inspector end to end: JupyterLab + Chromium, a LocalRealtime in the kernel and a realtime-py
client as the other party. Everything is done through the widget's form and buttons; the kernel is
only used to play the other client, write rows and read back what the Python side saw."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT_SEL = ".jp-OutputArea-output .hl-inspector"
SETUP = """\
from realtime import AsyncRealtimeClient
from harmony_lab import Inspector, LocalRealtime
from harmony_lab.local.schema import ALICE, BOB, ENGINEERING, GENERAL
from harmony_lab.manager import BackoffPolicy
rt = LocalRealtime().start()
await rt.execute("create table if not exists public.insp_unpublished (id int primary key)")
insp = Inspector(rt, manager_options={"heartbeat_interval": 1.0, "join_timeout": 5.0,
                                      "backoff": BackoffPolicy(base=0.1, max_delay=0.5, max_retries=2)})
insp
"""
PEER = """\
peer = AsyncRealtimeClient(rt.ws_url, token=rt.anon_key, auto_reconnect=False)
await peer.connect()
got, states = [], []
pch = peer.channel("lobby", {"config": {"broadcast": {"self": False, "ack": False}}})
pch.on_broadcast("*", got.append)
await pch.subscribe(lambda s, e: states.append(str(s)))
import asyncio
for _ in range(200):
    if any("SUBSCRIBED" in s for s in states): break
    await asyncio.sleep(0.05)
states
"""
# until the channel re-subscribed to Postgres after the latest listen_as
WAIT_PG = """\
import asyncio
for _ in range(200):
    _log = insp.log
    _since = _log.loc[_log["event"] == "listen_as", "id"].max()
    if _log[(_log["id"] > _since) & _log["summary"].str.contains("Subscribed to PostgreSQL")].shape[0]: break
    await asyncio.sleep(0.05)
"""
INSERT = (
    "(await rt.execute('insert into messages (channel_id, user_id, content) values (%s, %s, %s) "
    "returning id', {channel}, ALICE, {content!r}))[0][0]"
)


def notebook(path: Path) -> None:
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": SETUP}
    nb = {
        "cells": [cell],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_the_inspector_in_jupyterlab(lab, lab_page, artifacts, request):
    lp = lab_page
    page = lp.page
    notebook(lp.root / "inspector_test.ipynb")
    lp.open("inspector_test.ipynb", request.node.name)
    lp.run_all()
    root = page.locator(ROOT_SEL)
    try:
        page.wait_for_selector(f"{ROOT_SEL}[data-status='live']", timeout=120_000)

        # join through the form: topic lobby, postgres changes on messages, presence
        root.locator(".hl-insp-topic").fill("lobby")
        root.locator(".hl-insp-table").fill("messages")
        root.locator(".hl-insp-pgevent").select_option("INSERT")
        root.locator(".hl-insp-join .hl-check input").nth(1).check()  # presence
        root.locator(".hl-insp-join-btn").click()
        page.wait_for_selector(f"{ROOT_SEL} .hl-chip[data-topic='lobby'][data-status='connected']")
        bindings = lp.kernel("insp.channels['lobby']['bindings'][:2]")
        assert bindings == "['INSERT public.messages', 'broadcast *']"

        # a broadcast from another client appears, and its detail is the JSON that was sent
        assert "SUBSCRIBED" in lp.kernel(PEER)
        lp.kernel('await pch.send_broadcast("cursor", {"x": 12, "who": "peer"})')
        row = root.locator(".hl-insp-row[data-kind='broadcast'][data-event='cursor']")
        row.first.wait_for()
        row.first.click()
        page.wait_for_selector(f"{ROOT_SEL} .hl-insp-detail[data-loaded='true']")
        shown = json.loads(root.locator(".hl-insp-json").inner_text())
        assert shown == {"event": "cursor", "payload": {"x": 12, "who": "peer"}}

        # a row change appears with its JSON (as service role: anon may not read messages)
        root.locator(".hl-insp-role").select_option("service_role")
        root.locator(".hl-insp-listen").click()
        page.wait_for_selector(f"{ROOT_SEL}[data-identity='service_role']")
        lp.kernel(WAIT_PG)
        msg_id = int(lp.kernel(INSERT.format(channel="GENERAL", content="hello inspector")))
        change = root.locator(".hl-insp-row[data-kind='postgres_changes']")
        change.first.wait_for()
        change.first.click()
        page.wait_for_function(
            f"""() => {{ const d = document.querySelector("{ROOT_SEL} .hl-insp-detail");
            return d && d.dataset.loaded === 'true' && d.textContent.includes('hello inspector'); }}"""
        )
        detail = json.loads(root.locator(".hl-insp-json").inner_text())
        assert detail["eventType"] == "INSERT"
        assert detail["table"] == "messages"
        assert detail["new"]["id"] == msg_id
        assert detail["new"]["content"] == "hello inspector"

        # filters: only broadcasts, then a text search; the kernel sees the same filter
        total = int(root.get_attribute("data-nentries"))
        root.locator(".hl-insp-kind[data-kind='broadcast'] input").check()
        page.wait_for_selector(f"{ROOT_SEL}[data-nshown='1']")
        assert lp.kernel("insp.filters['kind']") == "['broadcast']"
        assert lp.kernel("len(insp.visible)") == "1"
        root.locator(".hl-insp-kind[data-kind='broadcast'] input").uncheck()
        root.locator(".hl-insp-ftext").fill("hello inspector")
        page.wait_for_selector(f"{ROOT_SEL}[data-nshown='1']")
        assert root.locator(".hl-insp-row[data-kind='postgres_changes']").count() == 1
        root.locator(".hl-insp-ftext").fill("")
        page.wait_for_selector(f"{ROOT_SEL}[data-nshown='{total}']")

        # pause: new messages are counted, not shown; resume shows them
        root.locator(".hl-pause").click()
        page.wait_for_selector(f"{ROOT_SEL}[data-paused='true']")
        held = int(root.get_attribute("data-nentries"))
        lp.kernel('for i in range(3): await pch.send_broadcast("tick", {"i": i})')
        page.wait_for_selector(f"{ROOT_SEL}[data-pending='3']")
        assert root.locator(".hl-badge").inner_text() == "3 new"
        assert int(root.get_attribute("data-nentries")) == held
        root.locator(".hl-pause").click()
        page.wait_for_selector(f"{ROOT_SEL}[data-paused='false'][data-nentries='{held + 3}']")

        # a broadcast sent from the UI reaches the realtime-py client
        root.locator(".hl-insp-channel").select_option("lobby")
        root.locator(".hl-insp-send-event").fill("from-ui")
        root.locator(".hl-insp-payload").fill('{"text": "hi from the browser"}')
        root.locator(".hl-insp-send").click()
        page.wait_for_selector(f"{ROOT_SEL}[data-last-action='send:ok']")
        lp.kernel("for _ in range(100):\n    if got: break\n    await asyncio.sleep(0.05)")
        assert lp.kernel("[(m['event'], m['payload']) for m in got]") == (
            "[('from-ui', {'text': 'hi from the browser'})]"
        )

        # listen as a user: RLS hides #engineering from Bob
        bob = lp.kernel("str(BOB)").strip("'")
        root.locator(".hl-insp-role").select_option("user")
        root.locator(".hl-insp-user").fill(bob)
        root.locator(".hl-insp-listen").click()
        page.wait_for_selector(f"{ROOT_SEL}[data-identity='user {bob}']")
        page.wait_for_selector(f"{ROOT_SEL} .hl-chip[data-topic='lobby'][data-status='connected']")
        lp.kernel(WAIT_PG)
        lp.kernel(INSERT.format(channel="ENGINEERING", content="secret engineering"))
        lp.kernel(INSERT.format(channel="GENERAL", content="general after switch"))
        root.locator(".hl-insp-ftext").fill("after switch")
        page.wait_for_selector(f"{ROOT_SEL}[data-nshown='1']")
        root.locator(".hl-insp-ftext").fill("secret engineering")
        page.wait_for_selector(f"{ROOT_SEL}[data-nshown='0']")
        assert lp.kernel("int(insp.log['summary'].str.contains('secret engineering').sum())") == "0"
        root.locator(".hl-insp-ftext").fill("")

        # a refused join shows the server's reason on its chip
        root.locator(".hl-insp-topic").fill("refused")
        root.locator(".hl-insp-table").fill("insp_unpublished")
        root.locator(".hl-insp-join .hl-check input").nth(1).uncheck()
        root.locator(".hl-insp-join-btn").click()
        chip = root.locator(".hl-chip[data-topic='refused'][data-status='error']")
        chip.wait_for()
        assert "Unable to subscribe to changes" in chip.locator(".hl-chip-reason").inner_text()

        # a bad filter in the form: the manager's error is shown, nothing joined
        root.locator(".hl-insp-topic").fill("bad")
        root.locator(".hl-insp-table").fill("messages")
        root.locator(".hl-insp-filter").fill("channel_id=eqq.1")
        root.locator(".hl-insp-join-btn").click()
        page.wait_for_selector(f"{ROOT_SEL}[data-last-action='join:failed']")
        assert "join:" in root.locator(".hl-insp-error").inner_text()
        assert root.locator(".hl-chip[data-topic='bad']").count() == 0
        page.screenshot(path=str(artifacts / "inspector.png"), full_page=True)
    finally:
        lp.kernel(
            "if 'peer' in globals(): await peer.close()\n"
            "if 'insp' in globals(): await insp.aclose()\n"
            "if 'rt' in globals(): rt.stop()",
            check=False,
        )


# ------------------------------------------------------------------ the ES module in bare Chromium

RENDER = """async ({state, messages}) => {
  const css = document.createElement("link");
  css.rel = "stylesheet";
  css.href = "inspector.css";
  const loaded = new Promise((resolve) => { css.onload = resolve; });
  document.head.appendChild(css);
  await loaded;
  const mod = await import("./inspector.js");
  const fake = makeModel(state);
  window.fake = fake;
  window.teardown = mod.default.render({model: fake.model, el: document.getElementById("host")});
  window.feed = (msgs) => {
    for (const [m, bufs] of msgs) fake.emit(m, bufs.map((b) => asDataView(b64(b))));
  };
  feed(messages);
}"""


def captured(c) -> list[list]:
    """The custom messages a Python Inspector sent, as [content, [base64 buffers]] pairs."""
    out = []
    for m in c.customs():
        content = {k: v for k, v in m.items() if not k.startswith("_")}
        out.append([content, [base64.b64encode(b).decode() for b in m["_buffers"]]])
    return out


@pytest.mark.browser
def test_the_log_view_holds_100_000_entries_and_renders_only_what_is_visible(harness, monkeypatch):
    from harmony_lab.events import EventKind, RealtimeEvent
    from harmony_lab.inspector import Inspector
    from tests.widgets.recording_comm import install

    install(monkeypatch)
    insp = Inspector(url="http://127.0.0.1:9", key="anon", capacity=100_000)
    kinds = [EventKind.BROADCAST] * 8 + [EventKind.PRESENCE] * 2
    for i in range(100_000):
        kind = kinds[i % 10]
        if kind is EventKind.BROADCAST:
            insp._on_event(RealtimeEvent(kind=kind, channel=f"room:{i % 3}", op="cursor", payload={"i": i}))
        else:
            insp._on_event(RealtimeEvent(kind=kind, channel="room:0", op="sync", payload={f"u{i}": [{}]}))
    c = insp.comm
    c.front({"type": "ready"})
    assert len(c.customs("snapshot")) == 5  # 20 000 rows per message
    state = {
        k: getattr(insp, k)
        for k in ("filters", "paused", "identity", "hosted", "user_hints", "error", "height", "status")
    }
    harness.evaluate(RENDER, {"state": state, "messages": captured(c)})
    root = "#host .hl-inspector"
    harness.wait_for_selector(f"{root}[data-nentries='100000'][data-nshown='100000']")
    assert harness.locator(f"{root} .hl-insp-row.hl-tr").count() < 60  # virtualised
    # the view follows the newest entry
    assert harness.locator(f"{root} .hl-insp-row[data-id='100000']").count() == 1

    # 50 more: the ring drops the 50 oldest, in the kernel and in the view
    c.clear()
    for i in range(50):
        insp._on_event(RealtimeEvent(kind=EventKind.BROADCAST, channel="room:9", op="late", payload={"i": i}))
    insp.flush()
    harness.evaluate("(msgs) => feed(msgs)", captured(c))
    harness.wait_for_selector(f"{root}[data-nentries='100000'] .hl-insp-row[data-id='100050']")
    assert insp.messages.first_id == 51

    # a kind filter: the view's count is the kernel's, and the trait is saved
    harness.locator(f"{root} .hl-insp-kind[data-kind='presence'] input").check()
    presence = int((insp.log["kind"] == "presence").sum())
    harness.wait_for_selector(f"{root}[data-nshown='{presence}']")
    assert harness.evaluate("() => fake.state.filters.kind") == ["presence"]
    assert harness.evaluate("() => fake.saves") >= 1

    # scrolling to the top renders the oldest presence rows, still only a window of them
    harness.evaluate(f"() => {{ const v = document.querySelector('{root} .hl-viewport'); v.scrollTop = 0; }}")
    first_presence = int(insp.log.loc[insp.log["kind"] == "presence", "id"].iloc[0])
    harness.wait_for_selector(f"{root} .hl-insp-row[data-id='{first_presence}']")
    assert harness.locator(f"{root} .hl-insp-row.hl-tr").count() < 60

    # a click asks the kernel for that entry's detail
    harness.locator(f"{root} .hl-insp-row[data-id='{first_presence}']").click()
    assert harness.evaluate("() => fake.sent.filter((m) => m.type === 'detail').map((m) => m.id)") == [
        first_presence
    ]
    c.clear()
    c.front({"type": "detail", "id": first_presence})
    harness.evaluate("(msgs) => feed(msgs)", captured(c))
    harness.wait_for_selector(f"{root} .hl-insp-detail[data-loaded='true']")
    assert json.loads(harness.locator(f"{root} .hl-insp-json").inner_text()) == insp.detail(first_presence)

    # pause: the button sets the trait; pending counts show as the badge
    harness.locator(f"{root} .hl-pause").click()
    assert harness.evaluate("() => fake.state.paused") is True
    harness.evaluate("() => feed([[{type: 'pending', seq: 99, pending: 7}, []]])")
    harness.wait_for_selector(f"{root}[data-pending='7']")
    assert harness.locator(f"{root} .hl-badge").inner_text() == "7 new"
    harness.evaluate("() => window.teardown()")
    assert harness.evaluate("() => fake.sent.at(-1).type") == "bye"
    insp.close()
