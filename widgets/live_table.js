// LiveTableWidget front end: a virtualised live table fed by Arrow IPC deltas.
// Pure helpers (createStore, applyMessage, visibleOrder, formatValue) are exported for tests.
import { decodeStream } from "./ipc.js";
export { decodeStream } from "./ipc.js";
import { h, liveView } from "./view.js";

export const ROW_HEIGHT = 26;
const OVERSCAN = 6;
export const FLASH_MS = 900;
const WIDTHS = { int: 90, float: 110, bool: 70, timestamptz: 215, timestamp: 200, text: 180, uuid: 125 };
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const UUID_TAIL = 12; // hex digits of a uuid shown: its last group, where generated ids differ

// ---------------------------------------------------------------------------------------- store
export function createStore() {
  return {
    rows: new Map(),      // rid -> {rid, v: {column: value}, ver, text, deletedAt}
    seq: -1,
    live: 0,              // rows not deleted
    version: 0,           // bumps on every applied change (order cache key)
    flashes: new Map(),   // rid -> {kind, at}
    pendingParts: null,   // snapshot being assembled
    fieldTypes: {},       // column -> arrow type from the last batch
  };
}

function rowsFrom(buffer, store) {
  const table = decodeStream(buffer);
  for (const f of table.fields) store.fieldTypes[f.name] = f.type;
  const rids = table.columns.__rid;
  const names = table.fields.map((f) => f.name).filter((n) => n !== "__rid");
  const out = [];
  for (let i = 0; i < table.length; i++) {
    const v = {};
    for (const n of names) v[n] = table.columns[n][i];
    out.push([Number(rids[i]), v]);
  }
  return out;
}

function upsert(store, rid, values, now, flash) {
  const row = store.rows.get(rid);
  if (row && row.deletedAt == null) {
    Object.assign(row.v, values);
    row.ver += 1;
    row.text = null;
    if (flash) store.flashes.set(rid, { kind: "update", at: now });
    return "update";
  }
  if (row) store.rows.delete(rid); // a ghost: re-inserted below at the end
  store.rows.set(rid, { rid, v: values, ver: 0, text: null, deletedAt: null });
  store.live += 1;
  if (flash) store.flashes.set(rid, { kind: "insert", at: now });
  return "insert";
}

function remove(store, rid, now, flash) {
  const row = store.rows.get(rid);
  if (!row || row.deletedAt != null) return false;
  store.live -= 1;
  if (flash) {
    row.deletedAt = now;      // stays visible briefly as a fading ghost
    store.flashes.set(rid, { kind: "delete", at: now });
  } else {
    store.rows.delete(rid);
  }
  return true;
}

// Apply one kernel message. Returns {applied, inserted, updated, deleted, consistent}.
export function applyMessage(store, msg, buffers, now = Date.now(), flash = true) {
  const res = { applied: false, inserted: 0, updated: 0, deleted: 0, consistent: true };
  if (msg.type === "snapshot") {
    if (msg.part === 0) store.pendingParts = [];
    if (!store.pendingParts) return res; // a later part of a snapshot whose start we missed
    store.pendingParts.push(...rowsFrom(buffers[0], store));
    if (msg.part + 1 < msg.parts) return res;
    store.rows = new Map();
    store.flashes = new Map();
    store.live = 0;
    for (const [rid, v] of store.pendingParts) upsert(store, rid, v, now, false);
    store.pendingParts = null;
    store.seq = msg.seq;
    store.version += 1;
    res.applied = true;
    res.inserted = store.live;
    res.consistent = store.live === msg.nrows;
    return res;
  }
  if (msg.type === "delta") {
    for (const rid of msg.deletes || []) if (remove(store, Number(rid), now, flash)) res.deleted += 1;
    if (buffers && buffers.length) {
      for (const [rid, v] of rowsFrom(buffers[0], store)) {
        if (upsert(store, rid, v, now, flash) === "insert") res.inserted += 1;
        else res.updated += 1;
      }
    }
    store.seq = msg.seq;
    store.version += 1;
    res.applied = true;
    res.consistent = msg.nrows == null || store.live === msg.nrows;
    return res;
  }
  return res;
}

