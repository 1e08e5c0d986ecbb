//! Delivery routes: listing and reading the ledger, and re-queueing failed deliveries
//! (`POST /v1/deliveries/{id}/retry`, `POST /v1/webhooks/{webhook_id}/recover`).
//!
//! A re-queue is two steps. First a conditional update in MongoDB turns the delivery from
//! `failed` into `pending` (due now) — conditional on it still being `failed`, so two
//! concurrent requests queue it once. Then the updated document goes to the running engine
//! with [`EngineHandle::resume`](herald_actors::EngineHandle::resume), which attempts it as
//! soon as the endpoint allows. The request never waits for the attempt. Had the daemon
//! stopped in between, the delivery is `pending` in the ledger and is picked up at start.
//!
//! The stored `payload` (the exact bytes every attempt sends) never leaves through a listing;
//! `GET /v1/deliveries/{id}?include=payload` shows it for one delivery (the inspector's
//! "payload that was signed"), rebuilt from the outbox event when the ledger no longer
//! keeps it.

use std::time::SystemTime;

use hyper::StatusCode;
use mongodb::bson::{doc, Bson, DateTime, Document};
use serde::Deserialize;
use serde_json::{json, Value};

use super::request::path_id;
use super::{json_response, ApiError, ApiRequest, ApiResult, AppState};
use crate::store::deliveries::{self, DeliveryFilter};
use crate::store::id_string;
use crate::store::page::{PageLimits, PageRequest};
use crate::store::webhooks::{self, spec_from_doc};

/// Page sizes of `GET /v1/deliveries`: 50 unless `limit` says otherwise, at most 500. An
/// empty `cursor=` has always read as the first page here.
const PAGE: PageLimits = PageLimits {
    default: 50,
    max: 500,
    empty_cursor_is_first_page: true,
};
/// How many delivery ids `recover` holds in memory at once.
const RECOVER_PAGE: i64 = 200;

/// The query parameters `GET /v1/deliveries` understands; any other is a 400, so that a
/// misspelt filter is not silently ignored.
const LIST_PARAMS: &[&str] = &[
    "status",
    "webhook_id",
    "event_id",
    "task_id",
    "namespace_id",
    "event_type",
    "created_after",
    "created_before",
    "limit",
    "cursor",
];

const STATUSES: &[&str] = &["pending", "succeeded", "failed"];

/// `GET /v1/deliveries`: filters `status`, `webhook_id`, `event_id`, `task_id`,
/// `event_type`, `created_after` and `created_before` (RFC 3339, inclusive and exclusive);
/// `limit` (default 50, at most 500) and `cursor`, in `_id` order.
pub async fn list(app: &AppState, req: &ApiRequest) -> ApiResult {
    req.only_query_params(LIST_PARAMS)?;
    let page = req.page(PAGE)?;
    if let Some(status) = req.query.get("status") {
        if !STATUSES.contains(&status.as_str()) {
            return Err(ApiError::bad_request(format!(
                "query parameter status: {status:?} is not one of pending, succeeded, failed"
            )));
        }
    }
    let filter = DeliveryFilter {
        status: req.query.get("status").cloned(),
        webhook_id: req.query.get("webhook_id").cloned(),
        event_id: req.query.get("event_id").cloned(),
        task_id: req.query.get("task_id").cloned(),
        // Checked, and forced for a namespaced key, by `super::auth`.
        webhook_in: match req.query.get("namespace_id") {
            Some(namespace_id) => {
                Some(crate::store::webhooks::ids_in_namespace(&app.db, namespace_id).await?)
            }
            None => None,
        },
        event_type: req.query.get("event_type").cloned(),
        created_after: time_param(req, "created_after")?,
        created_before: time_param(req, "created_before")?,
    };
    let found = deliveries::list(&app.db, &filter, &page).await?;
    Ok(json_response(StatusCode::OK, found.to_json(summary)))
}

