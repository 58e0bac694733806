// ferrymesh console: the developer portal and the operations view, one
// page per hash route. No framework, no build step, nothing fetched from
// outside the gateway.

import { $, h, errorBox, stopTimers, nav, title } from "./core.js";
import { portal } from "./portal.js";
import { referencePage } from "./reference.js";
import { ops, OPS_TABS } from "./ops.js";

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

/** The tab's title for a route: the page's own name first. */
function titleOf(parts) {
  switch (parts[0]) {
    case "portal": return ["Developer portal"];
    case "reference": return [parts[1] ? decodeURIComponent(parts[1]).replace(/^ferrymesh\./, "") : "", "API reference"];
    case "ops": {
      const tab = OPS_TABS.find(([t]) => t === (parts[1] || "mesh"));
      const one = parts[1] === "executions" && parts[2] ? `Execution ${decodeURIComponent(parts[2])}` : "";
      return [one, tab ? tab[1] : "", "Operations"];
    }
    default: return [];
  }
}

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
  title(...titleOf(parts));
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
}
nav.route = route;

let lastPage = "";
window.addEventListener("hashchange", () => {
  route();
  // Focus follows a change of page (not of a filter), for keyboards and screen readers.
  const page = location.hash.split("?")[0];
  if (page !== lastPage) $("#main").focus();
  lastPage = page;
});
route();

