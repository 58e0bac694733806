// ferrymesh console: what every page shares (elements, gRPC-Web calls,
// tables, charts, timers). The pages are portal.js, reference.js, ops.js
// and executions.js; app.js routes between them.
//
// Every action is a call of the contracts through the gateway, over
// gRPC-Web with JSON messages (application/grpc-web+json): the same keys,
// throttles, quotas and metering as a grpcurl call. No framework, no build
// step, nothing fetched from outside the gateway.

export const $ = (selector, root = document) => root.querySelector(selector);

/** Makes an element: h("p", {class: "x"}, "text", child). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function announce(text) {
  const region = $("#announce");
  region.textContent = "";
  setTimeout(() => { region.textContent = text; }, 30);
}

// ---------------------------------------------------------------- gRPC-Web

export const CODES = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
  "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"];

export class RpcError extends Error {
  constructor(code, message, details, correlationId) {
    super(`${CODES[code] || code}: ${message}`);
    this.code = code;
    this.codeName = CODES[code] || String(code);
    this.grpcMessage = message;
    this.details = details;
    this.correlationId = correlationId;
  }
}

export function decodeMessage(text) {
  try { return decodeURIComponent(text || ""); } catch { return text || ""; }
}

/** Calls `path` (package.Service/Method) with `body`; resolves to every answer. */
export async function rpcAll(path, body, { key, admin } = {}) {
  const json = new TextEncoder().encode(JSON.stringify(body || {}));
  const frame = new Uint8Array(5 + json.length);
  new DataView(frame.buffer).setUint32(1, json.length);
  frame.set(json, 5);
  const headers = { "content-type": "application/grpc-web+json", "x-grpc-web": "1" };
  if (key) headers["x-api-key"] = key;
  if (admin) headers["authorization"] = `Bearer ${admin}`;
  let response;
  try {
    response = await fetch(`/${path}`, { method: "POST", headers, body: frame });
  } catch (e) {
    throw new RpcError(14, `the gateway could not be reached: ${e.message}`);
  }
  const correlationId = response.headers.get("x-correlation-id");
  const bytes = new Uint8Array(await response.arrayBuffer());
  const trailers = {};
  for (const name of ["grpc-status", "grpc-message", "grpc-status-details-json"]) {
    const v = response.headers.get(name);
    if (v !== null) trailers[name] = v;
  }
  const messages = [];
  let at = 0;
  while (at + 5 <= bytes.length) {
    const flag = bytes[at];
    const length = new DataView(bytes.buffer, bytes.byteOffset + at + 1, 4).getUint32(0);
    const payload = new TextDecoder().decode(bytes.subarray(at + 5, at + 5 + length));
    at += 5 + length;
    if (flag & 0x80) {
      for (const line of payload.split("\r\n")) {
        const i = line.indexOf(":");
        if (i > 0) trailers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
    } else {
      messages.push(JSON.parse(payload));
    }
  }
  if (!response.ok && trailers["grpc-status"] === undefined) {
    throw new RpcError(2, `HTTP ${response.status} from the gateway`, null, correlationId);
  }
  const code = Number(trailers["grpc-status"] ?? 0);
  if (code !== 0) {
    let details = null;
    if (trailers["grpc-status-details-json"]) {
      try { details = JSON.parse(decodeMessage(trailers["grpc-status-details-json"])); } catch { details = null; }
    }
    throw new RpcError(code, decodeMessage(trailers["grpc-message"]), details, correlationId);
  }
  return { messages, correlationId };
}

export async function rpc(path, body, auth) {
  const { messages } = await rpcAll(path, body, auth);
  return messages[0] || {};
}

export function errorBox(error) {
  const box = h("div", { class: "error", role: "alert" },
    h("strong", {}, error.codeName || "Error"), " ", error.grpcMessage || error.message);
  if (error.details) box.append(h("pre", { tabindex: 0, "aria-label": "Error details" }, JSON.stringify(error.details, null, 2)));
  if (error.correlationId) box.append(h("div", { class: "muted" }, "correlation id: ", h("code", {}, error.correlationId)));
  return box;
}

// ---------------------------------------------------------------- helpers

export const session = {
  get key() { return sessionStorage.getItem("ferrymesh.key") || ""; },
  set key(v) { v ? sessionStorage.setItem("ferrymesh.key", v) : sessionStorage.removeItem("ferrymesh.key"); },
  get admin() { return sessionStorage.getItem("ferrymesh.admin") || ""; },
  set admin(v) { v ? sessionStorage.setItem("ferrymesh.admin", v) : sessionStorage.removeItem("ferrymesh.admin"); },
};

export function money(m) {
  if (!m || !m.currency_code) return "—";
  const value = Number(m.units || 0) + Number(m.nanos || 0) / 1e9;
  return `${value.toFixed(2)} ${m.currency_code}`;
}

export function when(ts) {
  if (!ts) return "—";
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? ts : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function shortEnum(v, prefix) {
  return String(v || "").replace(prefix, "");
}

/** The router, set by app.js (pages that sign in or out route again). */
export const nav = { route: () => {} };

/** Sets the tab's title: the page's own name first. */
export function title(...parts) {
  document.title = [...parts.filter(Boolean), "ferrymesh console"].join(" · ");
}

// A table too wide for the screen says so (and its region can be scrolled
// from the keyboard).
const overflowing = typeof ResizeObserver === "function" ? new ResizeObserver((entries) => {
  for (const { target } of entries) target.classList.toggle("overflowing", target.scrollWidth > target.clientWidth + 1);
}) : null;

/** A table; with no rows, `empty` in its place ("" for nothing at all). */
export function table(headers, rows, { caption, numeric = [], empty = "Nothing yet." } = {}) {
  if (!rows.length) return empty ? h("p", { class: "muted empty" }, empty) : h("span");
  const wrap = h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": caption || "Table" },
    h("table", {},
      caption ? h("caption", { class: "visually-hidden" }, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((t, i) => h("th", { scope: "col", class: numeric.includes(i) ? "num" : null }, t)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { class: numeric.includes(i) ? "num" : null }, c)))))));
  overflowing?.observe(wrap);
  return wrap;
}

