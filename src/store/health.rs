//! Endpoint health kept per webhook (`endpoint_health`, one document per webhook, `_id` =
//! `webhook_id`), so that it belongs to the endpoint rather than to the daemon running it:
//! a daemon that starts an endpoint (after a restart, or taking its partition over) goes on
//! from the kept failing streak instead of alerting again, and a daemon that does not run
//! the endpoint shows the kept health in `GET /v1/webhooks/{id}`.
//!
//! The endpoint's owner reads it once when it starts and writes it ([`save_many`], through
//! the ledger port) when its health changes: at once when a line is crossed (failing,
//! recovered, disable requested), else at most every couple of seconds; never per
//! attempt. A write carries `updated_at` and never replaces a copy taken later, so a late
//! write of a daemon that has just lost the endpoint cannot undo its new owner's. The
//! success-rate window is kept too (its minutes with attempts, at most 60), so every
//! daemon shows the same rate. Reads and writes of many endpoints at once share round
//! trips ([`BatchedHealth`]): thousands of endpoints start together when a daemon starts,
//! and the dev server answers about a thousand single round trips a second.
//!
//! Deleting a webhook through the API deletes its document ([`delete`]); one removed
//! otherwise (by hand) leaves it to the TTL index, which drops a document not written for
//! [`TTL_HEALTH_DAYS`] days (an endpoint without attempts that long has no health to show).

mod batched;

pub use batched::BatchedHealth;

use std::collections::HashMap;
use std::time::SystemTime;

use futures::TryStreamExt;
use herald_actors::health::StoredHealth;
use mongodb::bson::{doc, Bson, Document};
use mongodb::{Collection, Database};

use super::retention::{days, TtlIndex};
use super::{bson_date, DUPLICATE_KEY};
use crate::text::one_line;

pub const ENDPOINT_HEALTH: &str = "endpoint_health";

/// Days after its last write that a document is dropped.
pub const TTL_HEALTH_DAYS: u32 = 30;

fn collection(db: &Database) -> Collection<Document> {
    db.collection(ENDPOINT_HEALTH)
}

/// The TTL index on `updated_at`.
pub fn ttl_index() -> TtlIndex {
    TtlIndex {
        collection: ENDPOINT_HEALTH,
        name: "endpoint_health_ttl",
        field: "updated_at",
        expire_after: days(TTL_HEALTH_DAYS),
        partial: None,
    }
}

/// Why a copy of the kept health was not written or read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeepError {
    /// The round trip failed as a whole (the server unreachable, a command refused).
    #[error(transparent)]
    Store(#[from] mongodb::error::Error),
    /// The server refused this copy, or did not make the write durable as asked.
    #[error("the server refused the health write: {0}")]
    Refused(String),
    /// The task that batches reads and writes has stopped (the daemon is shutting down).
    #[error("the health batcher has stopped")]
    Stopped,
}

/// Keeps each `(webhook_id, health)` as the health of its webhook, unless the kept copy was
/// taken later, in one unordered `update` command (one upsert per copy, at most one copy
/// per webhook). Answers each copy's outcome in order; `Err` when the command failed as a
/// whole.
pub async fn save_many(
    db: &Database,
    copies: &[(String, StoredHealth)],
) -> Result<Vec<Result<(), KeepError>>, KeepError> {
    if copies.is_empty() {
        return Ok(Vec::new());
    }
    let statements: Vec<Document> = copies
        .iter()
        .map(|(webhook_id, health)| {
            let updated_at = bson_date(health.updated_at);
            doc! {
                // Not later than this copy, or none kept: said without `$or`, which the
                // dev server answers by scanning the collection, once per statement.
                "q": {
                    "_id": webhook_id,
                    "updated_at": {"$not": {"$gt": updated_at}},
                },
                "u": {"$set": fields(health)},
                "upsert": true,
            }
        })
        .collect();
    let reply = db
        .run_command(doc! {
            "update": ENDPOINT_HEALTH,
            "updates": statements,
            "ordered": false,
        })
        .await?;
    if let Ok(concern) = reply.get_document("writeConcernError") {
        return Err(KeepError::Refused(format!("write concern: {concern}")));
    }
    let mut outcomes: Vec<Result<(), KeepError>> = vec![Ok(()); copies.len()];
    for error in reply.get_array("writeErrors").into_iter().flatten() {
        let Some(error) = error.as_document() else {
            continue;
        };
        let index = number(error, "index").and_then(|i| usize::try_from(i).ok());
        let code = number(error, "code");
        match index.and_then(|i| outcomes.get_mut(i)) {
            // The filter missed an existing document: it holds a later copy, which stays.
            Some(_) if code == Some(i64::from(DUPLICATE_KEY)) => {}
            Some(outcome) => {
                let message = error.get_str("errmsg").unwrap_or("no message");
                *outcome = Err(KeepError::Refused(one_line(message)));
            }
            // An error the reply does not place: no copy can be trusted to be written.
            None => return Err(KeepError::Refused(format!("update: {error}"))),
        }
    }
    Ok(outcomes)
}

