//! The delivery ledger in MongoDB (`deliveries`, and the partition checkpoints, stored with
//! their leases by [`leases`](super::leases); endpoint health, kept by
//! [`health`](super::health)).
//!
//! Most deliveries succeed at their first attempt, so the hot path is one `insert_many` per
//! batch: each delivery's document is written once, when its first attempt ends. Only
//! retries update documents, with one multi-statement `update` command per batch. A first
//! record that meets an existing document (the daemon crashed after writing it and
//! re-delivered the event) becomes an update, so replays never fail the batch.
//!
//! A delivery that may be attempted again names its body (`payload_id`), stored once per
//! event in [`payloads`](super::payloads) by the same batch, before the delivery; documents
//! of earlier versions keep it inline (`payload`) and are read as they are.
//!
//! The collection's indexes and TTLs are in [`indexes`]; what the API reads and re-queues,
//! in [`queries`].

mod indexes;
mod queries;

pub use indexes::{
    ensure_indexes, ttl_indexes, OBSOLETE_INDEXES, PENDING_DUE, TTL_FAILED, TTL_SUCCEEDED,
};
pub use queries::{
    count_pending, get, get_replayable, get_status, insert_pending, list, payload, requeue,
    requeue_page, retire_webhook, unqueue, DeliveryFilter, Requeued, WEBHOOK_DELETED,
};

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use herald_actors::delivery::{AttemptLogEntry, DeliveryRecord, PendingDelivery};
use herald_actors::ports::{Ledger, LedgerError, PendingStream};
use herald_actors::PartitionCheckpoint;
use mongodb::bson::{doc, Bson, Document, RawArrayBuf, RawBson, RawDocumentBuf};
use mongodb::{Collection, Database};

use tracing::warn;

use super::health::{BatchedHealth, KeepError};
use super::payloads::{self, PayloadRef};
use super::{bson_date, id_string, DELIVERIES};
use crate::text::one_line;

/// [`Ledger`] over a MongoDB database.
#[derive(Clone)]
pub struct MongoLedger {
    db: Database,
    deliveries: Collection<Document>,
    /// The same collection, for first records built as BSON bytes.
    raw_deliveries: Collection<RawDocumentBuf>,
    alerts: super::alerts::AlertPublisher,
    stored: payloads::StoredRecently,
    /// The kept endpoint health, read and written in batches; started by the first use
    /// (within the runtime that uses it), shared by every clone.
    health: Arc<OnceLock<BatchedHealth>>,
    /// The cluster member this ledger writes quiet marks for (`None`: it writes none).
    member_id: Option<Arc<str>>,
}

impl MongoLedger {
    pub fn new(db: &Database) -> Self {
        Self {
            db: db.clone(),
            deliveries: db.collection(DELIVERIES),
            raw_deliveries: db.collection(DELIVERIES),
            alerts: super::alerts::AlertPublisher::new(db),
            stored: payloads::StoredRecently::default(),
            health: Arc::new(OnceLock::new()),
            member_id: None,
        }
    }

    /// A ledger that stores quiet marks in `member_id`'s member document.
    pub fn for_member(self, member_id: &str) -> Self {
        Self {
            member_id: Some(member_id.into()),
            ..self
        }
    }

    /// The health batcher, started if it is not yet.
    fn health(&self) -> BatchedHealth {
        self.health
            .get_or_init(|| BatchedHealth::start(&self.db))
            .clone()
    }

