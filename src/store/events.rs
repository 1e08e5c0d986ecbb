//! The outbox feed: one change stream over `events` (any insert publishes an event) and
//! `objects` (an insert publishes `object.created`), resumed from the checkpoint.
//!
//! Each change becomes an [`Event`] whose body is built here, once. Its `occurred_at`
//! falls back to the change's wall-clock time, which is the same on every read of the
//! change, so a re-delivered event after a restart carries byte-identical content.
//!
//! A malformed event document is logged with its `_id` and skipped; it never stops the
//! feed or the events behind it.
//!
//! Writing into the outbox — publishing — is [`outbox`]'s.

pub mod outbox;

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

use super::{reopen_backoff, EVENTS, OBJECTS};
use crate::text::one_line;

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

/// Where the feed stands: the resume token of a change, and that change's time (used to
/// scan `events` when the token has fallen out of the change-stream history).
#[derive(Debug, Clone)]
pub struct FeedPosition {
    pub token: ResumeToken,
    pub at: Option<DateTime>,
}

/// The checkpoint as stored.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    token: ResumeToken,
    #[serde(default)]
    at: Option<DateTime>,
}

pub fn encode_position(position: &FeedPosition) -> Option<Bytes> {
    let checkpoint = Checkpoint {
        token: position.token.clone(),
        at: position.at,
    };
    mongodb::bson::to_vec(&checkpoint).ok().map(Bytes::from)
}

pub fn decode_position(bytes: &[u8]) -> Option<FeedPosition> {
    mongodb::bson::from_slice::<Checkpoint>(bytes)
        .ok()
        .map(|c| FeedPosition {
            token: c.token,
            at: c.at,
        })
}

/// How far before the checkpoint's time the fallback scan starts, for clock skew between
/// producers' `occurred_at` and the server.
const SCAN_MARGIN_MS: i64 = 60_000;

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

/// When a change happened: its wall time, else its cluster time.
fn change_time(change: &ChangeStreamEvent<Document>) -> DateTime {
    change.wall_time.unwrap_or_else(|| {
        change
            .cluster_time
            .map(|t| DateTime::from_millis(t.time as i64 * 1000))
            .unwrap_or_else(DateTime::now)
    })
}

/// The event of a payload, refused when its body is over [`MAX_PAYLOAD_BYTES`].
fn checked(payload: Result<Payload, BadEvent>) -> Result<Event, BadEvent> {
    let event = Event::from_payload(&payload?);
    if event.body.len() > MAX_PAYLOAD_BYTES {
        return Err(BadEvent::TooLarge(event.body.len()));
    }
    Ok(event)
}

/// Turns one change into an event, or says why it is skipped (`None`: not an insert into
/// `events` or `objects`).
pub fn event_from_change(
    change: &ChangeStreamEvent<Document>,
) -> Option<Result<Event, (String, BadEvent)>> {
    let doc = change.full_document.as_ref()?;
    let collection = change.ns.as_ref().and_then(|ns| ns.coll.as_deref())?;
    let inserted_at = change_time(change);
    let id = || format!("{:?}", doc.get("_id").cloned().unwrap_or(Bson::Null));
    let payload = match collection {
        EVENTS => payload_from_event(doc, inserted_at),
        OBJECTS => payload_from_object(doc, inserted_at),
        _ => return None,
    };
    Some(checked(payload).map_err(|e| (format!("{collection} {}", id()), e)))
}

/// Readiness of the feed, for `/readyz`.
#[derive(Debug, Default)]
pub struct FeedHealth {
    pub live: AtomicBool,
}

/// The feed's change-stream pipeline, over the whole database: inserts into `events` and
/// `objects`.
pub fn feed_pipeline() -> [Document; 1] {
    [doc! {"$match": {
        "operationType": "insert",
        "ns.coll": {"$in": [EVENTS, OBJECTS]},
    }}]
}

