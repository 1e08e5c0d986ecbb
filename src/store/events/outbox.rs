//! Publishing: inserting into the `events` outbox, where the feed's change stream picks
//! the event up. Idempotent on `_id`: an event published twice meets a duplicate key, and
//! only the first insert is ever delivered.

use mongodb::bson::Document;
use mongodb::{ClientSession, Database};

use crate::store::{is_duplicate_key, EVENTS};

/// Publishes one event: inserts it into the outbox, where the change stream picks it up.
/// `false` when its `_id` was published already: the first insert stands, and is the one
/// delivered.
pub async fn publish(db: &Database, event: Document) -> mongodb::error::Result<bool> {
    match db.collection::<Document>(EVENTS).insert_one(event).await {
        Ok(_) => Ok(true),
        Err(e) if is_duplicate_key(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Publishes `events` inside `session`'s transaction: they reach the feed only if it
/// commits.
pub async fn publish_in(
    db: &Database,
    session: &mut ClientSession,
    events: Vec<Document>,
) -> mongodb::error::Result<()> {
    db.collection::<Document>(EVENTS)
        .insert_many(events)
        .session(session)
        .await?;
    Ok(())
}

/// One event of the outbox by its event id (the inspector rebuilds a delivery's payload
/// from it). An `ObjectId` `_id` is published as its hex string, so both are looked up.
pub async fn get(db: &Database, id: &str) -> mongodb::error::Result<Option<Document>> {
    let mut ids = vec![mongodb::bson::Bson::String(id.to_owned())];
    if let Ok(oid) = mongodb::bson::oid::ObjectId::parse_str(id) {
        ids.push(mongodb::bson::Bson::ObjectId(oid));
    }
    db.collection::<Document>(EVENTS)
        .find_one(mongodb::bson::doc! {"_id": {"$in": ids}})
        .await
}
