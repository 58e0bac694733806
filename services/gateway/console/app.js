// ferrymesh console: the developer portal and the operations view.
//
// Every action is a call of the contracts through the gateway, over
// gRPC-Web with JSON messages (application/grpc-web+json): the same keys,
// throttles, quotas and metering as a grpcurl call. No framework, no build
// step, nothing fetched from outside the gateway.

const $ = (selector, root = document) => root.querySelector(selector);

/** Makes an element: h("p", {class: "x"}, "text", child). */
function h(tag, attrs = {}, ...children) {
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

function announce(text) {
  const region = $("#announce");
  region.textContent = "";
  setTimeout(() => { region.textContent = text; }, 30);
}

// ---------------------------------------------------------------- gRPC-Web

const CODES = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
  "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"];

class RpcError extends Error {
  constructor(code, message, details, correlationId) {
    super(`${CODES[code] || code}: ${message}`);
    this.code = code;
    this.codeName = CODES[code] || String(code);
    this.grpcMessage = message;
    this.details = details;
    this.correlationId = correlationId;
  }
}

function decodeMessage(text) {
  try { return decodeURIComponent(text || ""); } catch { return text || ""; }
}

/** Calls `path` (package.Service/Method) with `body`; resolves to every answer. */
async function rpcAll(path, body, { key, admin } = {}) {
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

async function rpc(path, body, auth) {
  const { messages } = await rpcAll(path, body, auth);
  return messages[0] || {};
}

function errorBox(error) {
  const box = h("div", { class: "error", role: "alert" },
    h("strong", {}, error.codeName || "Error"), " ", error.grpcMessage || error.message);
  if (error.details) box.append(h("pre", {}, JSON.stringify(error.details, null, 2)));
  if (error.correlationId) box.append(h("div", { class: "muted" }, "correlation id: ", h("code", {}, error.correlationId)));
  return box;
}

// ---------------------------------------------------------------- helpers

const session = {
  get key() { return sessionStorage.getItem("ferrymesh.key") || ""; },
  set key(v) { v ? sessionStorage.setItem("ferrymesh.key", v) : sessionStorage.removeItem("ferrymesh.key"); },
  get admin() { return sessionStorage.getItem("ferrymesh.admin") || ""; },
  set admin(v) { v ? sessionStorage.setItem("ferrymesh.admin", v) : sessionStorage.removeItem("ferrymesh.admin"); },
};

function money(m) {
  if (!m || !m.currency_code) return "—";
  const value = Number(m.units || 0) + Number(m.nanos || 0) / 1e9;
  return `${value.toFixed(2)} ${m.currency_code}`;
}

function when(ts) {
  if (!ts) return "—";
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? ts : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function shortEnum(v, prefix) {
  return String(v || "").replace(prefix, "");
}

function table(headers, rows, { caption, numeric = [] } = {}) {
  return h("div", { class: "table-wrap" },
    h("table", {},
      caption ? h("caption", { class: "visually-hidden" }, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((t, i) => h("th", { scope: "col", class: numeric.includes(i) ? "num" : null }, t)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { class: numeric.includes(i) ? "num" : null }, c)))))));
}

const PALETTE = ["#1d4ed8", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#dc2626", "#4b5563"];

/** A stacked bar chart as SVG, with a legend; `bars`: [{label, parts: {name: value}}]. */
function barChart(bars, { title, unit = "calls" }) {
  const names = [...new Set(bars.flatMap((b) => Object.keys(b.parts)))].sort();
  const max = Math.max(1, ...bars.map((b) => Object.values(b.parts).reduce((a, v) => a + v, 0)));
  const W = 640, H = 220, left = 44, bottom = 28, top = 10;
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
  for (const f of [0, 0.5, 1]) {
    const y = top + (H - top - bottom) * (1 - f);
    add("line", { x1: left, x2: W - 5, y1: y, y2: y, stroke: "#e5e7eb" });
    add("text", { x: left - 6, y: y + 4, "text-anchor": "end", "font-size": 11, fill: "#4b5563" }, String(Math.round(max * f)));
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
    add("text", { x: left + i * bw + bw / 2, y: H - 10, "text-anchor": "middle", "font-size": 11, fill: "#4b5563" }, bar.label);
  });
  return h("figure", { class: "chart" },
    h("figcaption", { class: "visually-hidden" }, title),
    svg,
    h("ul", { class: "legend", "aria-label": "Legend" }, names.map((n, j) =>
      h("li", {}, h("span", { class: "swatch", style: `background:${PALETTE[j % PALETTE.length]}` }), n))));
}