    async fn write_batch(&self, batch: &[DeliveryRecord]) -> Result<(), LedgerError> {
        // Each event's body once, before any delivery names it: stored unless this process
        // stored it lately (then it is touched recently enough that no sweep removes it).
        let mut named: HashSet<&str> = HashSet::new();
        let bodies: Vec<(&str, &Bytes)> = batch
            .iter()
            .filter_map(|r| Some((r.event_id.as_str(), r.payload.as_ref()?)))
            .filter(|(id, _)| named.insert(id))
            .collect();
        let bodies = self.stored.stale(bodies);
        let storing_at = std::time::Instant::now();
        payloads::store(&self.db, &bodies)
            .await
            .map_err(|e| ledger_error(&e))?;
        self.stored.stored(&bodies, storing_at);
        let (inserts, updates): (Vec<&DeliveryRecord>, Vec<&DeliveryRecord>) =
            batch.iter().partition(|r| r.first_write);
        let mut replays = Vec::new();
        if !inserts.is_empty() {
            let docs: Vec<RawDocumentBuf> = inserts.iter().map(|r| insert_doc(r)).collect();
            let taken = super::insert_unless_present(&self.raw_deliveries, docs)
                .await
                .map_err(|e| ledger_error(&e))?;
            replays.extend(taken.into_iter().map(|i| inserts[i]));
        }
        let statements: Vec<Document> = replays
            .iter()
            .map(|r| replay_statement(r))
            .chain(updates.iter().map(|r| update_statement(r)))
            .collect();
        if statements.is_empty() {
            return Ok(());
        }
        let reply = self
            .db
            .run_command(doc! {"update": DELIVERIES, "updates": statements, "ordered": true})
            .await
            .map_err(|e| ledger_error(&e))?;
        if let Ok(errors) = reply.get_array("writeErrors") {
            if !errors.is_empty() {
                return Err(LedgerError::Store(format!(
                    "update of deliveries failed: {:?}",
                    errors.first()
                )));
            }
        }
        Ok(())
    }
}

fn ledger_error(error: &mongodb::error::Error) -> LedgerError {
    LedgerError::Store(one_line(&error.to_string()))
}

fn keep_error(error: &KeepError) -> LedgerError {
    LedgerError::Store(one_line(&error.to_string()))
}

fn log_entry(entry: &AttemptLogEntry) -> Document {
    let mut d = doc! {"at": bson_date(entry.at), "duration_ms": entry.duration_ms as i64};
    if let Some(code) = entry.status_code {
        d.insert("status_code", code as i32);
    }
    if let Some(error) = &entry.error {
        d.insert("error", error.as_str());
    }
    d
}

fn opt_date(t: Option<SystemTime>) -> Bson {
    t.map_or(Bson::Null, |t| Bson::DateTime(bson_date(t)))
}

/// The mutable fields, as set by every record.
fn state_fields(r: &DeliveryRecord) -> Document {
    doc! {
        "status": r.status.as_str(),
        "next_attempt_at": opt_date(r.next_attempt_at),
        "last_status_code": r.last_status_code.map_or(Bson::Null, |c| Bson::Int32(c as i32)),
        "last_error": r.last_error.as_deref().map_or(Bson::Null, |e| Bson::String(e.to_owned())),
        "completed_at": opt_date(r.completed_at),
        "updated_at": bson_date(SystemTime::now()),
    }
}

/// The document of a delivery's first record, built as BSON bytes (what the driver sends):
/// the same fields, in the same order, as [`state_fields`] and [`log_entry`] give later
/// records, without a `Document` of a dozen owned keys per record first — a burst writes
/// thousands of these.
fn insert_doc(r: &DeliveryRecord) -> RawDocumentBuf {
    let mut d = RawDocumentBuf::new();
    d.append("_id", r.delivery_id.as_str());
    d.append("event_id", r.event_id.as_str());
    d.append("webhook_id", r.webhook_id.as_str());
    d.append("event_type", r.event_type.as_str());
    d.append("attempts", r.attempts as i64);
    let mut log = RawArrayBuf::new();
    for entry in &r.new_attempts {
        let mut e = RawDocumentBuf::new();
        e.append("at", bson_date(entry.at));
        e.append("duration_ms", entry.duration_ms as i64);
        if let Some(code) = entry.status_code {
            e.append("status_code", code as i32);
        }
        if let Some(error) = &entry.error {
            e.append("error", error.as_str());
        }
        log.push(e);
    }
    d.append("attempt_log", log);
    d.append("created_at", bson_date(r.created_at));
    let date = |t: Option<SystemTime>| t.map_or(RawBson::Null, |t| RawBson::DateTime(bson_date(t)));
    d.append("status", r.status.as_str());
    d.append("next_attempt_at", date(r.next_attempt_at));
    d.append(
        "last_status_code",
        r.last_status_code
            .map_or(RawBson::Null, |c| RawBson::Int32(c as i32)),
    );
    d.append(
        "last_error",
        r.last_error
            .as_deref()
            .map_or(RawBson::Null, |e| RawBson::String(e.to_owned())),
    );
    d.append("completed_at", date(r.completed_at));
    d.append("updated_at", bson_date(SystemTime::now()));
    if let Some(task_id) = &r.task_id {
        d.append("task_id", task_id.as_str());
    }
    if r.payload.is_some() {
        d.append("payload_id", r.event_id.as_str());
    }
    d
}

