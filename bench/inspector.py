"""Inspector benchmark: a fast message stream into the Inspector, and the browser scrolling its log.

1. ``RATE`` messages/s (default 5 000: 70 % broadcast, 20 % postgres_changes, 10 % presence) for
   ``SECONDS`` s (default 60) into an Inspector whose front end said ready: front-end messages/s and
   bytes/s (captured at the comm), the Python process's CPU share and RSS, log entries held. The
   baseline, in the same run: the same stream into a listener that only counts.
2. The browser (Debian's Chromium, when installed): the Inspector's view with ``ROWS`` entries
   (default 100 000) scrolled by 1 000 px per frame for 300 frames — frame time p50/p95/max; the
   baseline is the same scroll loop on the page without the widget.

    python bench/inspector.py            # 5 000 msg/s for 60 s, 100 000 rows
    python bench/inspector.py --quick    # 5 000 msg/s for 5 s, 20 000 rows
    HARMONY_BENCH_INSPECTOR_RATE=10000 HARMONY_BENCH_INSPECTOR_SECONDS=30 python bench/inspector.py
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

from _comm import counting_comms
from _table import parse_quick, print_table

from harmony_lab.events import EventKind, RealtimeEvent
from harmony_lab.inspector import Inspector

ROOT = Path(__file__).resolve().parents[1]
WIDGETS = ROOT / "widgets"


def make_events(n: int) -> list[RealtimeEvent]:
    out = []
    for i in range(n):
        r = i % 10
        if r < 7:
            out.append(
                RealtimeEvent(
                    kind=EventKind.BROADCAST,
                    channel=f"room:{i % 5}",
                    op="cursor" if i % 2 else "typing",
                    payload={"user": f"user-{i % 50}", "x": i % 1000, "y": (i * 7) % 800},
                )
            )
        elif r < 9:
            row = {
                "id": i,
                "channel_id": i % 5,
                "user_id": f"user-{i % 50}",
                "content": f"message number {i}",
            }
            out.append(
                RealtimeEvent(
                    kind=EventKind.CHANGE,
                    channel="feed",
                    schema="public",
                    table="messages",
                    op="INSERT",
                    new=row,
                    old={},
                    pk={"id": i},
                )
            )
        else:
            out.append(
                RealtimeEvent(
                    kind=EventKind.PRESENCE,
                    channel=f"room:{i % 5}",
                    op="join",
                    payload={"key": f"user-{i % 50}", "current": [], "new": [{"status": "online"}]},
                )
            )
    return out


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def stream(rate: int, seconds: float, sink: Any, pool: list[RealtimeEvent]) -> tuple[int, float, float]:
    """Feed ``rate`` events/s in 10 ms batches; returns (events, wall s, CPU s)."""
    loop = asyncio.get_running_loop()
    batch = max(1, rate // 100)
    sent = 0
    cpu0, t0 = time.process_time(), loop.time()
    end = t0 + seconds
    i = 0
    n = len(pool)
    while loop.time() < end:
        target = int((loop.time() - t0) * rate)
        while sent < target:
            for _ in range(min(batch, target - sent)):
                sink(pool[i])
                i = i + 1 if i + 1 < n else 0
                sent += 1
        await asyncio.sleep(0.01)
    return sent, loop.time() - t0, time.process_time() - cpu0


async def kernel_side(rate: int, seconds: float) -> list[dict[str, Any]]:
    pool = make_events(20_000)
    rows: list[dict[str, Any]] = []
    count = 0

    def counter(_ev: RealtimeEvent) -> None:
        nonlocal count
        count += 1

    rss0 = rss_mb()
    n, wall, cpu = await stream(rate, seconds, counter, pool)
    rows.append(
        {
            "case": "baseline: a listener that only counts",
            "events": n,
            "events_per_s": n / wall,
            "cpu_share_pct": 100 * cpu / wall,
            "rss_mb": rss_mb(),
        }
    )
    with counting_comms() as made:
        insp = Inspector(url="http://127.0.0.1:9", key="bench")
    c = made[-1]
    c.ready()
    c.reset()
    n, wall, cpu = await stream(rate, seconds, insp._on_event, pool)
    insp.flush()
    rows.append(
        {
            "case": "Inspector (front end ready)",
            "events": n,
            "events_per_s": n / wall,
            "cpu_share_pct": 100 * cpu / wall,
            "rss_mb": rss_mb(),
            "rss_growth_mb": rss_mb() - rss0,
            "fe_msgs_per_s": c.messages / wall,
            "fe_custom_per_s": c.customs / wall,
            "fe_kb_per_s": c.bytes / wall / 1024,
            "held": len(insp.messages),
            "evicted": insp.messages.evicted,
        }
    )
    insp.close()
    return rows


# --------------------------------------------------------------------------------- the browser

PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="stylesheet" href="harmony.css">
<link rel="stylesheet" href="inspector.css"></head><body><div id="host" style="width: 1100px"></div>
<script type="module">
window.b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
window.ready = true;
</script></body></html>"""