/// An RFC 3339 query parameter, or a 400 naming it.
/// Query parameter `name` as an RFC 3339 time, if given (400 naming it if not one).
pub(super) fn time_param(req: &ApiRequest, name: &str) -> Result<Option<DateTime>, ApiError> {
    match req.query.get(name) {
        None => Ok(None),
        Some(raw) => super::events::parse_rfc3339(raw).map(Some).ok_or_else(|| {
            ApiError::bad_request(format!(
                "query parameter {name}: {raw:?} is not an RFC 3339 timestamp (e.g. 2026-01-01T00:00:00Z)"
            ))
        }),
    }
}

/// `GET /v1/deliveries/{delivery_id}`: the summary plus its attempt log; with
/// `include=payload`, also `payload` (the signed body, as JSON) and `payload_source`
/// (`"ledger"`: the stored bytes; `"event"`: rebuilt from the outbox event; `null` with no
/// payload when neither is kept any more).
pub async fn get(app: &AppState, req: &ApiRequest, id: &str) -> ApiResult {
    let id = path_id(id)?;
    let found = deliveries::get(&app.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery", &id))?;
    let mut body = summary(&found);
    let log: Vec<Value> = match found.get("attempt_log") {
        Some(Bson::Array(entries)) => entries
            .iter()
            .filter_map(Bson::as_document)
            .map(attempt)
            .collect(),
        _ => Vec::new(),
    };
    body["attempt_log"] = Value::Array(log);
    match req.query.get("include").map(String::as_str) {
        None | Some("") => {}
        Some("payload") => {
            let (payload, source) = payload(app, &id, &found).await?;
            body["payload"] = payload;
            body["payload_source"] = source;
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "query parameter include: {other:?} is not payload"
            )))
        }
    }
    Ok(json_response(StatusCode::OK, body))
}

