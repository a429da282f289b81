// StatusTimelineWidget front end: one swimlane per channel over the last `window_s` seconds.
// Spans are coloured by status (data-status), retries are ticks with attempt numbers, gaps are
// hatched; every element carries a title with its details. Redrawn once a second (the now edge moves).

import { h, liveView, showStatus } from "./view.js";

export const STATUSES = ["connecting", "connected", "reconnecting", "error", "disconnected"];

export function fmtTime(ms) {
  return new Date(ms).toISOString().slice(11, 23);
}

export function fmtDuration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

// Horizontal placement in percent of the track for [start, end] within [now - window, now].
export function place(start, end, now, windowMs) {
  const from = now - windowMs;
  const a = Math.max(start, from);
  const b = Math.min(end, now);
  if (b < from || a > now) return null;
  return { left: ((a - from) / windowMs) * 100, width: Math.max(0, ((b - a) / windowMs) * 100) };
}

// Zoom to the history there is: at least 30 s, at most the configured window.
export function visibleWindow(lanes, now, maxMs) {
  let earliest = now;
  for (const lane of lanes) {
    for (const s of lane.spans) earliest = Math.min(earliest, s[0]);
    for (const g of lane.gaps) earliest = Math.min(earliest, g[0]);
  }
  return Math.min(maxMs, Math.max(30000, (now - earliest) * 1.1));
}

function render({ model, el }) {
  const root = h("div", "hl-root hl-timeline");
  const bar = h("div", "hl-bar");
  const title = h("span", "hl-title");
  const legend = h("span", "hl-legend");
  for (const s of STATUSES) {
    const item = h("span", null, s);
    const sw = h("i");
    sw.style.background = `var(--hl-${s})`;
    item.prepend(sw);
    legend.appendChild(item);
  }
  const status = h("span", "hl-pill");
  bar.append(title, status, legend);
  const lanesEl = h("div", "hl-lanes");
  const axis = h("div", "hl-axis");
  const ticks = h("div", "hl-axis-ticks");
  axis.append(h("span"), ticks);
  const empty = h("div", "hl-empty", "no channels yet");
  root.append(bar, lanesEl, axis, empty);
  el.appendChild(root);
  let offset = 0;

  function draw() {
    const lanes = model.get("lanes") || [];
    const now = Date.now() + offset;
    const windowMs = visibleWindow(lanes, now, (model.get("window_s") || 300) * 1000);
    root.dataset.windowMs = String(Math.round(windowMs));
    title.textContent = model.get("title") || "";
    showStatus(model, root, status);
    root.dataset.nlanes = String(lanes.length);
    empty.style.display = lanes.length ? "none" : "";
    lanesEl.replaceChildren();
    for (const lane of lanes) {
      const row = h("div", "hl-lane");
      row.dataset.channel = lane.channel;
      row.dataset.status = lane.status || "";
      const label = h("div", "hl-lane-label");
      const name = h("span", "hl-lane-name", lane.channel);
      name.title = lane.channel;
      const rtt = lane.rtt_ms == null ? "RTT –" : `RTT ${lane.rtt_ms.toFixed(1)} ms`;
      const meta = h("span", "hl-lane-meta", `${lane.status || "?"} · ${rtt}${lane.hb_timeouts ? ` · ${lane.hb_timeouts} hb timeouts` : ""}`);
      meta.classList.add("hl-rtt");
      meta.dataset.rtt = lane.rtt_ms == null ? "" : String(lane.rtt_ms);
      if (lane.rtt_history && lane.rtt_history.length) meta.title = `recent RTTs (ms): ${lane.rtt_history.join(", ")}`;
      label.append(name, meta);
      const track = h("div", "hl-track");
      for (const [start, end, status, reason, attempt] of lane.spans) {
        const open = end == null;
        const p = place(start, open ? now : end, now, windowMs);
        if (!p) continue;
        const span = h("div", "hl-span");
        span.dataset.status = status;
        span.dataset.open = open ? "true" : "false";
        if (attempt != null) span.dataset.attempt = String(attempt);
        span.style.left = `${p.left}%`;
        span.style.width = `${p.width}%`;
        span.title = `${status}${attempt ? ` (attempt ${attempt})` : ""}\n${fmtTime(start)} → ${open ? "now" : fmtTime(end)} · ${fmtDuration((open ? now : end) - start)}${reason ? `\n${reason}` : ""}`;
        track.appendChild(span);
      }
      for (const [start, end, reason] of lane.gaps) {
        const p = place(start, end, now, windowMs);
        if (!p) continue;
        const gap = h("div", "hl-gap");
        gap.style.left = `${p.left}%`;
        gap.style.width = `${p.width}%`;
        gap.title = `gap: no delivery ${fmtTime(start)} → ${fmtTime(end)} (${fmtDuration(end - start)})${reason ? `\ncause: ${reason}` : ""}`;
        track.appendChild(gap);
      }
      for (const [t, attemptNo, reason] of lane.retries) {
        const p = place(t, t, now, windowMs);
        if (!p) continue;
        const mark = h("div", "hl-retry");
        mark.dataset.attempt = String(attemptNo);
        mark.style.left = `${p.left}%`;
        mark.title = `retry #${attemptNo} at ${fmtTime(t)}${reason ? `\n${reason}` : ""}`;
        mark.appendChild(h("span", null, String(attemptNo)));
        track.appendChild(mark);
      }
      const edge = h("div", "hl-now");
      edge.title = `now (${fmtTime(now)})`;
      track.appendChild(edge);
      row.append(label, track);
      lanesEl.appendChild(row);
    }
    ticks.replaceChildren();
    for (const frac of [0, 0.25, 0.5, 0.75, 1]) {
      const t = h("span", null, frac === 1 ? "now" : `-${fmtDuration((1 - frac) * windowMs)}`);
      t.style.left = `${frac * 100}%`;
      if (frac === 1) t.style.transform = "translateX(-100%)";
      if (frac === 0) t.style.transform = "none";
      ticks.appendChild(t);
    }
  }

  const onLanes = () => {
    offset = (model.get("now_ms") || Date.now()) - Date.now();
    draw();
  };
  onLanes();
  return liveView(model, { "change:lanes": onLanes, "change:window_s": draw, "change:status": draw, "change:reason": draw }, { tick: draw });
}

export default { render };