SCROLL = """async ({withWidget, b64, nrows, frames}) => {
  const host = document.getElementById("host");
  let teardown = null;
  let viewport = null;
  if (withWidget) {
    const mod = await import("./inspector.js");
    const state = {filters: {kind: [], channel: [], event: [], text: ""}, paused: false, height: 600,
                   status: "live", identity: "anon", user_hints: [], error: "", hosted: false};
    const handlers = new Map();
    const model = {
      get: (k) => state[k], set: (k, v) => { state[k] = v; }, save_changes: () => {}, send: () => {},
      on: (e, f) => { if (!handlers.has(e)) handlers.set(e, []); handlers.get(e).push(f); },
      off: () => {},
    };
    teardown = mod.default.render({model, el: host});
    const buf = window.b64(b64);
    for (const f of handlers.get("msg:custom")) {
      const msg = {type: "snapshot", seq: 1, part: 0, parts: 1, first_id: 1, last_id: nrows};
      f(msg, [new DataView(buf.buffer)]);
    }
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    viewport = host.querySelector(".hl-viewport");
  } else {
    viewport = document.createElement("div");
    viewport.style.height = "600px";
    viewport.style.overflowY = "auto";
    const spacer = document.createElement("div");
    spacer.style.height = `${nrows * 22}px`;
    viewport.appendChild(spacer);
    host.appendChild(viewport);
  }
  const times = [];
  let last = performance.now();
  for (let i = 0; i < frames; i++) {
    viewport.scrollTop = (i * 1000) % (nrows * 22 - 600);
    viewport.dispatchEvent(new Event("scroll"));
    await new Promise((r) => requestAnimationFrame(r));
    const now = performance.now();
    times.push(now - last);
    last = now;
  }
  const rows = host.querySelectorAll(".hl-insp-row.hl-tr").length;
  if (teardown) teardown();
  host.replaceChildren();
  times.sort((a, b) => a - b);
  const q = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))];
  return {p50: q(0.5), p95: q(0.95), max: times[times.length - 1], domRows: rows};
}"""


def browser_side(nrows: int) -> list[dict[str, Any]]:
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return [{"case": "browser: skipped (playwright is not installed)"}]
    if not Path(chromium).exists():
        return [{"case": f"browser: skipped (no chromium at {chromium})"}]
    from harmony_lab.inspector._entries import describe
    from harmony_lab.inspector._inspector import ipc_bytes, rows_batch
    from harmony_lab.inspector._log import MessageLog

    log = MessageLog(capacity=nrows)
    for ev in make_events(nrows):
        d = describe(ev)
        assert d is not None
        log.append(
            time=ev.received_at,
            channel=ev.channel,
            kind=d.kind,
            event=d.event,
            summary=d.summary,
            detail=d.detail,
        )
    payload = base64.b64encode(ipc_bytes(rows_batch(log.since(0)))).decode()
    base = "http://bench.test/"
    out: list[dict[str, Any]] = []
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=args, headless=True)
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})

        def serve(route: Any) -> None:
            name = route.request.url[len(base) :].split("?")[0] or "index.html"
            if name == "index.html":
                route.fulfill(status=200, content_type="text/html", body=PAGE)
                return
            path = WIDGETS / name
            if not path.is_file():
                route.fulfill(status=404, body="not found")
                return
            ctype = "text/css" if name.endswith(".css") else "text/javascript"
            route.fulfill(status=200, content_type=ctype, body=path.read_text(encoding="utf-8"))

        ctx.route(re.compile(r"^http://bench\.test/"), serve)
        ctx.route(re.compile(r"^https?://(?!bench\.test/)"), lambda r: r.abort())
        page = ctx.new_page()
        page.goto(base + "index.html")
        page.wait_for_function("() => window.ready === true")
        for with_widget, label in ((False, "baseline: the same scroll, no widget"), (True, "Inspector log")):
            t0 = time.perf_counter()
            res = page.evaluate(
                SCROLL, {"withWidget": with_widget, "b64": payload, "nrows": nrows, "frames": 300}
            )
            out.append(
                {
                    "case": f"browser scroll: {label}",
                    "rows": nrows,
                    "frame_p50_ms": res["p50"],
                    "frame_p95_ms": res["p95"],
                    "frame_max_ms": res["max"],
                    "dom_rows": res["domRows"],
                    "run_s": time.perf_counter() - t0,
                }
            )
        ctx.close()
        browser.close()
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    quick = parse_quick(__doc__, argv, log_level=logging.ERROR)
    rate = int(os.environ.get("HARMONY_BENCH_INSPECTOR_RATE", "5000"))
    seconds = float(os.environ.get("HARMONY_BENCH_INSPECTOR_SECONDS", "5" if quick else "60"))
    nrows = int(os.environ.get("HARMONY_BENCH_INSPECTOR_ROWS", "20000" if quick else "100000"))
    rows = asyncio.run(kernel_side(rate, seconds))
    rows += browser_side(nrows)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