/// The kept health of each of `webhook_ids` that has any, by id, in one query.
pub async fn get_many(
    db: &Database,
    webhook_ids: &[&str],
) -> mongodb::error::Result<HashMap<String, StoredHealth>> {
    if webhook_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let found: Vec<Document> = collection(db)
        .find(doc! {"_id": {"$in": webhook_ids}})
        // All of them in the first reply: one round trip.
        .batch_size(u32::try_from(webhook_ids.len()).unwrap_or(u32::MAX))
        .await?
        .try_collect()
        .await?;
    Ok(found
        .iter()
        .filter_map(|d| Some((d.get_str("_id").ok()?.to_owned(), from_doc(d))))
        .collect())
}

/// The kept health of `webhook_id`, if any.
pub async fn get(db: &Database, webhook_id: &str) -> mongodb::error::Result<Option<StoredHealth>> {
    let found = collection(db).find_one(doc! {"_id": webhook_id}).await?;
    Ok(found.as_ref().map(from_doc))
}

/// Forgets the kept health of a deleted webhook.
pub async fn delete(db: &Database, webhook_id: &str) -> mongodb::error::Result<()> {
    collection(db)
        .delete_one(doc! {"_id": webhook_id})
        .await
        .map(|_| ())
}

fn opt_date(t: Option<SystemTime>) -> Bson {
    t.map_or(Bson::Null, |t| Bson::DateTime(bson_date(t)))
}

fn fields(h: &StoredHealth) -> Document {
    let window: Vec<Bson> = h
        .buckets
        .iter()
        .map(|&(minute, ok, all)| {
            Bson::Document(doc! {
                "minute": minute as i64,
                "successes": i64::from(ok),
                "attempts": i64::from(all),
            })
        })
        .collect();
    doc! {
        "consecutive_failures": i64::from(h.consecutive_failures),
        "streak_since": opt_date(h.streak_since),
        "failing": h.failing,
        "disable_requested": h.disable_requested,
        "last_success_at": opt_date(h.last_success_at),
        "last_failure_at": opt_date(h.last_failure_at),
        "last_status_code": h.last_status_code.map_or(Bson::Null, |c| Bson::Int32(i32::from(c))),
        "last_error": h.last_error.clone().map_or(Bson::Null, Bson::String),
        "window": window,
        "updated_at": bson_date(h.updated_at),
    }
}

/// A number however it was stored (int32, int64 or double); `None` if it is none.
fn number(d: &Document, key: &str) -> Option<i64> {
    match d.get(key)? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(f) if f.is_finite() => Some(*f as i64),
        _ => None,
    }
}

fn count(d: &Document, key: &str) -> u32 {
    number(d, key).map_or(0, |n| n.clamp(0, i64::from(u32::MAX)) as u32)
}

fn date(d: &Document, key: &str) -> Option<SystemTime> {
    d.get_datetime(key).ok().map(|t| t.to_system_time())
}

/// The kept health a document describes. A field edited by hand into nonsense reads as
/// absent (zero, `false`, `null`) rather than failing the endpoint's start.
pub fn from_doc(d: &Document) -> StoredHealth {
    let buckets = d
        .get_array("window")
        .map(|window| {
            window
                .iter()
                .filter_map(Bson::as_document)
                .filter_map(|b| {
                    let minute = u64::try_from(number(b, "minute")?).ok()?;
                    Some((minute, count(b, "successes"), count(b, "attempts")))
                })
                .collect()
        })
        .unwrap_or_default();
    StoredHealth {
        consecutive_failures: count(d, "consecutive_failures"),
        streak_since: date(d, "streak_since"),
        failing: d.get_bool("failing").unwrap_or(false),
        disable_requested: d.get_bool("disable_requested").unwrap_or(false),
        last_success_at: date(d, "last_success_at"),
        last_failure_at: date(d, "last_failure_at"),
        last_status_code: number(d, "last_status_code").and_then(|c| u16::try_from(c).ok()),
        last_error: d.get_str("last_error").ok().map(str::to_owned),
        buckets,
        updated_at: date(d, "updated_at").unwrap_or(SystemTime::UNIX_EPOCH),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_kept_copy_reads_back_as_written() {
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + s);
        let health = StoredHealth {
            consecutive_failures: 42,
            streak_since: Some(at(1)),
            failing: true,
            disable_requested: false,
            last_success_at: None,
            last_failure_at: Some(at(2)),
            last_status_code: Some(503),
            last_error: Some("connection refused".into()),
            buckets: vec![(30_000_000, 1, 5), (30_000_001, 0, 7)],
            updated_at: at(3),
        };
        let mut document = fields(&health);
        document.insert("_id", "wh_1");
        assert_eq!(from_doc(&document), health);
    }

    #[test]
    fn nonsense_reads_as_absent() {
        let document = doc! {
            "_id": "wh_1",
            "consecutive_failures": "many",
            "failing": 1,
            "last_status_code": 70_000,
            "window": [{"minute": -1, "attempts": 3}, "x", {"minute": 5.0, "attempts": -2}],
        };
        let health = from_doc(&document);
        assert_eq!(health.consecutive_failures, 0);
        assert!(!health.failing);
        assert_eq!(health.last_status_code, None);
        assert_eq!(health.buckets, vec![(5, 0, 0)]);
    }
}
