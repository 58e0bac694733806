// Workflow executions for an operator: how they ended, grouped (the one
// that needs repair apart from ordinary outcomes such as a declined card),
// found by execution or order id, filtered and paged; and one execution's
// page, which says where it failed, how often it was tried, what the order
// is now, where its trace and logs are, and what to do.

import { h, rpc, errorBox, session, when, shortEnum, table, safeSvg, PROGRESS_BADGE, every, announce } from "./core.js";

const WF = "ferrymesh.workflow.v1.WorkflowService";
const STATUSES = ["", "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"];
const STATUS_BADGE = { RUNNING: "info", SUCCEEDED: "ok", FAILED: "bad", TIMED_OUT: "bad", ABORTED: "warn" };
const PAGE = 25;

function params() {
  return new URLSearchParams(location.hash.split("?")[1] || "");
}

function hashWith(values) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(values)) if (v) p.set(k, v);
  const q = p.toString();
  return `#/ops/executions${q ? `?${q}` : ""}`;
}

function statusBadge(st, extra = {}) {
  return h("span", { class: `badge ${STATUS_BADGE[st] || "muted"}`, ...extra }, st);
}

/** The groups of SummarizeExecutions: each a link that filters on it. */
async function summary(machine) {
  const r = await rpc(`${WF}/SummarizeExecutions`, { state_machine_name: machine || "" }, { admin: session.admin });
  const groups = r.groups || [];
  const rows = groups.map((g) => {
    const st = shortEnum(g.status, "EXECUTION_STATUS_");
    const href = hashWith({ status: st, error: g.error, state: g.current_state, attention: g.needs_attention ? "1" : "", machine });
    const what = g.needs_attention ? h("span", { class: "badge bad" }, "needs an operator")
      : st === "FAILED" ? h("span", { class: "badge muted" }, "failed as planned") : "";
    return [h("a", { href }, `${g.count}`), h("span", {}, statusBadge(st), " ", what), g.error || "—", g.current_state || "—", when(g.latest_start_time)];
  });
  return h("section", { class: "card", "aria-labelledby": "groups-h", id: "groups" },
    h("h2", { id: "groups-h" }, `How ${r.total || 0} executions stand`),
    table(["Count", "Status", "Error", "At state", "Latest"], rows, { caption: "Executions by outcome", numeric: [0], empty: "No executions yet." }));
}

function filterForm(p) {
  const form = h("form", {
    class: "inline", role: "search", "aria-label": "Find executions", onsubmit: (e) => {
      e.preventDefault();
      const d = new FormData(form);
      location.hash = hashWith({
        q: String(d.get("q")).trim(), status: d.get("status"), machine: String(d.get("machine")).trim(),
        error: String(d.get("error")).trim(), state: String(d.get("state")).trim(), attention: d.get("attention") ? "1" : "",
      });
    },
  },
  h("label", {}, "Execution or order id", h("input", { name: "q", value: p.get("q") || "", size: 28, spellcheck: "false", autocomplete: "off" })),
  h("label", {}, "Status", h("select", { name: "status" }, STATUSES.map((s) => h("option", { value: s, selected: (p.get("status") || "") === s }, s || "any")))),
  h("label", {}, "State machine", h("input", { name: "machine", value: p.get("machine") || "", placeholder: "place-order", size: 12 })),
  h("label", {}, "Error", h("input", { name: "error", value: p.get("error") || "", placeholder: "UNAVAILABLE", size: 14 })),
  h("label", {}, "At state", h("input", { name: "state", value: p.get("state") || "", placeholder: "Release stock", size: 14 })),
  h("label", { class: "check" }, h("input", { type: "checkbox", name: "attention", value: "1", checked: p.get("attention") === "1" }), " Needs an operator"),
  h("button", { type: "submit" }, "Find"));
  return form;
}

