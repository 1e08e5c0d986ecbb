//! Applying a verified provider event to `objects`, once.
//!
//! **Atomicity: one multi-document transaction.** The objects' deletes or updates, the
//! `object.deleted` / `object.updated` outbox documents and the `inbound_events` record
//! with the outcome commit together or not at all. So a crash before the commit leaves
//! nothing (the provider's retry applies the event from scratch) and a crash after it
//! leaves everything (the retry finds the record and answers the recorded outcome): never
//! applied twice, never lost, and subscribers never hear of a deletion that did not happen.
//!
//! **Concurrency.** The same event delivered many times at once: each attempt first looks
//! for the record (the common redelivery costs one read), then runs the transaction. Two
//! transactions racing on the same event collide on the record's `_id` (and on the
//! objects): the loser sees a write conflict (`TransientTransactionError`) or a duplicate
//! key, aborts, and on its next turn finds the winner's record and answers its outcome.
//!
//! **Round trips** for a fresh event: record lookup, find the asset's objects, delete or
//! update them (one `delete_many` / `update_many`), insert the outbox documents (one
//! `insert_many`), insert the record, commit — six, whatever the number of objects.
//!
//! Outbox ids are deterministic (`evt_<provider>_<event id>_<object id>`), so even a
//! record lost by hand cannot publish a second, different event for the same change.

use std::time::Duration;

use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::error::{Result, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};
use mongodb::{ClientSession, Database};
use serde_json::Value;

use super::{filters, Change, Connection, InboundEvent, Outcome};
use crate::store::{self, id_string, inbound_events, is_duplicate_key, objects};

/// Transactions tried before giving up with the last error (a 503: the provider retries).
const MAX_ATTEMPTS: u32 = 8;
/// Commits retried when the server cannot say whether one happened.
const MAX_COMMIT_RETRIES: u32 = 3;