/** A small line chart of `series` ([{name, color, points: [numbers]}]). */
function lineChart(series, { title, unit }) {
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

function fmt(v) {
  if (!Number.isFinite(v)) return "—";
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/** The workflow's SVG, without anything that could run. */
function safeSvg(text) {
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

const PROGRESS_BADGE = {
  succeeded: "ok", failed: "bad", caught: "warn", compensated: "warn", compensation: "info",
  "in-progress": "info", "not-reached": "muted",
};

let timers = [];
function every(ms, fn) {
  const id = setInterval(fn, ms);
  timers.push(id);
  return id;
}
function stopTimers() {
  timers.forEach(clearInterval);
  timers = [];
}

// ---------------------------------------------------------------- pages

function home(main) {
  main.append(
    h("h1", {}, "ferrymesh console"),
    h("p", { class: "lead" }, "The gateway's own pages: sign up and call the API as a developer, or watch and repair the mesh as an operator."),
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", {}, h("a", { href: "#/portal" }, "Developer portal")),
        h("p", {}, "Register for an API key, manage your keys, see your usage and invoice, and place a test order.")),
      h("section", { class: "card" }, h("h2", {}, h("a", { href: "#/reference" }, "API reference")),
        h("p", {}, "Every public method with its messages and comments, and a form to try it with your key.")),
      h("section", { class: "card" }, h("h2", {}, h("a", { href: "#/ops" }, "Operations")),
        h("p", {}, "With the admin token: the mesh's health, RED metrics, service map, workflow executions, traces, logs and revenue."))));
}

// ---- developer portal

async function portal(main) {
  main.append(h("h1", {}, "Developer portal"));
  if (!session.key) {
    main.append(registerCard(main), useKeyCard(main));
    return;
  }
  const status = h("div");
  main.append(
    h("p", { class: "row" }, "Signed in with key ", h("code", { id: "current-key-prefix" }, `${session.key.slice(0, 12)}…`),
      h("button", { class: "secondary", type: "button", onclick: () => { session.key = ""; route(); } }, "Sign out")),
    status);
  const keys = h("section", { class: "card", "aria-labelledby": "keys-h" }, h("h2", { id: "keys-h" }, "Your keys"));
  const usage = h("section", { class: "card", "aria-labelledby": "usage-h" }, h("h2", { id: "usage-h" }, "Usage, last 7 days"));
  const invoice = h("section", { class: "card", "aria-labelledby": "invoice-h" }, h("h2", { id: "invoice-h" }, "Invoice this month"));
  const order = h("section", { class: "card", "aria-labelledby": "order-h" }, h("h2", { id: "order-h" }, "Place a test order"));
  main.append(keys, usage, invoice, order);
  await Promise.all([renderKeys(keys), renderUsage(usage), renderInvoice(invoice), renderOrderForm(order)]);
  every(3000, () => { renderUsage(usage); renderInvoice(invoice); });
}

function showSecret(container, secret, label) {
  const code = h("code", { id: "new-key" }, secret);
  const copied = h("span", { class: "muted", "aria-live": "polite" });
  const copy = h("button", {
    type: "button", id: "copy-key", onclick: async () => {
      try {
        await navigator.clipboard.writeText(secret);
        copied.textContent = "Copied.";
      } catch {
        const range = document.createRange();
        range.selectNodeContents(code);
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        copied.textContent = "Selected: press Ctrl+C to copy.";
      }
    },
  }, "Copy key");
  container.append(h("div", { class: "secret", role: "group", "aria-label": label },
    h("span", {}, label, ": "), code, copy, copied),
    h("p", { class: "muted" }, "It is shown this once; ferrymesh keeps only a keyed hash of it."));
}

function registerCard() {
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", {
    onsubmit: async (e) => {
      e.preventDefault();
      out.replaceChildren();
      const data = new FormData(form);
      try {
        const r = await rpc("ferrymesh.apikeys.v1.DeveloperPortalService/RegisterDeveloper",
          { email: data.get("email"), name: data.get("name") });
        showSecret(out, r.secret, "Your API key");
        out.append(h("button", { type: "button", id: "continue", onclick: () => { session.key = r.secret; route(); } }, "Continue with this key"));
        announce("Registered. Your key is shown once: copy it now.");
      } catch (error) {
        out.append(errorBox(error));
      }
    },
  },
  h("label", {}, "Email", h("input", { name: "email", type: "email", required: true, autocomplete: "email" })),
  h("label", {}, "Name", h("input", { name: "name", required: true, autocomplete: "name" })),
  h("div", {}, h("button", { type: "submit" }, "Register")));
  return h("section", { class: "card", "aria-labelledby": "reg-h" }, h("h2", { id: "reg-h" }, "Register"),
    h("p", { class: "muted" }, "You get a key on the free plan at once."), form, out);
}

function useKeyCard() {
  const form = h("form", {
    class: "inline", onsubmit: (e) => {
      e.preventDefault();
      session.key = new FormData(form).get("key").trim();
      route();
    },
  }, h("label", {}, "API key", h("input", { name: "key", required: true, autocomplete: "off", spellcheck: "false", size: 40 })),
  h("button", { type: "submit" }, "Use this key"));
  return h("section", { class: "card", "aria-labelledby": "use-h" }, h("h2", { id: "use-h" }, "I have a key"), form);
}

async function renderKeys(card) {
  const body = h("div");
  card.replaceChildren(card.firstChild, body);
  try {
    const r = await rpc("ferrymesh.apikeys.v1.DeveloperPortalService/ListMyKeys", {}, { key: session.key });
    const rows = (r.keys || []).map((k) => [
      h("code", {}, k.prefix), k.name,
      h("span", { class: `badge ${k.status.endsWith("ACTIVE") ? "ok" : "muted"}` }, shortEnum(k.status, "API_KEY_STATUS_")),
      when(k.create_time), k.expire_time ? when(k.expire_time) : "—",
      k.status.endsWith("ACTIVE")
        ? h("button", {
          type: "button", class: "danger", "aria-label": `Revoke key ${k.prefix}`, onclick: async () => {
            if (!confirm(`Revoke ${k.prefix}…? Calls with it are refused at once.`)) return;
            try {
              await rpc("ferrymesh.apikeys.v1.DeveloperPortalService/RevokeMyKey", { key_id: k.key_id }, { key: session.key });
              announce(`Key ${k.prefix} revoked.`);
              if (session.key.startsWith(k.prefix)) { session.key = ""; route(); return; }
              renderKeys(card);
            } catch (error) { body.append(errorBox(error)); }
          },
        }, "Revoke") : "",
    ]);
    body.append(table(["Prefix", "Name", "Status", "Created", "Expires", ""], rows, { caption: "Your API keys" }));
    const out = h("div");
    body.append(h("div", { class: "row", style: "margin-top:.75rem" },
      h("button", {
        type: "button", class: "secondary", id: "rotate", onclick: async () => {
          out.replaceChildren();
          try {
            const x = await rpc("ferrymesh.apikeys.v1.DeveloperPortalService/RotateMyKey", { grace_period: "3600s" }, { key: session.key });
            showSecret(out, x.secret, "Your new API key");
            out.append(h("p", {}, `The old key keeps working until ${when(x.old_key.expire_time)}.`));
            session.key = x.secret;
            const prefix = $("#current-key-prefix");
            if (prefix) prefix.textContent = `${x.secret.slice(0, 12)}…`;
            announce("Key rotated. The new key is shown once.");
            renderKeys(card).then(() => card.append(out));
          } catch (error) { out.append(errorBox(error)); }
        },
      }, "Rotate the key you are using")), out);
  } catch (error) {
    body.append(errorBox(error));
  }
}

function utcDay(date) {
  return new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()));
}

async function renderUsage(card) {
  const now = new Date();
  const start = utcDay(new Date(now.getTime() - 6 * 86400e3));
  try {
    const r = await rpc("ferrymesh.apikeys.v1.DeveloperPortalService/GetMyUsage", {
      start_time: start.toISOString(), end_time: new Date(utcDay(now).getTime() + 86400e3).toISOString(),
      granularity: "USAGE_GRANULARITY_DAY",
    }, { key: session.key });
    const days = [];
    for (let i = 0; i < 7; i++) {
      const d = new Date(start.getTime() + i * 86400e3);
      days.push({ key: d.toISOString().slice(0, 10), label: d.toISOString().slice(5, 10), parts: {} });
    }
    const byMethod = {};
    for (const b of r.buckets || []) {
      const day = days.find((d) => d.key === String(b.window_start).slice(0, 10));
      const method = b.method.replace(/^\/?ferrymesh\./, "");
      const n = Number(b.count);
      if (day) day.parts[method] = (day.parts[method] || 0) + n;
      byMethod[method] = (byMethod[method] || 0) + n;
    }
    const total = Number(r.total || 0);
    const quota = Number(r.quota_limit || 0) > 0 ? ` · quota ${r.quota_used} of ${r.quota_limit} used` : "";
    card.replaceChildren(card.firstChild,
      h("p", {}, h("strong", { id: "usage-total", dataset: { total } }, String(total)), " calls", quota),
      barChart(days, { title: "Calls per day by method" }),
      table(["Method", "Calls"], Object.entries(byMethod).sort((a, b) => b[1] - a[1]).map(([m, n]) => [h("code", {}, m), String(n)]),
        { caption: "Calls by method", numeric: [1] }));
  } catch (error) {
    card.replaceChildren(card.firstChild, errorBox(error));
  }
}

