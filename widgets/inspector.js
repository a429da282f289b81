// Inspector front end: join form, status chips, a virtualised message log fed by Arrow IPC deltas,
// JSON detail on request (with copy), filters, pause with an "N new" badge, send broadcast, presence
// and the role picker. Pure helpers (createLog, applyMessage, makeFilter, filterIds) are exported
// for tests; the filter rules are the kernel's (harmony_lab/inspector/_log.py).
import { decodeStream } from "./ipc.js";
import { h, liveView } from "./view.js";

export const ROW_HEIGHT = 22;
const OVERSCAN = 8;
export const KINDS = ["postgres_changes", "broadcast", "presence", "system", "status"];
const KIND_LABEL = {
  postgres_changes: "changes", broadcast: "broadcast", presence: "presence", system: "system", status: "status",
};

// ------------------------------------------------------------------------------------------ store
// Rows have consecutive ids: row `id` sits at position id - base (positions below `head` are gone).
export function createLog() {
  return {
    base: 0, head: 0, id: [], t: [], channel: [], kind: [], event: [], summary: [],
    seq: -1, firstId: 1, lastId: 0, pendingParts: null, gen: 0,
  };
}

export function size(log) {
  return log.id.length - log.head;
}

export function rowAt(log, id) {
  const p = id - log.base;
  if (p < log.head || p >= log.id.length) return null;
  return {
    id, t: log.t[p], channel: log.channel[p], kind: log.kind[p], event: log.event[p], summary: log.summary[p],
  };
}

function clear(log) {
  for (const k of ["id", "t", "channel", "kind", "event", "summary"]) log[k] = [];
  log.base = 0;
  log.head = 0;
  log.gen += 1;
}

function push(log, table) {
  const c = table.columns;
  for (let i = 0; i < table.length; i++) {
    const id = Number(c.id[i]);
    const last = log.id.length ? log.id[log.id.length - 1] : null;
    if (last !== null && id <= last) continue; // already held
    if (last !== null && id !== last + 1) clear(log); // ids jumped: older rows were evicted meanwhile
    if (!log.id.length) {
      log.base = id;
      log.head = 0;
    }
    log.id.push(id);
    log.t.push(Number(c.t[i]));
    log.channel.push(c.channel[i] ?? "");
    log.kind.push(c.kind[i] ?? "");
    log.event.push(c.event[i] ?? "");
    log.summary.push(c.summary[i] ?? "");
  }
}

function evictBelow(log, firstId) {
  while (log.head < log.id.length && log.id[log.head] < firstId) log.head += 1;
  if (log.head > 4096 && log.head * 2 > log.id.length) {
    for (const k of ["id", "t", "channel", "kind", "event", "summary"]) log[k] = log[k].slice(log.head);
    log.base += log.head;
    log.head = 0;
  }
}

// Apply one kernel message; returns {applied, appended, reset}.
export function applyMessage(log, msg, buffers) {
  const res = { applied: false, appended: 0, reset: false };
  if (!msg) return res;
  if (msg.type === "snapshot") {
    if (msg.part === 0) log.pendingParts = [];
    if (!log.pendingParts) return res;
    log.pendingParts.push(decodeStream(buffers[0]));
    if (msg.part + 1 < msg.parts) return res;
    clear(log);
    for (const table of log.pendingParts) push(log, table);
    log.pendingParts = null;
    evictBelow(log, msg.first_id);
    log.seq = msg.seq;
    log.firstId = msg.first_id;
    log.lastId = msg.last_id;
    res.applied = true;
    res.reset = true;
    res.appended = size(log);
    return res;
  }
  if (msg.type === "delta") {
    const before = size(log);
    const gen = log.gen;
    if (buffers && buffers.length) push(log, decodeStream(buffers[0]));
    res.reset = log.gen !== gen;
    res.appended = size(log) - (res.reset ? 0 : before);
    evictBelow(log, msg.first_id);
    log.seq = msg.seq;
    log.firstId = msg.first_id;
    log.lastId = msg.last_id;
    res.applied = true;
    return res;
  }
  return res;
}