export async function opsExecutions(main, name) {
  if (name) return opsExecution(main, decodeURIComponent(name));
  const p = params();
  const list = h("div", { id: "executions" });
  const card = h("section", { class: "card", "aria-labelledby": "ex-h" }, h("h2", { id: "ex-h" }, "Workflow executions"), filterForm(p), list);
  const groups = h("div");
  main.append(groups, card);
  const request = {
    name_prefix: p.get("q") || "", state_machine_name: p.get("machine") || "",
    status: p.get("status") ? `EXECUTION_STATUS_${p.get("status")}` : "EXECUTION_STATUS_UNSPECIFIED",
    needs_attention: p.get("attention") === "1", error: p.get("error") || "", current_state: p.get("state") || "",
    page_size: PAGE, page_token: p.get("page") || "",
  };
  try {
    const [r, g] = await Promise.all([rpc(`${WF}/ListExecutions`, request, { admin: session.admin }), summary(request.state_machine_name)]);
    groups.replaceChildren(g);
    const executions = r.executions || [];
    // An id that names exactly one execution opens it: found in two actions.
    if (request.name_prefix && executions.length === 1 && executions[0].execution_name === request.name_prefix && !request.page_token) {
      location.replace(`#/ops/executions/${encodeURIComponent(executions[0].execution_name)}`);
      return;
    }
    const rows = executions.map((x) => {
      const st = shortEnum(x.status, "EXECUTION_STATUS_");
      return [h("a", { href: `#/ops/executions/${encodeURIComponent(x.execution_name)}` }, x.execution_name),
        `${x.state_machine_name} v${x.state_machine_version}`,
        h("span", {}, statusBadge(st),
          x.attention ? h("span", { class: "badge bad needs-operator", title: x.attention }, " needs an operator") : ""),
        x.current_state || "—", x.error || "", when(x.start_time)];
    });
    list.append(table(["Execution", "State machine", "Status", "State", "Error", "Started"], rows,
      { caption: "Executions", empty: "No executions match: clear a filter, or check the id." }));
    const pager = h("nav", { class: "row pager", "aria-label": "Pages" });
    if (request.page_token) pager.append(h("button", { type: "button", class: "secondary", onclick: () => history.back() }, "← Previous page"));
    if (r.next_page_token) {
      pager.append(h("a", { href: hashWith({ ...Object.fromEntries(p), page: r.next_page_token }), id: "next-page" }, "Next page →"));
    }
    list.append(pager);
  } catch (error) { list.append(errorBox(error)); }
}

function eventClass(e) {
  const t = e.type_name || "";
  if (/Failed|TimedOut|Aborted/.test(t)) return "fail";
  if (e.retry_attempt > 0) return "retry";
  if (/Succeeded|Exited/.test(t)) return "ok";
  return "";
}

function details(e) {
  try { return JSON.parse(e.details || "{}") || {}; } catch { return {}; }
}

/** Each attempt of a state's task: when, how long, and how it ended. */
function attempts(events, state) {
  const out = [];
  let current = null;
  for (const e of events) {
    if (e.state_name !== state) continue;
    if (e.type_name === "TaskStarted") {
      current = { attempt: e.retry_attempt + 1, start: new Date(e.timestamp), outcome: "sent, no answer recorded" };
      out.push(current);
    } else if (current && /^Task(Succeeded|Failed|TimedOut)$/.test(e.type_name)) {
      const d = details(e);
      current.ms = new Date(e.timestamp) - current.start;
      const error = d.Error || d.error, cause = d.Cause || d.cause;
      current.outcome = e.type_name === "TaskSucceeded" ? "OK" : `${error || e.type_name}${cause ? `: ${cause}` : ""}`;
      current.failed = e.type_name !== "TaskSucceeded";
    }
  }
  return out;
}

/** What the operator should do about an execution, in words. */
function advice(x, st, failed, node) {
  const method = node?.resource ? node.resource.replace(/^grpc:/, "") : "";
  const service = method ? method.split(".")[1] : "";
  if (x.attention) {
    return ["What to do: ",
      method ? h("span", {}, "find why ", h("strong", {}, service), " refused ", h("code", {}, method), " (its logs, linked below), fix that, ") : "fix the cause, ",
      "then Redrive: it runs again from ", h("strong", {}, failed || "the state that failed"), ", keeping what succeeded."];
  }
  if (st === "FAILED") return ["It failed as its definition planned (", x.error || "an error", "): whatever it held was undone. Nothing to do: a redrive would fail the same way, so none is offered."];
  if (st === "TIMED_OUT" || st === "ABORTED") return ["It stopped before it ended. Redrive runs it again from where it stopped."];
  if (st === "RUNNING") return ["It is running; this page follows it."];
  return ["It ended well. Nothing to do."];
}