/// Applies `event` for `connection` once, and returns the outcome of its first
/// application (see the module docs).
pub async fn apply(
    db: &Database,
    provider: &str,
    connection: &Connection,
    event: &InboundEvent,
) -> Result<Outcome> {
    let Some(event_id) = event.id.as_deref() else {
        // Nothing to apply and nothing to deduplicate by.
        return Ok(Outcome::ignored());
    };
    let record_id = format!("{}:{event_id}", connection.id);
    let mut attempt = 0;
    loop {
        attempt += 1;
        if let Some(found) = inbound_events::find(db, &record_id).await? {
            return Ok(recorded_outcome(&found));
        }
        let record = |outcome: &Outcome, asset_id: Option<&str>| {
            doc! {
                "_id": &record_id,
                "connection_id": &connection.id,
                "provider": provider,
                "event_id": event_id,
                "type": &event.event_type,
                "asset_id": asset_id.map(Bson::from).unwrap_or(Bson::Null),
                "received_at": DateTime::now(),
                "outcome": outcome.to_doc(),
            }
        };
        let result = match &event.change {
            // A receipt, for the audit trail; nothing else changes, so no transaction.
            Change::Ignored => {
                let outcome = Outcome::ignored();
                inbound_events::insert_receipt(db, record(&outcome, None))
                    .await
                    .map(|()| outcome)
            }
            Change::AssetDeleted { asset_id } => {
                let plan = Plan {
                    provider,
                    connection,
                    event_id,
                    asset_id,
                    update: None,
                    changed_at: None,
                };
                in_transaction(db, &plan, |outcome| record(outcome, Some(asset_id))).await
            }
            Change::AssetUpdated {
                asset_id,
                asset,
                metadata,
                changed_at,
            } => {
                let plan = Plan {
                    provider,
                    connection,
                    event_id,
                    asset_id,
                    update: Some((asset, metadata)),
                    changed_at: *changed_at,
                };
                in_transaction(db, &plan, |outcome| record(outcome, Some(asset_id))).await
            }
        };
        match result {
            Ok(outcome) => return Ok(outcome),
            // Lost a race, or the server asks for a retry: look for the winner's record.
            Err(e)
                if attempt < MAX_ATTEMPTS
                    && (is_duplicate_key(&e) || e.contains_label(TRANSIENT_TRANSACTION_ERROR)) =>
            {
                let jitter = rand::random_range(5..=25 * u64::from(attempt));
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// What one transaction works on.
struct Plan<'a> {
    provider: &'a str,
    connection: &'a Connection,
    event_id: &'a str,
    asset_id: &'a str,
    /// For an update: the asset the filters are evaluated on, and the new metadata.
    /// `None`: the asset was deleted.
    update: Option<(&'a Value, &'a Value)>,
    /// For an update: when the provider made it (see [`order`]).
    changed_at: Option<DateTime>,
}

/// Runs the change, the outbox inserts and the record in one transaction; `record` builds
/// the `inbound_events` document from the outcome.
async fn in_transaction(
    db: &Database,
    plan: &Plan<'_>,
    record: impl Fn(&Outcome) -> Document,
) -> Result<Outcome> {
    let mut session = db.client().start_session().await?;
    session.start_transaction().await?;
    let outcome = match run(db, &mut session, plan, &record).await {
        Ok(outcome) => outcome,
        Err(e) => {
            // The server may have aborted already; a failed abort changes nothing.
            let _ = session.abort_transaction().await;
            return Err(e);
        }
    };
    let mut retries = 0;
    loop {
        match session.commit_transaction().await {
            Ok(()) => return Ok(outcome),
            Err(e)
                if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
                    && retries < MAX_COMMIT_RETRIES =>
            {
                retries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn run(
    db: &Database,
    session: &mut ClientSession,
    plan: &Plan<'_>,
    record: &impl Fn(&Outcome) -> Document,
) -> Result<Outcome> {
    let found = objects::of_asset(db, session, &plan.connection.id, plan.asset_id).await?;
    let (found, stale) = order(found, plan.changed_at);
    if found.is_empty() && stale > 0 {
        // Every object was updated from a later change already: this one changes nothing.
        let outcome = Outcome::handled("stale", 0);
        inbound_events::insert_in(db, session, record(&outcome)).await?;
        return Ok(outcome);
    }

    let now = DateTime::now();
    let (action, affected, event_type, metadata) = match plan.update {
        Some((asset, metadata)) if filters::matches(&plan.connection.metadata_filters, asset) => {
            // Objects already carrying this metadata are left alone: no write, no event.
            let changed: Vec<&Document> = found
                .iter()
                .filter(|o| current_metadata(o) != *metadata)
                .collect();
            ("updated", changed, "object.updated", Some(metadata))
        }
        // Deleted, or changed so that it no longer belongs: its objects go.
        _ => ("deleted", found.iter().collect(), "object.deleted", None),
    };

    if let (Some(at), Some(_)) = (plan.changed_at, metadata) {
        // Every object this change is applied to remembers it, changed or not, so that an
        // older change arriving later is recognised as such.
        let ids: Vec<Bson> = found.iter().filter_map(|o| o.get("_id").cloned()).collect();
        objects::mark_changed_at(db, session, &ids, at).await?;
    }
    if !affected.is_empty() {
        let ids: Vec<Bson> = affected
            .iter()
            .filter_map(|o| o.get("_id").cloned())
            .collect();
        match metadata {
            Some(metadata) => {
                let metadata = mongodb::bson::to_bson(metadata).unwrap_or(Bson::Null);
                objects::set_metadata(db, session, &ids, metadata, now).await?;
            }
            None => objects::delete(db, session, &ids).await?,
        }
        let events: Vec<Document> = affected
            .iter()
            .map(|object| outbox_event(plan, object, event_type, metadata, now))
            .collect();
        store::events::outbox::publish_in(db, session, events).await?;
    }

    let outcome = Outcome::handled(action, affected.len() as u64);
    inbound_events::insert_in(db, session, record(&outcome)).await?;
    Ok(outcome)
}

/// Provider order: of the asset's objects, those an update changed at `changed_at` may
/// touch — not yet updated from a provider change, or from one no later than this — and
/// how many were updated from a later one (left alone). Without a time, all of them.
fn order(found: Vec<Document>, changed_at: Option<DateTime>) -> (Vec<Document>, usize) {
    let Some(at) = changed_at else {
        return (found, 0);
    };
    let (fresh, stale): (Vec<Document>, Vec<Document>) = found
        .into_iter()
        .partition(|object| objects::changed_at(object).is_none_or(|applied| applied <= at));
    (fresh, stale.len())
}

/// An object's metadata as JSON (`{}` when it has none), to compare with the snapshot.
fn current_metadata(object: &Document) -> Value {
    match object.get("metadata") {
        Some(Bson::Document(m)) => Bson::Document(m.clone()).into_relaxed_extjson(),
        _ => Value::Object(Default::default()),
    }
}

/// `object.deleted` / `object.updated` for one object, in the outbox's §2 shape.
fn outbox_event(
    plan: &Plan<'_>,
    object: &Document,
    event_type: &str,
    metadata: Option<&Value>,
    now: DateTime,
) -> Document {
    // The `_id` as the string events carry (an ObjectId as its hex).
    let id = id_string(object.get("_id"));
    let bucket_id = object
        .get_str("bucket_id")
        .unwrap_or(&plan.connection.bucket_id);
    let mut data = doc! {
        "bucket_id": bucket_id,
        "object_id": &id,
        "asset_id": plan.asset_id,
        "connection_id": &plan.connection.id,
    };
    if let Some(metadata) = metadata {
        data.insert(
            "metadata",
            mongodb::bson::to_bson(metadata).unwrap_or(Bson::Null),
        );
    }
    let mut event = doc! {
        "_id": format!("evt_{}_{}_{id}", plan.provider, plan.event_id),
        "event_type": event_type,
        "occurred_at": now,
        "subject": {"type": "object", "id": &id},
        "data": data,
    };
    // A namespaced connection's events are its tenant's.
    if let Some(namespace_id) = &plan.connection.namespace_id {
        event.insert("namespace_id", namespace_id);
    }
    event
}

fn recorded_outcome(record: &Document) -> Outcome {
    match record.get_document("outcome") {
        Ok(outcome) => Outcome::from_doc(outcome),
        Err(_) => Outcome::from_doc(&Document::new()),
    }
}
