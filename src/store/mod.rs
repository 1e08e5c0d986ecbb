//! MongoDB: the one door to it. Each collection has its module, and every query, index
//! and TTL of that collection lives there: the outbox feed ([`events`]), the webhook
//! watcher ([`webhooks`]), the delivery ledger and what the API reads of it
//! ([`deliveries`]), provider [`connections`], the [`objects`] inbound webhooks change and
//! their apply-once records ([`inbound_events`]), the cluster's members and partition
//! leases as the API reads them ([`cluster`]), the endpoint health each webhook's owner
//! keeps so that every daemon knows it ([`health`]), each event's body stored once for the
//! deliveries that may send it again ([`payloads`]). Every list route pages the same way
//! ([`page`]); requests that arrive together share one round trip ([`batcher`]).
//!
//! Collection names are part of the contract (`events`, `objects`, `webhooks`,
//! `deliveries`, `connections`, `inbound_events`); `herald_members` and `herald_partitions`
//! hold the cluster's members and partition leases with their checkpoints ([`leases`]);
//! `endpoint_health` holds each webhook's endpoint health ([`health`]); `payloads` each
//! event's body, once, for the deliveries that name it ([`payloads`]);
//! `api_keys` holds the API keys, hashed ([`keys`]); `audit_log` the audit trail of API
//! writes ([`audit`]); `herald_state` holds the single checkpoint of versions before
//! partitions (read once, to
//! upgrade in place).
//!
//! Indexes are created at start, idempotently: those every query needs
//! ([`ensure_indexes`]) and the TTL indexes that bound the ledger and the apply-once
//! records and the kept endpoint health ([`ensure_retention`], [`retention`]).

pub mod alerts;
pub mod audit;
pub mod batcher;
pub mod cluster;
pub mod connections;
pub mod deliveries;
pub mod events;
pub mod health;
pub mod inbound_events;
pub mod keys;
pub mod leases;
pub mod objects;
pub mod page;
pub mod payloads;
pub mod position;
pub mod retention;
pub mod webhooks;

use std::time::Duration;

use mongodb::bson::doc;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};

use crate::text::one_line;
pub use deliveries::{OBSOLETE_INDEXES, PENDING_DUE, TTL_FAILED, TTL_SUCCEEDED};
pub use inbound_events::TTL_INBOUND;
pub use retention::Retention;

pub const EVENTS: &str = "events";
pub const OBJECTS: &str = "objects";
pub const WEBHOOKS: &str = "webhooks";
pub const DELIVERIES: &str = "deliveries";
pub const STATE: &str = "herald_state";

/// MongoDB's duplicate-key error code (E11000).
pub const DUPLICATE_KEY: i32 = 11000;

/// Whether a write failed on a unique index (an `_id` or name already taken), however the
/// driver reports it: a single write, an `insert_many`, or a command.
pub fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*error.kind {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(e) => e
            .write_errors
            .iter()
            .flatten()
            .any(|e| e.code == DUPLICATE_KEY),
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// Inserts `documents` unordered; the indexes (in `documents`) of those refused because
/// their `_id` (or another unique key) is taken. Any other failure — another write error,
/// a write-concern error, the round trip itself — is the error.
pub async fn insert_unless_present<T>(
    collection: &mongodb::Collection<T>,
    documents: Vec<T>,
) -> mongodb::error::Result<Vec<usize>>
where
    T: serde::Serialize + Send + Sync,
{
    let count = documents.len();
    let Err(error) = collection.insert_many(documents).ordered(false).await else {
        return Ok(Vec::new());
    };
    match &*error.kind {
        mongodb::error::ErrorKind::InsertMany(failure)
            if failure.write_concern_error.is_none()
                && failure
                    .write_errors
                    .iter()
                    .flatten()
                    .all(|e| e.code == DUPLICATE_KEY && e.index < count) =>
        {
            Ok(failure
                .write_errors
                .iter()
                .flatten()
                .map(|e| e.index)
                .collect())
        }
        _ => Err(error),
    }
}

/// How long a change stream (the event feed, the webhook watcher) waits before it is
/// reopened after the `failures`-th failure in a row: 200 ms doubling to 6.4 s.
pub fn reopen_backoff(failures: u32) -> Duration {
    Duration::from_millis(100 * 2u64.pow(failures.clamp(1, 6)))
}

/// Why herald cannot use MongoDB at start; each says so in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// `--mongodb-uri` cannot be parsed or used.
    #[error("invalid --mongodb-uri: {0}")]
    InvalidUri(String),
    /// The server did not answer a `ping` in time (the URI shown without its password).
    #[error("MongoDB unreachable at {uri}: {reason}")]
    Unreachable { uri: String, reason: String },
}

