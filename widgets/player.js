// Player front end: play/pause, a speed control (0.1x to 100x, logarithmic) and a scrubber whose
// track is the recording's status timeline (one thin lane per channel). Clicking or dragging the
// scrubber asks the kernel to seek; the kernel owns the position and sends it back (position_ms).

import { h, liveView } from "./view.js";

const MIN_SPEED = 0.1;
const MAX_SPEED = 100;

export function fmtClock(ms) {
  if (!(ms >= 0)) return "0:00.0";
  const m = Math.floor(ms / 60000);
  const s = (ms % 60000) / 1000;
  return `${m}:${s.toFixed(1).padStart(4, "0")}`;
}

// Slider value 0..1000 <-> speed on a log scale from MIN_SPEED to MAX_SPEED.
export function speedFromSlider(v) {
  const f = Math.min(1000, Math.max(0, Number(v))) / 1000;
  const s = MIN_SPEED * Math.pow(MAX_SPEED / MIN_SPEED, f);
  return Math.round(s * 100) / 100;
}

export function sliderFromSpeed(s) {
  const c = Math.min(MAX_SPEED, Math.max(MIN_SPEED, Number(s) || 1));
  return Math.round((Math.log(c / MIN_SPEED) / Math.log(MAX_SPEED / MIN_SPEED)) * 1000);
}

function render({ model, el }) {
  const root = h("div", "hl-root hl-player");
  const bar = h("div", "hl-bar");
  const title = h("span", "hl-title");
  const toggle = h("button", "hl-player-toggle", "▶ play");
  toggle.type = "button";
  const speedLabel = h("span", "hl-player-speed-label");
  const speed = h("input", "hl-player-speed");
  speed.type = "range";
  speed.min = "0";
  speed.max = "1000";
  const clock = h("span", "hl-player-clock");
  const pill = h("span", "hl-pill");
  const rows = h("span", "hl-count hl-player-rows");
  bar.append(title, toggle, speed, speedLabel, clock, pill, rows);
  const scrub = h("div", "hl-player-scrub");
  const lanes = h("div", "hl-player-lanes");
  const head = h("div", "hl-player-head");
  scrub.append(lanes, head);
  root.append(bar, scrub);
  el.appendChild(root);

  const range = () => [model.get("start_ms") || 0, model.get("end_ms") || 0];
  const frac = (ms) => {
    const [a, b] = range();
    return b > a ? Math.min(1, Math.max(0, (ms - a) / (b - a))) : 0;
  };

  function drawTrack() {
    const [a] = range();
    const spans = model.get("track") || [];
    const channels = [...new Set(spans.map((s) => s[3]))];
    lanes.replaceChildren();
    for (const ch of channels) {
      const lane = h("div", "hl-player-lane");
      lane.dataset.channel = ch;
      for (const [start, end, status] of spans.filter((s) => s[3] === ch)) {
        const span = h("div", "hl-span");
        span.dataset.status = status;
        span.style.left = `${frac(start) * 100}%`;
        span.style.width = `${Math.max(0.2, (frac(end) - frac(start)) * 100)}%`;
        span.title = `${ch}: ${status} ${fmtClock(start - a)} → ${fmtClock(end - a)}`;
        lane.appendChild(span);
      }
      lanes.appendChild(lane);
    }
    root.dataset.nspans = String(spans.length);
  }

  function draw() {
    const [a, b] = range();
    const pos = model.get("position_ms") || a;
    const playing = !!model.get("playing");
    title.textContent = model.get("title") || "";
    toggle.textContent = playing ? "❚❚ pause" : "▶ play";
    toggle.dataset.action = playing ? "pause" : "play";
    const s = model.get("speed") || 1;
    if (document.activeElement !== speed) speed.value = String(sliderFromSpeed(s));
    speedLabel.textContent = `${s}×`;
    clock.textContent = `${fmtClock(pos - a)} / ${fmtClock(b - a)}`;
    const status = model.get("status") || "waiting";
    pill.textContent = status;
    pill.dataset.status = status;
    const counts = model.get("rows") || {};
    rows.textContent = Object.entries(counts).map(([t, n]) => `${t}: ${n}`).join(" · ");
    head.style.left = `${frac(pos) * 100}%`;
    root.dataset.status = status;
    root.dataset.reason = model.get("reason") || "";
    root.dataset.playing = String(playing);
    root.dataset.seeking = String(!!model.get("seeking"));
    root.dataset.positionMs = String(pos);
    root.dataset.startMs = String(a);
    root.dataset.endMs = String(b);
    root.dataset.speed = String(s);
    root.dataset.rows = JSON.stringify(counts);
  }

  toggle.addEventListener("click", () => model.send({ type: toggle.dataset.action === "pause" ? "pause" : "play" }));
  speed.addEventListener("input", () => {
    speedLabel.textContent = `${speedFromSlider(speed.value)}×`;
  });
  speed.addEventListener("change", () => model.send({ type: "speed", value: speedFromSlider(speed.value) }));

  let dragging = false;
  const seekAt = (ev) => {
    const box = scrub.getBoundingClientRect();
    const f = box.width > 0 ? Math.min(1, Math.max(0, (ev.clientX - box.left) / box.width)) : 0;
    const [a, b] = range();
    const ms = Math.round(a + f * (b - a));
    head.style.left = `${f * 100}%`;
    model.send({ type: "seek", ms });
  };
  const onDown = (ev) => {
    dragging = true;
    scrub.setPointerCapture?.(ev.pointerId);
    seekAt(ev);
  };
  const onMove = (ev) => {
    if (dragging) seekAt(ev);
  };
  const onUp = () => {
    dragging = false;
  };
  scrub.addEventListener("pointerdown", onDown);
  scrub.addEventListener("pointermove", onMove);
  scrub.addEventListener("pointerup", onUp);

  drawTrack();
  draw();
  const handlers = {};
  for (const name of ["position_ms", "playing", "speed", "status", "reason", "rows", "seeking", "title"]) {
    handlers[`change:${name}`] = draw;
  }
  handlers["change:track"] = () => {
    drawTrack();
    draw();
  };
  handlers["change:start_ms"] = handlers["change:track"];
  handlers["change:end_ms"] = handlers["change:track"];
  return liveView(model, handlers);
}

export default { render };