async function renderInvoice(card) {
  const period = new Date().toISOString().slice(0, 7);
  try {
    const r = await rpc("ferrymesh.apikeys.v1.DeveloperPortalService/GetMyInvoice", { period }, { key: session.key });
    const inv = r.invoice || {};
    card.replaceChildren(card.firstChild,
      h("p", {}, `Period ${inv.period} on plan `, h("code", {}, inv.plan_id), ": ",
        h("strong", { id: "invoice-total" }, money(inv.total)),
        ` for ${inv.billable_calls} billable of ${inv.weighted_calls} weighted calls (${inv.free_calls} free).`),
      table(["Method", "Calls", "Weight", "Weighted"], (inv.lines || []).map((l) => [h("code", {}, l.method), String(l.calls), String(l.weight), String(l.weighted_calls)]),
        { caption: "Invoice lines", numeric: [1, 2, 3] }));
  } catch (error) {
    card.replaceChildren(card.firstChild, errorBox(error));
  }
}

async function renderOrderForm(card) {
  const out = h("div", { id: "order-result" });
  let products = [];
  try {
    products = (await rpc("ferrymesh.catalog.v1.CatalogService/ListProducts", { page_size: 50 }, { key: session.key })).products || [];
  } catch (error) {
    card.append(errorBox(error));
    return;
  }
  const form = h("form", {
    onsubmit: async (e) => {
      e.preventDefault();
      const d = new FormData(form);
      out.replaceChildren(h("p", { class: "muted" }, "Placing the order…"));
      try {
        const [month, year] = String(d.get("expiry")).split("/").map((x) => Number(x.trim()));
        const r = await rpc("ferrymesh.orders.v2.OrdersService/PlaceOrder", {
          idempotency_key: crypto.randomUUID(),
          items: [{ product_id: d.get("product"), quantity: Number(d.get("quantity")) }],
          shipping_address: {
            recipient_name: d.get("recipient"), street_lines: [d.get("street")], city: d.get("city"),
            postal_code: d.get("postal"), country_code: d.get("country"),
          },
          shipping_option: "SHIPPING_OPTION_STANDARD",
          card: { number: String(d.get("card")).replace(/\s+/g, ""), expiry_month: month, expiry_year: year < 100 ? 2000 + year : year, cvc: d.get("cvc"), holder_name: d.get("recipient") },
        }, { key: session.key });
        watchOrder(out, r.order.order_id);
      } catch (error) {
        out.replaceChildren(errorBox(error));
      }
    },
  },
  h("div", { class: "grid" },
    h("label", {}, "Product", h("select", { name: "product" }, products.map((p) => h("option", { value: p.id }, `${p.name} — ${money(p.price)}`)))),
    h("label", {}, "Quantity", h("input", { name: "quantity", type: "number", min: 1, max: 100, value: 1, required: true })),
    h("label", {}, "Card number ", h("span", { class: "hint" }, "(test cards: see the README)"), h("input", { name: "card", inputmode: "numeric", value: "4242 4242 4242 4242", required: true, autocomplete: "off" })),
    h("label", {}, "Expiry (MM/YY)", h("input", { name: "expiry", value: "12/99", required: true })),
    h("label", {}, "CVC", h("input", { name: "cvc", value: "123", required: true, inputmode: "numeric" })),
    h("label", {}, "Recipient", h("input", { name: "recipient", value: "Ada Lovelace", required: true })),
    h("label", {}, "Street", h("input", { name: "street", value: "12 St James's Square", required: true })),
    h("label", {}, "City", h("input", { name: "city", value: "London", required: true })),
    h("label", {}, "Postal code", h("input", { name: "postal", value: "SW1Y 4JH", required: true })),
    h("label", {}, "Country", h("input", { name: "country", value: "GB", required: true, maxlength: 2 }))),
  h("div", {}, h("button", { type: "submit" }, "Place order")));
  card.append(form, out);
}

/** Polls the order's saga drawing until it ends. */
function watchOrder(out, orderId) {
  let last = "";
  const draw = async () => {
    try {
      const r = await rpc("ferrymesh.orders.v2.OrdersService/GetOrderGraph", { order_id: orderId }, { key: session.key });
      const status = shortEnum(r.order.status, "ORDER_STATUS_");
      const signature = status + JSON.stringify(r.steps);
      if (signature !== last) {
        last = signature;
        const badge = { CONFIRMED: "ok", FAILED: "bad", CANCELLED: "muted" }[status] || "info";
        out.replaceChildren(
          h("p", {}, "Order ", h("code", { id: "order-id" }, r.order.order_id), " is ",
            h("span", { class: `badge ${badge}`, id: "order-status" }, status),
            r.order.status_reason ? ` — ${r.order.status_reason}` : ""),
          h("div", { class: "graph", id: "order-graph", "aria-label": "The order's saga" }, safeSvg(r.svg)),
          h("ul", { class: "steps", "aria-label": "Steps" }, (r.steps || []).map((s) =>
            h("li", {}, h("span", { class: `badge ${PROGRESS_BADGE[s.progress] || "muted"}`, dataset: { step: s.name, progress: s.progress } },
              `${s.name}: ${s.progress}${s.retries ? ` (${s.retries} retries)` : ""}`)))));
        announce(`Order ${status.toLowerCase()}.`);
      }
      const running = (r.steps || []).some((s) => s.progress === "in-progress");
      if (status !== "PENDING" && !running && r.svg) return true;
    } catch (error) {
      out.replaceChildren(errorBox(error));
      return true;
    }
    return false;
  };
  const tick = async () => { if (!(await draw())) setTimeout(tick, 700); };
  tick();
}

// ---- API reference and "try it"

let referenceCache = null;
async function reference() {
  if (!referenceCache) referenceCache = await (await fetch("/console/api/reference")).json();
  return referenceCache;
}

function example(ref, type, depth = 0) {
  const wellKnown = { "google.protobuf.Timestamp": new Date().toISOString(), "google.protobuf.Duration": "1s" };
  if (type in wellKnown) return wellKnown[type];
  const message = ref.messages[type];
  if (!message || depth > 3) return {};
  const out = {};
  for (const f of message.fields) {
    if (f.deprecated) continue;
    let v;
    if (ref.messages[f.type] || f.type in wellKnown) v = example(ref, f.type, depth + 1);
    else if (ref.enums[f.type]) v = (ref.enums[f.type].values.find((x) => x.number !== 0) || ref.enums[f.type].values[0]).name;
    else if (f.type === "string") v = "";
    else if (f.type === "bool") v = false;
    else if (f.type === "bytes") v = "";
    else v = 0;
    out[f.name] = f.map ? {} : f.repeated ? [v] : v;
  }
  return out;
}