// Drop ghosts and flashes older than FLASH_MS; returns true when something expired.
export function expire(store, now = Date.now()) {
  let changed = false;
  for (const [rid, f] of store.flashes) {
    if (now - f.at >= FLASH_MS) {
      store.flashes.delete(rid);
      if (f.kind === "delete") {
        store.rows.delete(rid);
        changed = true;
      }
    }
  }
  if (changed) store.version += 1;
  return changed;
}

// ------------------------------------------------------------------------------------ formatting
export function formatValue(value, type) {
  if (value === null || value === undefined) return null;
  if (type && type.kind === "timestamp") {
    const perMs = { s: 1e-3, ms: 1, us: 1e3, ns: 1e6 }[type.unit] || 1e3;
    const n = Number(value);
    const ms = Math.floor(n / perMs);
    let iso = new Date(ms).toISOString().replace("T", " ").replace("Z", "");
    if (type.unit === "us") {
      const micros = String(Math.floor(((n % 1000) + 1000) % 1000)).padStart(3, "0");
      iso += micros;
    }
    return type.tz ? `${iso}Z` : iso;
  }
  if (typeof value === "boolean") return value ? "true" : "false";
  return String(value);
}

// What a cell shows: {text, full} where `full` is the whole value (hover title, copy) and `text` is
// the display name of a user id found in `names`, the distinctive tail of a uuid ("…" first), or the
// value itself. `pg` is the column's Postgres type. null stays null.
export function cellText(value, type, pg = null, names = null) {
  const full = formatValue(value, type);
  if (full === null) return null;
  if (names && Object.prototype.hasOwnProperty.call(names, full)) return { text: names[full], full, kind: "name" };
  if ((pg === "uuid" || typeof value === "string") && full.length === 36 && UUID_RE.test(full)) {
    return { text: `…${full.slice(-UUID_TAIL)}`, full, kind: "uuid" };
  }
  return { text: full, full, kind: "value" };
}

function rowText(row, columns, types, names) {
  if (row.text == null) {
    row.text = columns
      .map((c) => {
        const full = formatValue(row.v[c], types[c]) ?? "";
        return names && Object.prototype.hasOwnProperty.call(names, full) ? `${full}\u0002${names[full]}` : full;
      })
      .join("\u0001")
      .toLowerCase();
  }
  return row.text;
}

function compareValues(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1;  // nulls last, whatever the direction
  if (b === null || b === undefined) return -1;
  if (typeof a === "string" && typeof b === "string") return a < b ? -1 : 1;
  if (typeof a === typeof b || (typeof a !== "string" && typeof b !== "string")) return a < b ? -1 : a > b ? 1 : 0;
  return String(a) < String(b) ? -1 : 1;
}

// The rows to show, in order: search filter, then sort ({column, dir} or null = newest first).
export function visibleOrder(store, { sort = null, query = "", columns = [], types = {}, names = null } = {}) {
  const q = query.trim().toLowerCase();
  let rows = [...store.rows.values()];
  if (q) rows = rows.filter((r) => rowText(r, columns, types, names).includes(q));
  if (sort && sort.column) {
    const c = sort.column;
    const dir = sort.dir === "desc" ? -1 : 1;
    // ids with a display name sort by the name they show
    const shown = (v) => (names && typeof v === "string" && Object.prototype.hasOwnProperty.call(names, v) ? names[v] : v);
    rows.sort((x, y) => {
      const a = shown(x.v[c]);
      const b = shown(y.v[c]);
      if (a == null || b == null) return compareValues(a, b);  // nulls last both ways
      return dir * compareValues(a, b) || y.rid - x.rid;
    });
  } else {
    rows.reverse(); // Map keeps insertion order: newest first
  }
  return rows;
}

