// The developer portal: register, sign in with a key, manage keys, see
// usage and the invoice, place a test order. The portal's own reads of a
// developer's keys, usage and invoice are not metered (the gateway's
// `unmetered` list), and are polled only while the tab is visible.

import { $, h, announce, rpc, errorBox, session, money, when, shortEnum, table, barChart, safeSvg,
  PROGRESS_BADGE, every, nav } from "./core.js";

const PORTAL = "ferrymesh.apikeys.v1.DeveloperPortalService";
const TEST_CARDS = [
  ["4242 4242 4242 4242", "approved"],
  ["4000 0000 0000 0002", "declined (CARD_DECLINED)"],
  ["4000 0000 0000 9995", "declined (INSUFFICIENT_FUNDS)"],
  ["4000 0000 0000 0119", "fails once, then is approved on the retry"],
];

/** Whether `key` is a working key: its own keys can be listed with it. */
async function checkKey(key) {
  await rpc(`${PORTAL}/ListMyKeys`, {}, { key });
}

export async function portal(main) {
  main.append(h("h1", {}, "Developer portal"));
  if (session.key) {
    try {
      await checkKey(session.key);
    } catch (error) {
      // A revoked or expired key: back to signing in, with one message.
      session.key = "";
      main.append(h("div", { class: "error", role: "alert", id: "key-refused" },
        "Your key no longer works (", error.codeName || "error", `: ${error.grpcMessage || error.message}). Sign in with another key.`));
    }
  }
  if (!session.key) {
    main.append(registerCard(main), useKeyCard(main));
    return;
  }
  const status = h("div");
  main.append(
    h("p", { class: "row" }, "Signed in with key ", h("code", { id: "current-key-prefix" }, `${session.key.slice(0, 12)}…`),
      h("button", { class: "secondary", type: "button", onclick: () => { session.key = ""; nav.route(); } }, "Sign out")),
    status);
  const keys = h("section", { class: "card", "aria-labelledby": "keys-h" }, h("h2", { id: "keys-h" }, "Your keys"));
  const usage = h("section", { class: "card", "aria-labelledby": "usage-h" }, h("h2", { id: "usage-h" }, "Usage, last 7 days"));
  const invoice = h("section", { class: "card", "aria-labelledby": "invoice-h" }, h("h2", { id: "invoice-h" }, "Invoice this month"));
  const order = h("section", { class: "card", "aria-labelledby": "order-h" }, h("h2", { id: "order-h" }, "Place a test order"));
  main.append(keys, usage, invoice, order);
  await Promise.all([renderKeys(keys), renderUsage(usage), renderInvoice(invoice), renderOrderForm(order)]);
  // Not metered, and only while the tab is visible (`every`).
  every(5000, () => { renderUsage(usage); renderInvoice(invoice); });
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
        out.append(h("button", { type: "button", id: "continue", onclick: () => { session.key = r.secret; nav.route(); } }, "Continue with this key"));
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
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", {
    class: "inline", onsubmit: async (e) => {
      e.preventDefault();
      out.replaceChildren();
      const key = String(new FormData(form).get("key")).trim();
      if (!/^fmk_[A-Za-z0-9_-]{20,}$/.test(key)) {
        out.append(h("div", { class: "error", role: "alert" }, "That is not an API key: keys start with fmk_ and were shown once when made."));
        return;
      }
      try {
        await checkKey(key);
      } catch (error) {
        out.append(h("div", { class: "error", role: "alert" }, `That key was refused (${error.codeName}: ${error.grpcMessage}).`));
        return;
      }
      session.key = key;
      nav.route();
    },
  }, h("label", {}, "API key", h("input", { name: "key", required: true, autocomplete: "off", spellcheck: "false", size: 40 })),
  h("button", { type: "submit" }, "Use this key"));
  return h("section", { class: "card", "aria-labelledby": "use-h" }, h("h2", { id: "use-h" }, "I have a key"), form, out);
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
              if (session.key.startsWith(k.prefix)) { session.key = ""; nav.route(); return; }
              renderKeys(card);
            } catch (error) { body.append(errorBox(error)); }
          },
        }, "Revoke") : "",
    ]);
    body.append(table(["Prefix", "Name", "Status", "Created", "Expires", "Action"], rows, { caption: "Your API keys" }));
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
      total > 0 ? barChart(days, { title: "Calls per day by method" })
        : h("p", { class: "muted", id: "usage-empty" }, "No calls yet in the last 7 days: try a method in the ",
          h("a", { href: "#/reference" }, "API reference"), " or place a test order below. This page's own reads are free."),
      table(["Method", "Calls"], Object.entries(byMethod).sort((a, b) => b[1] - a[1]).map(([m, n]) => [h("code", {}, m), String(n)]),
        { caption: "Calls by method", numeric: [1], empty: "" }));
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
        { caption: "Invoice lines", numeric: [1, 2, 3], empty: "Nothing billed this month yet." }));
  } catch (error) {
    card.replaceChildren(card.firstChild, errorBox(error));
  }
}

/** The order card: a button first, so an open portal tab spends nothing;
 * the form reads the catalog with the developer's key only when asked. */
function renderOrderForm(card) {
  const start = h("button", {
    type: "button", class: "secondary", onclick: async () => {
      start.disabled = true;
      await orderForm(card);
      start.closest("p").remove();
    },
  }, "Start a test order");
  card.append(h("p", { class: "row" }, start,
    h("span", { class: "muted" }, "It loads the catalog with your key (one billed call), then places an order through the saga like any client.")));
}

async function orderForm(card) {
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
    h("label", {}, "Card number ", h("span", { class: "hint" }, "(a test card, listed below)"), h("input", { name: "card", inputmode: "numeric", value: "4242 4242 4242 4242", required: true, autocomplete: "off", "aria-describedby": "test-cards" })),
    h("label", {}, "Expiry (MM/YY)", h("input", { name: "expiry", value: "12/99", required: true })),
    h("label", {}, "CVC", h("input", { name: "cvc", value: "123", required: true, inputmode: "numeric" })),
    h("label", {}, "Recipient", h("input", { name: "recipient", value: "Ada Lovelace", required: true })),
    h("label", {}, "Street", h("input", { name: "street", value: "12 St James's Square", required: true })),
    h("label", {}, "City", h("input", { name: "city", value: "London", required: true })),
    h("label", {}, "Postal code", h("input", { name: "postal", value: "SW1Y 4JH", required: true })),
    h("label", {}, "Country", h("input", { name: "country", value: "GB", required: true, maxlength: 2 }))),
  h("div", {}, h("button", { type: "submit" }, "Place order")));
  const cards = h("details", { id: "test-cards" }, h("summary", {}, "Test cards"),
    h("ul", {}, TEST_CARDS.map(([number, what]) => h("li", {}, h("code", {}, number), ` — ${what}`))),
    h("p", { class: "muted" }, "Any future expiry and any CVC. No real card is ever charged."));
  card.append(form, cards, out);
}

/** Polls the order's saga drawing until it ends. */
function watchOrder(out, orderId) {
  // The API reference's templates use it (GetOrder sent unchanged works).
  sessionStorage.setItem("ferrymesh.lastOrder", orderId);
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
  // Each read of the graph is the developer's call: none while the tab is
  // hidden; the first thing when it is seen again.
  const tick = async () => {
    if (!out.isConnected) return;
    if (document.hidden) {
      document.addEventListener("visibilitychange", tick, { once: true });
      return;
    }
    if (!(await draw())) setTimeout(tick, 700);
  };
  tick();
}

// ---- API reference and "try it"
