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
        .projection(doc! {"bucket_id": 1, "metadata": 1})
        .session(&mut *session)
        .await?;
    cursor.stream(&mut *session).try_collect().await
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
