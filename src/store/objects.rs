//! `objects`, as inbound provider webhooks change them: the objects synced from one
//! provider asset, found by `{connection_id, source.asset_id}`, updated or deleted inside
//! the transaction that records the provider event. (An insert into `objects` publishes
//! `object.created`; that is the event feed's business, [`super::events`].)

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::{ClientSession, Collection, Database, IndexModel};

use super::OBJECTS;

fn collection(db: &Database) -> Collection<Document> {
    db.collection(OBJECTS)
}

/// Creates the index inbound webhooks query `objects` by (idempotent).
pub async fn ensure_indexes(db: &Database) -> mongodb::error::Result<()> {
    collection(db)
        .create_index(
            IndexModel::builder()
                .keys(doc! {"connection_id": 1, "source.asset_id": 1})
                .options(IndexOptions::builder().build())
                .build(),
        )
        .await?;
    Ok(())
}

/// The objects of `connection_id` synced from `asset_id` (`_id`, `bucket_id`, `metadata`),
/// read in `session`.
pub async fn of_asset(
    db: &Database,
    session: &mut ClientSession,
    connection_id: &str,
    asset_id: &str,
) -> mongodb::error::Result<Vec<Document>> {
    let mut cursor = collection(db)
        .find(doc! {"connection_id": connection_id, "source.asset_id": asset_id})
        .projection(doc! {"bucket_id": 1, "metadata": 1, CHANGED_AT: 1})
        .session(&mut *session)
        .await?;
    cursor.stream(&mut *session).try_collect().await
}

/// Where an object synced from a provider keeps the time of the provider change last
/// applied to it (`source.changed_at`): inbound updates are applied in provider order.
pub const CHANGED_AT: &str = "source.changed_at";

/// The provider time of the last change applied to `object` (read with [`CHANGED_AT`]).
pub fn changed_at(object: &Document) -> Option<DateTime> {
    object
        .get_document("source")
        .ok()
        .and_then(|s| s.get_datetime("changed_at").ok())
        .copied()
}

/// Records that the objects `ids` were brought up to the provider change made `at` —
/// conditionally, so that a later time already recorded is never moved back.
pub async fn mark_changed_at(
    db: &Database,
    session: &mut ClientSession,
    ids: &[Bson],
    at: DateTime,
) -> mongodb::error::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    collection(db)
        .update_many(
            doc! {"_id": {"$in": ids}, "$or": [
                {CHANGED_AT: {"$exists": false}},
                {CHANGED_AT: {"$lte": at}},
            ]},
            doc! {"$set": {CHANGED_AT: at}},
        )
        .session(session)
        .await?;
    Ok(())
}

/// Sets `metadata` on the objects `ids`, in `session`.
pub async fn set_metadata(
    db: &Database,
    session: &mut ClientSession,
    ids: &[Bson],
    metadata: Bson,
    now: DateTime,
) -> mongodb::error::Result<()> {
    collection(db)
        .update_many(
            doc! {"_id": {"$in": ids}},
            doc! {"$set": {"metadata": metadata, "updated_at": now}},
        )
        .session(session)
        .await?;
    Ok(())
}

/// Deletes the objects `ids`, in `session`.
pub async fn delete(
    db: &Database,
    session: &mut ClientSession,
    ids: &[Bson],
) -> mongodb::error::Result<()> {
    collection(db)
        .delete_many(doc! {"_id": {"$in": ids}})
        .session(session)
        .await?;
    Ok(())
}
