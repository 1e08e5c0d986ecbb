// One webhook: its settings (the secret never shown, only rotated), its health, the
// actions (pause/resume, enable/disable, rotate the secret, recover failed deliveries,
// send a test event) and its latest deliveries.

import { ApiError, get, patch, post, query, seg } from "./api.js";
import { rateCell, stateOf } from "./webhooks.js";
import { badge, empty, errorBox, facts, h, heading, put, short, status, table, time } from "./dom.js";

export async function webhookView(id, ctx) {
  let webhook;
  try {
    webhook = await get(`/v1/webhooks/${seg(id)}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      return h("section", {}, heading("Webhook not found"),
        h("p", { class: "notice" }, "No webhook has the id ", h("code", {}, id), ". It may have been deleted."),
        h("p", {}, h("a", { href: "#/webhooks" }, "All webhooks")));
    }
    throw error;
  }
  const result = status();
  result.id = "action-result";
  const root = h("section", { class: "webhook" });

  const act = async (label, call, after) => {
    put(result, `${label}…`);
    try {
      const answer = await call();
      if (!ctx.current()) return;
      if (after) after(answer);
      else {
        await redraw();
        put(result, `${label}: done.`);
      }
    } catch (error) {
      put(result, errorBox(error, `${label} failed`));
    }
  };

  const redraw = async () => {
    [webhook, stats] = await Promise.all([
      get(`/v1/webhooks/${seg(id)}`),
      get(`/v1/webhooks/${seg(id)}/stats`).catch(() => null),
    ]);
    if (ctx.current()) draw();
  };

  const actions = () => {
    const buttons = [];
    buttons.push(
      webhook.paused
        ? h("button", { type: "button", id: "resume", onclick: () => act("Resume", () => post(`/v1/webhooks/${seg(id)}/resume`)) }, "Resume")
        : h("button", { type: "button", id: "pause", onclick: () => act("Pause", () => post(`/v1/webhooks/${seg(id)}/pause`)) }, "Pause"),
    );
    buttons.push(
      webhook.enabled
        ? h("button", { type: "button", id: "disable", onclick: () => act("Disable", () => patch(`/v1/webhooks/${seg(id)}`, { enabled: false })) }, "Disable")
        : h("button", { type: "button", id: "enable", onclick: () => act("Enable", () => patch(`/v1/webhooks/${seg(id)}`, { enabled: true })) }, "Enable"),
    );
    buttons.push(
      h("button", {
        type: "button",
        id: "send-test",
        onclick: () => act("Test event", () => post(`/v1/webhooks/${seg(id)}/test`), (answer) => {
          put(result, "Test event ", h("a", { href: `#/deliveries/${seg(answer.delivery_id)}` }, answer.event_id), " queued for this webhook only.");
        }),
      }, "Send a test event"),
    );
    buttons.push(
      h("button", {
        type: "button",
        id: "rotate",
        class: "danger",
        onclick: () => {
          if (!window.confirm("Rotate the signing secret? Receivers must accept the new one; the old one stays valid for the configured overlap.")) return;
          act("Rotate secret", () => post(`/v1/webhooks/${seg(id)}/rotate-secret`), (answer) => {
            put(result, "New secret, shown only now: ", h("code", { class: "secret" }, answer.secret || ""));
          });
        },
      }, "Rotate secret…"),
    );
    return h("div", { class: "actions" }, buttons);
  };

  const recoverForm = () => {
    const hourAgo = new Date(Date.now() - 3600e3);
    const local = new Date(hourAgo.getTime() - hourAgo.getTimezoneOffset() * 60e3).toISOString().slice(0, 16);
    const since = h("input", { type: "datetime-local", id: "recover-since", value: local, required: true });
    const form = h("form", { class: "inline" },
      h("label", {}, "Re-queue failed deliveries created since", since),
      h("button", { type: "submit" }, "Recover"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const at = new Date(since.value);
      if (Number.isNaN(at.getTime())) {
        put(result, errorBox(new Error("choose a date and time")));
        return;
      }
      act("Recover", () => post(`/v1/webhooks/${seg(id)}/recover`, { since: at.toISOString() }), (answer) => {
        put(result, `${answer.recovered} failed deliver${answer.recovered === 1 ? "y" : "ies"} re-queued.`);
      });
    });
    return form;
  };

  let stats = null;
  /** Kept across redraws, and filled alone when the stats arrive. */
  const rateBox = h("span", { id: "webhook-rate" });
  const fillRate = () => {
    const health = webhook.health;
    const attempts = stats ? stats.attempts : health ? health.window_attempts || 0 : 0;
    put(rateBox, rateCell(health, stats), attempts ? ` (${attempts} attempts)` : "");
  };
  const draw = () => {
    const health = webhook.health;
    fillRate();
    const state = stateOf(webhook, health);
    const headers = Object.keys(webhook.headers || {});
    const attempts = health ? health.window_attempts || 0 : 0;
    put(
      root,
      heading(webhook.name || webhook.webhook_id, " ", badge(state)),
      h("p", { class: "muted" }, h("code", {}, webhook.webhook_id)),
      actions(),
      result,
      h("div", { class: "grid" },
        h("div", { class: "card" },
          h("h2", {}, "Settings"),
          facts([
            ["URL", h("code", { class: "wrap" }, webhook.url || "")],
            ["Event types", (webhook.event_types || []).join(", ") || "—"],
            ["Enabled", webhook.enabled ? "yes" : "no"],
            ["Paused", webhook.paused ? "yes" : "no"],
            ["Secret", h("span", { class: "muted" }, "whsec_•••••••• (shown only when created or rotated)")],
            ["Headers", headers.length ? headers.join(", ") + " (values hidden)" : "—"],
            ["Rate limit", webhook.rate_limit_per_second ? `${webhook.rate_limit_per_second} per second` : "none"],
            ["Disabled by herald", webhook.disabled_reason ? short(webhook.disabled_reason, 80) : "—"],
            ["Created", time(webhook.created_at)],
            ["Updated", time(webhook.updated_at)],
          ])),
        h("div", { class: "card" },
          h("h2", {}, "Health"),
          health
            ? facts([
                ["State", badge(health.state)],
                ["Success, last hour", rateBox],
                ["Failures in a row", String(health.consecutive_failures ?? 0)],
                ["Failing since", time(health.failing_since)],
                ["Last success", time(health.last_success_at)],
                ["Last failure", health.last_failure
                  ? h("span", {}, time(health.last_failure.at), " ",
                      health.last_failure.status_code ? `HTTP ${health.last_failure.status_code} ` : "",
                      health.last_failure.error ? short(health.last_failure.error, 80) : "")
                  : "—"],
                ["Queued / in flight / scheduled", health.queued === null || health.queued === undefined
                  ? h("span", { class: "muted" }, "held by the daemon that owns this webhook")
                  : `${health.queued} / ${health.in_flight} / ${health.scheduled}`],
              ])
            : empty("No attempts yet."),
          h("h3", {}, "Recover"),
          recoverForm())),
      h("h2", {}, "Deliveries ", h("span", { class: "muted small" }, "(the first 20, in delivery id order)")),
      deliveriesBox,
    );
  };

  const deliveriesBox = h("div", { id: "webhook-deliveries" }, h("p", { class: "muted" }, "Loading…"));
  draw();
  get(`/v1/webhooks/${seg(id)}/stats`).then(
    (answer) => {
      stats = answer;
      if (ctx.current()) fillRate();
    },
    () => {},
  );
  get(`/v1/deliveries${query({ webhook_id: id, limit: 20 })}`).then(
    (page) => {
      if (!ctx.current()) return;
      if (!page.results.length) {
        put(deliveriesBox, empty("No deliveries yet. Send a test event to try it."));
        return;
      }
      put(
        deliveriesBox,
        table(
          [{ label: "Delivery" }, { label: "Event type" }, { label: "Status" }, { label: "Attempts" }, { label: "Last answer" }, { label: "Created" }],
          page.results.map((d) => [
            h("a", { href: `#/deliveries/${seg(d.delivery_id)}` }, d.event_id || d.delivery_id),
            d.event_type || "—",
            badge(d.status),
            String(d.attempts),
            short([d.last_status_code ? `HTTP ${d.last_status_code}` : "", d.last_error || ""].filter(Boolean).join(" · "), 50),
            time(d.created_at),
          ]),
        ),
        h("p", {}, h("a", { href: `#/deliveries?${new URLSearchParams({ webhook_id: id })}` }, "All deliveries of this webhook →")),
      );
    },
    (error) => ctx.current() && put(deliveriesBox, errorBox(error, "Deliveries could not be read")),
  );
  return root;
}