/// The body a delivery's attempts sign, and where it was found.
async fn payload(
    app: &AppState,
    id: &str,
    delivery: &Document,
) -> Result<(Value, Value), ApiError> {
    let as_json = |bytes: &[u8]| {
        serde_json::from_slice::<Value>(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
    };
    if let Some(stored) = deliveries::payload(&app.db, id).await? {
        return Ok((as_json(&stored), json!("ledger")));
    }
    let Ok(event_id) = delivery.get_str("event_id") else {
        return Ok((Value::Null, Value::Null));
    };
    let Some(event) = crate::store::events::outbox::get(&app.db, event_id).await? else {
        return Ok((Value::Null, Value::Null));
    };
    let at = delivery
        .get_datetime("created_at")
        .copied()
        .unwrap_or_else(|_| DateTime::now());
    match crate::store::events::payload_from_event(&event, at) {
        Ok(p) => Ok((
            as_json(&herald_actors::Event::from_payload(&p).body),
            json!("event"),
        )),
        Err(_) => Ok((Value::Null, Value::Null)),
    }
}

/// `POST /v1/deliveries/{delivery_id}/retry`: re-queues a `failed` delivery → 202
/// `{delivery_id, status: "pending"}`.
///
/// A manual retry is one more attempt: the delivery keeps its attempt count and log, and
/// the new attempt adds to them. Should it fail too, it is retried on the normal schedule
/// only while its attempts are below `--retry-max-attempts` — so a delivery that already
/// exhausted its retries gets exactly one attempt per manual retry.
///
/// 409 when it is `pending` (already queued) or `succeeded` (already delivered), when it
/// has no stored payload to replay, or when its webhook is gone or disabled (the engine
/// has no endpoint to send it through); 404 when it does not exist.
pub async fn retry(app: &AppState, _req: &ApiRequest, id: &str) -> ApiResult {
    let id = path_id(id)?;
    let found = deliveries::get_replayable(&app.db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery", &id))?;
    not_requeueable(&found)?;
    if !deliveries::replayable(&found) {
        return Err(ApiError::conflict(format!(
            "delivery {id:?} has no stored payload, so it cannot be replayed \
             (the payload is kept only for deliveries that did not succeed at once)"
        )));
    }
    let webhook_id = found.get_str("webhook_id").unwrap_or_default();
    check_webhook_deliverable(app, webhook_id).await?;

    if !requeue(app, &id).await? {
        // Someone else changed it since we read it (a concurrent retry, most likely).
        let now = deliveries::get_status(&app.db, &id)
            .await?
            .ok_or_else(|| ApiError::not_found("delivery", &id))?;
        not_requeueable(&now)?;
        return Err(ApiError::conflict(format!(
            "delivery {id:?} changed while being re-queued; try again"
        )));
    }
    nudge_owner(app, webhook_id).await;
    tracing::info!(delivery_id = %id, "delivery re-queued through the API");
    Ok(json_response(
        StatusCode::ACCEPTED,
        json!({"delivery_id": id, "status": "pending"}),
    ))
}

/// The body of `POST /v1/webhooks/{webhook_id}/recover`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoverRequest {
    /// RFC 3339: deliveries created at or after it are re-queued.
    since: String,
}

/// `POST /v1/webhooks/{webhook_id}/recover` `{since}`: re-queues every `failed` delivery
/// of the webhook created at or after `since`, as [`retry`] does one → 202
/// `{recovered: n}`. Deliveries without a stored payload are skipped (not counted).
///
/// Works through the ledger a page of ids at a time, so memory stays bounded however many
/// deliveries failed. 404 for an unknown webhook, 409 for a disabled one, 422 for a
/// missing or malformed `since`; a `since` in the future simply recovers nothing.
pub async fn recover(app: &AppState, req: &ApiRequest, webhook_id: &str) -> ApiResult {
    let webhook_id = path_id(webhook_id)?;
    let (since_text, since) = recover_since(req)?;
    let webhook = webhooks::get(&app.db, &webhook_id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook", &webhook_id))?;
    deliverable(app, &webhook_id, &webhook)?;

    let mut recovered: u64 = 0;
    let mut request = Some(PageRequest::first(RECOVER_PAGE));
    while let Some(page) = request {
        let now = DateTime::now();
        let requeued = deliveries::requeue_page(&app.db, &webhook_id, since, &page, now).await?;
        recovered += hand_over(app, &requeued.documents, now).await?;
        request = requeued.next;
    }
    if recovered > 0 {
        nudge_owner(app, &webhook_id).await;
    }
    tracing::info!(webhook_id = %webhook_id, since = %since_text, recovered, "failed deliveries re-queued");
    Ok(json_response(
        StatusCode::ACCEPTED,
        json!({"recovered": recovered}),
    ))
}

/// The `since` of a recover request, as sent and as a date: everything `recover` reads
/// from the body (also what `fuzz/` feeds arbitrary bytes).
pub fn recover_since(req: &ApiRequest) -> Result<(String, DateTime), ApiError> {
    // An empty body is a missing `since`, not a malformed request.
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_field(
            "since",
            "required: an RFC 3339 timestamp",
        ));
    }
    let request: RecoverRequest = super::events::object_body(req)?;
    let since = super::events::parse_rfc3339(&request.since).ok_or_else(|| {
        ApiError::invalid_field(
            "since",
            format!(
                "{:?} is not an RFC 3339 timestamp (e.g. 2026-01-01T00:00:00Z)",
                request.since
            ),
        )
    })?;
    Ok((request.since, since))
}

/// Tells the daemon that owns the webhook's partition, wherever it runs, to read its pending
/// deliveries back (this daemon's engine was handed them already, if it is the owner). If
/// the note cannot be written, the deliveries stay pending and go out when the owner next
/// reads its backlog (at the latest when the partition changes hands).
pub(super) async fn nudge_owner(app: &AppState, webhook_id: &str) {
    let partition = herald_actors::partition_of(webhook_id);
    if let Err(e) = crate::store::leases::nudge(&app.db, partition).await {
        tracing::warn!(webhook_id, error = %crate::text::one_line(&e.to_string()), "cannot nudge the owner of a re-queued delivery");
    }
}

