// The webhooks list: one page of GET /v1/webhooks at a time (its cursor), filtered by the
// API (event type, enabled) and on the page (text), sorted on the page; each row's health
// read from GET /v1/webhooks/{id}, a few at a time, and filled in as it arrives.

import { get, post, query, seg } from "./api.js";
import { badge, empty, errorBox, h, heading, percent, put, rateChart, short, status, table } from "./dom.js";

const PAGE_SIZES = ["25", "50", "100", "200"];
/** Health reads in flight at once. */
const PARALLEL = 6;

/** `state` of a webhook for the list: paused and disabled first, then its health. */
export function stateOf(webhook, health) {
  if (!webhook.enabled) return "disabled";
  if (webhook.paused) return "paused";
  if (!health) return "unknown";
  // herald calls an endpoint failing only past its threshold; a streak below it is shown.
  if (health.state === "healthy" && health.consecutive_failures > 0) return "recent failures";
  return health.state;
}

const SORTS = {
  name: (w) => (w.name || "").toLowerCase(),
  url: (w) => w.url || "",
  state: (w) => stateOf(w, w._health),
  failures: (w) => (w._health ? w._health.consecutive_failures : -1),
  rate: (w) => (w._stats && w._stats.attempts ? w._stats.successes / w._stats.attempts : 2),
};

export async function webhooksView(params, ctx) {
  const limit = PAGE_SIZES.includes(params.get("limit")) ? params.get("limit") : "50";
  const filter = {
    event_type: params.get("event_type") || "",
    enabled: params.get("enabled") || "",
    cursor: params.get("cursor") || "",
    limit,
  };
  const text = params.get("q") || "";
  const [sortKey, sortDirText] = (params.get("sort") || "").split(":");
  const sortDir = sortDirText === "desc" ? -1 : 1;
  const page = await get(`/v1/webhooks${query(filter)}`);

  const navigate = (changes) => {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) {
      if (v) next.set(k, v);
      else next.delete(k);
    }
    ctx.go("webhooks", null, next);
  };

  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter webhooks" },
    h("label", {}, "Event type", h("input", { name: "event_type", value: filter.event_type, placeholder: "object.created" })),
    h("label", {}, "Enabled",
      h("select", { name: "enabled" },
        [["", "any"], ["true", "enabled"], ["false", "disabled"]].map(([v, l]) => h("option", { value: v, selected: v === filter.enabled }, l)))),
    h("label", {}, "Name or URL contains", h("input", { name: "q", value: text, type: "search" })),
    h("label", {}, "Per page",
      h("select", { name: "limit" }, PAGE_SIZES.map((v) => h("option", { value: v, selected: v === limit }, v)))),
    h("button", { type: "submit" }, "Apply"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    navigate({
      event_type: data.get("event_type").trim(),
      enabled: data.get("enabled"),
      q: data.get("q").trim(),
      limit: data.get("limit"),
      cursor: "",
    });
  });

  const needle = text.toLowerCase();
  const webhooks = page.results.filter(
    (w) => !needle || (w.name || "").toLowerCase().includes(needle) || (w.url || "").toLowerCase().includes(needle),
  );
  const body = h("div", { id: "webhooks-table" });
  const cells = new Map();

  const draw = () => {
    if (SORTS[sortKey]) {
      webhooks.sort((a, b) => {
        const x = SORTS[sortKey](a);
        const y = SORTS[sortKey](b);
        return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
      });
    }
    if (webhooks.length === 0) {
      put(body, empty(page.results.length || filter.cursor ? "No webhook on this page matches." : "No webhooks yet. Create one below or with herald webhooks create."));
      return;
    }
    const rows = webhooks.map((w) => {
      const c = {
        state: h("span", {}, badge(stateOf(w, w._health))),
        rate: h("span", { class: "muted" }, "…"),
        failures: h("span", { class: "muted" }, "…"),
        error: h("span", { class: "muted" }, "…"),
        held: h("span", { class: "muted" }, "…"),
      };
      cells.set(w.webhook_id, c);
      if (w._health !== undefined) fill(c, w, w._health, w._stats);
      return [
        h("a", { href: `#/webhooks/${seg(w.webhook_id)}`, class: "strong" }, w.name || w.webhook_id),
        short(w.url, 48),
        short((w.event_types || []).join(", "), 40),
        c.state,
        c.rate,
        c.failures,
        c.error,
        c.held,
      ];
    });
    const columns = [
      { label: "Name", sort: "name" },
      { label: "URL", sort: "url" },
      { label: "Event types" },
      { label: "State", sort: "state" },
      { label: "Success (1 h)", sort: "rate" },
      { label: "Failures in a row", sort: "failures" },
      { label: "Last error" },
      { label: "Queued / in flight" },
    ];
    put(body, table(columns, rows, {
      class: "webhooks",
      sortKey,
      sortDir,
      onSort: (key) => navigate({ sort: `${key}:${key === sortKey && sortDir > 0 ? "desc" : "asc"}` }),
    }));
  };
  draw();

  // Health, a few at a time; rows are filled in place.
  const queue = webhooks.slice();
  const worker = async () => {
    while (queue.length && ctx.current()) {
      const w = queue.shift();
      const [full, stats] = await Promise.all([
        get(`/v1/webhooks/${seg(w.webhook_id)}`).catch(() => null),
        get(`/v1/webhooks/${seg(w.webhook_id)}/stats`).catch(() => null),
      ]);
      w._health = full ? full.health : null;
      w._stats = stats;
      const c = cells.get(w.webhook_id);
      if (c) fill(c, w, w._health, w._stats);
    }
  };
  Promise.all(Array.from({ length: PARALLEL }, worker)).then(() => {
    if (ctx.current() && ["state", "failures", "rate"].includes(sortKey)) draw();
  });

  const pager = h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    filter.cursor ? h("button", { type: "button", onclick: () => history.back() }, "← Previous") : null,
    h("a", { href: "#/webhooks", class: "quiet" }, "First page"),
    page.next_cursor
      ? h("button", { type: "button", id: "next-page", onclick: () => navigate({ cursor: page.next_cursor }) }, "Next →")
      : h("span", { class: "muted" }, "Last page"),
  );

  return h(
    "section",
    {},
    heading("Webhooks"),
    form,
    body,
    pager,
    createForm(ctx),
  );
}

