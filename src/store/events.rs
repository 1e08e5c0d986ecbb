//! The outbox feed: one change stream over `events` (any insert publishes an event) and
//! `objects` (an insert publishes `object.created`), resumed from the checkpoint.
//!
//! Each change becomes an [`Event`] whose body is built here, once. Its `occurred_at`
//! falls back to the change's wall-clock time, which is the same on every read of the
//! change, so a re-delivered event after a restart carries byte-identical content.
//!
//! A malformed event document is logged with its `_id` and skipped; it never stops the
//! feed or the events behind it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use herald_actors::ports::Ledger;
use herald_actors::{EngineHandle, Event, Payload};
use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::change_stream::event::{ChangeStreamEvent, ResumeToken};
use mongodb::Database;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{one_line, EVENTS, OBJECTS};

/// Largest payload herald will send, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Why an event document was skipped.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadEvent {
    #[error("_id must be a string or an ObjectId")]
    Id,
    #[error("event_type is missing or not a non-empty string")]
    EventType,
    #[error("{0} has the wrong type")]
    WrongType(&'static str),
    #[error("cache_scope.scope must be \"collection\", \"namespace\" or \"key\"")]
    CacheScope,
    #[error("payload is {0} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit")]
    TooLarge(usize),
}

/// The checkpoint as stored: the resume token of the last settled change.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    token: ResumeToken,
}

pub fn encode_token(token: &ResumeToken) -> Option<Bytes> {
    mongodb::bson::to_vec(&Checkpoint {
        token: token.clone(),
    })
    .ok()
    .map(Bytes::from)
}

pub fn decode_token(bytes: &[u8]) -> Option<ResumeToken> {
    mongodb::bson::from_slice::<Checkpoint>(bytes)
        .ok()
        .map(|c| c.token)
}

fn rfc3339(t: DateTime) -> String {
    let chrono: chrono::DateTime<chrono::Utc> = t.to_chrono();
    chrono.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn json(b: Bson) -> serde_json::Value {
    b.into_relaxed_extjson()
}

fn id_string(id: Option<&Bson>) -> Option<String> {
    match id? {
        Bson::String(s) if !s.is_empty() => Some(s.clone()),
        Bson::ObjectId(oid) => Some(oid.to_hex()),
        _ => None,
    }
}

fn optional_string(doc: &Document, field: &'static str) -> Result<Option<String>, BadEvent> {
    match doc.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(BadEvent::WrongType(field)),
    }
}

fn optional_doc(doc: &Document, field: &'static str) -> Result<Option<Document>, BadEvent> {
    match doc.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::Document(d)) => Ok(Some(d.clone())),
        Some(_) => Err(BadEvent::WrongType(field)),
    }
}

