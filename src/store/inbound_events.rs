//! `inbound_events`: one document per provider event received, with the outcome of its
//! first application — what makes an inbound webhook apply once however often the provider
//! redelivers it. `_id` is `<connection_id>:<provider event id>`; documents expire
//! (`received_at`) after the failed-delivery retention, as a provider retries for hours,
//! not weeks.

use mongodb::bson::{doc, Document};
use mongodb::{ClientSession, Collection, Database};

use super::is_duplicate_key;
use super::retention::{days, Retention, TtlIndex};

/// The collection's name (contract §2).
pub const INBOUND_EVENTS: &str = "inbound_events";

/// Its TTL index's name.
pub const TTL_INBOUND: &str = "herald_ttl_inbound_events";

fn collection(db: &Database) -> Collection<Document> {
    db.collection(INBOUND_EVENTS)
}

/// The record of event `id`, if it was applied already.
pub async fn find(db: &Database, id: &str) -> mongodb::error::Result<Option<Document>> {
    collection(db).find_one(doc! {"_id": id}).await
}

/// Records an event that changed nothing (a receipt); one recorded already stands.
pub async fn insert_receipt(db: &Database, record: Document) -> mongodb::error::Result<()> {
    match collection(db).insert_one(record).await {
        Ok(_) => Ok(()),
        Err(e) if is_duplicate_key(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Records an applied event inside `session`'s transaction; a record already there is a
/// duplicate-key error (the transaction lost a race).
pub async fn insert_in(
    db: &Database,
    session: &mut ClientSession,
    record: Document,
) -> mongodb::error::Result<()> {
    collection(db).insert_one(record).session(session).await?;
    Ok(())
}

/// The TTL index of `inbound_events` under `retention`: past the failed-delivery
/// retention, the apply-once record is no longer needed.
pub fn ttl_index(retention: Retention) -> TtlIndex {
    TtlIndex {
        collection: INBOUND_EVENTS,
        name: TTL_INBOUND,
        field: "received_at",
        expire_after: days(retention.failed_days),
        partial: None,
    }
}
