//! What the API asks of `deliveries`: listing and reading the ledger, re-queueing a failed
//! delivery, and the count behind `herald_deliveries_pending`. The stored `payload` is never
//! read by a listing, and the attempt log only where it is shown.

use bytes::Bytes;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::options::ReturnDocument;
use mongodb::{Collection, Database};

use crate::store::page::{find_page, Page, PageRequest};
use crate::store::DELIVERIES;

fn collection(db: &Database) -> Collection<Document> {
    db.collection(DELIVERIES)
}

/// What `GET /v1/deliveries` filters on; every field given must match exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub status: Option<String>,
    pub webhook_id: Option<String>,
    pub event_id: Option<String>,
    pub task_id: Option<String>,
    /// Of these webhooks only (a namespace's: deliveries follow their webhook's
    /// namespace); with `webhook_id`, that one if it is among them, else none.
    pub webhook_in: Option<Vec<String>>,
    pub event_type: Option<String>,
    /// Created at or after.
    pub created_after: Option<DateTime>,
    /// Created before.
    pub created_before: Option<DateTime>,
}

impl DeliveryFilter {
    fn to_doc(&self) -> Document {
        let mut filter = Document::new();
        for (field, value) in [
            ("status", &self.status),
            ("webhook_id", &self.webhook_id),
            ("event_id", &self.event_id),
            ("task_id", &self.task_id),
            ("event_type", &self.event_type),
        ] {
            if let Some(value) = value {
                filter.insert(field, value.as_str());
            }
        }
        if let Some(ids) = &self.webhook_in {
            let ids: Vec<&str> = ids
                .iter()
                .map(String::as_str)
                .filter(|id| self.webhook_id.as_deref().is_none_or(|one| one == *id))
                .collect();
            filter.insert("webhook_id", doc! {"$in": ids});
        }
        let mut created = Document::new();
        if let Some(after) = self.created_after {
            created.insert("$gte", after);
        }
        if let Some(before) = self.created_before {
            created.insert("$lt", before);
        }
        if !created.is_empty() {
            filter.insert("created_at", created);
        }
        if let Some(event_id) = &self.event_id {
            // A delivery's `_id` is `<event_id>:<webhook_id>`, so an event's deliveries are
            // one range of the `_id` index (the exact `event_id` match above drops ids of
            // events whose own id continues with a `:`).
            filter.insert(
                "_id",
                doc! {"$gte": format!("{event_id}:"), "$lt": format!("{event_id};")},
            );
        }
        filter
    }
}

/// One page of deliveries matching `filter`, in `_id` order, without payloads (inline ones,
/// from earlier versions) or attempt logs.
pub async fn list(
    db: &Database,
    filter: &DeliveryFilter,
    page: &PageRequest,
) -> mongodb::error::Result<Page<Document>> {
    let projection = doc! {"payload": 0, "attempt_log": 0};
    find_page(&collection(db), filter.to_doc(), Some(projection), page).await
}

/// One delivery with its attempt log, without its payload.
pub async fn get(db: &Database, id: &str) -> mongodb::error::Result<Option<Document>> {
    collection(db)
        .find_one(doc! {"_id": id})
        .projection(doc! {"payload": 0})
        .await
}

/// One delivery with its payload (what a retry replays), without its attempt log.
pub async fn get_replayable(db: &Database, id: &str) -> mongodb::error::Result<Option<Document>> {
    collection(db)
        .find_one(doc! {"_id": id})
        .projection(doc! {"attempt_log": 0})
        .await
}

/// The stored body of one delivery (in `payloads`, or inline as earlier versions kept it),
/// when the ledger still keeps it.
pub async fn payload(db: &Database, id: &str) -> mongodb::error::Result<Option<Bytes>> {
    let found = collection(db)
        .find_one(doc! {"_id": id})
        .projection(doc! {"payload": 1, "payload_id": 1})
        .await?;
    match found {
        Some(delivery) => crate::store::payloads::resolve(db, &delivery).await,
        None => Ok(None),
    }
}