/// Which document a later record of `r` applies to: its own, unless that already logs the
/// attempt `r` brings or has succeeded. The writer sends a batch again when it got no
/// answer, though the server may have applied it; the attempt's start time (to the
/// millisecond) tells an attempt already logged from a new one, so a batch written twice
/// logs and counts each attempt once. A delivery that succeeded is done: whatever reaches
/// it later — a batch sent again whose first record is its spill, a stale record of a
/// failed attempt, an attempt made again after a crash — leaves it as it is, so
/// `succeeded` never goes back to `pending` or `failed`.
fn unless_logged(r: &DeliveryRecord) -> Document {
    let mut q = doc! {
        "_id": &r.delivery_id,
        "status": {"$ne": herald_actors::DeliveryStatus::Succeeded.as_str()},
    };
    if let Some(first) = r.new_attempts.first() {
        q.insert("attempt_log.at", doc! {"$ne": bson_date(first.at)});
    }
    q
}

fn update_statement(r: &DeliveryRecord) -> Document {
    let mut set = state_fields(r);
    set.insert("attempts", r.attempts as i64);
    doc! {
        "q": unless_logged(r),
        "u": {
            "$set": set,
            "$push": {"attempt_log": {"$each": r.new_attempts.iter().map(log_entry).collect::<Vec<_>>()}},
        },
    }
}

/// A first record whose document already exists: count the attempt on top of the old ones
/// (an event attempted again after a crash), unless it is this record's own insert, sent
/// again with its batch.
fn replay_statement(r: &DeliveryRecord) -> Document {
    let mut set = state_fields(r);
    if r.payload.is_some() {
        set.insert("payload_id", &r.event_id);
    }
    doc! {
        "q": unless_logged(r),
        "u": {
            "$set": set,
            "$inc": {"attempts": r.new_attempts.len() as i64},
            "$push": {"attempt_log": {"$each": r.new_attempts.iter().map(log_entry).collect::<Vec<_>>()}},
        },
    }
}

/// Whether a delivery document has what a retry needs: its ids and a body (stored or
/// inline).
pub fn replayable(d: &Document) -> bool {
    PayloadRef::of(d).is_some()
        && ["event_id", "webhook_id", "event_type"]
            .iter()
            .all(|field| d.get_str(field).is_ok())
}