// ---------------------------------------------------------------------------------------- filters
// {kind: [...], channel: [...], event: [...], text: ""}: empty lists do not restrict; event ignores
// case; text is a case-insensitive substring of channel, event or summary (never a pattern).
export function makeFilter(f) {
  const kinds = f && f.kind && f.kind.length ? new Set(f.kind) : null;
  const channels = f && f.channel && f.channel.length ? new Set(f.channel) : null;
  const events = f && f.event && f.event.length ? new Set(f.event.map((e) => String(e).toLowerCase())) : null;
  const text = f && f.text ? String(f.text).trim().toLowerCase() : "";
  const active = !!(kinds || channels || events || text);
  const test = (log, p) => {
    if (kinds && !kinds.has(log.kind[p])) return false;
    if (channels && !channels.has(log.channel[p])) return false;
    if (events && !events.has(log.event[p].toLowerCase())) return false;
    if (text) {
      return log.summary[p].toLowerCase().includes(text) || log.channel[p].toLowerCase().includes(text)
        || log.event[p].toLowerCase().includes(text);
    }
    return true;
  };
  return { active, test };
}

// Ids of the rows the filter shows, oldest first (positions from `fromPos` on).
export function filterIds(log, flt, fromPos = log.head) {
  const out = [];
  for (let p = Math.max(fromPos, log.head); p < log.id.length; p++) if (!flt.active || flt.test(log, p)) out.push(log.id[p]);
  return out;
}