function fieldsTable(ref, type) {
  const message = ref.messages[type];
  if (!message) return h("p", { class: "muted" }, type);
  return table(["Field", "Type", "#", "About"], message.fields.map((f) => [
    h("code", {}, f.name),
    h("span", {}, f.repeated ? "repeated " : "", f.map ? "map " : "", h("code", {}, f.type.replace(/^ferrymesh\./, ""))),
    String(f.number),
    h("span", {}, f.deprecated ? h("span", { class: "badge warn" }, "deprecated") : "", " ", f.comment || ""),
  ]), { caption: `Fields of ${type}`, numeric: [2] });
}

async function referencePage(main, selected) {
  const ref = await reference();
  main.append(h("h1", {}, "API reference"),
    h("p", { class: "lead" }, "Generated from the contracts' descriptors. Every method is served by the gateway with your key as ",
      h("code", {}, "x-api-key"), "; try it here, or with grpcurl."));
  const served = ref.served || { stages: {} };
  const nav = h("ul", { class: "tabs", "aria-label": "Services" }, ref.services.map((s) =>
    h("li", {}, h("a", { href: `#/reference/${s.name}`, "aria-current": s.name === selected ? "page" : null }, s.name.replace(/^ferrymesh\./, "")))));
  main.append(nav);
  const service = ref.services.find((s) => s.name === selected) || ref.services[0];
  if (!service) return;
  const stages = Object.entries(served.stages).filter(([, p]) => p.includes(service.package)).map(([n]) => n);
  const card = h("section", { class: "card", "aria-labelledby": "svc-h" },
    h("h2", { id: "svc-h" }, service.name, " ", h("span", { class: "badge info" }, service.version),
      service.deprecated ? h("span", { class: "badge warn" }, "deprecated") : ""),
    h("p", {}, service.comment),
    h("p", { class: "muted" }, `Served on stage${stages.length === 1 ? "" : "s"}: ${stages.join(", ") || "none"}.`));
  main.append(card);
  for (const m of service.methods) {
    const id = `m-${service.name}-${m.name}`.replace(/[^\w-]/g, "-");
    const section = h("section", { class: "card", id, "aria-labelledby": `${id}-h` },
      h("h3", { id: `${id}-h` }, m.name, " ",
        m.server_streaming ? h("span", { class: "badge info" }, "server streaming") : "",
        m.anonymous ? h("span", { class: "badge ok" }, "no key needed") : "",
        m.deprecated ? h("span", { class: "badge warn" }, "deprecated") : ""),
      h("p", {}, m.comment),
      h("details", {}, h("summary", {}, "Request ", h("code", {}, m.input)), fieldsTable(ref, m.input)),
      h("details", {}, h("summary", {}, "Response ", h("code", {}, m.output)), fieldsTable(ref, m.output)),
      tryIt(ref, service, m));
    main.append(section);
  }
}

function tryIt(ref, service, m) {
  const out = h("div", { class: "try-result", "aria-live": "polite" });
  const area = h("textarea", { name: "request", "aria-label": `${m.name} request as JSON`, spellcheck: "false" },
    JSON.stringify(example(ref, m.input), null, 2));
  const form = h("form", {
    onsubmit: async (e) => {
      e.preventDefault();
      out.replaceChildren(h("p", { class: "muted" }, "Calling…"));
      let body;
      try { body = JSON.parse(area.value || "{}"); } catch (error) {
        out.replaceChildren(h("div", { class: "error", role: "alert" }, `The request is not JSON: ${error.message}`));
        return;
      }
      try {
        const { messages, correlationId } = await rpcAll(m.path.slice(1), body, { key: session.key || undefined });
        out.replaceChildren(h("p", {}, h("span", { class: "badge ok" }, "OK"), " correlation id ", h("code", {}, correlationId || "—")),
          h("pre", { class: "try-response" }, messages.map((x) => JSON.stringify(x, null, 2)).join("\n")));
      } catch (error) {
        out.replaceChildren(errorBox(error));
      }
    },
  }, h("p", { class: "muted" }, session.key ? "Sent with your key." : h("span", {}, "No key yet: ", h("a", { href: "#/portal" }, "register"), " to call methods that need one.")),
  area, h("div", {}, h("button", { type: "submit" }, `Send ${m.name}`)));
  return h("details", { class: "try", open: true }, h("summary", {}, "Try it"), form, out);
}

// ---- operations

const OPS_TABS = [["mesh", "Mesh"], ["red", "RED metrics"], ["map", "Service map"], ["executions", "Executions"],
  ["traces", "Traces"], ["logs", "Logs"], ["usage", "Usage & revenue"]];

async function adminGet(path) {
  const r = await fetch(path, { headers: { authorization: `Bearer ${session.admin}` } });
  if (r.status === 401) throw new Error("The admin token was refused.");
  return r.json();
}

function opsLogin(main) {
  const out = h("div");
  const form = h("form", {
    class: "inline", onsubmit: async (e) => {
      e.preventDefault();
      session.admin = new FormData(form).get("token").trim();
      try {
        await adminGet("/console/api/ops/mesh");
        route();
      } catch (error) {
        session.admin = "";
        out.replaceChildren(h("div", { class: "error", role: "alert" }, error.message));
      }
    },
  }, h("label", {}, "Admin token ", h("span", { class: "hint" }, "(the data directory's admin-token file)"),
    h("input", { name: "token", type: "password", required: true, autocomplete: "off", size: 40 })),
  h("button", { type: "submit" }, "Sign in"));
  main.append(h("h1", {}, "Operations"), h("section", { class: "card" }, h("h2", {}, "Sign in"), form, out));
}

async function ops(main, tab, arg) {
  if (!session.admin) return opsLogin(main);
  main.append(h("div", { class: "row" }, h("h1", { style: "flex:1" }, "Operations"),
    h("button", { type: "button", class: "secondary", onclick: () => { session.admin = ""; route(); } }, "Sign out")),
  h("ul", { class: "tabs", "aria-label": "Operations" }, OPS_TABS.map(([t, label]) =>
    h("li", {}, h("a", { href: `#/ops/${t}`, "aria-current": t === tab ? "page" : null }, label)))));
  const pages = { mesh: opsMesh, red: opsRed, map: opsMap, executions: opsExecutions, traces: opsTraces, logs: opsLogs, usage: opsUsage };
  await (pages[tab] || opsMesh)(main, arg);
}