/// Reads a page of deliveries back, each body read once for all of them (and shared with
/// every other reader of it); those lacking what a retry needs are skipped, with a warning
/// when it is their stored body that is missing.
async fn pending_page(
    db: &Database,
    docs: Vec<Document>,
) -> mongodb::error::Result<Vec<PendingDelivery>> {
    Ok(pending_each(db, &docs)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// Reads deliveries back with their bodies, from `payloads` when stored there, each body
/// read once for all of them. One entry per document, in order: `None` where the document lacks what a retry needs
/// (with a warning when it is its stored body that is missing).
pub async fn pending_each(
    db: &Database,
    docs: &[Document],
) -> mongodb::error::Result<Vec<Option<PendingDelivery>>> {
    let refs: Vec<Option<PayloadRef>> = docs.iter().map(PayloadRef::of).collect();
    let ids: Vec<String> = refs
        .iter()
        .filter_map(|r| match r {
            Some(PayloadRef::Stored(id)) => Some(id.clone()),
            _ => None,
        })
        .collect();
    let bodies = payloads::load(db, &ids).await?;
    Ok(docs
        .iter()
        .zip(refs)
        .map(|(d, r)| {
            let body = match r? {
                PayloadRef::Inline(body) => body,
                PayloadRef::Stored(id) => match bodies.get(&id) {
                    Some(body) => body.clone(),
                    None => {
                        warn!(payload_id = %id, delivery_id = %id_string(d.get("_id")), "a delivery's stored payload is missing");
                        return None;
                    }
                },
            };
            pending_from_doc(d, body)
        })
        .collect())
}

/// A delivery document with its body as a retry needs it; `None` without its ids.
pub fn pending_from_doc(d: &Document, payload: Bytes) -> Option<PendingDelivery> {
    let attempts = match d.get("attempts") {
        Some(Bson::Int32(n)) => *n as u32,
        Some(Bson::Int64(n)) => *n as u32,
        _ => 0,
    };
    Some(PendingDelivery {
        event_id: d.get_str("event_id").ok()?.to_owned(),
        webhook_id: d.get_str("webhook_id").ok()?.to_owned(),
        event_type: d.get_str("event_type").ok()?.to_owned(),
        task_id: d.get_str("task_id").ok().map(str::to_owned),
        attempts,
        next_attempt_at: d
            .get_datetime("next_attempt_at")
            .map(|t| t.to_system_time())
            .unwrap_or_else(|_| SystemTime::now()),
        created_at: d
            .get_datetime("created_at")
            .map(|t| t.to_system_time())
            .unwrap_or_else(|_| SystemTime::now()),
        payload,
    })
}

/// Webhooks named in one question of [`Ledger::with_pending`]: 5,000 ids are about 150 KB
/// of command, far below the server's 16 MiB.
const WEBHOOKS_PER_QUESTION: usize = 5_000;

impl Ledger for MongoLedger {
    fn write(
        &self,
        batch: Arc<Vec<DeliveryRecord>>,
    ) -> BoxFuture<'static, Result<(), LedgerError>> {
        let this = self.clone();
        async move { this.write_batch(&batch).await }.boxed()
    }

    fn alert(
        &self,
        alert: herald_actors::health::Alert,
    ) -> BoxFuture<'static, Result<(), LedgerError>> {
        let alerts = self.alerts.clone();
        async move { alerts.publish(&alert).await }.boxed()
    }

    fn save_health(
        &self,
        webhook_id: &str,
        health: herald_actors::health::StoredHealth,
    ) -> BoxFuture<'static, Result<(), LedgerError>> {
        let (this, webhook_id) = (self.clone(), webhook_id.to_owned());
        async move {
            this.health()
                .save(webhook_id, health)
                .await
                .map_err(|e| keep_error(&e))
        }
        .boxed()
    }

    fn load_health(
        &self,
        webhook_id: &str,
    ) -> BoxFuture<'static, Result<Option<herald_actors::health::StoredHealth>, LedgerError>> {
        let (this, webhook_id) = (self.clone(), webhook_id.to_owned());
        async move {
            this.health()
                .load(webhook_id)
                .await
                .map_err(|e| keep_error(&e))
        }
        .boxed()
    }

    fn checkpoint(
        &self,
        checkpoints: Vec<PartitionCheckpoint>,
    ) -> BoxFuture<'static, Result<Vec<u16>, LedgerError>> {
        let db = self.db.clone();
        async move {
            super::leases::store_checkpoints(&db, &checkpoints)
                .await
                .map_err(|e| ledger_error(&e))
        }
        .boxed()
    }

    fn mark_quiet(
        &self,
        mark: herald_actors::QuietMark,
    ) -> BoxFuture<'static, Result<(), LedgerError>> {
        let (db, member_id) = (self.db.clone(), self.member_id.clone());
        async move {
            let Some(member_id) = member_id else {
                return Ok(());
            };
            super::leases::mark_quiet(&db, &member_id, &mark)
                .await
                .map_err(|e| ledger_error(&e))
        }
        .boxed()
    }

    /// One query over `_id` for the whole batch.
    fn recorded(
        &self,
        delivery_ids: Vec<String>,
    ) -> BoxFuture<'static, Result<HashSet<String>, LedgerError>> {
        let deliveries = self.deliveries.clone();
        async move {
            let found: Vec<Document> = deliveries
                .find(doc! {"_id": {"$in": delivery_ids}})
                .projection(doc! {"_id": 1})
                .await
                .map_err(|e| ledger_error(&e))?
                .try_collect()
                .await
                .map_err(|e| ledger_error(&e))?;
            Ok(found
                .iter()
                .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
                .collect())
        }
        .boxed()
    }

    /// One cursor, sorted on the pending deliveries' index (`herald_pending_due`) and read
    /// in batches of `batch_size`; a document lacking what a retry needs (no payload) is
    /// skipped and stays pending for an operator to look at.
    fn pending_for(
        &self,
        webhook_id: &str,
        due_before: SystemTime,
        batch_size: usize,
    ) -> BoxFuture<'static, Result<PendingStream, LedgerError>> {
        let (db, deliveries) = (self.db.clone(), self.deliveries.clone());
        let filter = doc! {
            "status": "pending",
            "webhook_id": webhook_id,
            "next_attempt_at": {"$lt": bson_date(due_before)},
        };
        let page = batch_size.max(1);
        async move {
            let cursor = deliveries
                .find(filter)
                .sort(doc! {"next_attempt_at": 1, "_id": 1})
                // The log grows with every attempt; a retry does not need it.
                .projection(doc! {"attempt_log": 0})
                .batch_size(batch_size.clamp(1, u32::MAX as usize) as u32)
                .await
                .map_err(|e| ledger_error(&e))?;
            let stream = cursor
                .map_err(|e| ledger_error(&e))
                .try_chunks(page)
                .map_err(|e| e.1)
                .and_then(move |docs| {
                    let db = db.clone();
                    async move { pending_page(&db, docs).await.map_err(|e| ledger_error(&e)) }
                })
                .map_ok(|page| futures::stream::iter(page.into_iter().map(Ok)))
                .try_flatten();
            Ok(stream.boxed())
        }
        .boxed()
    }

    fn with_pending(
        &self,
        webhook_ids: Vec<Arc<str>>,
    ) -> BoxFuture<'static, Result<HashSet<String>, LedgerError>> {
        let deliveries = self.deliveries.clone();
        async move {
            let mut found = HashSet::new();
            // One `distinct` per slice, on the pending deliveries' index: a few seeks per
            // webhook, however many deliveries are pending.
            for slice in webhook_ids.chunks(WEBHOOKS_PER_QUESTION) {
                let ids: Vec<&str> = slice.iter().map(|id| &**id).collect();
                let named = deliveries
                    .distinct(
                        "webhook_id",
                        doc! {"status": "pending", "webhook_id": {"$in": ids}},
                    )
                    .await
                    .map_err(|e| ledger_error(&e))?;
                found.extend(
                    named
                        .into_iter()
                        .filter_map(|id| id.as_str().map(str::to_owned)),
                );
            }
            Ok(found)
        }
        .boxed()
    }

    fn next_due_for(
        &self,
        webhook_id: &str,
        after: SystemTime,
    ) -> BoxFuture<'static, Result<Option<SystemTime>, LedgerError>> {
        let deliveries = self.deliveries.clone();
        let filter = doc! {
            "status": "pending",
            "webhook_id": webhook_id,
            "next_attempt_at": {"$gte": bson_date(after)},
        };
        async move {
            let next = deliveries
                .find_one(filter)
                .sort(doc! {"next_attempt_at": 1})
                .projection(doc! {"_id": 0, "next_attempt_at": 1})
                .await
                .map_err(|e| ledger_error(&e))?;
            Ok(next.and_then(|d| {
                d.get_datetime("next_attempt_at")
                    .ok()
                    .map(|t| t.to_system_time())
            }))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use herald_actors::DeliveryStatus;

    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// The stored document of `r`'s first record, with `updated_at` (the time of writing)
    /// checked to be a date and taken out.
    fn stored(r: &DeliveryRecord) -> Document {
        let mut d = insert_doc(r).to_document().unwrap();
        assert!(
            matches!(d.remove("updated_at"), Some(Bson::DateTime(_))),
            "updated_at is a date"
        );
        d
    }

    #[test]
    fn a_first_record_is_stored_with_every_field_in_order() {
        let pending = DeliveryRecord {
            delivery_id: "evt_1:wh_1".into(),
            event_id: "evt_1".into(),
            webhook_id: "wh_1".into(),
            event_type: "batch.completed".into(),
            task_id: Some("task_9".into()),
            status: DeliveryStatus::Pending,
            attempts: 1,
            next_attempt_at: Some(at(9_000)),
            last_status_code: Some(503),
            last_error: Some("HTTP 503".into()),
            new_attempts: vec![AttemptLogEntry {
                at: at(1_000),
                status_code: Some(503),
                error: Some("HTTP 503".into()),
                duration_ms: 12,
            }],
            first_write: true,
            created_at: at(500),
            completed_at: None,
            payload: Some(Bytes::from_static(b"{}")),
        };
        let expected = doc! {
            "_id": "evt_1:wh_1",
            "event_id": "evt_1",
            "webhook_id": "wh_1",
            "event_type": "batch.completed",
            "attempts": 1_i64,
            "attempt_log": [{
                "at": bson_date(at(1_000)),
                "duration_ms": 12_i64,
                "status_code": 503,
                "error": "HTTP 503",
            }],
            "created_at": bson_date(at(500)),
            "status": "pending",
            "next_attempt_at": bson_date(at(9_000)),
            "last_status_code": 503,
            "last_error": "HTTP 503",
            "completed_at": Bson::Null,
            "task_id": "task_9",
            "payload_id": "evt_1",
        };
        let got = stored(&pending);
        assert_eq!(got, expected);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "fields in order"
        );
    }

    /// `insert_doc` writes by hand what `log_entry` and `state_fields` give later records:
    /// a field added to those and not to it (or the other way round) fails here.
    #[test]
    fn a_first_record_holds_what_later_records_set_in_the_same_order() {
        let mut failing = herald_actors::fakes::succeeded_record("evt_3", "wh_3", "object.created");
        failing.status = herald_actors::DeliveryStatus::Pending;
        failing.next_attempt_at = Some(at(5_000));
        failing.last_status_code = Some(500);
        failing.last_error = Some("HTTP 500".into());
        failing.completed_at = None;
        failing.new_attempts[0].error = Some("HTTP 500".into());
        for r in [
            herald_actors::fakes::succeeded_record("evt_4", "wh_4", "object.created"),
            failing,
        ] {
            let first = insert_doc(&r).to_document().unwrap();
            let log: Vec<Bson> = r
                .new_attempts
                .iter()
                .map(|e| Bson::Document(log_entry(e)))
                .collect();
            assert_eq!(first.get_array("attempt_log").unwrap(), &log);
            let state = state_fields(&r);
            let tail: Vec<(&String, &Bson)> = first
                .iter()
                .skip_while(|(k, _)| k.as_str() != "status")
                .take(state.len())
                .collect();
            assert_eq!(
                tail.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
                state.keys().collect::<Vec<_>>(),
                "the state fields, in order"
            );
            for ((key, got), want) in tail.into_iter().zip(state.values()) {
                if key != "updated_at" {
                    assert_eq!(got, want, "{key}");
                }
            }
        }
    }

    #[test]
    fn a_first_record_that_succeeded_has_nulls_and_no_task_or_payload() {
        let mut ok = herald_actors::fakes::succeeded_record("evt_2", "wh_2", "object.created");
        ok.created_at = at(2_000);
        ok.completed_at = Some(at(2_010));
        ok.new_attempts[0].at = at(2_001);
        let expected = doc! {
            "_id": "evt_2:wh_2",
            "event_id": "evt_2",
            "webhook_id": "wh_2",
            "event_type": "object.created",
            "attempts": 1_i64,
            "attempt_log": [{"at": bson_date(at(2_001)), "duration_ms": 1_i64, "status_code": 200}],
            "created_at": bson_date(at(2_000)),
            "status": "succeeded",
            "next_attempt_at": Bson::Null,
            "last_status_code": 200,
            "last_error": Bson::Null,
            "completed_at": bson_date(at(2_010)),
        };
        assert_eq!(stored(&ok), expected);
    }
}