export function formatTime(ms) {
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}`;
}

export function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return String(text);
  }
}

// -------------------------------------------------------------------------------------- rendering
function input(cls, placeholder, value = "", label = placeholder) {
  const el = h("input", cls);
  el.type = "text";
  el.placeholder = placeholder;
  el.value = value;
  el.setAttribute("aria-label", label);
  return el;
}

function button(cls, text, title = "") {
  const el = h("button", cls, text);
  el.type = "button";
  if (title) el.title = title;
  return el;
}

function select(cls, options, label) {
  const el = h("select", cls);
  el.setAttribute("aria-label", label);
  for (const [value, text] of options) {
    const o = h("option", null, text);
    o.value = value;
    el.appendChild(o);
  }
  return el;
}

function checkbox(label, checked = false) {
  const wrap = h("label", "hl-check");
  const box = h("input");
  box.type = "checkbox";
  box.checked = checked;
  wrap.append(box, document.createTextNode(` ${label}`));
  return [wrap, box];
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }
}

function render({ model, el }) {
  const log = createLog();
  let flt = makeFilter(model.get("filters"));
  let ids = [];             // ids shown (filtered), oldest first
  let scanned = 0;          // positions already filtered (relative to base)
  let frame = 0;
  let follow = true;        // stick to the newest row
  let selected = null;
  let pending = 0;
  let channels = [];
  let stats = {};
  const details = new Map(); // id -> JSON text (the few asked for)
  const rendered = new Map(); // id -> row element

  const root = h("div", "hl-root hl-inspector");
  root.dataset.status = "waiting";

  // identity / role picker
  const idBar = h("div", "hl-bar hl-insp-identity");
  const who = h("span", "hl-insp-who");
  const role = select("hl-insp-role", [["anon", "anon"], ["service_role", "service role"], ["user", "user…"]], "listen as");
  const user = input("hl-insp-user", "user id", "", "user id");
  const hintsId = `hl-insp-users-${Math.random().toString(36).slice(2)}`;
  const hints = h("datalist");
  hints.id = hintsId;
  user.setAttribute("list", hintsId);
  const secret = h("input", "hl-insp-secret");
  secret.type = "password";
  secret.placeholder = "JWT secret (not stored)";
  secret.setAttribute("aria-label", "JWT secret");
  secret.autocomplete = "off";
  const listen = button("hl-insp-listen", "listen as", "join every channel again with this role's token");
  idBar.append(h("span", "hl-title", "Realtime Inspector"), who, role, user, hints, secret, listen);

  // join form
  const form = h("div", "hl-bar hl-insp-join");
  const topic = input("hl-insp-topic", "topic, e.g. room:1", "", "topic");
  const [privWrap, priv] = checkbox("private");
  const schema = input("hl-insp-schema", "schema", "public", "schema");
  const table = input("hl-insp-table", "table (postgres changes)", "", "table");
  const pgEvent = select("hl-insp-pgevent", [["*", "*"], ["INSERT", "INSERT"], ["UPDATE", "UPDATE"], ["DELETE", "DELETE"]], "change event");
  const pgFilter = input("hl-insp-filter", "filter, e.g. channel_id=eq.1", "", "filter");
  const bEvents = input("hl-insp-bevents", "broadcast events", "*", "broadcast events");
  const [presWrap, pres] = checkbox("presence");
  const join = button("hl-insp-join-btn", "join");
  form.append(topic, privWrap, schema, table, pgEvent, pgFilter, bEvents, presWrap, join);

  // status chips
  const chips = h("div", "hl-insp-chips");

  // act: broadcast + presence
  const act = h("div", "hl-bar hl-insp-act");
  const actChannel = select("hl-insp-channel", [], "channel");
  const sendEvent = input("hl-insp-send-event", "event", "", "broadcast event");
  const payload = h("textarea", "hl-insp-payload");
  payload.rows = 1;
  payload.placeholder = '{"text": "hello"}';
  payload.setAttribute("aria-label", "broadcast payload (JSON)");
  const send = button("hl-insp-send", "send broadcast");
  const pStatus = select("hl-insp-pstatus", [["online", "online"], ["away", "away"], ["dnd", "dnd"]], "presence status");
  const track = button("hl-insp-track", "track");
  const untrack = button("hl-insp-untrack", "untrack");
  act.append(actChannel, sendEvent, payload, send, h("span", "hl-sep"), pStatus, track, untrack);

  // filters + pause
  const fbar = h("div", "hl-bar hl-insp-filters");
  const kindBoxes = new Map();
  for (const k of KINDS) {
    const [wrap, box] = checkbox(KIND_LABEL[k], false);
    wrap.classList.add("hl-insp-kind");
    wrap.dataset.kind = k;
    kindBoxes.set(k, box);
    fbar.appendChild(wrap);
  }
  const fChannel = select("hl-insp-fchannel", [["", "all channels"]], "filter channel");
  const fEvent = input("hl-insp-fevent", "event", "", "filter event");
  const fText = h("input", "hl-search hl-insp-ftext");
  fText.type = "search";
  fText.placeholder = "search…";
  fText.setAttribute("aria-label", "search messages");
  const count = h("span", "hl-count");
  const pause = button("hl-pause", "pause");
  const badge = h("span", "hl-badge");
  fbar.append(fChannel, fEvent, fText, count, pause, badge);

  const error = h("div", "hl-insp-error");

  // the log
  const grid = h("div", "hl-grid hl-insp-grid");
  const head = h("div", "hl-thead hl-insp-row");
  for (const c of ["time", "channel", "kind", "event", "summary"]) head.appendChild(h("div", "hl-th", c));
  const viewport = h("div", "hl-viewport");
  const spacer = h("div", "hl-spacer");
  const layer = h("div", "hl-rows");
  viewport.append(spacer, layer);
  grid.append(head, viewport);
  const empty = h("div", "hl-empty", "no messages yet: join a channel");

  // detail
  const detail = h("div", "hl-insp-detail");
  const dBar = h("div", "hl-bar");
  const dTitle = h("span", "hl-title");
  const copy = button("hl-insp-copy", "copy");
  const closeD = button("hl-insp-close", "×", "close");
  dBar.append(dTitle, copy, closeD);
  const pre = h("pre", "hl-insp-json");
  detail.append(dBar, pre);
  detail.style.display = "none";

  root.append(idBar, form, chips, act, fbar, error, grid, empty, detail);
  el.appendChild(root);

  // -------------------------------------------------------------------------------- drawing
  function refilter() {
    flt = makeFilter(model.get("filters"));
    ids = filterIds(log, flt);
    scanned = log.id.length + log.base;
    schedule();
  }

  function extend() {
    // rows appended since the last scan, then rows evicted from the front
    const from = Math.max(scanned - log.base, log.head);
    if (from < log.id.length) for (const id of filterIds(log, flt, from)) ids.push(id);
    scanned = log.id.length + log.base;
    const first = log.head < log.id.length ? log.id[log.head] : log.lastId + 1;
    let cut = 0;
    while (cut < ids.length && ids[cut] < first) cut += 1;
    if (cut) ids = ids.slice(cut);
  }

  const pool = [];           // row elements to reuse
  function newRow() {
    const tr = pool.pop() || h("div", "hl-tr hl-insp-row");
    if (!tr.firstChild) {
      for (const cls of ["hl-insp-time", "hl-insp-ch", "hl-insp-k", "hl-insp-ev", "hl-insp-sum"]) tr.appendChild(h("div", `hl-td ${cls}`));
    }
    return tr;
  }

  function fillRow(tr, r) {
    const [time, ch, kind, ev, sum] = tr.children;
    time.textContent = formatTime(r.t);
    ch.textContent = r.channel;
    kind.textContent = KIND_LABEL[r.kind] || r.kind;
    kind.className = `hl-td hl-insp-k hl-k-${r.kind}`;
    ev.textContent = r.event;
    sum.textContent = r.summary;
    tr.dataset.id = String(r.id);
    tr.dataset.kind = r.kind;
    tr.dataset.channel = r.channel;
    tr.dataset.event = r.event;
    tr.title = r.summary;
  }

  function draw() {
    frame = 0;
    const height = model.get("height") || 420;
    viewport.style.height = `${height}px`;
    spacer.style.height = `${ids.length * ROW_HEIGHT}px`;
    if (follow) viewport.scrollTop = Math.max(0, ids.length * ROW_HEIGHT - height);
    const top = viewport.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(ids.length, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    const keep = new Set();
    for (let i = first; i < last; i++) {
      const id = ids[i];
      keep.add(id);
      let tr = rendered.get(id);
      if (!tr) {
        const r = rowAt(log, id);
        if (!r) continue;
        tr = newRow();
        fillRow(tr, r);
        rendered.set(id, tr);
        if (tr.parentNode !== layer) layer.appendChild(tr);
      }
      tr.style.transform = `translateY(${i * ROW_HEIGHT}px)`;
      tr.dataset.index = String(i);
      tr.classList.toggle("hl-insp-selected", id === selected);
    }
    for (const [id, tr] of rendered) {
      if (!keep.has(id)) {
        rendered.delete(id);
        tr.remove();
        if (pool.length < 200) pool.push(tr);
      }
    }
    const held = size(log);
    root.dataset.nentries = String(held);
    root.dataset.nshown = String(ids.length);
    root.dataset.seq = String(log.seq);
    count.textContent = flt.active ? `${ids.length} of ${held}` : `${held} messages`;
    if (stats.evicted) count.textContent += ` (${stats.evicted} older dropped)`;
    empty.style.display = held === 0 ? "" : "none";
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(draw);
  }

  function drawChips() {
    chips.replaceChildren();
    const current = actChannel.value;
    const currentF = fChannel.value;
    actChannel.replaceChildren();
    fChannel.replaceChildren();
    const all = h("option", null, "all channels");
    all.value = "";
    fChannel.appendChild(all);
    for (const c of channels) {
      const chip = h("span", "hl-chip");
      chip.dataset.topic = c.topic;
      chip.dataset.status = c.status;
      chip.title = `${c.status}: ${c.reason}\n${(c.bindings || []).join("\n")}`;
      const dot = h("i", "hl-chip-dot");
      dot.dataset.status = c.status;
      const reason = h("span", "hl-chip-reason", c.reason || "");
      const leave = button("hl-chip-leave", "×", `leave ${c.topic}`);
      leave.addEventListener("click", () => act_("leave", { topic: c.topic }));
      chip.append(dot, h("b", null, c.topic), h("span", "hl-chip-status", c.status));
      if (c.private) chip.appendChild(h("span", "hl-chip-private", "private"));
      if (c.tracking) chip.appendChild(h("span", "hl-chip-track", `tracked: ${c.tracking}`));
      chip.append(reason, leave);
      chips.appendChild(chip);
      for (const sel of [actChannel, fChannel]) {
        const o = h("option", null, c.topic);
        o.value = c.topic;
        sel.appendChild(o);
      }
    }
    if (channels.some((c) => c.topic === current)) actChannel.value = current;
    if (channels.some((c) => c.topic === currentF)) fChannel.value = currentF;
    root.dataset.nchannels = String(channels.length);
  }

  function drawBar() {
    const paused = !!model.get("paused");
    const st = model.get("status") || "waiting";
    root.dataset.status = st;
    root.dataset.paused = paused ? "true" : "false";
    root.dataset.pending = String(paused ? pending : 0);
    pause.textContent = paused ? "resume" : "pause";
    pause.setAttribute("aria-pressed", paused ? "true" : "false");
    badge.textContent = paused && pending ? `${pending} new` : "";
    badge.style.display = paused && pending ? "" : "none";
    const identity = model.get("identity") || "anon";
    who.textContent = `listening as ${identity}`;
    root.dataset.identity = identity;
    secret.style.display = model.get("hosted") ? "" : "none";
    user.style.display = role.value === "user" ? "" : "none";
    hints.replaceChildren();
    for (const [name, id] of model.get("user_hints") || []) {
      const o = h("option", null, name);
      o.value = id;
      hints.appendChild(o);
    }
    const err = model.get("error") || "";
    error.textContent = err;
    error.style.display = err ? "" : "none";
    root.dataset.error = err;
  }

  function drawFilters() {
    const f = model.get("filters") || {};
    for (const [k, box] of kindBoxes) box.checked = (f.kind || []).includes(k);
    const ch = (f.channel || [])[0] || "";
    if ([...fChannel.options].some((o) => o.value === ch)) fChannel.value = ch;
    if (document.activeElement !== fEvent) fEvent.value = (f.event || []).join(",");
    if (document.activeElement !== fText) fText.value = f.text || "";
  }

  function showDetail(id) {
    selected = id;
    const r = rowAt(log, id);
    detail.style.display = "";
    detail.dataset.id = String(id);
    dTitle.textContent = r ? `#${id} ${r.kind} ${r.event} on ${r.channel}` : `#${id}`;
    if (details.has(id)) {
      pre.textContent = pretty(details.get(id));
      detail.dataset.loaded = "true";
    } else {
      pre.textContent = "loading…";
      detail.dataset.loaded = "false";
      model.send({ type: "detail", id });
    }
    for (const [rid, tr] of rendered) tr.classList.toggle("hl-insp-selected", rid === id);
  }

  // -------------------------------------------------------------------------------- kernel
  function onMessage(msg, buffers) {
    if (!msg) return;
    if (msg.channels) {
      channels = msg.channels;
      drawChips();
    }
    if (msg.stats) stats = msg.stats;
    if (msg.pending != null) {
      pending = msg.pending;
      drawBar();
    }
    if (msg.type === "snapshot" || msg.type === "delta") {
      const res = applyMessage(log, msg, buffers);
      if (!res.applied) return;
      if (res.reset) {
        for (const tr of rendered.values()) tr.remove();
        rendered.clear();
        refilter();
      } else {
        extend();
        schedule();
      }
      if (msg.type === "delta" && !model.get("paused")) {
        pending = 0;
        drawBar();
      }
    } else if (msg.type === "pending") {
      schedule();
    } else if (msg.type === "detail") {
      if (msg.detail != null) {
        if (details.size > 200) details.clear();
        details.set(msg.id, msg.detail);
      }
      if (selected === msg.id) {
        pre.textContent = msg.detail == null ? "(no longer held: the log dropped it)" : pretty(msg.detail);
        detail.dataset.loaded = "true";
      }
    } else if (msg.type === "done") {
      root.dataset.lastAction = `${msg.action}:${msg.ok ? "ok" : "failed"}`;
      if (msg.ok && msg.action === "send") payload.classList.remove("hl-bad");
    }
  }

  function act_(type, fields) {
    root.dataset.lastAction = `${type}:running`;
    model.send({ type, ...fields });
  }

  function saveFilters() {
    const kinds = KINDS.filter((k) => kindBoxes.get(k).checked);
    const events = fEvent.value.split(",").map((s) => s.trim()).filter(Boolean);
    model.set("filters", { kind: kinds, channel: fChannel.value ? [fChannel.value] : [], event: events, text: fText.value.trim().slice(0, 200) });
    model.save_changes();
    refilter();
  }

  // -------------------------------------------------------------------------------- events
  join.addEventListener("click", () => {
    const t = topic.value.trim();
    const fields = { topic: t, private: priv.checked, broadcast: bEvents.value.trim(), presence: pres.checked };
    if (table.value.trim()) {
      fields.postgres_changes = [{
        schema: schema.value.trim() || "public", table: table.value.trim(), event: pgEvent.value,
        filter: pgFilter.value.trim() || null,
      }];
    }
    act_("join", fields);
  });
  send.addEventListener("click", () => {
    let ok = true;
    try {
      const v = JSON.parse(payload.value.trim() || "{}");
      ok = v !== null && typeof v === "object" && !Array.isArray(v);
    } catch {
      ok = false;
    }
    payload.classList.toggle("hl-bad", !ok);
    // the kernel validates too and says why in the error line
    act_("send", { channel: actChannel.value, event: sendEvent.value.trim(), payload: payload.value });
  });
  track.addEventListener("click", () => act_("track", { channel: actChannel.value, status: pStatus.value }));
  untrack.addEventListener("click", () => act_("untrack", { channel: actChannel.value }));
  role.addEventListener("change", drawBar);
  listen.addEventListener("click", () => {
    const fields = { who: role.value === "user" ? user.value.trim() : role.value };
    if (secret.value) fields.jwt_secret = secret.value;
    secret.value = ""; // used once by the kernel, never kept
    act_("listen_as", fields);
  });
  for (const box of kindBoxes.values()) box.addEventListener("change", saveFilters);
  fChannel.addEventListener("change", saveFilters);
  let typing = 0;
  for (const field of [fEvent, fText]) {
    field.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(saveFilters, 150);
    });
  }
  pause.addEventListener("click", () => {
    const next = !model.get("paused");
    model.set("paused", next);
    model.save_changes();
    if (!next) pending = 0;
    drawBar();
  });
  layer.addEventListener("click", (ev) => {
    const tr = ev.target.closest(".hl-insp-row");
    if (tr && tr.dataset.id) showDetail(Number(tr.dataset.id));
  });
  copy.addEventListener("click", async () => {
    const ok = await copyText(pre.textContent);
    copy.textContent = ok ? "copied" : "copy failed";
    setTimeout(() => { copy.textContent = "copy"; }, 1200);
  });
  closeD.addEventListener("click", () => {
    detail.style.display = "none";
    selected = null;
    schedule();
  });
  viewport.addEventListener("scroll", () => {
    const height = model.get("height") || 420;
    follow = viewport.scrollTop + height >= ids.length * ROW_HEIGHT - ROW_HEIGHT;
    schedule();
  }, { passive: true });

  const onBar = () => drawBar();
  const onFilters = () => { drawFilters(); refilter(); };
  const handlers = { "msg:custom": onMessage, "change:filters": onFilters, "change:height": () => schedule() };
  for (const k of ["status", "paused", "identity", "hosted", "user_hints", "error"]) handlers[`change:${k}`] = onBar;

  drawChips();
  drawBar();
  drawFilters();
  draw();
  return liveView(model, handlers, {
    cleanup: () => {
      if (frame) cancelAnimationFrame(frame);
      clearTimeout(typing);
    },
  });
}

export default { render };
