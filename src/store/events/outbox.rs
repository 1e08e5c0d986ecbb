//! Publishing: inserting into the `events` outbox, where the feed's change stream picks
//! the event up. Idempotent on `_id`: an event published twice meets a duplicate key, and
//! only the first insert is ever delivered.
//!
//! Many events go in one unordered `insert_many` ([`publish_many`]): a single-document
//! write is a round trip the dev server takes about a thousand of a second, while one
//! write of many documents costs little more than one of them. Unordered, a duplicate
//! fails only its own document; the server reports it by index and the rest are written.

use mongodb::bson::Document;
use mongodb::error::ErrorKind;
use mongodb::{ClientSession, Database};

use crate::store::{is_duplicate_key, DUPLICATE_KEY, EVENTS};

/// What became of one document of [`publish_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Inserted: the change stream will carry it.
    New,
    /// Its `_id` was published already: the first insert stands and is the one delivered.
    Duplicate,
    /// The server refused this document for another reason (its error, one line).
    Refused(String),
}

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

/// Publishes `events` in one unordered `insert_many`: what became of each, in order. `Err`
/// when the write failed as a whole (the server unreachable, a write-concern error), when
/// nothing can be said of any one document; publishing again is safe, as a document that
/// did go in meets its duplicate.
pub async fn publish_many(
    db: &Database,
    events: Vec<Document>,
) -> mongodb::error::Result<Vec<Published>> {
    let count = events.len();
    if count == 0 {
        return Ok(Vec::new());
    }
    let result = db
        .collection::<Document>(EVENTS)
        .insert_many(events)
        .ordered(false)
        .await;
    let mut outcomes = vec![Published::New; count];
    match result {
        Ok(_) => Ok(outcomes),
        Err(e) => match &*e.kind {
            ErrorKind::InsertMany(failure) if failure.write_concern_error.is_none() => {
                for error in failure.write_errors.iter().flatten() {
                    if let Some(outcome) = outcomes.get_mut(error.index) {
                        *outcome = if error.code == DUPLICATE_KEY {
                            Published::Duplicate
                        } else {
                            Published::Refused(crate::text::one_line(&error.message))
                        };
                    }
                }
                Ok(outcomes)
            }
            _ => Err(e),
        },
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