export const PALETTE = ["#1d4ed8", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#dc2626", "#4b5563"];

/** A stacked bar chart as SVG, with a legend; `bars`: [{label, parts: {name: value}}]. */
export function barChart(bars, { title, unit = "calls" }) {
  const names = [...new Set(bars.flatMap((b) => Object.keys(b.parts)))].sort();
  const max = Math.max(1, ...bars.map((b) => Object.values(b.parts).reduce((a, v) => a + v, 0)));
  // Drawn at about the width it is shown at, so its 12 px text stays 12 px.
  const W = Math.round(Math.min(640, Math.max(320, window.innerWidth - 60))), H = 220, left = 44, bottom = 28, top = 10;
  const bw = (W - left - 10) / Math.max(1, bars.length);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  const total = bars.reduce((a, b) => a + Object.values(b.parts).reduce((x, y) => x + y, 0), 0);
  svg.setAttribute("aria-label", `${title}: ${total} ${unit} in all`);
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.append(el);
    return el;
  };
  // Whole numbers on the axis: no "1, 1, 0" for a maximum of 1.
  for (const f of max >= 2 ? [0, 0.5, 1] : [0, 1]) {
    const y = top + (H - top - bottom) * (1 - f);
    add("line", { x1: left, x2: W - 5, y1: y, y2: y, stroke: "#e5e7eb" });
    add("text", { x: left - 6, y: y + 4, "text-anchor": "end", "font-size": 12, fill: "#4b5563" }, String(Math.round(max * f)));
  }
  bars.forEach((bar, i) => {
    let y = H - bottom;
    names.forEach((name, j) => {
      const v = bar.parts[name] || 0;
      if (!v) return;
      const hgt = (H - top - bottom) * (v / max);
      y -= hgt;
      const rect = add("rect", { x: left + i * bw + bw * 0.15, y, width: bw * 0.7, height: hgt, fill: PALETTE[j % PALETTE.length] });
      const t = document.createElementNS(ns, "title");
      t.textContent = `${bar.label} · ${name}: ${v}`;
      rect.append(t);
    });
    add("text", { x: left + i * bw + bw / 2, y: H - 10, "text-anchor": "middle", "font-size": 12, fill: "#4b5563" }, bar.label);
  });
  return h("figure", { class: "chart" },
    h("figcaption", { class: "visually-hidden" }, title),
    svg,
    h("ul", { class: "legend", "aria-label": "Legend" }, names.map((n, j) =>
      h("li", {}, h("span", { class: "swatch", style: `background:${PALETTE[j % PALETTE.length]}` }), n))));
}

/** A small line chart of `series` ([{name, color, points: [numbers]}]). */
export function lineChart(series, { title, unit }) {
  const W = 300, H = 70, pad = 4;
  const n = Math.max(2, ...series.map((s) => s.points.length));
  const max = Math.max(1e-9, ...series.flatMap((s) => s.points));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  const last = series.map((s) => `${s.name} ${fmt(s.points[s.points.length - 1] || 0)} ${unit}`).join(", ");
  svg.setAttribute("aria-label", `${title}: ${last}`);
  const base = document.createElementNS(ns, "line");
  Object.entries({ x1: 0, x2: W, y1: H - pad, y2: H - pad, stroke: "#e5e7eb" }).forEach(([k, v]) => base.setAttribute(k, v));
  svg.append(base);
  for (const s of series) {
    const pts = s.points.map((v, i) => `${(i / (n - 1)) * W},${H - pad - (v / max) * (H - 2 * pad)}`).join(" ");
    const line = document.createElementNS(ns, "polyline");
    Object.entries({ points: pts, fill: "none", stroke: s.color, "stroke-width": 2 }).forEach(([k, v]) => line.setAttribute(k, v));
    svg.append(line);
  }
  return h("figure", { class: "chart", style: "margin:0" }, svg);
}

export function fmt(v) {
  if (!Number.isFinite(v)) return "—";
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/** The workflow's SVG, without anything that could run. */
export function safeSvg(text) {
  const doc = new DOMParser().parseFromString(text || "", "image/svg+xml");
  const svg = doc.documentElement;
  if (!svg || svg.nodeName.toLowerCase() !== "svg") return h("p", { class: "muted" }, "No drawing yet.");
  svg.querySelectorAll("script, foreignObject").forEach((el) => el.remove());
  svg.querySelectorAll("*").forEach((el) => {
    for (const a of [...el.attributes]) if (/^on/i.test(a.name) || /javascript:/i.test(a.value)) el.removeAttribute(a.name);
  });
  svg.setAttribute("role", "img");
  return document.importNode(svg, true);
}

export const PROGRESS_BADGE = {
  succeeded: "ok", failed: "bad", caught: "warn", compensated: "warn", compensation: "info",
  "in-progress": "info", "not-reached": "muted",
};

// Pages redraw on timers, which run only while the tab is visible: a
// hidden tab makes no calls, and shows fresh data the moment it is seen.
let timers = [];
export function every(ms, fn) {
  const id = setInterval(() => { if (!document.hidden) fn(); }, ms);
  timers.push({ id, fn });
  return id;
}
export function stopTimers() {
  timers.forEach((t) => clearInterval(t.id));
  timers = [];
}
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) timers.forEach((t) => t.fn());
});

// ---------------------------------------------------------------- pages
