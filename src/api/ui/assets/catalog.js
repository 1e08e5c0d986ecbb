// The event catalog (GET /v1/webhooks/events): what can be subscribed to.

import { get, query } from "./api.js";
import { empty, h, heading, table } from "./dom.js";

export async function catalogView() {
  const catalog = await get("/v1/webhooks/events");
  const rows = (catalog.results || []).map((t) => [
    h("code", {}, t.event_type),
    t.description || "—",
    (t.payload_fields || []).length ? h("span", {}, (t.payload_fields || []).map((f, i) => [i ? ", " : "", h("code", {}, f)])) : "—",
    h("span", {},
      h("a", { href: `#/webhooks${query({ event_type: t.event_type })}` }, "webhooks"),
      " · ",
      h("a", { href: `#/deliveries${query({ event_type: t.event_type })}` }, "deliveries")),
  ]);
  return h(
    "section",
    {},
    heading("Events catalog"),
    rows.length
      ? table([{ label: "Event type" }, { label: "Description" }, { label: "Payload fields" }, { label: "See" }], rows, { class: "catalog" })
      : empty("The catalog is empty."),
  );
}
