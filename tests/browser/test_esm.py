"""The widgets' built ES modules in bare Chromium with a fake anywidget model (fast; no Jupyter).

The Arrow decoding (flechette, in the table's bundle) is checked against pyarrow-written streams; the
table is fed the exact messages the Python LiveTableWidget sends (captured at its comm), so both
halves of the protocol meet here.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from harmony_lab.frames import LiveFrame
from harmony_lab.widgets import PresenceRosterWidget, StatusTimelineWidget, _assets, _wire
from tests.browser.table_rig import TableRig, b64
from tests.frames.frame_events import make_change, message
from tests.widgets.recording_comm import install

pytestmark = pytest.mark.browser


def stream(*batches: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batches[0].schema) as w:
        for b in batches:
            w.write_batch(b)
    return sink.getvalue().to_pybytes()


DECODE = """([data, offset]) => {
  const raw = b64(data);
  let bytes = raw;
  if (offset) {
    const big = new Uint8Array(raw.length + offset);
    big.set(raw, offset);
    bytes = asDataView(big.subarray(offset));
  }
  const t = mods.arrow.decodeStream(bytes);
  const plain = (x) => (typeof x === "bigint" ? { big: x.toString() } : Number.isNaN(x) ? "NaN"
    : Array.isArray(x) ? { list: x.map(plain), text: String(x) }
    : x !== null && typeof x === "object" ? { text: String(x), number: +x } : x);
  const cols = {};
  for (const [k, v] of Object.entries(t.columns)) cols[k] = v.map(plain);
  return { fields: t.fields, length: t.length, columns: cols };
}"""


def expected(table: pa.Table) -> dict[str, list[Any]]:
    out = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        values = col.to_pylist()
        fixed = []
        for v in values:
            if isinstance(v, float) and math.isnan(v):
                fixed.append("NaN")
            elif isinstance(v, int) and abs(v) > 2**53 - 1:
                fixed.append({"big": str(v)})
            else:
                fixed.append(v)
        out[name] = fixed
    return out


@pytest.mark.parametrize("offset", [0, 1, 3])
def test_arrow_reader_matches_pyarrow(harness, offset):
    schema = pa.schema(
        [
            ("i8", pa.int8()),
            ("i16", pa.int16()),
            ("i32", pa.int32()),
            ("i64", pa.int64()),
            ("u8", pa.uint8()),
            ("u32", pa.uint32()),
            ("u64", pa.uint64()),
            ("f32", pa.float32()),
            ("f64", pa.float64()),
            ("ok", pa.bool_()),
            ("s", pa.string()),
            ("tz", pa.timestamp("us", tz="UTC")),
            ("naive", pa.timestamp("ms")),
            ("nothing", pa.null()),
        ]
    )
    rows1 = {
        "i8": [-128, None, 127],
        "i16": [-1, 2, None],
        "i32": [None, -(2**31), 2**31 - 1],
        "i64": [2**62, -(2**53) + 1, None],
        "u8": [0, 255, None],
        "u32": [2**32 - 1, None, 0],
        "u64": [2**64 - 1, 1, None],
        "f32": [1.5, None, -0.25],
        "f64": [math.nan, 1e300, None],
        "ok": [True, None, False],
        "s": ["héllo ☃", "", None],
        "tz": [1_714_564_800_123_456, None, 0],
        "naive": [None, 1_714_564_800_123, -1],
        "nothing": [None, None, None],
    }
    rows2 = {k: [v[0]] * 9 for k, v in rows1.items()}  # a second batch, 9 rows (odd bitmap sizes)
    b1 = pa.RecordBatch.from_pydict(rows1, schema=schema)
    b2 = pa.RecordBatch.from_pydict(rows2, schema=schema)
    empty = pa.RecordBatch.from_pydict({k: [] for k in rows1}, schema=schema)
    data = stream(b1, empty, b2)
    got = harness.evaluate(DECODE, [b64(data), offset])
    want = expected(pa.Table.from_batches([b1, empty, b2]))
    assert got["length"] == 12
    assert [f["name"] for f in got["fields"]] == schema.names
    assert got["fields"][11]["type"] == {"kind": "timestamp", "unit": "us", "tz": "UTC"}
    assert got["fields"][12]["type"] == {"kind": "timestamp", "unit": "ms", "tz": None}
    assert got["fields"][3]["type"] == {"kind": "int", "bits": 64, "signed": True}
    assert got["fields"][6]["type"] == {"kind": "int", "bits": 64, "signed": False}
    for name in schema.names:
        assert got["columns"][name] == want[name], name


def test_arrow_reader_reads_what_the_widget_sends(harness):
    lf = LiveFrame(None, "messages")
    for i in range(3):
        lf.apply(make_change("INSERT", message(i)))
    data = _wire.ipc_bytes(_wire.wire_batch(lf, lf.row_ids()))
    got = harness.evaluate(DECODE, [b64(data), 0])
    assert got["columns"]["__rid"] == [0, 1, 2]
    assert got["columns"]["id"] == [0, 1, 2]
    assert got["columns"]["body"] == ["hello 0", "hello 1", "hello 2"]
    assert got["columns"]["created_at"][1] == 1_714_564_801_000_001
    assert got["columns"]["tags"][2] == {"list": ["a", "t2"], "text": '["a","t2"]'}
    assert json.loads(got["columns"]["payload"][2]) == {"n": 2, "nested": {"ok": True}}
    kinds = {f["name"]: f["type"]["kind"] for f in got["fields"]}
    assert kinds == {
        "__rid": "int",
        "id": "int",
        "channel_id": "int",
        "body": "utf8",
        "created_at": "timestamp",
        "edited": "bool",
        "tags": "list",
        "payload": "json",
    }


def test_arrow_reader_reads_decimals_dates_and_lists_exactly(harness):
    batch = pa.RecordBatch.from_pydict(
        {
            "price": pa.array(
                [Decimal("19.90"), Decimal("-0.05"), Decimal("-7"), None], pa.decimal128(38, 2)
            ),
            "huge": pa.array([Decimal("12345678901234567890.123456789")] * 4, pa.decimal128(38, 9)),
            "day": pa.array([dt.date(2024, 2, 29), None, dt.date(1969, 12, 31), None], pa.date32()),
            "ints": pa.array([[1, None, 2**60 + 1], [], None, [0]], pa.list_(pa.int64())),
        }
    )
    got = harness.evaluate(DECODE, [b64(stream(batch)), 3])
    assert [v and v["text"] for v in got["columns"]["price"]] == ["19.9", "-0.05", "-7", None]
    assert got["columns"]["price"][0]["number"] == 19.9
    assert got["columns"]["huge"][0]["text"] == "12345678901234567890.123456789"
    assert got["columns"]["day"] == ["2024-02-29", None, "1969-12-31", None]
    assert got["columns"]["ints"][0]["text"] == f"[1,null,{2**60 + 1}]"
    assert got["columns"]["ints"][0]["list"] == [1, None, {"big": str(2**60 + 1)}]
    assert got["columns"]["ints"][1]["text"] == "[]"
    assert got["columns"]["ints"][2] is None
    assert got["fields"][0]["type"] == {"kind": "decimal", "precision": 38, "scale": 2}


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (pa.array([{"x": 1}]), "column c has type Struct, which the widgets do not show"),
        (pa.array([b"x"]), "column c has type Binary, which the widgets do not show"),
    ],
)
def test_arrow_reader_rejects_what_it_does_not_know(harness, array, message):
    data = stream(pa.RecordBatch.from_arrays([array], names=["c"]))
    err = harness.evaluate(
        "(d) => { try { mods.arrow.decodeStream(b64(d)); return null; } catch (e) { return String(e); } }",
        b64(data),
    )
    assert err is not None
    assert message in err


# ------------------------------------------------------------------------------- the table widget


def frame_of(n: int, **kw: Any) -> LiveFrame:
    lf = LiveFrame(None, "messages", **kw)
    for i in range(n):
        lf.apply(make_change("INSERT", message(i)))
    return lf


def test_table_renders_the_snapshot_after_saying_ready(harness, monkeypatch):
    rig = TableRig(harness, monkeypatch, frame_of(5))
    sent = rig.from_front()
    assert sent == [{"type": "ready"}]
    rig.to_front()
    harness.wait_for_selector(".hl-table[data-nrows='5'][data-status='live']")
    assert rig.row_keys() == ["4", "3", "2", "1", "0"]  # newest first
    cells = harness.locator(".hl-tr[data-key='2'] .hl-td").all_inner_texts()
    assert cells[:3] == ["2", "2", "hello 2"]
    assert cells[3] == "2024-05-01 12:00:02.000001Z"
    assert harness.locator(".hl-th").all_inner_texts()[:3] == ["id", "channel_id", "body"]
    assert harness.locator(".hl-count").inner_text() == "5 rows"
    assert harness.locator(".hl-pill").inner_text() == "live"


NATIVE_COLUMNS = (
    ("id", "int8"),
    ("price", "numeric"),
    ("at", "timestamptz"),
    ("nums", "_int4"),
    ("tags", "_text"),
    ("doc", "jsonb"),
    ("day", "date"),
)


def test_table_shows_decimals_timestamptz_lists_and_json_natively(harness, monkeypatch):
    lf = LiveFrame(None, "orders")
    rows = [
        {
            "id": 1,
            "price": 19.9,  # a float in the event: shown as its exact shortest decimal
            "at": "2024-05-01T14:30:00.000001+02:00",
            "nums": [1, 2, 3],
            "tags": ["a", "b c"],
            "doc": {"k": [1, {"x": None}], "s": "é"},
            "day": "2024-02-29",
        },
        {
            "id": 2,
            "price": Decimal("12345678901234567890.05"),  # more digits than a float holds
            "at": None,
            "nums": [],
            "tags": [None, '"q"'],
            "doc": [True, 2**62 + 1],
            "day": None,
        },
    ]
    for r in rows:
        lf.apply(make_change("INSERT", r, columns=NATIVE_COLUMNS, table="orders"))
    rig = TableRig(harness, monkeypatch, lf)
    rig.sync()
    harness.wait_for_selector(".hl-table[data-nrows='2']")

    def cells(key: str) -> dict[str, str]:
        return harness.evaluate(
            """(key) => Object.fromEntries([...document.querySelectorAll(`.hl-tr[data-key='${key}'] .hl-td`)]
                 .map((td) => [td.dataset.col, td.textContent]))""",
            key,
        )

    assert cells("1") == {
        "id": "1",
        "price": "19.9",
        "at": "2024-05-01 12:30:00.000001Z",
        "nums": "[1,2,3]",
        "tags": '["a","b c"]',
        "doc": '{"k":[1,{"x":null}],"s":"é"}',
        "day": "2024-02-29",
    }
    assert cells("2") == {
        "id": "2",
        "price": "12345678901234567890.05",
        "at": "null",
        "nums": "[]",
        "tags": '[null,"\\"q\\""]',
        "doc": f"[true,{2**62 + 1}]",
        "day": "null",
    }
    # decimals sort by value, not as text
    harness.click(".hl-th[data-col='price']")
    harness.wait_for_selector(".hl-table[data-sort='price:asc']")
    assert rig.row_keys() == ["1", "2"]
    harness.click(".hl-th[data-col='price']")
    harness.wait_for_selector(".hl-table[data-sort='price:desc']")
    assert rig.row_keys() == ["2", "1"]
    kinds = {c[0]: c[2] for c in rig.widget.columns}
    assert kinds == {
        "id": "int",
        "price": "decimal",
        "at": "timestamptz",
        "nums": "list",
        "tags": "list",
        "doc": "json",
        "day": "date",
    }


def test_table_status_line_shows_the_reason(harness, monkeypatch):
    rig = TableRig(harness, monkeypatch, frame_of(1))
    rig.sync()
    harness.wait_for_selector(".hl-table[data-nrows='1'][data-status='live']")
    rig.widget.status = "reconnecting"
    rig.widget.reason = "connection refused (retry 2 in 4 s)"
    rig.to_front()
    harness.wait_for_selector(".hl-table[data-status='reconnecting']")
    pill = harness.locator(".hl-pill")
    assert pill.inner_text() == "reconnecting · connection refused (retry 2 in 4 s)"
    assert harness.locator(".hl-table").get_attribute("data-reason") == "connection refused (retry 2 in 4 s)"
    rig.widget.reason = ""
    rig.to_front()
    harness.wait_for_selector(".hl-table[data-reason='']")
    assert pill.inner_text() == "reconnecting"


def test_table_follows_inserts_updates_deletes_with_flashes(harness, monkeypatch, artifacts):
    rig = TableRig(harness, monkeypatch, frame_of(3))
    rig.sync()
    harness.wait_for_selector(".hl-table[data-nrows='3']")
    rig.frame.apply(make_change("INSERT", message(10, body="brand new")))
    rig.frame.apply(make_change("UPDATE", message(1, body="changed")))
    rig.frame.apply(make_change("DELETE", None, old={"id": 0}))
    rig.sync()
    harness.wait_for_selector(".hl-table[data-nrows='3'][data-seq='2']")
    harness.wait_for_selector(".hl-tr[data-key='10'].hl-flash-insert")
    harness.wait_for_selector(".hl-tr[data-key='1'].hl-flash-update")
    harness.wait_for_selector(".hl-tr[data-key='0'].hl-flash-delete.hl-ghost")
    assert "brand new" in harness.locator(".hl-tr[data-key='10']").inner_text()
    assert "changed" in harness.locator(".hl-tr[data-key='1']").inner_text()
    harness.screenshot(path=artifacts / "esm-table-flashes.png")
    harness.wait_for_selector(".hl-tr[data-key='0']", state="detached")  # the ghost fades out
    harness.wait_for_selector(".hl-flash-insert", state="detached")


def test_table_key_change_keeps_the_row(harness, monkeypatch):
    rig = TableRig(harness, monkeypatch, frame_of(3))
    rig.sync()
    rig.frame.apply(make_change("UPDATE", message(100, body="renumbered"), old={"id": 1}))
    rig.sync()
    harness.wait_for_selector(".hl-tr[data-key='100'].hl-flash-update")
    assert harness.locator(".hl-tr[data-key='1']").count() == 0
    assert rig.state()["nrows"] == "3"


def test_table_sorts_and_searches(harness, monkeypatch):
    lf = frame_of(6)
    lf.apply(make_change("UPDATE", message(3, body="zebra")))
    rig = TableRig(harness, monkeypatch, lf)
    rig.sync()
    harness.wait_for_selector(".hl-table[data-nrows='6']")
    harness.click(".hl-th[data-col='body']")
    harness.wait_for_selector(".hl-table[data-sort='body:asc']")
    assert rig.row_keys() == ["0", "1", "2", "4", "5", "3"]
    harness.click(".hl-th[data-col='body']")
    harness.wait_for_selector(".hl-table[data-sort='body:desc']")
    assert rig.row_keys()[0] == "3"
    harness.click(".hl-th[data-col='body']")
    harness.wait_for_selector(".hl-table[data-sort='']")
    harness.fill(".hl-search", "zeb")
    harness.wait_for_selector(".hl-table[data-nshown='1']")
    assert rig.row_keys() == ["3"]
    assert harness.locator(".hl-count").inner_text() == "1 of 6 rows"
    harness.fill(".hl-search", "")
    harness.wait_for_selector(".hl-table[data-nshown='6']")


def test_table_pause_holds_updates_and_shows_the_badge(harness, monkeypatch):
    rig = TableRig(harness, monkeypatch, frame_of(2))
    rig.sync()
    harness.wait_for_selector(".hl-table[data-nrows='2']")
    harness.click(".hl-pause")
    assert harness.evaluate("() => [fake.model.get('paused'), fake.saves]") == [True, 1]
    rig.comm.front_state(paused=True)  # what save_changes() delivers to the kernel
    harness.evaluate("() => { fake.sent = []; }")
    for i in range(2, 5):
        rig.frame.apply(make_change("INSERT", message(i)))
    rig.sync()
    harness.wait_for_selector(".hl-table[data-paused='true'][data-pending='3']")
    assert harness.locator(".hl-badge").inner_text() == "3 new"
    assert rig.state()["nrows"] == "2"
    harness.click(".hl-pause")
    rig.comm.front_state(paused=False)
    rig.sync()
    harness.wait_for_selector(".hl-table[data-paused='false'][data-nrows='5']")
    assert harness.locator(".hl-badge").is_hidden()


def test_table_asks_for_a_resync_when_counts_disagree(harness, monkeypatch):
    rig = TableRig(harness, monkeypatch, frame_of(2))
    rig.sync()
    harness.wait_for_selector(".hl-table[data-nrows='2']")
    harness.evaluate("() => fake.emit({ type: 'delta', seq: 99, deletes: [], nrows: 7, events: 0 }, [])")
    sent = rig.from_front()
    assert sent[0]["type"] == "resync"
    assert "kernel has 7" in sent[0]["reason"]
    rig.widget.flush()
    assert rig.comm.customs("snapshot")


def test_table_virtualises_100k_rows(harness, monkeypatch, artifacts):
    lf = LiveFrame(None, "messages", max_rows=None)
    cols = (("id", "int8"), ("body", "text"), ("score", "float8"))
    for i in range(100_000):
        lf.apply(make_change("INSERT", {"id": i, "body": f"row {i}", "score": i / 7}, columns=cols))
    rig = TableRig(harness, monkeypatch, lf)
    rig.from_front()
    t_apply = harness.evaluate("() => performance.now()")
    rig.to_front()
    harness.wait_for_selector(".hl-table[data-nrows='100000']")
    t_shown = harness.evaluate("() => performance.now()")
    n_dom = harness.locator(".hl-tr").count()
    assert n_dom < 60  # only the visible window (+ overscan) is in the DOM
    harness.evaluate(
        "() => { const v = document.querySelector('.hl-viewport'); v.scrollTop = v.scrollHeight; }"
    )
    harness.wait_for_selector(".hl-tr[data-key='0']")
    assert harness.locator(".hl-tr").count() < 60
    took = harness.evaluate(
        """async () => {
        const t0 = performance.now();
        document.querySelector(".hl-th[data-col='score']").click();
        await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
        return performance.now() - t0; }"""
    )
    harness.wait_for_selector(".hl-table[data-sort='score:asc']")
    harness.screenshot(path=artifacts / "esm-table-100k.png")
    print(f"\n100k rows: snapshot shown in {t_shown - t_apply:.0f} ms (incl. transfer), sort {took:.0f} ms")


def test_table_cleanup_says_bye_and_detaches(harness, monkeypatch):
    rig = TableRig(harness, monkeypatch, frame_of(1))
    rig.sync()
    assert harness.evaluate("() => fake.listeners('msg:custom')") == 1
    harness.evaluate("() => cleanup()")
    assert harness.evaluate("() => fake.listeners('msg:custom')") == 0
    assert rig.from_front() == [{"type": "bye"}]
    assert rig.widget.views == 0


def test_bundled_esm_loads_from_a_blob_like_anywidget_does(harness):
    for name in ("live_table.js", "presence_roster.js", "status_timeline.js", "inspector.js"):
        src = _assets.esm(name)
        assert "import {" not in src
        kind = harness.evaluate(
            """async (src) => {
            const url = URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
            const mod = await import(url);
            return typeof mod.default.render; }""",
            src,
        )
        assert kind == "function", name


# ------------------------------------------------------------------------ roster and timeline


def mount(page: Any, module: str, state: dict[str, Any]) -> None:
    page.evaluate(
        """([module, state]) => {
        window.fake = makeModel(state);
        const el = document.getElementById('host');
        window.cleanup = mods[module].default.render({ model: fake.model, el });
        }""",
        [module, state],
    )


def test_roster_view(harness, monkeypatch, artifacts):
    install(monkeypatch)
    now = 1_714_564_800.0
    w = PresenceRosterWidget(wall_clock=lambda: now)
    from harmony_lab.events import RealtimeEvent

    w.apply(
        RealtimeEvent(
            kind="presence",
            channel="lobby",
            op="sync",
            payload={
                "a": [{"user_id": "a", "status": "online", "display_name": "Ada Lovelace"}],
                "g": [{"user_id": "g", "status": "dnd", "display_name": "Grace Hopper"}],
                "i": [{"user_id": "i", "status": "invisible", "display_name": "Ivy"}],
            },
        )
    )
    w._typing["a"] = int(now * 1000) + 60_000
    users = w.roster()
    mount(harness, "roster", {"users": users, "now_ms": int(now * 1000), "title": "Lobby", "status": "live"})
    harness.wait_for_selector(".hl-roster[data-present='2'][data-nusers='3']")
    assert harness.locator(".hl-user[data-user='a'] .hl-avatar").inner_text().startswith("AL")
    assert harness.locator(".hl-user[data-user='a'] .hl-dot").get_attribute("data-status") == "online"
    assert harness.locator(".hl-user[data-user='a'][data-typing='true'] .hl-typing").count() == 1
    assert harness.locator(".hl-user[data-user='g'] .hl-dot").get_attribute("data-status") == "dnd"
    assert harness.locator(".hl-user[data-user='i']").get_attribute("data-status") == "offline"
    assert "last seen" in harness.locator(".hl-user[data-user='i'] .hl-sub").inner_text()
    harness.screenshot(path=artifacts / "esm-roster.png")
    users[0]["status"] = "away"
    harness.evaluate("(u) => fake.model.set('users', u)", users)
    harness.wait_for_selector(".hl-user[data-user='a'][data-status='away']")
    assert harness.evaluate("() => fake.sent") == [{"type": "ready"}]


def test_timeline_view(harness, monkeypatch, artifacts):
    install(monkeypatch)
    from harmony_lab.events import RealtimeEvent
    from tests.widgets.widget_events import status_event

    t0 = 1_714_564_800.0
    now = t0 + 60
    w = StatusTimelineWidget(wall_clock=lambda: now, window_s=120)
    w.apply(status_event("messages", "connecting", at=t0))
    w.apply(status_event("messages", "connected", at=t0 + 1))
    w.apply(status_event("messages", "reconnecting", at=t0 + 20, attempt=1, reason="socket closed"))
    w.apply(status_event("messages", "reconnecting", at=t0 + 22, attempt=2, reason="refused"))
    w.apply(status_event("messages", "connected", at=t0 + 25))
    when = lambda s: __import__("datetime").datetime.fromtimestamp(t0 + s, __import__("datetime").UTC)  # noqa: E731
    w.apply(
        RealtimeEvent(
            kind="gap", channel="messages", gap_start=when(20), gap_end=when(25), received_at=when(25)
        )
    )
    w.apply(
        RealtimeEvent(kind="heartbeat", channel="messages", payload={"rtt_ms": 4.5}, received_at=when(30))
    )
    w.apply(status_event("presence", "connected", at=t0 + 2))
    state = {"lanes": w.state(), "now_ms": w.now_ms_for_display(), "window_s": 120.0, "title": "Status"}
    mount(harness, "timeline", {**state, "status": "live"})
    lane = ".hl-lane[data-channel='messages']"
    harness.wait_for_selector(f"{lane}[data-status='connected']")
    statuses = harness.locator(f"{lane} .hl-span").evaluate_all("els => els.map((e) => e.dataset.status)")
    assert statuses == ["connecting", "connected", "reconnecting", "reconnecting", "connected"]
    assert harness.locator(f"{lane} .hl-span[data-open='true']").get_attribute("data-status") == "connected"
    assert harness.locator(f"{lane} .hl-retry").all_inner_texts() == ["1", "2"]
    assert "retry #2" in harness.locator(f"{lane} .hl-retry[data-attempt='2']").get_attribute("title")
    assert harness.locator(f"{lane} .hl-gap").count() == 1
    assert "socket closed" in harness.locator(
        f"{lane} .hl-span[data-status='reconnecting']"
    ).first.get_attribute("title")
    assert "RTT 4.5 ms" in harness.locator(f"{lane} .hl-rtt").inner_text()
    assert harness.locator(f"{lane} .hl-now").count() == 1
    assert harness.locator(".hl-lane").count() == 2
    # zoomed to the 60 s of history (+10 %), not the whole 120 s window
    assert 66_000 <= int(harness.locator(".hl-timeline").get_attribute("data-window-ms")) < 67_000
    harness.screenshot(path=artifacts / "esm-timeline.png")