/// Turns one `failed` delivery into `pending` (due now) and hands it to the engine.
/// `false` when it was not `failed` (or had no payload) at the moment of the update.
async fn requeue(app: &AppState, id: &str) -> Result<bool, ApiError> {
    let now = DateTime::now();
    match deliveries::requeue(&app.db, id, now).await? {
        Some(updated) => Ok(hand_over(app, &[updated], now).await? == 1),
        None => Ok(false),
    }
}

/// Hands deliveries just turned `pending` to the engine, their bodies read in one go; how
/// many it handed over. One that cannot be replayed after all (it lacks the ids a retry
/// needs, or its stored body is gone) is put back to `failed`.
async fn hand_over(app: &AppState, requeued: &[Document], now: DateTime) -> Result<u64, ApiError> {
    let mut handed = 0;
    let pending = deliveries::pending_each(&app.db, requeued).await?;
    for (document, pending) in requeued.iter().zip(pending) {
        let id = id_string(document.get("_id"));
        let Some(mut pending) = pending else {
            tracing::warn!(delivery_id = %id, "delivery cannot be replayed (missing event_id, webhook_id, event_type or payload); left failed");
            deliveries::unqueue(&app.db, &id, now).await?;
            continue;
        };
        pending.next_attempt_at = SystemTime::now();
        if app.engine.resume(pending).is_err() {
            // Shutting down: it is pending in the ledger, and re-loaded at the next start.
            tracing::warn!(delivery_id = %id, "engine stopped; the re-queued delivery runs after restart");
        }
        handed += 1;
    }
    Ok(handed)
}

/// 409 for a delivery that is not `failed`.
fn not_requeueable(delivery: &Document) -> Result<(), ApiError> {
    let id = id_string(delivery.get("_id"));
    match delivery.get_str("status") {
        Ok("failed") => Ok(()),
        Ok("pending") => Err(ApiError::conflict(format!(
            "delivery {id:?} is pending: it is already queued for its next attempt"
        ))),
        Ok("succeeded") => Err(ApiError::conflict(format!(
            "delivery {id:?} already succeeded"
        ))),
        other => Err(ApiError::conflict(format!(
            "delivery {id:?} has status {:?}; only failed deliveries can be retried",
            other.unwrap_or("")
        ))),
    }
}

/// 409 unless the webhook exists and the engine would deliver to it.
async fn check_webhook_deliverable(app: &AppState, webhook_id: &str) -> Result<(), ApiError> {
    let webhook = webhooks::get(&app.db, webhook_id).await?.ok_or_else(|| {
        ApiError::conflict(format!(
            "webhook {webhook_id:?} no longer exists, so its delivery cannot be retried"
        ))
    })?;
    deliverable(app, webhook_id, &webhook)
}

/// The engine only runs endpoints for enabled, valid webhooks; a delivery handed over for
/// any other would sit `pending` until a restart.
fn deliverable(app: &AppState, webhook_id: &str, webhook: &Document) -> Result<(), ApiError> {
    match spec_from_doc(webhook, &app.secrets, SystemTime::now()) {
        Ok(spec) if spec.enabled => Ok(()),
        Ok(_) => Err(ApiError::conflict(format!(
            "webhook {webhook_id:?} is disabled; enable it first"
        ))),
        Err(e) => Err(ApiError::conflict(format!(
            "webhook {webhook_id:?} is invalid ({e}); fix it first"
        ))),
    }
}

