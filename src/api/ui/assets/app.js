// The inspector's shell: the key gate, hash routing (#/webhooks, #/webhooks/<id>,
// #/deliveries, #/deliveries/<id>, #/events, #/cluster) and the views' common frame.

import { ApiError, forgetKey, get, getKey, setKey } from "./api.js";
import { errorBox, h, heading, put } from "./dom.js";
import { webhooksView } from "./webhooks.js";
import { webhookView } from "./webhook.js";
import { deliveriesView } from "./deliveries.js";
import { deliveryView } from "./delivery.js";
import { catalogView } from "./catalog.js";
import { clusterView } from "./cluster.js";

const main = () => document.getElementById("main");

/** Which view a hash names, with its path parameter and query. */
export function parseHash(hash) {
  const raw = (hash || "").replace(/^#\/?/, "");
  const [path, search] = raw.split("?", 2);
  const parts = path.split("/").filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  return { section: parts[0] || "webhooks", id: parts[1], params: new URLSearchParams(search || "") };
}

/** Navigates to `#/section[/id][?params]`. */
export function go(section, id, params) {
  let hash = `#/${section}`;
  if (id) hash += `/${encodeURIComponent(id)}`;
  const search = params ? new URLSearchParams(params).toString() : "";
  if (search) hash += `?${search}`;
  if (location.hash === hash) render();
  else location.hash = hash;
}

/** Every render gets a number; a slower, older one must not overwrite a newer one. */
let generation = 0;

function keyForm(message) {
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "key-help",
  });
  const feedback = h("div", { id: "key-feedback" });
  if (message) feedback.append(message);
  const form = h(
    "form",
    { class: "card key-form", id: "key-form" },
    heading("Delivery inspector"),
    h("label", { for: "api-key" }, "API key"),
    input,
    h("p", { id: "key-help", class: "muted" },
      "The key of this daemon's /v1 API (--api-key). It is kept in this tab only and sent in the Authorization header. Leave it empty if the API is open (loopback without a key)."),
    h("button", { type: "submit", id: "key-submit" }, "Open"),
    feedback,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setKey(input.value.trim());
    put(feedback, h("p", { class: "muted" }, "Checking the key…"));
    try {
      await get("/v1/webhooks?limit=1");
      render();
    } catch (error) {
      forgetKey();
      put(feedback, refusal(error));
      input.select();
    }
  });
  setTimeout(() => input.focus(), 0);
  return form;
}

/** The message of an error that ended a view: a refused key sends back to the key form. */
function refusal(error) {
  if (error instanceof ApiError && error.status === 401) {
    return errorBox(error, "This key was refused");
  }
  if (error instanceof ApiError && error.status === 403) {
    return errorBox(error, "This key may not read this");
  }
  return errorBox(error, "herald answered with an error");
}

const VIEWS = {
  webhooks: (route, ctx) => (route.id ? webhookView(route.id, ctx) : webhooksView(route.params, ctx)),
  deliveries: (route, ctx) => (route.id ? deliveryView(route.id, ctx) : deliveriesView(route.params, ctx)),
  events: (_route, ctx) => catalogView(ctx),
  cluster: (_route, ctx) => clusterView(ctx),
};

export async function render() {
  const mine = ++generation;
  const route = parseHash(location.hash);
  const root = main();
  for (const link of document.querySelectorAll("nav a[data-section]")) {
    if (link.dataset.section === route.section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const forget = document.getElementById("forget-key");
  if (getKey() === null) {
    forget.hidden = true;
    put(root, keyForm());
    return;
  }
  forget.hidden = false;
  const view = VIEWS[route.section];
  if (!view) {
    put(root, heading("Not found"), h("p", {}, "There is no such page in the inspector."));
    return;
  }
  const ctx = {
    current: () => mine === generation,
    go,
    refresh: render,
    /** An error that ends the view: a 401 forgets the key and shows the key form. */
    fail(error) {
      if (mine !== generation) return;
      if (error instanceof ApiError && error.status === 401) {
        forgetKey();
        put(root, keyForm(refusal(error)));
        return;
      }
      put(root, heading("Error"), refusal(error));
    },
  };
  try {
    const node = await view(route, ctx);
    if (mine !== generation || !node) return;
    put(root, node);
    const title = document.getElementById("page-title");
    if (title) title.focus({ preventScroll: true });
  } catch (error) {
    ctx.fail(error);
  }
}

function start() {
  document.getElementById("forget-key").addEventListener("click", () => {
    forgetKey();
    render();
  });
  window.addEventListener("hashchange", render);
  if (!location.hash) history.replaceState(null, "", "#/webhooks");
  render();
}

start();
