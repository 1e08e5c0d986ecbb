//! The outbox feed: one change stream over `events` (any insert publishes an event) and
//! `objects` (an insert publishes `object.created`), resumed from the checkpoint.
//!
//! Each change becomes an [`Event`] whose body is built here, once. Its `occurred_at`
//! falls back to the change's wall-clock time, which is the same on every read of the
//! change, so a re-delivered event after a restart carries byte-identical content.
//!
//! A malformed event document is logged with its `_id` and skipped; it never stops the
//! feed or the events behind it. An event's `trace_context: {traceparent}` (contract §7) is
//! read beside its payload, never into it; one that does not parse is ignored (a debug
//! log), and the event goes out without it.
//!
//! Writing into the outbox — publishing — is [`outbox`]'s; [`group_commit`] gathers the
//! API's concurrent publishes into shared writes.

pub mod group_commit;
pub mod outbox;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use herald_actors::{EngineHandle, Event, Grant, Payload, Position, Rewind, TraceParent};
use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::change_stream::event::ChangeStreamEvent;
use mongodb::Database;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

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

pub use super::position::{decode_position, encode_position, FeedPosition};

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

/// The W3C trace context of an `events` document (`trace_context.traceparent`), if it
/// carries a valid one. Anything else is ignored, with a debug log: a producer's tracing
/// never stops its event.
pub fn trace_context(doc: &Document) -> Option<TraceParent> {
    let context = match doc.get("trace_context")? {
        Bson::Null => return None,
        Bson::Document(context) => context,
        _ => {
            debug!(event = ?doc.get("_id"), "trace_context is not a document; ignored");
            return None;
        }
    };
    let Some(Bson::String(traceparent)) = context.get("traceparent") else {
        debug!(event = ?doc.get("_id"), "trace_context.traceparent is missing or not a string; ignored");
        return None;
    };
    match TraceParent::parse(traceparent) {
        Ok(parsed) => Some(parsed),
        Err(why) => {
            debug!(event = ?doc.get("_id"), reason = %why, "invalid trace_context.traceparent; ignored");
            None
        }
    }
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
    let (payload, trace) = match collection {
        EVENTS => (payload_from_event(doc, inserted_at), trace_context(doc)),
        OBJECTS => (payload_from_object(doc, inserted_at), None),
        _ => return None,
    };
    Some(
        checked(payload)
            .map(|event| event.with_trace(trace))
            .map_err(|e| (format!("{collection} {}", id()), e)),
    )
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

/// How long an idle feed waits between marks of its latest position (the post-batch
/// resume token), so that checkpoints of quiet partitions stay current.
const QUIET_MARK_EVERY: Duration = Duration::from_secs(1);

/// How long the server holds an empty `getMore` before answering: also how long a grant
/// may wait for the feed to take it.
const MAX_AWAIT: Duration = Duration::from_millis(500);

/// Where the feed opens next.
#[derive(Debug, Clone)]
enum Start {
    /// At the server's present.
    Now,
    /// Just after a stored position.
    After(FeedPosition),
    /// At a cluster time, inclusive (positions that one time cannot order).
    At(u64, Option<DateTime>),
}

/// Where the feed stands now: the position a change stream opened at the server's present
/// starts at. Partitions that never had a checkpoint start there (written before anything
/// is delivered for them, so a crash can never leave one without a place to resume from).
pub async fn present_position(db: &Database) -> mongodb::error::Result<Option<Bytes>> {
    let mut watch = db.watch().pipeline(feed_pipeline());
    let time = super::leases::server_time(db).await.unwrap_or(0);
    if time > 0 {
        watch = watch.start_at_operation_time(super::position::timestamp(time));
    }
    let stream = watch.await?;
    Ok(stream.resume_token().and_then(|token| {
        encode_position(&FeedPosition {
            token,
            at: Some(DateTime::now()),
            time,
        })
    }))
}

/// A change's cluster time as the engine orders positions (0 when absent).
fn time_of(change: &ChangeStreamEvent<Document>) -> u64 {
    change
        .cluster_time
        .map(super::position::time_key)
        .unwrap_or(0)
}

/// The engine's view of a feed position.
fn engine_position(position: &FeedPosition) -> Option<Position> {
    encode_position(position).map(|bytes| Position::new(bytes, position.time))
}

/// Whether the feed, standing at `last`, is already past `from` (so a partition that
/// resumes from `from` needs the feed re-read from there). A position without a cluster
/// time (stored by an older version) is past unless it is `last` itself.
fn is_past(last: &Position, from: &Position) -> bool {
    if last.checkpoint == from.checkpoint {
        return false;
    }
    from.time == 0 || last.time >= from.time
}

/// Where to re-read from so that every grant's partition sees everything after its
/// checkpoint: just after the oldest one, or — when two different positions share the
/// oldest cluster time (changes of one transaction) — at that time, inclusive.
fn rewind_for(froms: &[&Position]) -> Option<(Start, Rewind)> {
    let oldest = froms.iter().min_by_key(|p| p.time)?;
    let ties = froms
        .iter()
        .filter(|p| p.time == oldest.time && p.checkpoint != oldest.checkpoint)
        .count();
    let decoded = decode_position(&oldest.checkpoint)?;
    if ties > 0 && oldest.time > 0 {
        Some((Start::At(oldest.time, decoded.at), Rewind::At(oldest.time)))
    } else {
        Some((
            Start::After(decoded),
            Rewind::After(oldest.checkpoint.clone()),
        ))
    }
}

/// Hands partitions to the engine, in feed order: those whose checkpoint lies behind the
/// feed make it re-read from there (the answer: where to reopen).
fn take_grants(
    engine: &EngineHandle,
    grants: Vec<Grant>,
    last: Option<&Position>,
) -> Option<Start> {
    let behind: Vec<&Position> = grants
        .iter()
        .filter_map(|g| g.from.as_ref())
        .filter(|from| last.is_none_or(|last| is_past(last, from)))
        .collect();
    let plan = rewind_for(&behind);
    if let Some((start, _)) = &plan {
        info!(partitions = grants.len(), from = %start_label(start), "reading the feed from the checkpoint of the partitions taken");
    }
    let (start, rewind) = match plan {
        Some((start, rewind)) => (Some(start), Some(rewind)),
        None => (None, None),
    };
    // Stopped: the caller sees it at its next submit.
    let _ = engine.grant(grants, rewind);
    start
}

fn start_label(start: &Start) -> String {
    match start {
        Start::Now => "now".into(),
        Start::After(p) => format!(
            "after the checkpoint of {}",
            p.at.map(rfc3339).unwrap_or_default()
        ),
        Start::At(t, _) => format!("cluster time {}.{}", t >> 32, *t as u32),
    }
}

/// Runs the feed until `cancel` fires: takes the partitions the lease coordinator grants
/// (re-reading from the oldest checkpoint among them when the feed is past it), opens the
/// change stream, submits every event to the engine (waiting when its window is full),
/// marks its position while it is idle, reconnects with backoff on errors.
///
/// With no checkpoint to start from, the stream starts at the server's present, and that
/// position is the first mark: partitions that never had a checkpoint start there. When a
/// checkpoint has fallen out of the change-stream history, the feed starts anew and first
/// scans `events` for what it may have missed (see [`scan_events`]).
pub async fn run_feed(
    db: Database,
    engine: EngineHandle,
    mut grants: mpsc::UnboundedReceiver<Vec<Grant>>,
    health: Arc<FeedHealth>,
    cancel: CancellationToken,
) {
    let mut start = Start::Now;
    // The newest position handed to the engine.
    let mut last: Option<(FeedPosition, Position)> = None;
    // The grants made before the feed first opens decide where it starts.
    while let Ok(granted) = grants.try_recv() {
        if let Some(from) = take_grants(&engine, granted, last.as_ref().map(|(_, p)| p)) {
            start = from;
        }
    }
    let mut failures: u32 = 0;
    loop {
        let scan_since = match &start {
            Start::After(p) => p.at,
            Start::At(_, at) => *at,
            Start::Now => None,
        };
        let mut watch = db
            .watch()
            .pipeline(feed_pipeline())
            .max_await_time(MAX_AWAIT);
        let mut now_time = 0;
        match &start {
            Start::Now => {
                if let Some(t) = super::leases::server_time(&db).await {
                    now_time = t;
                    watch = watch.start_at_operation_time(super::position::timestamp(t));
                }
            }
            Start::After(p) => watch = watch.resume_after(p.token.clone()),
            Start::At(t, _) => {
                watch = watch.start_at_operation_time(super::position::timestamp(*t))
            }
        }
        let opened = tokio::select! {
            _ = cancel.cancelled() => return,
            opened = watch => opened,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) if !matches!(start, Start::Now) && is_history_lost(&e) => {
                error!(
                    error = %one_line(&e.to_string()),
                    since = ?scan_since.map(rfc3339),
                    "cannot resume from the checkpoint (no longer in the change-stream history); \
                     falling back to scanning `events` since the checkpoint"
                );
                // Every partition takes what comes from now on, the scan included.
                let _ = engine.grant(Vec::new(), Some(Rewind::Lost));
                match scan_events(&db, &engine, scan_since).await {
                    Ok(found) => info!(events = found, "fallback scan of `events` done"),
                    Err(e) => {
                        warn!(error = %one_line(&e.to_string()), "fallback scan of `events` failed; events since the checkpoint may be missing")
                    }
                }
                last = None;
                start = Start::Now;
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
        if matches!(start, Start::Now) {
            info!("starting the change stream at the present");
            // Where it starts, if the server says before the first read (a partition granted
            // later compares its checkpoint with it; without it, any checkpoint makes the
            // feed re-read from there, which is never wrong).
            let position = stream.resume_token().map(|token| FeedPosition {
                token,
                at: Some(DateTime::now()),
                time: now_time,
            });
            if let Some(marked) = position.as_ref().and_then(engine_position) {
                if engine.mark(marked.clone()).await.is_err() {
                    return;
                }
                last = position.map(|p| (p, marked));
            }
        }
        health.live.store(true, Ordering::Relaxed);
        if failures > 0 {
            info!(
                resumed = !matches!(start, Start::Now),
                "change stream reopened after {failures} failure(s)"
            );
        }
        let mut last_mark = tokio::time::Instant::now();
        loop {
            // Grants are taken between reads, so they fall between two events in the
            // engine's order too.
            let mut reopen = None;
            while let Ok(granted) = grants.try_recv() {
                if let Some(from) = take_grants(&engine, granted, last.as_ref().map(|(_, p)| p)) {
                    reopen = Some(from);
                }
            }
            if let Some(from) = reopen {
                start = from;
                break;
            }
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                next = stream.next_if_any() => next,
            };
            match next {
                Ok(Some(change)) => {
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
                        time: time_of(&change),
                    };
                    let marked = engine_position(&position);
                    let submitted = match event_from_change(&change) {
                        Some(Ok(event)) => engine.submit(event, marked.clone()).await,
                        Some(Err((what, why))) => {
                            warn!(document = %what, reason = %why, "skipping malformed event document");
                            match marked.clone() {
                                Some(marked) => engine.mark(marked).await,
                                None => Ok(()),
                            }
                        }
                        None => Ok(()),
                    };
                    if submitted.is_err() {
                        return;
                    }
                    if let Some(marked) = marked {
                        last = Some((position, marked));
                    }
                    last_mark = tokio::time::Instant::now();
                }
                // Nothing new: now and then, mark where the stream stands (its post-batch
                // resume token), so that quiet partitions' checkpoints stay current and a
                // quiet feed never falls out of the change-stream history.
                Ok(None) => {
                    crate::metrics::set_change_stream_lag(Duration::ZERO);
                    if last_mark.elapsed() < QUIET_MARK_EVERY {
                        continue;
                    }
                    last_mark = tokio::time::Instant::now();
                    let (Some((previous, marked)), Some(token)) = (&last, stream.resume_token())
                    else {
                        continue;
                    };
                    let mark = if token == previous.token {
                        // Still the same place: the same bytes, so nothing is rewritten.
                        marked.clone()
                    } else {
                        let position = FeedPosition {
                            token,
                            at: Some(DateTime::now()),
                            // The time of the newest change read: no change lies between it
                            // and this token, so it orders the token as well as its own would.
                            time: previous.time,
                        };
                        let Some(marked) = engine_position(&position) else {
                            continue;
                        };
                        last = Some((position, marked.clone()));
                        marked
                    };
                    if engine.mark(mark).await.is_err() {
                        return;
                    }
                }
                // The driver has already tried to resume once on a resumable error (network
                // error, primary stepped down, …), as MongoDB's change-stream spec says; what
                // reaches us it could not cure. Reopen from the last position seen, after a
                // pause that grows while failures repeat (a stream that opens and fails at
                // once must not spin).
                Err(e) => {
                    health.live.store(false, Ordering::Relaxed);
                    failures += 1;
                    let wait = reopen_backoff(failures);
                    warn!(error = %one_line(&e.to_string()), retry_in_ms = wait.as_millis() as u64, "change stream failed; reopening from the last position seen");
                    start = match &last {
                        Some((position, _)) => Start::After(position.clone()),
                        None => Start::Now,
                    };
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(wait) => break,
                    }
                }
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
        match checked(payload_from_event(&doc, at)).map(|e| e.with_trace(trace_context(&doc))) {
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
    fn a_valid_trace_context_is_read_and_a_bad_one_ignored() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let read = trace_context(&doc! {"_id": "e", "trace_context": {"traceparent": traceparent}});
        assert_eq!(read.map(|t| t.to_string()).as_deref(), Some(traceparent));
        for ignored in [
            doc! {"_id": "e"},
            doc! {"_id": "e", "trace_context": null},
            doc! {"_id": "e", "trace_context": "00-abc"},
            doc! {"_id": "e", "trace_context": {}},
            doc! {"_id": "e", "trace_context": {"traceparent": 7}},
            doc! {"_id": "e", "trace_context": {"traceparent": "not-a-traceparent"}},
            doc! {"_id": "e", "trace_context": {"traceparent": traceparent.to_uppercase()}},
        ] {
            assert_eq!(trace_context(&ignored), None, "{ignored}");
            // Never a reason to skip the event, nor part of what is delivered.
            let payload = payload_from_event(
                &doc! {"event_type": "x", "trace_context": ignored.get("trace_context").cloned().unwrap_or(Bson::Null), "_id": "e"},
                at(),
            )
            .unwrap();
            let body = serde_json::to_value(&payload).unwrap();
            assert!(body.get("trace_context").is_none());
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
}