/** The success-rate cell: the hour in five-minute columns, or the health's totals. */
export function rateCell(health, stats) {
  if (stats && stats.buckets) {
    const label = stats.attempts
      ? `${percent(stats.successes / stats.attempts)} of ${stats.attempts} attempts succeeded in the last hour (5-minute columns)`
      : "no attempts in the last hour";
    return h("span", { class: "rate" },
      rateChart(stats.buckets, label),
      h("span", {}, stats.attempts ? percent(stats.successes / stats.attempts) : "—"));
  }
  const attempts = health ? health.window_attempts || 0 : 0;
  const label = attempts
    ? `${percent(health.success_rate)} of ${attempts} attempts succeeded in the last hour`
    : "no attempts in the last hour";
  return h("span", { class: "rate" },
    rateChart([{ attempts, successes: health ? health.window_successes || 0 : 0 }], label),
    h("span", {}, attempts ? percent(health.success_rate) : "—"));
}

function fill(c, webhook, health, stats) {
  put(c.state, badge(stateOf(webhook, health)));
  put(c.rate, rateCell(health, stats));
  if (!health) {
    put(c.failures, "0");
    put(c.error, h("span", { class: "muted" }, "—"));
    put(c.held, h("span", { class: "muted" }, "—"));
    return;
  }
  put(c.failures, String(health.consecutive_failures ?? 0));
  const failure = health.last_failure;
  put(c.error, failure ? short(failure.error || (failure.status_code ? `HTTP ${failure.status_code}` : ""), 50) : h("span", { class: "muted" }, "—"));
  put(
    c.held,
    health.queued === null || health.queued === undefined
      ? h("span", { class: "muted", title: "held by the daemon that owns this webhook" }, "elsewhere")
      : `${health.queued} / ${health.in_flight}`,
  );
}

/** "New webhook": POST /v1/webhooks, then the secret once, then the webhook's page. */
function createForm(ctx) {
  const result = status();
  const url = h("input", { name: "url", type: "url", required: true, placeholder: "https://hooks.example.com/herald", id: "new-url" });
  const types = h("input", { name: "event_types", value: "*", id: "new-types" });
  const name = h("input", { name: "name", id: "new-name" });
  const form = h(
    "form",
    { class: "card create", id: "create-webhook" },
    h("h2", {}, "New webhook"),
    h("label", {}, "URL", url),
    h("label", {}, "Event types (comma-separated, * for all)", types),
    h("label", {}, "Name (optional)", name),
    h("button", { type: "submit" }, "Create"),
    result,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {
      url: url.value.trim(),
      event_types: types.value.split(",").map((t) => t.trim()).filter(Boolean),
    };
    if (name.value.trim()) body.name = name.value.trim();
    put(result, "Creating…");
    try {
      const created = await post("/v1/webhooks", body);
      put(
        result,
        h("span", {}, "Created ", h("a", { href: `#/webhooks/${seg(created.webhook_id)}` }, created.webhook_id),
          ". Its signing secret, shown only now: ", h("code", { class: "secret", id: "new-secret" }, created.secret)),
      );
    } catch (error) {
      put(result, errorBox(error, "Not created"));
    }
  });
  return form;
}