/** Executions that need an operator: a banner linking to them, or nothing. */
async function attentionBanner() {
  const r = await rpc("ferrymesh.workflow.v1.WorkflowService/ListExecutions",
    { needs_attention: true, page_size: 100 }, { admin: session.admin });
  const n = (r.executions || []).length;
  if (!n) return h("span", { id: "attention" });
  return h("p", { class: "error", id: "attention", role: "alert" },
    h("span", { class: "badge bad" }, n >= 100 ? "100+" : `${n}`),
    ` execution${n === 1 ? " needs" : "s need"} an operator: `,
    h("a", { href: "#/ops/executions?attention=1" }, "see which, and why"), ".");
}

/** The last audit of the mesh's invariants, as `ferrymesh audit --every` reported it. */
function auditCard(r) {
  const card = h("section", { class: "card", id: "audit", "aria-labelledby": "audit-h" }, h("h2", { id: "audit-h" }, "Last audit"));
  if (!r.configured) {
    card.append(h("p", { class: "notice" }, "No audit runs here (", h("code", {}, "ferrymesh up --audit-every 1m"), " starts one)."));
  } else if (r.pending) {
    card.append(h("p", { class: "muted" }, "The first audit has not finished yet."));
  } else if (r.error) {
    card.append(h("p", { class: "error" }, h("span", { class: "badge warn" }, "could not read"), ` ${r.error}`, r.ran_at ? ` (${when(r.ran_at)})` : ""));
  } else {
    const n = (r.violations || []).length;
    card.append(h("p", {},
      h("span", { class: `badge ${n ? "bad" : "ok"}`, id: "audit-verdict" }, n ? `${n} violation${n === 1 ? "" : "s"}` : "every invariant holds"),
      ` ${r.orders} orders audited at ${when(r.ran_at)} in ${Number(r.took_seconds).toFixed(1)} s.`));
    if (n) {
      card.append(table(["Order", "Status", "Problem"], r.violations.slice(0, 50).map((v) => [
        h("a", { href: `#/ops/executions/${encodeURIComponent(v.order_id)}` }, v.order_id), v.status, v.problem,
      ]), { caption: "Broken invariants" }));
    }
  }
  return card;
}

async function opsMesh(main) {
  const card = h("section", { class: "card", "aria-labelledby": "mesh-h" }, h("h2", { id: "mesh-h" }, "The mesh at a glance"));
  const attention = h("div");
  const audit = h("div");
  main.append(attention, card, audit);
  const draw = async () => {
    try {
      attention.replaceChildren(await attentionBanner());
    } catch (error) { attention.replaceChildren(errorBox(error)); }
    try {
      audit.replaceChildren(auditCard(await adminGet("/console/api/ops/audit")));
    } catch (error) { audit.replaceChildren(errorBox(error)); }
    try {
      const r = await adminGet("/console/api/ops/mesh");
      card.replaceChildren(card.firstChild, table(["Service", "Health", "Replicas", "Version", "Instances"], r.services.map((s) => [
        h("strong", {}, s.service),
        h("span", { class: `badge ${s.serving === s.replicas && s.replicas > 0 ? "ok" : "bad"}`, dataset: { service: s.service } },
          s.replicas === 0 ? "UNREACHABLE" : s.serving === s.replicas ? "SERVING" : `${s.serving} of ${s.replicas} SERVING`),
        `${s.serving}/${s.replicas}`,
        [...new Set(s.instances.map((i) => i.version).filter(Boolean))].join(", ") || "—",
        h("span", {}, s.instances.map((i) => `${i.address} ${i.health}`).join(" · ")),
      ]), { caption: "Services" }));
    } catch (error) { card.replaceChildren(card.firstChild, errorBox(error)); }
  };
  await draw();
  every(3000, draw);
}

/** Rates and percentiles from two reads of the cumulative histograms. */
function red(prev, next) {
  const dt = (next.at_ms - prev.at_ms) / 1000;
  const before = new Map(prev.series.map((s) => [`${s.service} ${s.method} ${s.code}`, s]));
  const methods = new Map();
  for (const s of next.series) {
    const p = before.get(`${s.service} ${s.method} ${s.code}`);
    const calls = s.count - (p ? p.count : 0);
    // The gateway and the service both count a call through the gateway: one row each.
    const id = `${s.service} ${s.method}`;
    const m = methods.get(id) || { id, service: s.service, method: s.method, calls: 0, errors: 0, buckets: new Map() };
    m.calls += calls;
    if (s.code !== "0") m.errors += calls;
    for (const [le, n] of s.buckets) {
      const pb = p ? (p.buckets.find((b) => b[0] === le) || [le, 0])[1] : 0;
      m.buckets.set(le, (m.buckets.get(le) || 0) + (n - pb));
    }
    methods.set(id, m);
  }
  const quantile = (m, q) => {
    if (m.calls <= 0) return NaN;
    const target = q * m.calls;
    let prevLe = 0, prevN = 0;
    for (const [le, n] of [...m.buckets.entries()].sort((a, b) => (a[0] === "+Inf" ? 1 : b[0] === "+Inf" ? -1 : a[0] - b[0]))) {
      if (n >= target) {
        if (le === "+Inf") return prevLe;
        return prevLe + (le - prevLe) * ((target - prevN) / Math.max(1e-9, n - prevN));
      }
      prevLe = le === "+Inf" ? prevLe : le; prevN = n;
    }
    return prevLe;
  };
  return [...methods.values()].map((m) => ({
    ...m, rate: m.calls / dt, errorRate: m.calls > 0 ? m.errors / m.calls : 0, p50: quantile(m, 0.5), p99: quantile(m, 0.99),
  }));
}

async function opsRed(main) {
  const card = h("section", { class: "card", "aria-labelledby": "red-h" }, h("h2", { id: "red-h" }, "RED metrics per method"),
    h("p", { class: "muted" }, "Rate, errors and duration from every service's own histograms, read every 2 seconds."));
  const body = h("div", { id: "red" });
  card.append(body);
  main.append(card);
  const history = new Map();
  let prev = null;
  const draw = async () => {
    let next;
    try { next = await adminGet("/console/api/ops/metrics"); } catch (error) { body.replaceChildren(errorBox(error)); return; }
    if (!prev) { prev = next; body.replaceChildren(h("p", { class: "muted" }, "Measuring…")); return; }
    const rows = red(prev, next).filter((m) => !m.method.startsWith("grpc.")).sort((a, b) => b.rate - a.rate || a.id.localeCompare(b.id));
    prev = next;
    for (const m of rows) {
      const hst = history.get(m.id) || { rate: [], err: [] };
      hst.rate.push(m.rate); hst.err.push(m.rate * m.errorRate);
      if (hst.rate.length > 30) { hst.rate.shift(); hst.err.shift(); }
      history.set(m.id, hst);
    }
    body.replaceChildren(table(["Method", "Rate (calls/s)", "Errors (not OK)", "p50 (ms)", "p99 (ms)", "Last minute"], rows.map((m) => [
      h("span", {}, h("code", {}, m.method.replace(/^ferrymesh\./, "")), h("br"), h("span", { class: "muted" }, m.service)),
      h("span", { dataset: { service: m.service, method: m.method, rate: m.rate.toFixed(3) } }, fmt(m.rate)),
      h("span", { class: m.errorRate > 0 ? "badge bad" : "" }, `${(m.errorRate * 100).toFixed(1)}%`),
      fmt(m.p50), fmt(m.p99),
      lineChart([{ name: "rate", color: "#1d4ed8", points: history.get(m.id).rate }, { name: "errors", color: "#dc2626", points: history.get(m.id).err }],
        { title: `${m.method} rate and errors`, unit: "calls/s" }),
    ]), { caption: "RED metrics", numeric: [1, 2, 3, 4] }));
  };
  await draw();
  every(2000, draw);
}

