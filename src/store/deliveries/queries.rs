//! What the API asks of `deliveries`: listing and reading the ledger, re-queueing a failed
//! delivery, and the count behind `herald_deliveries_pending`. The stored `payload` is never
//! read by a listing, and the attempt log only where it is shown.

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
}

impl DeliveryFilter {
    fn to_doc(&self) -> Document {
        let mut filter = Document::new();
        for (field, value) in [
            ("status", &self.status),
            ("webhook_id", &self.webhook_id),
            ("event_id", &self.event_id),
            ("task_id", &self.task_id),
        ] {
            if let Some(value) = value {
                filter.insert(field, value.as_str());
            }
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
        .find_one_and_update(
            filter,
            doc! {"$set": {
                "status": "pending",
                "next_attempt_at": now,
                "completed_at": Bson::Null,
                "updated_at": now,
            }},
        )
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
