// The API reference, generated from the contracts' descriptors, with a
// "try it" form per method whose template succeeds when sent unchanged.

import { h, rpcAll, errorBox, session, table } from "./core.js";

let referenceCache = null;
async function reference() {
  if (!referenceCache) referenceCache = await (await fetch("/console/api/reference")).json();
  return referenceCache;
}

// Values a template's fields take by name, so a template sent unchanged
// is a call that works (a product of the seed catalog, a real address, a
// test card); anything else gets its type's zero value.
const FIELD_EXAMPLES = {
  product_id: "mug", sku: "mug", skus: "mug", query: "mug", page_size: 5, quantity: 1,
  recipient_name: "Ada Lovelace", street_lines: "12 St James's Square", city: "London", postal_code: "SW1Y 4JH",
  country_code: "GB", number: "4242424242424242", expiry_month: 12, expiry_year: 2099, cvc: "123",
  holder_name: "Ada Lovelace", name: "My key",
};

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
    else if (f.name in FIELD_EXAMPLES) v = FIELD_EXAMPLES[f.name];
    else if (f.name === "order_id") v = sessionStorage.getItem("ferrymesh.lastOrder") || "";
    else if (f.name === "idempotency_key") v = crypto.randomUUID();
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

export async function referencePage(main, selected) {
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
          h("pre", { class: "try-response", tabindex: 0, "aria-label": `${m.name} response` }, messages.map((x) => JSON.stringify(x, null, 2)).join("\n")));
      } catch (error) {
        out.replaceChildren(errorBox(error));
      }
    },
  }, h("p", { class: "muted" }, session.key ? "Sent with your key." : h("span", {}, "No key yet: ", h("a", { href: "#/portal" }, "register"), " to call methods that need one.")),
  area, h("div", {}, h("button", { type: "submit" }, `Send ${m.name}`)));
  return h("details", { class: "try", open: true }, h("summary", {}, "Try it"), form, out);
}

// ---- operations