async function opsMap(main) {
  const card = h("section", { class: "card", "aria-labelledby": "map-h" }, h("h2", { id: "map-h" }, "Service map"));
  main.append(card);
  const info = await (await fetch("/console/api/info")).json();
  if (!info.trace_sink) {
    card.append(h("p", { class: "notice" }, "The map is drawn from recent traces: start the mesh with ", h("code", {}, "ferrymesh up --trace-sink"),
      info.jaeger_url ? h("span", {}, ", or see Jaeger's ", h("a", { href: `${info.jaeger_url}/dependencies` }, "dependency graph")) : "", "."));
    return;
  }
  try {
    const r = await rpc("ferrymesh.traces.v1.TracesService/GetServiceMap", {}, { admin: session.admin });
    const edges = r.edges || [];
    const names = [...new Set(edges.flatMap((e) => [e.caller, e.callee]))];
    const W = 640, H = 420, cx = W / 2, cy = H / 2, R = 160;
    const pos = new Map(names.map((n, i) => [n, [cx + R * Math.cos((2 * Math.PI * i) / names.length - Math.PI / 2), cy + R * Math.sin((2 * Math.PI * i) / names.length - Math.PI / 2)]]));
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `Service map: ${edges.map((e) => `${e.caller} calls ${e.callee}`).join("; ")}`);
    svg.innerHTML = '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#4b5563"/></marker></defs>';
    for (const e of edges) {
      const [x1, y1] = pos.get(e.caller), [x2, y2] = pos.get(e.callee);
      const len = Math.hypot(x2 - x1, y2 - y1) || 1, k = 42 / len;
      const line = document.createElementNS(ns, "line");
      Object.entries({ x1: x1 + (x2 - x1) * k, y1: y1 + (y2 - y1) * k, x2: x2 - (x2 - x1) * k, y2: y2 - (y2 - y1) * k,
        stroke: Number(e.faults) > 0 ? "#dc2626" : "#4b5563", "stroke-width": 1.5, "marker-end": "url(#arrow)" })
        .forEach(([a, v]) => line.setAttribute(a, v));
      const t = document.createElementNS(ns, "title");
      t.textContent = `${e.caller} → ${e.callee}: ${e.calls} calls, ${e.errors} errors, p99 ${(Number(e.p99_micros) / 1000).toFixed(1)} ms`;
      line.append(t);
      svg.append(line);
    }
    for (const [n, [x, y]] of pos) {
      const g = document.createElementNS(ns, "g");
      g.innerHTML = `<circle cx="${x}" cy="${y}" r="38" fill="#dbeafe" stroke="#1d4ed8"/>`;
      const text = document.createElementNS(ns, "text");
      Object.entries({ x, y: y + 4, "text-anchor": "middle", "font-size": 12, fill: "#111827" }).forEach(([a, v]) => text.setAttribute(a, v));
      text.textContent = n;
      g.append(text);
      svg.append(g);
    }
    card.append(h("div", { class: "graph" }, svg),
      table(["Caller", "Callee", "Calls", "Errors", "Faults", "p50 (ms)", "p99 (ms)"], edges.map((e) => [e.caller, e.callee, String(e.calls), String(e.errors), String(e.faults),
        fmt(Number(e.p50_micros) / 1000), fmt(Number(e.p99_micros) / 1000)]), { caption: "Calls between services", numeric: [2, 3, 4, 5, 6] }),
      h("p", { class: "muted" }, `From ${r.span_count} recent spans.`));
  } catch (error) { card.append(errorBox(error)); }
}

const STATUSES = ["", "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"];
const STATUS_BADGE = { RUNNING: "info", SUCCEEDED: "ok", FAILED: "bad", TIMED_OUT: "bad", ABORTED: "warn" };

async function opsExecutions(main, name) {
  if (name) return opsExecution(main, decodeURIComponent(name));
  const card = h("section", { class: "card", "aria-labelledby": "ex-h" }, h("h2", { id: "ex-h" }, "Workflow executions"));
  const list = h("div", { id: "executions" });
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const form = h("form", {
    class: "inline", onsubmit: (e) => {
      e.preventDefault();
      const d = new FormData(form);
      location.hash = `#/ops/executions?status=${d.get("status")}&machine=${encodeURIComponent(d.get("machine"))}${d.get("attention") ? "&attention=1" : ""}`;
    },
  },
  h("label", {}, "Status", h("select", { name: "status" }, STATUSES.map((s) => h("option", { value: s, selected: params.get("status") === s }, s || "any")))),
  h("label", {}, "State machine", h("input", { name: "machine", value: params.get("machine") || "", placeholder: "place-order" })),
  h("label", {}, h("input", { type: "checkbox", name: "attention", value: "1", checked: params.get("attention") === "1" }), " Needs an operator"),
  h("button", { type: "submit" }, "Filter"));
  card.append(form, list);
  main.append(card);
  try {
    const status = params.get("status");
    const r = await rpc("ferrymesh.workflow.v1.WorkflowService/ListExecutions", {
      state_machine_name: params.get("machine") || "", status: status ? `EXECUTION_STATUS_${status}` : "EXECUTION_STATUS_UNSPECIFIED", page_size: 50,
      needs_attention: params.get("attention") === "1",
    }, { admin: session.admin });
    const rows = (r.executions || []).map((x) => {
      const st = shortEnum(x.status, "EXECUTION_STATUS_");
      return [h("a", { href: `#/ops/executions/${encodeURIComponent(x.execution_name)}` }, x.execution_name),
        `${x.state_machine_name} v${x.state_machine_version}`,
        h("span", {}, h("span", { class: `badge ${STATUS_BADGE[st] || "muted"}` }, st),
          x.attention ? h("span", { class: "badge bad needs-operator", title: x.attention }, " needs an operator") : ""),
        x.current_state || "—", x.error || "", when(x.start_time)];
    });
    list.append(rows.length ? table(["Execution", "State machine", "Status", "State", "Error", "Started"], rows, { caption: "Executions" })
      : h("p", { class: "muted" }, "No executions match."));
  } catch (error) { list.append(errorBox(error)); }
}

