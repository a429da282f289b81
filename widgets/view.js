// What every harmony_lab widget view shares: element creation and the view lifecycle with the kernel
// (subscribe to model events, redraw on a timer, say "ready" once rendered so the kernel starts
// streaming, and on teardown unsubscribe and say "bye").

export function h(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text != null) el.textContent = text;
  return el;
}

// The status line: `status · reason` in a pill, mirrored as data-status / data-reason on the root.
export function showStatus(model, root, pill) {
  const st = model.get("status") || "waiting";
  const why = model.get("reason") || "";
  pill.textContent = why ? `${st} · ${why}` : st;
  pill.title = why;
  pill.dataset.status = st;
  root.dataset.status = st;
  root.dataset.reason = why;
}

// `handlers` maps model events ("change:users", "msg:custom", ...) to functions. `tick`, if given,
// runs every `tickMs`. Returns the teardown function anywidget calls when the view goes away;
// `cleanup` runs first (timers of the view's own).
export function liveView(model, handlers, { tick = null, tickMs = 1000, cleanup = null } = {}) {
  const entries = Object.entries(handlers);
  for (const [event, fn] of entries) model.on(event, fn);
  const timer = tick ? setInterval(tick, tickMs) : 0;
  model.send({ type: "ready" });
  return () => {
    if (cleanup) cleanup();
    if (timer) clearInterval(timer);
    for (const [event, fn] of entries) model.off(event, fn);
    try {
      model.send({ type: "bye" });
    } catch (err) {
      console.debug("harmony_lab: could not say bye (the kernel is gone?)", err);
    }
  };
}