/// Start-up errors are one-line strings where `serve::run` reports them.
/// Connects and proves the server answers, within `timeout`.
pub async fn connect(
    uri: &str,
    database: &str,
    timeout: Duration,
) -> Result<Database, ConnectError> {
    let invalid = |e: mongodb::error::Error| ConnectError::InvalidUri(one_line(&e.to_string()));
    let mut options = ClientOptions::parse(uri).await.map_err(invalid)?;
    // The URI's own settings win (e.g. `serverSelectionTimeoutMS`).
    options.server_selection_timeout.get_or_insert(timeout);
    options.connect_timeout.get_or_insert(timeout);
    options.app_name = Some("herald".into());
    let client = Client::with_options(options).map_err(invalid)?;
    let db = client.database(database);
    db.run_command(doc! {"ping": 1})
        .await
        .map_err(|e| ConnectError::Unreachable {
            uri: redact_uri(uri),
            reason: one_line(&e.to_string()),
        })?;
    Ok(db)
}

/// Creates the indexes every query needs, on every collection (idempotent); drops those
/// herald no longer uses.
pub async fn ensure_indexes(db: &Database) -> mongodb::error::Result<()> {
    deliveries::ensure_indexes(db).await?;
    objects::ensure_indexes(db).await?;
    webhooks::ensure_indexes(db).await?;
    keys::ensure_indexes(db).await?;
    audit::ensure_indexes(db).await?;
    payloads::ensure_indexes(db).await?;
    Ok(())
}

/// Creates the TTL indexes of `retention` on every collection they bound (idempotent); see
/// [`retention::ensure_ttl`].
pub async fn ensure_retention(db: &Database, retention: Retention) -> mongodb::error::Result<()> {
    let [succeeded, failed] = deliveries::ttl_indexes(retention);
    let ttls = [
        succeeded,
        failed,
        inbound_events::ttl_index(retention),
        audit::ttl_index(retention),
        health::ttl_index(),
    ];
    for ttl in ttls {
        retention::ensure_ttl(db, &ttl).await?;
    }
    Ok(())
}

/// Whether the server answers a `ping` (for `/readyz`).
pub async fn ping(db: &Database) -> bool {
    db.run_command(doc! {"ping": 1}).await.is_ok()
}

/// The URI with any password hidden.
pub fn redact_uri(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &uri[..scheme], &uri[at + 1..])
        }
        _ => uri.to_owned(),
    }
}

/// An `_id` as text: a string as it is, an ObjectId as its hex, anything else as BSON
/// prints it (empty when absent).
pub fn id_string(id: Option<&mongodb::bson::Bson>) -> String {
    use mongodb::bson::Bson;
    match id {
        Some(Bson::String(s)) => s.clone(),
        Some(Bson::ObjectId(oid)) => oid.to_hex(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Milliseconds since the epoch as a BSON date.
pub fn bson_date(t: std::time::SystemTime) -> mongodb::bson::DateTime {
    mongodb::bson::DateTime::from_system_time(t)
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact_uri("mongodb://u:secret@h:1/?x=y"),
            "mongodb://***@h:1/?x=y"
        );
        assert_eq!(super::redact_uri("mongodb://h:1/"), "mongodb://h:1/");
    }
}