/** The graph at its natural size in a pannable frame, with zoom buttons. */
function zoomable(svgText) {
  const frame = h("div", { class: "graph", id: "execution-graph", tabindex: 0, role: "region", "aria-label": "Execution graph (scroll or drag to pan)" }, safeSvg(svgText));
  const svg = frame.querySelector("svg");
  const natural = svg ? Number(svg.getAttribute("width")) || 0 : 0;
  let scale = 1;
  const apply = () => { if (svg && natural) svg.style.width = `${Math.round(natural * scale)}px`; };
  const zoom = (f) => () => { scale = f === 0 ? 1 : Math.min(3, Math.max(0.4, scale * f)); apply(); };
  let drag = null;
  frame.addEventListener("pointerdown", (e) => { drag = { x: e.clientX, y: e.clientY, left: frame.scrollLeft, top: frame.scrollTop }; });
  frame.addEventListener("pointermove", (e) => {
    if (!drag) return;
    frame.scrollLeft = drag.left - (e.clientX - drag.x);
    frame.scrollTop = drag.top - (e.clientY - drag.y);
  });
  for (const end of ["pointerup", "pointerleave"]) frame.addEventListener(end, () => { drag = null; });
  apply();
  return h("div", {},
    h("div", { class: "row zoom", role: "group", "aria-label": "Zoom" },
      h("button", { type: "button", class: "secondary", onclick: zoom(1 / 1.25) }, "Zoom out"),
      h("button", { type: "button", class: "secondary", onclick: zoom(0) }, "Actual size"),
      h("button", { type: "button", class: "secondary", onclick: zoom(1.25) }, "Zoom in")),
    frame);
}

async function orderOf(x) {
  let orderId = "";
  try { orderId = JSON.parse(x.input || "{}").order_id || ""; } catch { orderId = ""; }
  if (!orderId) return null;
  try {
    const r = await rpc("ferrymesh.orders.v2.OrdersService/GetOrder", { order_id: orderId }, { admin: session.admin });
    return { orderId, order: r.order };
  } catch (error) {
    return { orderId, error };
  }
}

function orderLine(o) {
  if (!o) return "";
  const links = [" · ", h("a", { href: `#/ops/traces?q=${encodeURIComponent(o.orderId)}` }, "its traces")];
  if (o.error) return h("p", { id: "order" }, "Order ", h("code", {}, o.orderId), ": could not be read (", o.error.codeName, ")", ...links);
  const st = shortEnum(o.order.status, "ORDER_STATUS_");
  return h("p", { id: "order" }, "Order ", h("code", {}, o.orderId), " is ",
    h("span", { class: `badge ${{ CONFIRMED: "ok", FAILED: "bad" }[st] || "info"}`, id: "order-status" }, st),
    o.order.status_reason ? ` — ${o.order.status_reason}` : "", ...links);
}

