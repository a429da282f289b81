// PresenceRosterWidget front end: the roster from the `users` trait, re-rendered once a second so
// "last seen" ages and typing indicators expire on their own.

export function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 10) return "just now";
  if (s < 60) return `${s} s ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.round(h / 24)} d ago`;
}

export function colour(id) {
  let hash = 2166136261; // FNV-1a: neighbouring ids get far-apart hues
  for (const ch of String(id)) hash = Math.imul(hash ^ ch.codePointAt(0), 16777619) >>> 0;
  return `hsl(${hash % 360}, 55%, 42%)`;
}

import { h, liveView, showStatus } from "./view.js";

const LABEL = { online: "online", away: "away", dnd: "do not disturb", offline: "offline" };

function render({ model, el }) {
  const root = h("div", "hl-root hl-roster");
  const bar = h("div", "hl-bar");
  const title = h("span", "hl-title");
  const count = h("span", "hl-count");
  const status = h("span", "hl-pill");
  bar.append(title, status, count);
  const list = h("ul", "hl-roster-list");
  const empty = h("div", "hl-empty", "nobody here yet");
  root.append(bar, list, empty);
  el.appendChild(root);
  let offset = 0; // kernel clock - browser clock

  function draw() {
    const users = model.get("users") || [];
    const now = Date.now() + offset;
    title.textContent = model.get("title") || "Presence";
    const present = users.filter((u) => u.status !== "offline").length;
    count.textContent = `${present} present · ${users.length} known`;
    showStatus(model, root, status);
    root.dataset.present = String(present);
    root.dataset.nusers = String(users.length);
    empty.style.display = users.length ? "none" : "";
    // an empty roster on an unhealthy channel is not an empty room: point at the status line
    const st = model.get("status") || "waiting";
    empty.textContent = st === "live" || st === "waiting" ? "nobody here yet" : `no presence: the channel is ${st} (see above)`;
    list.replaceChildren();
    for (const u of users) {
      const li = h("li", "hl-user");
      li.dataset.user = u.id;
      li.dataset.status = u.status;
      const typing = !!u.typing && (u.typing_until_ms == null || u.typing_until_ms > now);
      li.dataset.typing = typing ? "true" : "false";
      const avatar = h("span", "hl-avatar", u.initials);
      avatar.style.background = colour(u.id);
      const dot = h("span", "hl-dot");
      dot.dataset.status = u.status;
      dot.title = LABEL[u.status] || u.status;
      avatar.appendChild(dot);
      const who = h("span", "hl-who");
      const name = h("span", "hl-name", u.name);
      name.title = u.id;
      let sub;
      if (typing) {
        sub = h("span", "hl-typing", "typing");
        sub.appendChild(h("span", "hl-dots", "…"));
        if (u.typing_until_ms != null) sub.title = `typing (shown until ${new Date(u.typing_until_ms).toLocaleTimeString()})`;
      }
      else if (u.status === "offline") sub = h("span", "hl-sub", u.last_seen_ms ? `offline · last seen ${ago(now - u.last_seen_ms)}` : "offline");
      else sub = h("span", "hl-sub", LABEL[u.status] || u.status);
      who.append(name, sub);
      li.append(avatar, who);
      list.appendChild(li);
    }
  }

  const onUsers = () => {
    offset = (model.get("now_ms") || Date.now()) - Date.now();
    draw();
  };
  onUsers();
  return liveView(model, { "change:users": onUsers, "change:status": draw, "change:reason": draw, "change:title": draw }, { tick: draw });
}

export default { render };