function eventClass(e) {
  const t = e.type_name || "";
  if (/Failed|TimedOut|Aborted/.test(t)) return "fail";
  if (e.retry_attempt > 0) return "retry";
  if (/Succeeded|Exited/.test(t)) return "ok";
  return "";
}

async function opsExecution(main, name) {
  const card = h("section", { class: "card", "aria-labelledby": "one-h" }, h("h2", { id: "one-h" }, "Execution ", h("code", {}, name)));
  main.append(h("p", {}, h("a", { href: "#/ops/executions" }, "← All executions")), card);
  const draw = async () => {
    try {
      const auth = { admin: session.admin };
      const [d, g, hist] = await Promise.all([
        rpc("ferrymesh.workflow.v1.WorkflowService/DescribeExecution", { execution_name: name }, auth),
        rpc("ferrymesh.workflow.v1.WorkflowService/GetExecutionGraph", { execution_name: name }, auth),
        rpc("ferrymesh.workflow.v1.WorkflowService/GetExecutionHistory", { execution_name: name, page_size: 500 }, auth),
      ]);
      const x = d.execution;
      const st = shortEnum(x.status, "EXECUTION_STATUS_");
      const out = h("div", { class: "row" });
      const redrivable = ["FAILED", "TIMED_OUT", "ABORTED"].includes(st);
      const redrive = h("button", {
        type: "button", id: "redrive", disabled: !redrivable, onclick: async () => {
          redrive.disabled = true;
          try {
            await rpc("ferrymesh.workflow.v1.WorkflowService/RedriveExecution", { execution_name: name }, auth);
            announce("Redriven: the execution runs again from the state that failed.");
            if (await draw()) follow();
          } catch (error) { out.append(errorBox(error)); }
        },
      }, "Redrive");
      const compensation = (g.nodes || []).filter((n) => /COMPENSATION$/.test(n.progress)).map((n) => n.name);
      const failedStep = (g.nodes || []).filter((n) => /FAILED$/.test(n.progress)).map((n) => n.name);
      const stepsById = [];
      const timeline = h("ol", { class: "timeline", "aria-label": "History" }, (hist.events || []).map((e) => {
        const comp = compensation.includes(e.state_name) ? "comp" : "";
        stepsById.push(e);
        return h("li", { class: eventClass(e) || comp, dataset: { type: e.type_name } },
          h("time", { datetime: e.timestamp }, when(e.timestamp).slice(11)),
          h("strong", {}, e.type_name), e.state_name ? ` ${e.state_name}` : "",
          e.retry_attempt > 0 ? h("span", { class: "badge warn" }, ` retry ${e.retry_attempt}`) : "",
          comp ? h("span", { class: "badge info" }, " compensation") : "",
          /Failed/.test(e.type_name) && e.details ? h("div", { class: "muted" }, e.details.slice(0, 300)) : "");
      }));
      card.replaceChildren(card.firstChild,
        h("p", {}, h("span", { class: `badge ${STATUS_BADGE[st] || "muted"}`, id: "execution-status" }, st),
          ` ${x.state_machine_name} v${x.state_machine_version}`, x.error ? ` · ${x.error}: ${x.cause}` : "",
          x.redrive_count > 0 ? ` · redriven ${x.redrive_count}×` : ""),
        failedStep.length ? h("p", { class: "error", id: "failed-step" }, "Failed at: ", failedStep.join(", ")) : "",
        x.attention ? h("p", { class: "error", id: "needs-operator", role: "alert" }, h("span", { class: "badge bad" }, "needs an operator"), ` It ${x.attention}.`) : "",
        out, h("div", { class: "row" }, redrive, h("span", { class: "muted" }, redrivable ? "Runs again from the state that failed; what succeeded is kept." : "Only a FAILED, TIMED_OUT or ABORTED execution can be redriven.")),
        h("h3", {}, "Graph"),
        h("div", { class: "graph", id: "execution-graph" }, safeSvg(g.svg)),
        h("ul", { class: "steps", "aria-label": "Steps" }, (g.nodes || []).map((n) => {
          const p = shortEnum(n.progress, "STATE_PROGRESS_").toLowerCase().replace("_", "-");
          return h("li", {}, h("span", { class: `badge ${PROGRESS_BADGE[p] || "muted"}`, dataset: { step: n.name, progress: p } }, `${n.name}: ${p}${n.retries ? ` (${n.retries} retries)` : ""}`));
        })),
        h("h3", {}, "History"), timeline);
      return st === "RUNNING";
    } catch (error) {
      card.replaceChildren(card.firstChild, errorBox(error));
      return false;
    }
  };
  // Redrawn only while it runs: an ended execution's page stays put, so
  // focus (on Redrive, say) and a text selection are not lost.
  let polling = null;
  const follow = () => {
    if (polling !== null) return;
    polling = every(1500, async () => {
      if (!(await draw())) { clearInterval(polling); polling = null; }
    });
  };
  if (await draw()) follow();
}

async function opsTraces(main) {
  const info = await (await fetch("/console/api/info")).json();
  const card = h("section", { class: "card", "aria-labelledby": "tr-h" }, h("h2", { id: "tr-h" }, "A request's trace"));
  const out = h("div", { id: "trace" });
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const form = h("form", {
    class: "inline", onsubmit: (e) => {
      e.preventDefault();
      location.hash = `#/ops/traces?q=${encodeURIComponent(new FormData(form).get("q"))}`;
    },
  }, h("label", {}, "Order id, trace id or correlation id", h("input", { name: "q", value: params.get("q") || "", required: true, size: 40 })),
  h("button", { type: "submit" }, "Find"));
  card.append(form, out);
  main.append(card);
  const q = params.get("q");
  if (!q) return;
  if (!info.trace_sink) {
    out.append(h("p", { class: "notice" }, "No trace sink runs here (", h("code", {}, "ferrymesh up --trace-sink"), " starts one)",
      info.jaeger_url ? h("span", {}, "; ", h("a", { href: `${info.jaeger_url}/search?tags=${encodeURIComponent(JSON.stringify({ "ferrymesh.order_id": q }))}` }, "search Jaeger")) : "", "."));
    return;
  }
  try {
    const r = await rpc("ferrymesh.traces.v1.TracesService/FindTraces", { query: q, max_traces: 20 }, { admin: session.admin });
    if (!(r.traces || []).length) { out.append(h("p", { class: "muted" }, "No trace holds it (yet): spans arrive half a second after the call.")); return; }
    for (const t of r.traces) out.append(waterfall(t, info));
  } catch (error) { out.append(errorBox(error)); }
}

