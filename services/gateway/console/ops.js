// The operations view (with the admin token): the mesh at a glance, RED
// metrics, the service map, traces, logs and revenue. Executions are in
// executions.js.

import { h, rpc, errorBox, session, money, when, table, lineChart, fmt, every, nav, CODES } from "./core.js";
import { opsExecutions } from "./executions.js";

export const OPS_TABS = [["mesh", "Mesh"], ["red", "RED metrics"], ["map", "Service map"], ["executions", "Executions"],
  ["traces", "Traces"], ["logs", "Logs"], ["usage", "Usage & revenue"]];

export async function adminGet(path) {
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
        nav.route();
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

export async function ops(main, tab, arg) {
  if (!session.admin) return opsLogin(main);
  main.append(h("div", { class: "row" }, h("h1", { style: "flex:1" }, "Operations"),
    h("button", { type: "button", class: "secondary", onclick: () => { session.admin = ""; nav.route(); } }, "Sign out")),
  h("ul", { class: "tabs", "aria-label": "Operations" }, OPS_TABS.map(([t, label]) =>
    h("li", {}, h("a", { href: `#/ops/${t}`, "aria-current": t === tab ? "page" : null }, label)))));
  const pages = { mesh: opsMesh, red: opsRed, map: opsMap, executions: opsExecutions, traces: opsTraces, logs: opsLogs, usage: opsUsage };
  await (pages[tab] || opsMesh)(main, arg);
}

/** Executions that need an operator: a banner linking to them, or nothing. */
export async function attentionBanner() {
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

// The X-Ray classes of a gRPC status: a caller's error, a throttle, or a
// fault of the service (what an SLO's error budget counts).
const THROTTLE = new Set([8]);
const FAULT = new Set([2, 4, 10, 12, 13, 14, 15]);
function classOf(code) {
  const c = Number(code);
  if (c === 0) return "ok";
  if (THROTTLE.has(c)) return "throttle";
  if (FAULT.has(c)) return "fault";
  return "error";
}

/** Rates, error classes and percentiles from two reads of the cumulative histograms. */
function red(prev, next) {
  const dt = (next.at_ms - prev.at_ms) / 1000;
  const before = new Map(prev.series.map((s) => [`${s.service} ${s.method} ${s.code}`, s]));
  const methods = new Map();
  for (const s of next.series) {
    const p = before.get(`${s.service} ${s.method} ${s.code}`);
    const calls = s.count - (p ? p.count : 0);
    // The gateway and the service both count a call through the gateway: one row each.
    const id = `${s.service} ${s.method}`;
    const m = methods.get(id) || { id, service: s.service, method: s.method, calls: 0, total: 0, ok: 0, error: 0, throttle: 0, fault: 0, codes: {}, buckets: new Map() };
    m.calls += calls;
    m.total += s.count;
    m[classOf(s.code)] += calls;
    if (s.code !== "0" && calls > 0) {
      const name = CODES[Number(s.code)] || s.code;
      m.codes[name] = (m.codes[name] || 0) + calls;
    }
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
  const share = (m, n) => (m.calls > 0 ? n / m.calls : 0);
  return [...methods.values()].map((m) => ({
    ...m, rate: m.calls / dt, errorRate: share(m, m.error), throttleRate: share(m, m.throttle), faultRate: share(m, m.fault),
    p50: quantile(m, 0.5), p99: quantile(m, 0.99),
  }));
}

/** A method's name that wraps only between its parts, never mid-word. */
function methodName(method) {
  const parts = method.replace(/^ferrymesh\./, "").split(/(?<=[./])/);
  return h("code", { class: "method" }, parts.flatMap((p, i) => (i ? [h("wbr"), p] : [p])));
}

/** A share as a percentage, with the codes behind it. */
function classCell(m, rate, cls, badge) {
  if (rate <= 0) return h("span", { class: "muted" }, "0%");
  const codes = Object.entries(m.codes).filter(([name]) => classOf(CODES.indexOf(name)) === cls)
    .map(([name, n]) => `${name} ${n}`).join(", ");
  return h("span", {}, h("span", { class: `badge ${badge}` }, `${(rate * 100).toFixed(1)}%`), h("br"), h("span", { class: "muted small" }, codes));
}

const RED_COLUMNS = [
  ["method", "Method", (m) => m.id],
  ["rate", "Rate (calls/s)", (m) => m.rate],
  ["error", "Caller errors", (m) => m.errorRate],
  ["throttle", "Throttled", (m) => m.throttleRate],
  ["fault", "Faults", (m) => m.faultRate],
  ["p50", "p50 (ms)", (m) => (Number.isFinite(m.p50) ? m.p50 : -1)],
  ["p99", "p99 (ms)", (m) => (Number.isFinite(m.p99) ? m.p99 : -1)],
];

async function opsRed(main) {
  const card = h("section", { class: "card", "aria-labelledby": "red-h" }, h("h2", { id: "red-h" }, "RED metrics per method"),
    h("p", { class: "muted" }, "Rate, errors and duration from every service's own histograms, read every 2 seconds. ",
      "Errors are split as X-Ray does: a caller's mistake, a throttle, or a fault of the service."));
  const all = h("input", { type: "checkbox", id: "red-all" });
  const body = h("div", { id: "red" });
  card.append(h("label", { class: "check" }, all, " Show methods without traffic"), body);
  main.append(card);
  const history = new Map();
  const open = new Set();
  let sort = { key: "rate", down: true };
  let prev = null, rows = [];
  const render = () => {
    const column = RED_COLUMNS.find(([k]) => k === sort.key);
    // Methods with calls in the last minute, unless asked for all.
    const shown = rows.filter((m) => all.checked || history.get(m.id).rate.some((v) => v > 0))
      .sort((a, b) => {
        const x = column[2](a), y = column[2](b);
        const c = typeof x === "string" ? x.localeCompare(y) : x - y;
        return (sort.down ? -c : c) || a.id.localeCompare(b.id);
      });
    if (!shown.length) {
      body.replaceChildren(h("p", { class: "muted empty" }, "No calls in the last minute: every method with traffic appears here."));
      return;
    }
    const head = h("tr", {}, RED_COLUMNS.map(([key, label]) => h("th", {
      scope: "col", class: key === "method" ? null : "num",
      "aria-sort": sort.key === key ? (sort.down ? "descending" : "ascending") : "none",
    }, h("button", { type: "button", class: "sort", onclick: () => { sort = { key, down: sort.key === key ? !sort.down : key !== "method" }; render(); } }, label))),
    h("th", { scope: "col" }, "Last minute"));
    const lines = shown.flatMap((m) => {
      const hst = history.get(m.id);
      const series = [{ name: "rate", color: "#1d4ed8", points: hst.rate }];
      if (hst.err.some((v) => v > 0)) series.push({ name: "errors", color: "#dc2626", points: hst.err });
      const row = h("tr", { dataset: { row: m.id } },
        h("td", {}, h("button", {
          type: "button", class: "link", "aria-expanded": open.has(m.id) ? "true" : "false",
          "aria-label": `Latency over time of ${m.method} in ${m.service}`,
          onclick: () => { open.has(m.id) ? open.delete(m.id) : open.add(m.id); render(); },
        }, methodName(m.method)), h("br"), h("span", { class: "muted" }, m.service)),
        h("td", { class: "num" }, h("span", { dataset: { service: m.service, method: m.method, rate: m.rate.toFixed(3) } }, fmt(m.rate))),
        h("td", { class: "num" }, classCell(m, m.errorRate, "error", "warn")),
        h("td", { class: "num" }, classCell(m, m.throttleRate, "throttle", "info")),
        h("td", { class: "num" }, classCell(m, m.faultRate, "fault", "bad")),
        h("td", { class: "num" }, fmt(m.p50)), h("td", { class: "num" }, fmt(m.p99)),
        h("td", {}, lineChart(series, { title: `${m.method} rate${series.length > 1 ? " and errors" : ""}`, unit: "calls/s" })));
      if (!open.has(m.id)) return [row];
      const latency = h("tr", { class: "detail" }, h("td", { colspan: RED_COLUMNS.length + 1 },
        h("p", {}, "Latency over the last minute: ", h("span", { style: "color:#047857" }, "p50"), " and ", h("span", { style: "color:#92400e" }, "p99"), " (ms)"),
        lineChart([{ name: "p50", color: "#047857", points: hst.p50 }, { name: "p99", color: "#92400e", points: hst.p99 }],
          { title: `${m.method} latency`, unit: "ms" })));
      return [row, latency];
    });
    body.replaceChildren(h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "RED metrics" },
      h("table", {}, h("caption", { class: "visually-hidden" }, "RED metrics"), h("thead", {}, head), h("tbody", {}, lines))));
  };
  all.addEventListener("change", render);
  const draw = async () => {
    let next;
    try { next = await adminGet("/console/api/ops/metrics"); } catch (error) { body.replaceChildren(errorBox(error)); return; }
    if (!prev) { prev = next; body.replaceChildren(h("p", { class: "muted" }, "Measuring…")); return; }
    rows = red(prev, next).filter((m) => !m.method.startsWith("grpc."));
    prev = next;
    for (const m of rows) {
      const hst = history.get(m.id) || { rate: [], err: [], p50: [], p99: [] };
      hst.rate.push(m.rate); hst.err.push(m.rate * (m.errorRate + m.throttleRate + m.faultRate));
      hst.p50.push(Number.isFinite(m.p50) ? m.p50 : 0); hst.p99.push(Number.isFinite(m.p99) ? m.p99 : 0);
      for (const k of Object.keys(hst)) if (hst[k].length > 30) hst[k].shift();
      history.set(m.id, hst);
    }
    render();
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
    svg.setAttribute("width", W);
    svg.setAttribute("height", H);
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