// ------------------------------------------------------------------------------------ rendering
function sparkline(svg, values) {
  const w = 90;
  const hgt = 20;
  svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
  const max = Math.max(1, ...values);
  const n = values.length;
  const pts = values.map((v, i) => `${n > 1 ? (i / (n - 1)) * w : 0},${hgt - 1 - (v / max) * (hgt - 2)}`);
  svg.innerHTML = n ? `<polyline points="${pts.join(" ")}" />` : "";
}

function render({ model, el }) {
  const store = createStore();
  let sort = null;
  let query = "";
  let queue = [];          // messages held while paused
  let order = [];
  let orderVersion = -1;
  let orderKey = "";
  let frame = 0;
  let expiryTimer = 0;
  const rendered = new Map(); // rid -> row element

  const root = h("div", "hl-root hl-table");
  const bar = h("div", "hl-bar");
  const title = h("span", "hl-title");
  const status = h("span", "hl-pill");
  const count = h("span", "hl-count");
  const rate = h("span", "hl-rate");
  const spark = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  spark.setAttribute("class", "hl-spark");
  const search = h("input", "hl-search");
  search.type = "search";
  search.placeholder = "search…";
  search.setAttribute("aria-label", "search rows");
  const pause = h("button", "hl-pause");
  pause.type = "button";
  const badge = h("span", "hl-badge");
  bar.append(title, status, count, rate, spark, search, pause, badge);

  // one scroll box (both directions) holding a sticky header and the virtualised body; the box is
  // as tall as its rows, up to `height`
  const viewport = h("div", "hl-viewport hl-tscroll");
  viewport.tabIndex = 0; // focusable: arrow keys and Page Up/Down scroll it
  viewport.setAttribute("aria-label", "table rows (scrolls both ways)");
  const head = h("div", "hl-thead");
  const layer = h("div", "hl-rows hl-tbody");
  viewport.append(head, layer);
  const empty = h("div", "hl-empty", "no rows yet");
  root.append(bar, viewport, empty);
  el.appendChild(root);

  const columns = () => (model.get("columns") || []).map((c) => ({ name: c[0], pg: c[1], wire: c[2] }));
  const names = () => columns().map((c) => c.name);
  const types = () => store.fieldTypes;
  const pgTypes = () => Object.fromEntries(columns().map((c) => [c.name, c.pg]));
  const displayNames = () => model.get("names") || {};

  const widthOf = (c) => WIDTHS[c.pg === "uuid" ? "uuid" : c.wire] || 160;

  // each column at least its type's width, sharing any spare width in proportion
  function template() {
    return columns().map((c) => `minmax(${widthOf(c)}px, ${widthOf(c)}fr)`).join(" ");
  }

  function drawHead() {
    head.replaceChildren();
    const tpl = template();
    head.style.gridTemplateColumns = tpl;
    const total = columns().reduce((s, c) => s + widthOf(c), 0);
    head.style.minWidth = layer.style.minWidth = `${total}px`;
    root.dataset.ncols = String(columns().length);
    viewport.style.display = columns().length ? "" : "none"; // no columns known yet: no empty frame
    for (const c of columns()) {
      const th = h("div", "hl-th", c.name);
      th.dataset.col = c.name;
      th.title = `${c.name} (${c.pg || "?"}) — click to sort`;
      if (sort && sort.column === c.name) {
        th.dataset.sort = sort.dir;
        th.classList.add(`hl-sort-${sort.dir}`);
      }
      th.addEventListener("click", () => {
        if (!sort || sort.column !== c.name) sort = { column: c.name, dir: "asc" };
        else if (sort.dir === "asc") sort = { column: c.name, dir: "desc" };
        else sort = null;
        drawHead();
        schedule();
      });
      head.appendChild(th);
    }
  }

  function keyOf(row, keyCols) {
    return keyCols.length ? keyCols.map((k) => formatValue(row.v[k], types()[k]) ?? "").join(",") : String(row.rid);
  }

  function fillRow(tr, row, cols, tys, pgs, who) {
    tr.replaceChildren();
    for (const c of cols) {
      const cell = cellText(row.v[c], tys[c], pgs[c], who);
      const td = h("div", cell === null ? "hl-td hl-null" : `hl-td hl-${cell.kind}`, cell === null ? "null" : cell.text);
      td.dataset.col = c;
      if (cell !== null) {
        if (cell.text !== cell.full) {
          td.dataset.full = cell.full;
          td.title = cell.kind === "name" ? `${cell.text} · ${cell.full}` : cell.full;
        } else if (cell.full.length > 20) {
          td.title = cell.full;
        }
      }
      tr.appendChild(td);
    }
    tr.dataset.ver = String(row.ver);
  }

  // Copying selected cells copies their whole values (full uuids, ids behind display names):
  // tab between cells, newline between rows.
  function onCopy(event) {
    const sel = window.getSelection();
    if (!sel || sel.isCollapsed || !event.clipboardData) return;
    const ranges = Array.from({ length: sel.rangeCount }, (_, i) => sel.getRangeAt(i));
    const inside = document.createRange();
    const cells = [...layer.querySelectorAll(".hl-td")].filter((td) => {
      inside.selectNodeContents(td); // selected: the range starts before its end and ends after its start
      return ranges.some(
        (r) => r.compareBoundaryPoints(Range.END_TO_START, inside) < 0 && r.compareBoundaryPoints(Range.START_TO_END, inside) > 0,
      );
    });
    if (!cells.some((td) => td.dataset.full != null)) return; // plain text: the browser's own copy
    const byRow = new Map();
    for (const td of cells) {
      const tr = td.parentElement;
      if (!byRow.has(tr)) byRow.set(tr, []);
      byRow.get(tr).push(td.classList.contains("hl-null") ? "" : td.dataset.full ?? td.textContent);
    }
    const lines = [...byRow].sort((a, b) => +a[0].dataset.index - +b[0].dataset.index).map(([, v]) => v.join("\t"));
    event.clipboardData.setData("text/plain", lines.join("\n"));
    event.preventDefault();
  }

  function draw() {
    frame = 0;
    const now = Date.now();
    expire(store, now);
    const cols = names();
    const tys = types();
    const who = displayNames();
    const pgs = pgTypes();
    const key = `${sort ? sort.column + ":" + sort.dir : ""}|${query}|${cols.join(",")}`;
    if (orderVersion !== store.version || orderKey !== key) {
      order = visibleOrder(store, { sort, query, columns: cols, types: tys, names: who });
      orderVersion = store.version;
      orderKey = key;
    }
    const height = model.get("height") || 360;
    viewport.style.maxHeight = `${height}px`;
    layer.style.height = `${order.length * ROW_HEIGHT}px`;
    const headH = head.offsetHeight;
    const seen = viewport.clientHeight || height; // 0 while the output is not laid out yet
    const top = Math.max(0, viewport.scrollTop - headH);
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(order.length, Math.ceil((top + seen) / ROW_HEIGHT) + OVERSCAN);
    const keep = new Set();
    const keyCols = model.get("key_columns") || [];
    const tpl = template();
    for (let i = first; i < last; i++) {
      const row = order[i];
      keep.add(row.rid);
      let tr = rendered.get(row.rid);
      if (!tr) {
        tr = h("div", "hl-tr");
        tr.dataset.rid = String(row.rid);
        rendered.set(row.rid, tr);
        layer.appendChild(tr);
        fillRow(tr, row, cols, tys, pgs, who);
      } else if (tr.dataset.ver !== String(row.ver) || tr.childElementCount !== cols.length) {
        fillRow(tr, row, cols, tys, pgs, who);
      }
      tr.style.gridTemplateColumns = tpl;
      tr.style.transform = `translateY(${i * ROW_HEIGHT}px)`;
      tr.dataset.index = String(i);
      tr.dataset.key = keyOf(row, keyCols);
      const f = store.flashes.get(row.rid);
      const stamp = f ? `${f.kind}@${f.at}` : "";
      if (tr.dataset.flash !== stamp) {
        tr.classList.remove("hl-flash-insert", "hl-flash-update", "hl-flash-delete");
        if (f) {
          void tr.offsetWidth; // restart the animation
          tr.classList.add(`hl-flash-${f.kind}`);
        }
        tr.dataset.flash = stamp;
      }
      tr.classList.toggle("hl-ghost", row.deletedAt != null);
    }
    for (const [rid, tr] of rendered) {
      if (!keep.has(rid)) {
        tr.remove();
        rendered.delete(rid);
      }
    }
    const shown = order.filter((r) => r.deletedAt == null).length;
    root.dataset.nrows = String(store.live);
    root.dataset.nshown = String(shown);
    root.dataset.seq = String(store.seq);
    root.dataset.sort = sort ? `${sort.column}:${sort.dir}` : "";
    count.textContent = query ? `${shown} of ${store.live} rows` : `${store.live} rows`;
    empty.style.display = store.live === 0 && store.seq >= 0 ? "" : "none";
    if (store.flashes.size && !expiryTimer) {
      expiryTimer = setTimeout(() => { expiryTimer = 0; schedule(); }, FLASH_MS / 3);
    }
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(draw);
  }

  function drawBar() {
    const paused = !!model.get("paused");
    const st = model.get("status") || "waiting";
    title.textContent = model.get("title") || "";
    const why = model.get("reason") || "";
    status.textContent = why ? `${st} · ${why}` : st;
    status.title = why;
    status.dataset.status = st;
    root.dataset.status = st;
    root.dataset.reason = why;
    root.dataset.paused = paused ? "true" : "false";
    const pending = (model.get("pending") || 0);
    root.dataset.pending = String(pending);
    pause.textContent = paused ? "resume" : "pause";
    pause.setAttribute("aria-pressed", paused ? "true" : "false");
    badge.textContent = paused && pending ? `${pending} new` : "";
    badge.style.display = paused && pending ? "" : "none";
    const r = model.get("rate") || 0;
    rate.textContent = `${r >= 100 ? Math.round(r) : r.toFixed(1)} ev/s`;
    sparkline(spark, model.get("rate_history") || []);
  }

  function onMessage(msg, buffers) {
    if (!msg || (msg.type !== "delta" && msg.type !== "snapshot")) return;
    if (model.get("paused") && msg.type === "delta") {
      queue.push([msg, buffers]);
      return;
    }
    const res = applyMessage(store, msg, buffers);
    if (res.applied && !res.consistent) {
      model.send({ type: "resync", reason: `have ${store.live} rows, kernel has ${msg.nrows}` });
    }
    schedule();
  }

  pause.addEventListener("click", () => {
    const next = !model.get("paused");
    model.set("paused", next);
    model.save_changes();
    if (!next) {
      const held = queue;
      queue = [];
      for (const [m, b] of held) applyMessage(store, m, b);
    }
    drawBar();
    schedule();
  });
  let searchTimer = 0;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { query = search.value; schedule(); }, 120);
  });
  viewport.addEventListener("scroll", schedule, { passive: true });
  viewport.addEventListener("copy", onCopy);

  const onColumns = () => { drawHead(); schedule(); };
  const onNames = () => {
    for (const r of store.rows.values()) { r.text = null; r.ver += 1; } // re-render and re-index rows
    store.version += 1;
    schedule();
  };
  const onBar = () => drawBar();
  const onHeight = () => schedule();
  const handlers = {
    "msg:custom": onMessage,
    "change:columns": onColumns,
    "change:key_columns": onHeight,
    "change:height": onHeight,
    "change:names": onNames,
  };
  for (const k of ["status", "reason", "paused", "pending", "rate", "rate_history", "title"]) handlers[`change:${k}`] = onBar;

  drawHead();
  drawBar();
  draw();
  return liveView(model, handlers, {
    cleanup: () => {
      if (frame) cancelAnimationFrame(frame);
      clearTimeout(expiryTimer);
      clearTimeout(searchTimer);
    },
  });
}

export default { render };