function waterfall(trace, info) {
  const spans = trace.spans.map((s) => ({ ...s, start: Number(s.start_unix_nanos), dur: Number(s.duration_nanos) }));
  const t0 = Math.min(...spans.map((s) => s.start));
  const t1 = Math.max(...spans.map((s) => s.start + s.dur));
  const children = new Map();
  for (const s of spans) {
    const list = children.get(s.parent_span_id) || [];
    list.push(s);
    children.set(s.parent_span_id, list);
  }
  const ids = new Set(spans.map((s) => s.span_id));
  const ordered = [];
  const walk = (s, depth) => {
    ordered.push([s, depth]);
    (children.get(s.span_id) || []).sort((a, b) => a.start - b.start).forEach((c) => walk(c, depth + 1));
  };
  spans.filter((s) => !ids.has(s.parent_span_id)).sort((a, b) => a.start - b.start).forEach((s) => walk(s, 0));
  const total = Math.max(1, t1 - t0);
  return h("section", { class: "card", "aria-label": `Trace ${trace.trace_id}` },
    h("h3", {}, "Trace ", h("code", {}, trace.trace_id), ` · ${(total / 1e6).toFixed(1)} ms · ${spans.length} spans`,
      info.jaeger_url ? h("span", {}, " · ", h("a", { href: `${info.jaeger_url}/trace/${trace.trace_id}` }, "open in Jaeger")) : ""),
    h("div", { class: "waterfall", role: "list" }, ordered.map(([s, depth]) =>
      h("div", { class: "span", role: "listitem" },
        h("span", { style: `padding-left:${depth * 0.8}rem` }, h("strong", {}, s.service_name), " ", s.name),
        h("span", { class: "bar", title: `${(s.dur / 1e6).toFixed(2)} ms${s.status_message ? ` · ${s.status_message}` : ""}` },
          h("i", { class: s.class || "", style: `left:${((s.start - t0) / total) * 100}%;width:${(s.dur / total) * 100}%` }),
          h("span", { class: "visually-hidden" }, `${(s.dur / 1e6).toFixed(2)} ms`))))));
}

async function opsLogs(main) {
  const card = h("section", { class: "card", "aria-labelledby": "lg-h" }, h("h2", { id: "lg-h" }, "Live logs by correlation id"));
  const out = h("div", { class: "logs", id: "logs", role: "log", "aria-live": "polite", tabindex: 0 });
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const form = h("form", {
    class: "inline", onsubmit: (e) => {
      e.preventDefault();
      location.hash = `#/ops/logs?id=${encodeURIComponent(new FormData(form).get("id"))}`;
    },
  }, h("label", {}, "Correlation id ", h("span", { class: "hint" }, "(every answer's x-correlation-id)"), h("input", { name: "id", value: params.get("id") || "", required: true, size: 40 })),
  h("button", { type: "submit" }, "Follow"));
  card.append(form, out);
  main.append(card);
  const id = params.get("id");
  if (!id) { out.textContent = "Enter a correlation id to follow its lines across every service."; return; }
  const draw = async () => {
    try {
      const r = await adminGet(`/console/api/ops/logs?correlation_id=${encodeURIComponent(id)}`);
      if (r.error) { out.textContent = r.error; return; }
      if (!r.available) { out.textContent = "This gateway was not given the mesh's logs (--logs-dir; `ferrymesh up` passes it). On Kubernetes: kubectl logs -l app.kubernetes.io/part-of=ferrymesh | grep ID."; return; }
      out.replaceChildren(...(r.lines.length ? r.lines.map((l) => h("div", {}, h("b", {}, l.service.padStart(9), " | "), l.line)) : [h("div", {}, "No lines yet; following…")]));
    } catch (error) { out.textContent = error.message; }
  };
  await draw();
  every(2000, draw);
}

async function opsUsage(main) {
  const card = h("section", { class: "card", "aria-labelledby": "us-h" }, h("h2", { id: "us-h" }, "Usage and revenue this month"));
  main.append(card);
  const period = new Date().toISOString().slice(0, 7);
  const auth = { admin: session.admin };
  try {
    const developers = [];
    let token = "";
    do {
      const r = await rpc("ferrymesh.apikeys.v1.ApiKeysService/ListDevelopers", { page_size: 100, page_token: token }, auth);
      developers.push(...(r.developers || []));
      token = r.next_page_token;
    } while (token && developers.length < 1000);
    const invoices = await Promise.all(developers.map((d) =>
      rpc("ferrymesh.apikeys.v1.ApiKeysService/GetInvoice", { developer_id: d.developer_id, period }, auth).then((r) => r.invoice).catch(() => null)));
    const plans = new Map();
    const rows = developers.map((d, i) => {
      const inv = invoices[i] || {};
      const amount = inv.total ? Number(inv.total.units || 0) + Number(inv.total.nanos || 0) / 1e9 : 0;
      const p = plans.get(d.plan_id) || { developers: 0, calls: 0, billable: 0, revenue: 0, currency: inv.total?.currency_code || "" };
      p.developers += 1; p.calls += Number(inv.weighted_calls || 0); p.billable += Number(inv.billable_calls || 0); p.revenue += amount;
      if (inv.total?.currency_code) p.currency = inv.total.currency_code;
      plans.set(d.plan_id, p);
      return [d.email, h("code", {}, d.plan_id), String(inv.weighted_calls ?? "—"), String(inv.billable_calls ?? "—"), money(inv.total)];
    });
    card.append(h("h3", {}, `By plan, ${period}`),
      table(["Plan", "Developers", "Weighted calls", "Billable", "Revenue"], [...plans.entries()].map(([id, p]) =>
        [h("code", {}, id), String(p.developers), String(p.calls), String(p.billable), `${p.revenue.toFixed(2)} ${p.currency}`]), { caption: "Revenue by plan", numeric: [1, 2, 3, 4] }),
      h("h3", {}, "By developer"),
      table(["Developer", "Plan", "Weighted calls", "Billable", "Invoice"], rows, { caption: "Usage by developer", numeric: [2, 3, 4] }));
  } catch (error) { card.append(errorBox(error)); }
}

// ---------------------------------------------------------------- router

async function route() {
  stopTimers();
  const main = $("#main");
  main.replaceChildren();
  const [path] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  for (const a of document.querySelectorAll(".top nav a")) {
    a.toggleAttribute("aria-current", `#/${parts[0] || ""}` === a.getAttribute("href"));
    if (a.hasAttribute("aria-current")) a.setAttribute("aria-current", "page");
  }
  try {
    switch (parts[0]) {
      case "portal": await portal(main); break;
      case "reference": await referencePage(main, parts[1]); break;
      case "ops": await ops(main, parts[1] || "mesh", parts.slice(2).join("/")); break;
      default: home(main);
    }
  } catch (error) {
    main.append(errorBox(error));
  }
  document.title = `${$("h1", main)?.textContent || "ferrymesh"} · ferrymesh console`;
}

let lastPage = "";
window.addEventListener("hashchange", () => {
  route();
  // Focus follows a change of page (not of a filter), for keyboards and screen readers.
  const page = location.hash.split("?")[0];
  if (page !== lastPage) $("#main").focus();
  lastPage = page;
});
route();
