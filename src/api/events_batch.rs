//! Publishing many events in one request (`POST /v1/events/batch`, contract §7).
//!
//! `{events: [..]}` holds up to [`MAX_EVENTS`] event bodies, each exactly what
//! `POST /v1/events` takes. Each is checked on its own, and the valid ones go into the
//! outbox in one unordered `insert_many`, so one bad or duplicate event does not hold back
//! the others. The answer is 200 with one result per event, in order:
//! `{event_id, status, error?}`, where `status` is what `POST /v1/events` would have
//! answered for that event — 202 (a duplicate `event_id` included: the first insert
//! stands), or a 4xx with the same `{code, message}` error.
//!
//! The request as a whole fails only when it cannot be read as a batch (400/422), holds
//! too many events (422 `too_many_events`), or MongoDB does not take the write (503: then
//! nothing is known of any event, and sending the same batch again is safe for events
//! with an `event_id`).

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::events::{outbox_document, PublishRequest};
use super::request::json_object;
use super::{json_response, ApiError, ApiRequest, ApiResult, AppState};
use crate::store::events::outbox::{self, Published};

/// Most events in one request.
pub const MAX_EVENTS: usize = 1_000;

/// Largest batch body, in bytes: a thousand events of about 16 KiB each.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// The body of `POST /v1/events/batch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    /// Each checked as a `POST /v1/events` body of its own.
    events: Vec<Value>,
}

/// `POST /v1/events/batch`: checks each event, inserts the valid ones in one write, answers
/// 200 `{results: [{event_id, status, error?}]}`.
pub async fn publish(app: &AppState, req: &ApiRequest) -> ApiResult {
    let batch: BatchRequest = req.json()?;
    if batch.events.is_empty() {
        return Err(ApiError::invalid_field(
            "events",
            "must hold at least one event",
        ));
    }
    if batch.events.len() > MAX_EVENTS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_events",
            format!(
                "events: {} events, over the {MAX_EVENTS} one request may publish",
                batch.events.len()
            ),
        ));
    }

    // Each event as POST /v1/events would take it: its document, or its error.
    let checked: Vec<(Option<String>, Result<mongodb::bson::Document, ApiError>)> = batch
        .events
        .into_iter()
        .map(|event| {
            let given_id = event
                .get("event_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let document = serde_json::to_vec(&event)
                .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))
                .and_then(|body| json_object::<PublishRequest>(&body))
                .and_then(|request| outbox_document(&app.catalog, request));
            let event_id = match &document {
                Ok(document) => document.get_str("_id").ok().map(str::to_owned),
                Err(_) => given_id,
            };
            (event_id, document)
        })
        .collect();

    let documents: Vec<_> = checked
        .iter()
        .filter_map(|(_, document)| document.as_ref().ok().cloned())
        .collect();
    let inserted = documents.len();
    let mut outcomes = outbox::publish_many(&app.db, documents).await?.into_iter();

    let mut published = 0;
    let results: Vec<Value> = checked
        .into_iter()
        .map(|(event_id, document)| {
            let outcome = match document {
                Err(e) => Err(e),
                Ok(_) => match outcomes.next() {
                    Some(Published::New) => {
                        published += 1;
                        Ok(())
                    }
                    Some(Published::Duplicate) => Ok(()),
                    Some(Published::Refused(message)) => {
                        tracing::warn!(event_id = ?event_id, error = %message, "event of a batch refused by MongoDB");
                        Err(refused())
                    }
                    None => Err(refused()),
                },
            };
            match outcome {
                Ok(()) => json!({"event_id": event_id, "status": StatusCode::ACCEPTED.as_u16()}),
                Err(e) => json!({
                    "event_id": event_id,
                    "status": e.status.as_u16(),
                    "error": {"code": e.code, "message": e.message},
                }),
            }
        })
        .collect();
    tracing::debug!(
        events = results.len(),
        valid = inserted,
        published,
        "event batch published through the API"
    );
    Ok(json_response(StatusCode::OK, json!({ "results": results })))
}

/// What `POST /v1/events` answers when MongoDB does not take its write.
fn refused() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "MongoDB did not complete the operation; try again",
    )
}