/// A delivery as the API returns it (never its stored payload).
fn summary(d: &Document) -> Value {
    let mut out = json!({
        "delivery_id": id_string(d.get("_id")),
        "event_id": string_or_null(d.get("event_id")),
        "webhook_id": string_or_null(d.get("webhook_id")),
        "event_type": string_or_null(d.get("event_type")),
        "status": string_or_null(d.get("status")),
        "attempts": integer_or_null(d.get("attempts")).unwrap_or(json!(0)),
        "next_attempt_at": date_or_null(d.get("next_attempt_at")),
        "last_status_code": integer_or_null(d.get("last_status_code")).unwrap_or(Value::Null),
        "last_error": string_or_null(d.get("last_error")),
        "created_at": date_or_null(d.get("created_at")),
        "completed_at": date_or_null(d.get("completed_at")),
    });
    if let Ok(task_id) = d.get_str("task_id") {
        out["task_id"] = json!(task_id);
    }
    out
}

/// One attempt log entry: `{at, status_code?, error?, duration_ms}`.
fn attempt(entry: &Document) -> Value {
    let mut out = json!({
        "at": date_or_null(entry.get("at")),
        "duration_ms": integer_or_null(entry.get("duration_ms")).unwrap_or(Value::Null),
    });
    if let Some(code) = integer_or_null(entry.get("status_code")) {
        out["status_code"] = code;
    }
    if let Ok(error) = entry.get_str("error") {
        out["error"] = json!(error);
    }
    out
}

fn string_or_null(value: Option<&Bson>) -> Value {
    match value {
        Some(Bson::String(s)) => Value::String(s.clone()),
        _ => Value::Null,
    }
}

fn integer_or_null(value: Option<&Bson>) -> Option<Value> {
    match value {
        Some(Bson::Int32(n)) => Some(json!(n)),
        Some(Bson::Int64(n)) => Some(json!(n)),
        Some(Bson::Double(n)) if n.fract() == 0.0 && n.is_finite() => Some(json!(*n as i64)),
        _ => None,
    }
}

fn date_or_null(value: Option<&Bson>) -> Value {
    match value {
        Some(Bson::DateTime(t)) => Value::String(
            t.to_chrono()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_never_show_the_payload_and_tolerate_odd_documents() {
        let at = DateTime::from_millis(1_767_225_600_000);
        let d = doc! {
            "_id": "evt_1:wh_1", "event_id": "evt_1", "webhook_id": "wh_1",
            "event_type": "object.created", "status": "failed", "attempts": 3i64,
            "next_attempt_at": Bson::Null, "last_status_code": 500, "last_error": Bson::Null,
            "created_at": at, "completed_at": at, "payload": "{}", "task_id": "task_9",
        };
        let s = summary(&d);
        assert_eq!(s["delivery_id"], "evt_1:wh_1");
        assert_eq!(s["attempts"], 3);
        assert_eq!(s["last_status_code"], 500);
        assert_eq!(s["created_at"], "2026-01-01T00:00:00.000Z");
        assert_eq!(s["next_attempt_at"], Value::Null);
        assert_eq!(s["task_id"], "task_9");
        assert!(s.get("payload").is_none());

        let odd = summary(&doc! {"_id": 7, "attempts": "many", "created_at": "yesterday"});
        assert_eq!(odd["delivery_id"], "7");
        assert_eq!(odd["attempts"], 0);
        assert_eq!(odd["created_at"], Value::Null);
        assert!(odd.get("task_id").is_none());
    }

    #[test]
    fn attempt_entries_omit_what_they_lack() {
        let at = DateTime::from_millis(0);
        let ok = attempt(&doc! {"at": at, "status_code": 200, "duration_ms": 12i64});
        assert_eq!(
            ok,
            json!({"at": "1970-01-01T00:00:00.000Z", "status_code": 200, "duration_ms": 12})
        );
        let failed = attempt(&doc! {"at": at, "error": "timed out", "duration_ms": 10_000i64});
        assert!(failed.get("status_code").is_none());
        assert_eq!(failed["error"], "timed out");
    }
}