/// Records a delivery that no event routed: a test event for one webhook, `pending` and
/// due now, with the body it will send. `false` when its `_id` exists already.
pub async fn insert_pending(db: &Database, document: Document) -> mongodb::error::Result<bool> {
    match collection(db).insert_one(document).await {
        Ok(_) => Ok(true),
        Err(e) if crate::store::is_duplicate_key(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// One delivery's `_id` and `status`.
pub async fn get_status(db: &Database, id: &str) -> mongodb::error::Result<Option<Document>> {
    collection(db)
        .find_one(doc! {"_id": id})
        .projection(doc! {"status": 1})
        .await
}

/// A failed delivery with a payload (stored once in `payloads`, or inline as earlier
/// versions kept it): only those can be re-queued.
fn replayable_failed() -> Document {
    let mut filter = doc! {"status": "failed"};
    filter.extend(crate::store::payloads::has_payload());
    filter
}

/// What a re-queue sets: `pending`, due `now`, no longer completed.
fn requeued(now: DateTime) -> Document {
    doc! {
        "status": "pending",
        "next_attempt_at": now,
        "completed_at": Bson::Null,
        "updated_at": now,
    }
}

/// Turns delivery `id` from `failed` into `pending`, due `now` — only if it is still
/// `failed` and has a payload, so that concurrent requests queue it once. The updated
/// document (without its attempt log), or `None` when nothing matched.
pub async fn requeue(
    db: &Database,
    id: &str,
    now: DateTime,
) -> mongodb::error::Result<Option<Document>> {
    let mut filter = replayable_failed();
    filter.insert("_id", id);
    collection(db)
        .find_one_and_update(filter, doc! {"$set": requeued(now)})
        .projection(doc! {"attempt_log": 0})
        .return_document(ReturnDocument::After)
        .await
}

/// Undoes [`requeue`] for a delivery that turned out not to be replayable: `failed` again,
/// completed `now`.
pub async fn unqueue(db: &Database, id: &str, now: DateTime) -> mongodb::error::Result<()> {
    collection(db)
        .update_one(
            doc! {"_id": id, "status": "pending"},
            doc! {"$set": {"status": "failed", "next_attempt_at": Bson::Null, "completed_at": now}},
        )
        .await?;
    Ok(())
}

/// One page of the ids of `webhook_id`'s failed, replayable deliveries created at or after
/// `since` (what `recover` re-queues).
pub async fn failed_since(
    db: &Database,
    webhook_id: &str,
    since: DateTime,
    page: &PageRequest,
) -> mongodb::error::Result<Page<String>> {
    let mut filter = replayable_failed();
    filter.insert("webhook_id", webhook_id);
    filter.insert("created_at", doc! {"$gte": since});
    let found = find_page(&collection(db), filter, Some(doc! {"_id": 1}), page).await?;
    Ok(found.map(|d| d.get_str("_id").unwrap_or_default().to_owned()))
}

/// What one page of a bulk re-queue did: the deliveries this call turned from `failed`
/// into `pending` (without their attempt log), and the request for the next page.
#[derive(Debug)]
pub struct Requeued {
    pub documents: Vec<Document>,
    pub next: Option<PageRequest>,
}

/// [`requeue`] for one page of `webhook_id`'s failed, replayable deliveries created at or
/// after `since`, in three statements however long the page: the ids, one conditional
/// update of them all, and a read of those this call updated. Each update carries a token
/// of this call (`requeued_by`), so that of two concurrent calls each hands over only
/// what it turned `pending` itself.
pub async fn requeue_page(
    db: &Database,
    webhook_id: &str,
    since: DateTime,
    page: &PageRequest,
    now: DateTime,
) -> mongodb::error::Result<Requeued> {
    let ids = failed_since(db, webhook_id, since, page).await?;
    let next = page.next(&ids);
    let ids: Vec<&str> = ids
        .items
        .iter()
        .map(String::as_str)
        .filter(|id| !id.is_empty())
        .collect();
    if ids.is_empty() {
        return Ok(Requeued {
            documents: Vec::new(),
            next,
        });
    }
    let token = format!("{:016x}", rand::random::<u64>());
    let mut set = requeued(now);
    set.insert("requeued_by", &token);
    let mut filter = replayable_failed();
    filter.insert("_id", doc! {"$in": &ids});
    collection(db)
        .update_many(filter, doc! {"$set": set})
        .await?;
    let documents = collection(db)
        .find(doc! {"_id": {"$in": &ids}, "requeued_by": &token, "status": "pending"})
        .projection(doc! {"attempt_log": 0})
        .await?
        .try_collect()
        .await?;
    Ok(Requeued { documents, next })
}

/// Why [`retire_webhook`] ended a delivery (its `last_error`).
pub const WEBHOOK_DELETED: &str = "webhook deleted";

/// Retires the pending deliveries of a deleted webhook: nothing will ever deliver them, so
/// they become `failed` with `last_error: "webhook deleted"`, completed `now` — and so
/// expire with `--retention-failed-days` — and their stored payload is dropped (a retired
/// delivery cannot be retried: its webhook is gone). Idempotent; how many it retired.
pub async fn retire_webhook(
    db: &Database,
    webhook_id: &str,
    now: DateTime,
) -> mongodb::error::Result<u64> {
    let retired = collection(db)
        .update_many(
            doc! {"webhook_id": webhook_id, "status": "pending"},
            doc! {
                "$set": {
                    "status": "failed",
                    "last_error": WEBHOOK_DELETED,
                    "next_attempt_at": Bson::Null,
                    "completed_at": now,
                    "updated_at": now,
                },
                "$unset": {"payload": ""},
            },
        )
        .await?;
    Ok(retired.modified_count)
}

/// How many deliveries are `pending` (an index count on MongoDB).
pub async fn count_pending(db: Database) -> mongodb::error::Result<u64> {
    collection(&db)
        .count_documents(doc! {"status": "pending"})
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_deliveries_are_one_range_of_the_id_index() {
        let filter = DeliveryFilter {
            status: Some("failed".into()),
            event_id: Some("evt_1".into()),
            ..DeliveryFilter::default()
        };
        assert_eq!(
            filter.to_doc(),
            doc! {"status": "failed", "event_id": "evt_1",
            "_id": {"$gte": "evt_1:", "$lt": "evt_1;"}}
        );
        assert_eq!(DeliveryFilter::default().to_doc(), Document::new());
    }
}
