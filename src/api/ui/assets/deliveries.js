// Deliveries: GET /v1/deliveries with its filters (status, webhook, event type, event id,
// task id, created after/before), a page at a time by its cursor.

import { get, query, seg } from "./api.js";
import { badge, empty, h, heading, put, short, table, time } from "./dom.js";

const FILTERS = ["status", "webhook_id", "event_type", "event_id", "task_id", "created_after", "created_before"];

/** A `datetime-local` value for an RFC 3339 time, in local time. */
function localInput(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return new Date(date.getTime() - date.getTimezoneOffset() * 60e3).toISOString().slice(0, 16);
}

export async function deliveriesView(params, ctx) {
  const filter = {};
  for (const name of FILTERS) filter[name] = params.get(name) || "";
  const cursor = params.get("cursor") || "";
  const page = await get(`/v1/deliveries${query({ ...filter, cursor, limit: 50 })}`);

  const field = (label, name, attrs = {}) =>
    h("label", {}, label, h("input", { name, value: filter[name], ...attrs }));
  const when = (label, name) =>
    h("label", {}, label, h("input", { name, type: "datetime-local", value: localInput(filter[name]) }));
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter deliveries", id: "delivery-filters" },
    h("label", {}, "Status",
      h("select", { name: "status" },
        ["", "pending", "succeeded", "failed"].map((v) => h("option", { value: v, selected: v === filter.status }, v || "any")))),
    field("Webhook id", "webhook_id", { placeholder: "wh_…" }),
    field("Event type", "event_type", { placeholder: "object.created" }),
    field("Event id", "event_id", { placeholder: "evt_…" }),
    field("Task id", "task_id"),
    when("Created after", "created_after"),
    when("Created before", "created_before"),
    h("button", { type: "submit" }, "Apply"),
    h("a", { href: "#/deliveries", class: "quiet" }, "Clear"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const next = new URLSearchParams();
    for (const name of FILTERS) {
      let value = String(data.get(name) || "").trim();
      if (value && name.startsWith("created_")) {
        const at = new Date(value);
        value = Number.isNaN(at.getTime()) ? "" : at.toISOString();
      }
      if (value) next.set(name, value);
    }
    ctx.go("deliveries", null, next);
  });

  const filtered = FILTERS.some((name) => filter[name]);
  const body = page.results.length
    ? table(
        [
          { label: "Event" },
          { label: "Event type" },
          { label: "Webhook" },
          { label: "Status" },
          { label: "Attempts" },
          { label: "Last answer" },
          { label: "Created" },
        ],
        page.results.map((d) => [
          h("a", { href: `#/deliveries/${seg(d.delivery_id)}`, class: "strong" }, short(d.event_id || d.delivery_id, 40)),
          d.event_type || "—",
          d.webhook_id ? h("a", { href: `#/webhooks/${seg(d.webhook_id)}` }, d.webhook_id) : "—",
          badge(d.status),
          String(d.attempts),
          short(
            [d.last_status_code ? `HTTP ${d.last_status_code}` : "", d.last_error || ""].filter(Boolean).join(" · "),
            60,
          ),
          time(d.created_at),
        ]),
        { class: "deliveries" },
      )
    : empty(filtered || cursor ? "No delivery matches these filters." : "No deliveries yet.");

  const next = new URLSearchParams(params);
  if (page.next_cursor) next.set("cursor", page.next_cursor);
  const pager = h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    cursor ? h("button", { type: "button", onclick: () => history.back() }, "← Previous") : null,
    page.next_cursor
      ? h("button", { type: "button", onclick: () => ctx.go("deliveries", null, next) }, "Next →")
      : h("span", { class: "muted" }, page.results.length ? "Last page" : ""),
  );
  const refresh = h("button", { type: "button", class: "quiet", onclick: () => ctx.refresh() }, "Refresh");
  return h("section", {}, heading("Deliveries"), form, h("div", { class: "toolbar" }, refresh), body, pager);
}
