//! `POST /v1/webhooks/{webhook_id}/test`: a synthetic `webhook.test` event delivered to one
//! webhook only — the inspector's "send a test event".
//!
//! No event is published: routing would hand it to every subscriber of its type. Instead
//! the delivery is written straight into the ledger, `pending` and due now, with the body
//! it will send, and handed over the way a manual retry is (to this daemon's engine, and a
//! nudge to the partition's owner wherever it runs). From there it is an ordinary delivery:
//! signed, retried on the schedule, listed and inspected like any other.

use hyper::StatusCode;
use mongodb::bson::{doc, Bson, DateTime};
use serde_json::json;

use super::request::path_id;
use super::{json_response, ApiError, ApiRequest, ApiResult, AppState};
use crate::store::deliveries::{self, pending_from_doc};
use crate::store::webhooks::{self, spec_from_doc};

/// The type of the synthetic event (not in the catalog: nothing subscribes to it).
pub const TEST_EVENT_TYPE: &str = "webhook.test";

/// → 202 `{event_id, delivery_id, status: "pending"}`; 404 for an unknown webhook, 409 for
/// a disabled one. A paused webhook holds the test like any delivery until resumed.
pub async fn send(app: &AppState, _req: &ApiRequest, webhook_id: &str) -> ApiResult {
    let webhook_id = path_id(webhook_id)?;
    let webhook = webhooks::get(&app.db, &webhook_id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook", &webhook_id))?;
    match spec_from_doc(&webhook, &app.secrets, std::time::SystemTime::now()) {
        Ok(spec) if spec.enabled => {}
        Ok(_) => {
            return Err(ApiError::conflict(format!(
                "webhook {webhook_id:?} is disabled; enable it first"
            )))
        }
        Err(e) => {
            return Err(ApiError::conflict(format!(
                "webhook {webhook_id:?} is invalid ({e}); fix it first"
            )))
        }
    }

    let event_id = format!("evt_test_{:016x}", rand::random::<u64>());
    let now = DateTime::now();
    let payload = herald_actors::Payload {
        event_id: event_id.clone(),
        event_type: TEST_EVENT_TYPE.to_owned(),
        occurred_at: now
            .to_chrono()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        namespace_id: None,
        task_id: None,
        subject: Some(json!({"type": "webhook", "id": webhook_id})),
        data: json!({
            "webhook_id": webhook_id,
            "test": true,
            "message": "A test event sent on request; it went to this webhook only.",
        }),
        cache_scope: None,
    };
    let body = herald_actors::Event::from_payload(&payload).body;
    let delivery_id = format!("{event_id}:{webhook_id}");
    let document = doc! {
        "_id": &delivery_id,
        "event_id": &event_id,
        "webhook_id": &webhook_id,
        "event_type": TEST_EVENT_TYPE,
        "status": "pending",
        "attempts": 0i64,
        "attempt_log": [],
        "next_attempt_at": now,
        "last_status_code": Bson::Null,
        "last_error": Bson::Null,
        "created_at": now,
        "completed_at": Bson::Null,
        "updated_at": now,
        "payload_id": &event_id,
    };
    // The body first, as the ledger does: no delivery names a payload not yet stored.
    crate::store::payloads::store(&app.db, &[(event_id.as_str(), &body)]).await?;
    if !deliveries::insert_pending(&app.db, document.clone()).await? {
        return Err(ApiError::conflict(
            "a test event with this id exists; try again",
        ));
    }
    if let Some(pending) = pending_from_doc(&document, body) {
        if app.engine.resume(pending).is_err() {
            tracing::warn!(delivery_id = %delivery_id, "engine stopped; the test event runs after restart");
        }
    }
    super::deliveries::nudge_owner(app, &webhook_id).await;
    tracing::info!(webhook_id = %webhook_id, event_id = %event_id, "test event queued");
    Ok(json_response(
        StatusCode::ACCEPTED,
        json!({"event_id": event_id, "delivery_id": delivery_id, "status": "pending"}),
    ))
}