async function opsExecution(main, name) {
  const card = h("section", { class: "card", "aria-labelledby": "one-h" }, h("h2", { id: "one-h" }, "Execution ", h("code", {}, name)));
  main.append(h("p", {}, h("a", { href: "#/ops/executions" }, "← All executions")), card);
  const auth = { admin: session.admin };
  const draw = async () => {
    try {
      const [d, g, hist] = await Promise.all([
        rpc(`${WF}/DescribeExecution`, { execution_name: name }, auth),
        rpc(`${WF}/GetExecutionGraph`, { execution_name: name }, auth),
        rpc(`${WF}/GetExecutionHistory`, { execution_name: name, page_size: 1000 }, auth),
      ]);
      const x = d.execution;
      const st = shortEnum(x.status, "EXECUTION_STATUS_");
      const events = hist.events || [];
      const nodes = g.nodes || [];
      const failedNode = nodes.find((n) => /FAILED$/.test(n.progress));
      const order = await orderOf(x);
      const out = h("div", { class: "row" });
      // Redrive only where it can help: not on a failure the definition planned.
      const helps = ["TIMED_OUT", "ABORTED"].includes(st) || (st === "FAILED" && Boolean(x.attention));
      const from = failedNode ? failedNode.name : x.current_state;
      const redrive = helps ? h("button", {
        type: "button", id: "redrive", onclick: async () => {
          const kept = nodes.filter((n) => /SUCCEEDED$/.test(n.progress)).length;
          if (!confirm(`Redrive ${name}? It runs again from "${from}"${failedNode?.resource ? `, calling ${failedNode.resource.replace(/^grpc:/, "")} again` : ""}; the ${kept} states that succeeded are kept.`)) return;
          redrive.disabled = true;
          try {
            await rpc(`${WF}/RedriveExecution`, { execution_name: name }, auth);
            announce("Redriven: the execution runs again from the state that failed.");
            if (await draw()) follow();
          } catch (error) { out.append(errorBox(error)); }
        },
      }, "Redrive") : "";
      const tried = failedNode ? attempts(events, failedNode.name) : [];
      const links = h("p", {}, "Logs: ",
        x.correlation_id ? h("a", { href: `#/ops/logs?id=${encodeURIComponent(x.correlation_id)}`, id: "logs-link" }, `every line of ${x.correlation_id}`) : "—",
        " · Trace: ", x.trace_id ? h("a", { href: `#/ops/traces?q=${encodeURIComponent(x.trace_id)}`, id: "trace-link" }, x.trace_id) : "not traced");
      card.replaceChildren(card.firstChild,
        h("p", {}, statusBadge(st, { id: "execution-status" }),
          ` ${x.state_machine_name} v${x.state_machine_version} · started ${when(x.start_time)}`, x.stop_time ? ` · ended ${when(x.stop_time)}` : "",
          x.redrive_count > 0 ? ` · redriven ${x.redrive_count}×` : ""),
        orderLine(order),
        failedNode ? h("div", { class: "error", id: "failed-step" },
          h("p", {}, "Failed at ", h("strong", {}, failedNode.name),
            failedNode.resource ? h("span", {}, ": ", h("code", {}, failedNode.resource.replace(/^grpc:/, ""))) : "",
            x.error ? ` · ${x.error}: ${x.cause}` : ""),
          tried.length ? table(["Attempt", "Sent at", "Took (ms)", "Answer"], tried.map((a) => [
            String(a.attempt), a.start.toISOString().replace("T", " ").slice(0, 23), a.ms === undefined ? "—" : String(a.ms), a.outcome,
          ]), { caption: `Attempts at ${failedNode.name}`, numeric: [0, 2] }) : "") : "",
        x.attention ? h("p", { class: "error", id: "needs-operator", role: "alert" }, h("span", { class: "badge bad" }, "needs an operator"), ` It ${x.attention}.`) : "",
        h("p", { class: "notice", id: "advice" }, ...advice(x, st, from, failedNode)),
        links, out,
        redrive ? h("div", { class: "row" }, redrive, h("span", { class: "muted" }, "Asks before it runs; what succeeded is kept.")) : "",
        h("h3", {}, "Graph"),
        zoomable(g.svg),
        h("ul", { class: "steps", "aria-label": "Steps" }, nodes.map((n) => {
          const p = shortEnum(n.progress, "STATE_PROGRESS_").toLowerCase().replace("_", "-");
          return h("li", {}, h("span", { class: `badge ${PROGRESS_BADGE[p] || "muted"}`, dataset: { step: n.name, progress: p } }, `${n.name}: ${p}${n.retries ? ` (${n.retries} retries)` : ""}`));
        })),
        h("h3", {}, "History"), timeline(events, nodes));
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

function timeline(events, nodes) {
  const compensation = nodes.filter((n) => /COMPENSATION$/.test(n.progress)).map((n) => n.name);
  return h("ol", { class: "timeline", "aria-label": "History" }, events.map((e) => {
    const comp = compensation.includes(e.state_name) ? "comp" : "";
    return h("li", { class: eventClass(e) || comp, dataset: { type: e.type_name } },
      h("time", { datetime: e.timestamp }, when(e.timestamp).slice(11)),
      h("strong", {}, e.type_name), e.state_name ? ` ${e.state_name}` : "",
      e.retry_attempt > 0 ? h("span", { class: "badge warn" }, ` retry ${e.retry_attempt}`) : "",
      comp ? h("span", { class: "badge info" }, " compensation") : "",
      /Failed/.test(e.type_name) && e.details ? h("div", { class: "muted" }, e.details.slice(0, 300)) : "");
  }));
}
