// One delivery: what it is, the payload that was signed (pretty-printed), every attempt,
// and Retry — whose result is followed here, without a reload, until the delivery settles.

import { ApiError, get, post, seg } from "./api.js";
import { badge, errorBox, facts, h, heading, put, short, status, table, time } from "./dom.js";

/** How long to follow a retried delivery, and how often to look. */
const FOLLOW_MS = 60_000;
const POLL_MS = 700;

export async function deliveryView(id, ctx) {
  let delivery;
  try {
    delivery = await get(`/v1/deliveries/${seg(id)}?include=payload`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      return h("section", {}, heading("Delivery not found"),
        h("p", { class: "notice" }, "No delivery has the id ", h("code", {}, id), ". It may have expired (deliveries are kept for the configured retention)."),
        h("p", {}, h("a", { href: "#/deliveries" }, "All deliveries")));
    }
    throw error;
  }
  const root = h("section", { class: "delivery" });
  const result = status();
  result.id = "retry-result";
  const summary = h("div", { class: "card", id: "delivery-summary" });
  const attempts = h("div", { id: "attempts" });
  const retry = h("button", { type: "button", id: "retry" }, "Retry");

  const draw = () => {
    put(
      summary,
      facts([
        ["Status", h("span", { id: "delivery-status" }, badge(delivery.status))],
        ["Event", h("a", { href: `#/deliveries?${new URLSearchParams({ event_id: delivery.event_id || "" })}` }, delivery.event_id || "—")],
        ["Event type", delivery.event_type || "—"],
        ["Webhook", delivery.webhook_id ? h("a", { href: `#/webhooks/${seg(delivery.webhook_id)}` }, delivery.webhook_id) : "—"],
        ["Task", delivery.task_id || "—"],
        ["Attempts", String(delivery.attempts)],
        ["Last answer", short([delivery.last_status_code ? `HTTP ${delivery.last_status_code}` : "", delivery.last_error || ""].filter(Boolean).join(" · "), 120)],
        ["Next attempt", time(delivery.next_attempt_at)],
        ["Created", time(delivery.created_at)],
        ["Completed", time(delivery.completed_at)],
      ]),
    );
    const log = delivery.attempt_log || [];
    put(
      attempts,
      log.length
        ? table(
            [{ label: "#" }, { label: "Time" }, { label: "Status code" }, { label: "Error" }, { label: "Duration" }],
            log.map((a, i) => [
              String(i + 1),
              time(a.at),
              a.status_code ? h("span", { class: a.status_code < 300 ? "ok" : "bad" }, String(a.status_code)) : "—",
              a.error ? h("span", { class: "wrap" }, a.error) : "—",
              a.duration_ms === null || a.duration_ms === undefined ? "—" : `${a.duration_ms} ms`,
            ]),
            { class: "attempts" },
          )
        : h("p", { class: "empty" }, "No attempt has ended yet."),
    );
    retry.disabled = delivery.status !== "failed";
    retry.title = delivery.status === "failed" ? "Send it once more now" : "Only failed deliveries can be retried";
  };

  const follow = async () => {
    const until = Date.now() + FOLLOW_MS;
    while (Date.now() < until && ctx.current()) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      try {
        // The payload does not change; the rest is read again.
        delivery = { ...(await get(`/v1/deliveries/${seg(id)}`)), payload: delivery.payload, payload_source: delivery.payload_source };
      } catch (error) {
        put(result, errorBox(error, "Could not follow the retry"));
        return;
      }
      if (!ctx.current()) return;
      draw();
      if (delivery.status !== "pending") {
        put(result, delivery.status === "succeeded" ? "Retry succeeded." : "Retry failed: ",
          delivery.status === "succeeded" ? "" : short(delivery.last_error || `HTTP ${delivery.last_status_code}`, 120));
        return;
      }
    }
    if (ctx.current()) put(result, "Still pending; it will be attempted on its schedule.");
  };

  retry.addEventListener("click", async () => {
    retry.disabled = true;
    put(result, "Retrying…");
    try {
      await post(`/v1/deliveries/${seg(id)}/retry`);
      delivery.status = "pending";
      draw();
      put(result, "Queued; waiting for the attempt…");
      await follow();
    } catch (error) {
      put(result, errorBox(error, "Retry refused"));
      draw();
    }
  });

  draw();
  const payload = payloadBox(delivery);
  put(
    root,
    heading("Delivery"),
    h("p", { class: "muted" }, h("code", { class: "wrap" }, delivery.delivery_id)),
    h("div", { class: "actions" }, retry),
    result,
    summary,
    h("h2", {}, "Attempts"),
    attempts,
    h("h2", {}, "Payload"),
    payload,
  );
  return root;
}

/** The signed body, pretty-printed as text; or why it is not shown. */
function payloadBox(delivery) {
  if (delivery.payload === undefined || delivery.payload === null) {
    return h("p", { class: "empty" }, "The payload is no longer stored for this delivery.");
  }
  const text = typeof delivery.payload === "string" ? delivery.payload : JSON.stringify(delivery.payload, null, 2);
  return h("div", {},
    delivery.payload_source === "event"
      ? h("p", { class: "muted" }, "Rebuilt from the event in the outbox (the same bytes every attempt signs).")
      : null,
    h("pre", { class: "payload", id: "payload", tabindex: "0" }, text));
}