/// Builds the payload of an `events` document; `inserted_at` stands in for a missing
/// `occurred_at`.
pub fn payload_from_event(doc: &Document, inserted_at: DateTime) -> Result<Payload, BadEvent> {
    let event_id = id_string(doc.get("_id")).ok_or(BadEvent::Id)?;
    let event_type = match doc.get("event_type") {
        Some(Bson::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(BadEvent::EventType),
    };
    let occurred_at = match doc.get("occurred_at") {
        None | Some(Bson::Null) => rfc3339(inserted_at),
        Some(Bson::DateTime(t)) => rfc3339(*t),
        Some(Bson::String(s)) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => s.clone(),
        Some(_) => return Err(BadEvent::WrongType("occurred_at")),
    };
    let cache_scope = optional_doc(doc, "cache_scope")?;
    if let Some(scope) = &cache_scope {
        if !matches!(
            scope.get_str("scope"),
            Ok("collection" | "namespace" | "key")
        ) {
            return Err(BadEvent::CacheScope);
        }
    }
    let data = optional_doc(doc, "data")?.unwrap_or_default();
    Ok(Payload {
        event_id,
        event_type,
        occurred_at,
        namespace_id: optional_string(doc, "namespace_id")?,
        task_id: optional_string(doc, "task_id")?,
        subject: optional_doc(doc, "subject")?.map(|d| json(Bson::Document(d))),
        data: json(Bson::Document(data)),
        cache_scope: cache_scope.map(|d| json(Bson::Document(d))),
    })
}

/// `object.created` for an `objects` insert.
pub fn payload_from_object(doc: &Document, inserted_at: DateTime) -> Result<Payload, BadEvent> {
    let object_id = id_string(doc.get("_id")).ok_or(BadEvent::Id)?;
    let bucket_id = optional_string(doc, "bucket_id")?;
    let metadata = optional_doc(doc, "metadata")?.unwrap_or_default();
    Ok(Payload {
        // Derived from the object, so a re-read after a crash yields the same id.
        event_id: format!("evt_obj_created_{object_id}"),
        event_type: "object.created".into(),
        occurred_at: rfc3339(inserted_at),
        namespace_id: optional_string(doc, "namespace_id")?,
        task_id: None,
        subject: Some(serde_json::json!({"type": "object", "id": object_id})),
        data: serde_json::json!({
            "bucket_id": bucket_id,
            "object_id": object_id,
            "metadata": json(Bson::Document(metadata)),
        }),
        cache_scope: None,
    })
}

/// Turns one change into an event, or says why it is skipped.
fn event_from_change(
    change: &ChangeStreamEvent<Document>,
) -> Option<Result<Event, (String, BadEvent)>> {
    let doc = change.full_document.as_ref()?;
    let collection = change.ns.as_ref().and_then(|ns| ns.coll.as_deref())?;
    let inserted_at = change.wall_time.unwrap_or_else(|| {
        change
            .cluster_time
            .map(|t| DateTime::from_millis(t.time as i64 * 1000))
            .unwrap_or_else(DateTime::now)
    });
    let id = || format!("{:?}", doc.get("_id").cloned().unwrap_or(Bson::Null));
    let payload = match collection {
        EVENTS => payload_from_event(doc, inserted_at),
        OBJECTS => payload_from_object(doc, inserted_at),
        _ => return None,
    };
    Some(
        payload
            .and_then(|p| {
                let event = Event::from_payload(&p);
                if event.body.len() > MAX_PAYLOAD_BYTES {
                    Err(BadEvent::TooLarge(event.body.len()))
                } else {
                    Ok(event)
                }
            })
            .map_err(|e| (format!("{collection} {}", id()), e)),
    )
}

/// Readiness of the feed, for `/readyz`.
#[derive(Debug, Default)]
pub struct FeedHealth {
    pub live: AtomicBool,
}

/// Runs the feed until `cancel` fires: opens the change stream after `start`, submits every
/// event to the engine (waiting when its window is full), reconnects with backoff on errors.
///
/// Without a checkpoint (the first start, or a lost one) the stream starts "now" — and that
/// position is written as the checkpoint before anything else happens, so a crash before
/// the first event settles resumes from there instead of from a later "now".
pub async fn run_feed(
    db: Database,
    engine: EngineHandle,
    ledger: Arc<dyn Ledger>,
    start: Option<ResumeToken>,
    health: Arc<FeedHealth>,
    cancel: CancellationToken,
) {
    let mut resume = start;
    let mut failures: u32 = 0;
    loop {
        let pipeline = [doc! {"$match": {
            "operationType": "insert",
            "ns.coll": {"$in": [EVENTS, OBJECTS]},
        }}];
        let opened = tokio::select! {
            _ = cancel.cancelled() => return,
            opened = db.watch().pipeline(pipeline).resume_after(resume.clone()) => opened,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) if resume.is_some() && is_history_lost(&e) => {
                error!(
                    error = %one_line(&e.to_string()),
                    "the checkpoint has fallen out of the change-stream history; \
                     continuing from now: events inserted while herald was down are not delivered"
                );
                resume = None;
                continue;
            }
            Err(e) => {
                health.live.store(false, Ordering::Relaxed);
                failures += 1;
                let wait = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
                warn!(error = %one_line(&e.to_string()), retry_in_ms = wait.as_millis() as u64, "cannot open the change stream");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        if resume.is_none() {
            let Some(token) = stream.resume_token() else {
                warn!("the change stream gave no starting position; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let Some(checkpoint) = encode_token(&token) else {
                continue;
            };
            if let Err(e) = ledger.checkpoint(checkpoint).await {
                warn!(error = %e, "cannot record the starting position; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            info!("no checkpoint: starting from now, recorded as the first checkpoint");
            resume = Some(token);
        }
        health.live.store(true, Ordering::Relaxed);
        if failures > 0 {
            info!("change stream reopened");
        }
        failures = 0;
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(change)) => {
                    resume = Some(change.id.clone());
                    let checkpoint = encode_token(&change.id);
                    let submitted = match event_from_change(&change) {
                        Some(Ok(event)) => engine.submit(event, checkpoint).await,
                        Some(Err((what, why))) => {
                            warn!(document = %what, reason = %why, "skipping malformed event document");
                            Ok(())
                        }
                        None => Ok(()),
                    };
                    if submitted.is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    health.live.store(false, Ordering::Relaxed);
                    warn!(error = %one_line(&e.to_string()), "change stream failed; reopening");
                    break;
                }
                None => break,
            }
        }
    }
}

fn is_history_lost(e: &mongodb::error::Error) -> bool {
    // ChangeStreamHistoryLost (286), ChangeStreamFatalError (280), InvalidResumeToken (260).
    match &*e.kind {
        mongodb::error::ErrorKind::Command(c) => matches!(c.code, 286 | 280 | 260),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime {
        DateTime::from_millis(1_767_225_600_000)
    }

    #[test]
    fn builds_the_contract_payload() {
        let oid = mongodb::bson::oid::ObjectId::new();
        let p = payload_from_event(
            &doc! {
                "_id": oid, "event_type": "collection.documents.written", "namespace_id": "ns",
                "data": {"collection_id": "c1", "document_ids": ["d1"]},
                "cache_scope": {"scope": "collection", "collection_id": "c1"},
            },
            at(),
        )
        .unwrap();
        assert_eq!(p.event_id, oid.to_hex());
        assert_eq!(p.occurred_at, "2026-01-01T00:00:00.000Z");
        assert_eq!(p.data["document_ids"][0], "d1");
        assert_eq!(p.cache_scope.unwrap()["scope"], "collection");
    }

    #[test]
    fn malformed_documents_say_what_is_wrong() {
        let cases = [
            (doc! {"_id": 5, "event_type": "x"}, BadEvent::Id),
            (doc! {"_id": "e"}, BadEvent::EventType),
            (doc! {"_id": "e", "event_type": 3}, BadEvent::EventType),
            (
                doc! {"_id": "e", "event_type": "x", "data": "no"},
                BadEvent::WrongType("data"),
            ),
            (
                doc! {"_id": "e", "event_type": "x", "occurred_at": 5},
                BadEvent::WrongType("occurred_at"),
            ),
            (
                doc! {"_id": "e", "event_type": "x", "cache_scope": {"scope": "everything"}},
                BadEvent::CacheScope,
            ),
        ];
        for (doc, expected) in cases {
            assert_eq!(
                payload_from_event(&doc, at()).unwrap_err(),
                expected,
                "{doc}"
            );
        }
    }

    #[test]
    fn objects_publish_object_created() {
        let p = payload_from_object(
            &doc! {"_id": "obj_1", "bucket_id": "b1", "metadata": {"k": 1}},
            at(),
        )
        .unwrap();
        assert_eq!(p.event_type, "object.created");
        assert_eq!(p.event_id, "evt_obj_created_obj_1");
        assert_eq!(
            p.data,
            serde_json::json!({"bucket_id": "b1", "object_id": "obj_1", "metadata": {"k": 1}})
        );
    }

    #[test]
    fn checkpoints_round_trip() {
        let token: ResumeToken =
            mongodb::bson::from_bson(Bson::Document(doc! {"_data": "abc"})).unwrap();
        let bytes = encode_token(&token).unwrap();
        let back = decode_token(&bytes).unwrap();
        assert_eq!(format!("{back:?}"), format!("{token:?}"));
    }
}