/// Runs the feed until `cancel` fires: opens the change stream after `start`, submits every
/// event to the engine (waiting when its window is full), reconnects with backoff on errors.
///
/// Without a checkpoint (the first start) the stream starts "now" — and that position is
/// written as the checkpoint before anything else happens, so a crash before the first
/// event settles resumes from there instead of from a later "now". When the checkpoint has
/// fallen out of the change-stream history, the feed starts anew and first scans `events`
/// for what it may have missed (see [`scan_events`]).
pub async fn run_feed(
    db: Database,
    engine: EngineHandle,
    ledger: Arc<dyn Ledger>,
    start: Option<FeedPosition>,
    health: Arc<FeedHealth>,
    cancel: CancellationToken,
) {
    let mut resume = start;
    // Set when the history was lost: scan `events` from this time before going on.
    let mut scan_from: Option<Option<DateTime>> = None;
    let mut failures: u32 = 0;
    loop {
        let pipeline = feed_pipeline();
        let opened = tokio::select! {
            _ = cancel.cancelled() => return,
            opened = db
                .watch()
                .pipeline(pipeline)
                .resume_after(resume.as_ref().map(|p| p.token.clone())) => opened,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) if resume.is_some() && is_history_lost(&e) => {
                let since = resume.take().and_then(|p| p.at);
                error!(
                    error = %one_line(&e.to_string()),
                    since = ?since.map(rfc3339),
                    "cannot resume from the checkpoint (no longer in the change-stream history); \
                     falling back to scanning `events` since the checkpoint"
                );
                scan_from = Some(since);
                continue;
            }
            Err(e) => {
                health.live.store(false, Ordering::Relaxed);
                failures += 1;
                let wait = reopen_backoff(failures);
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
            let position = FeedPosition {
                token,
                at: Some(DateTime::now()),
            };
            let Some(checkpoint) = encode_position(&position) else {
                continue;
            };
            let recorded = match scan_from {
                // Events found by the scan settle before this position does.
                Some(since) => match scan_events(&db, &engine, since).await {
                    Ok(found) => {
                        info!(events = found, "fallback scan of `events` done");
                        engine.mark(checkpoint).await.map_err(|e| e.to_string())
                    }
                    Err(e) => Err(format!(
                        "fallback scan failed: {}",
                        one_line(&e.to_string())
                    )),
                },
                None => ledger
                    .checkpoint(checkpoint)
                    .await
                    .map_err(|e| e.to_string()),
            };
            if let Err(e) = recorded {
                warn!(error = %e, "cannot record the starting position; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            if scan_from.take().is_none() {
                info!("no checkpoint: starting from now, recorded as the first checkpoint");
            }
            resume = Some(position);
        }
        health.live.store(true, Ordering::Relaxed);
        if failures > 0 {
            info!(
                resumed = resume.is_some(),
                "change stream reopened after {failures} failure(s)"
            );
        }
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(change)) => {
                    // The stream works again: the next failure starts the backoff anew.
                    failures = 0;
                    let at = change_time(&change);
                    crate::metrics::set_change_stream_lag(
                        std::time::SystemTime::now()
                            .duration_since(at.to_system_time())
                            .unwrap_or_default(),
                    );
                    let position = FeedPosition {
                        token: change.id.clone(),
                        at: Some(at),
                    };
                    let checkpoint = encode_position(&position);
                    resume = Some(position);
                    let submitted = match event_from_change(&change) {
                        Some(Ok(event)) => engine.submit(event, checkpoint).await,
                        Some(Err((what, why))) => {
                            warn!(document = %what, reason = %why, "skipping malformed event document");
                            match checkpoint {
                                Some(checkpoint) => engine.mark(checkpoint).await,
                                None => Ok(()),
                            }
                        }
                        None => Ok(()),
                    };
                    if submitted.is_err() {
                        return;
                    }
                }
                // The driver has already tried to resume once on a resumable error (network
                // error, primary stepped down, …), as MongoDB's change-stream spec says; what
                // reaches us it could not cure. Reopen from the last change seen, after a
                // pause that grows while failures repeat (a stream that opens and fails at
                // once must not spin).
                Some(Err(e)) => {
                    health.live.store(false, Ordering::Relaxed);
                    failures += 1;
                    let wait = reopen_backoff(failures);
                    warn!(error = %one_line(&e.to_string()), retry_in_ms = wait.as_millis() as u64, "change stream failed; reopening from the last change seen");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(wait) => break,
                    }
                }
                None => break,
            }
        }
    }
}

/// The fallback when the change-stream history no longer reaches the checkpoint: submits
/// every `events` document whose `occurred_at` is at most a minute before `since`
/// (re-delivering some, with the same ids). Documents without a date `occurred_at`, and
/// `objects` inserts, cannot be found this way; the log says so.
pub async fn scan_events(
    db: &Database,
    engine: &EngineHandle,
    since: Option<DateTime>,
) -> mongodb::error::Result<usize> {
    let Some(since) = since else {
        error!("the checkpoint carries no time; events inserted while herald was down cannot be recovered");
        return Ok(0);
    };
    warn!(
        since = %rfc3339(since),
        "scanning `events` by occurred_at; events without a date occurred_at and `objects` inserts since then are not recovered"
    );
    let from = DateTime::from_millis(since.timestamp_millis() - SCAN_MARGIN_MS);
    let mut cursor = db
        .collection::<Document>(EVENTS)
        .find(doc! {"occurred_at": {"$gte": from}})
        .sort(doc! {"occurred_at": 1})
        .await?;
    let mut found = 0;
    while let Some(doc) = cursor.next().await {
        let doc = doc?;
        let at = doc.get_datetime("occurred_at").copied().unwrap_or(since);
        match checked(payload_from_event(&doc, at)) {
            Ok(event) => {
                if engine.submit(event, None).await.is_err() {
                    break;
                }
                found += 1;
            }
            Err(why) => {
                warn!(document = ?doc.get("_id"), reason = %why, "skipping malformed event document")
            }
        }
    }
    Ok(found)
}

fn is_history_lost(e: &mongodb::error::Error) -> bool {
    // ChangeStreamHistoryLost (286), ChangeStreamFatalError (280), InvalidResumeToken (260);
    // FailedToParse (9) when the stored token itself is unreadable by this server.
    match &*e.kind {
        mongodb::error::ErrorKind::Command(c) => matches!(c.code, 286 | 280 | 260 | 9),
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
    fn reopening_backs_off_from_200_ms_to_6_4_s() {
        let waits: Vec<u64> = (1..=8)
            .map(|n| reopen_backoff(n).as_millis() as u64)
            .collect();
        assert_eq!(waits, [200, 400, 800, 1_600, 3_200, 6_400, 6_400, 6_400]);
    }

    #[test]
    fn checkpoints_round_trip() {
        let token: ResumeToken =
            mongodb::bson::from_bson(Bson::Document(doc! {"_data": "abc"})).unwrap();
        let at = DateTime::from_millis(1_767_225_600_000);
        let bytes = encode_position(&FeedPosition {
            token: token.clone(),
            at: Some(at),
        })
        .unwrap();
        let back = decode_position(&bytes).unwrap();
        assert_eq!(format!("{:?}", back.token), format!("{token:?}"));
        assert_eq!(back.at, Some(at));
    }
}
