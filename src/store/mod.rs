//! MongoDB adapters: the outbox feed, the webhook watcher and the delivery ledger.
//!
//! Collection names are part of the contract (`events`, `objects`, `webhooks`,
//! `deliveries`); `herald_state` holds the feed checkpoint.
//!
//! Indexes are created at start, idempotently: those every query needs
//! ([`ensure_indexes`]) and the TTL indexes that bound the ledger ([`ensure_retention`]).

pub mod alerts;
pub mod deliveries;
pub mod events;
pub mod page;
pub mod webhooks;

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use tracing::{info, warn};

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

/// How long a change stream (the event feed, the webhook watcher) waits before it is
/// reopened after the `failures`-th failure in a row: 200 ms doubling to 6.4 s.
pub fn reopen_backoff(failures: u32) -> Duration {
    Duration::from_millis(100 * 2u64.pow(failures.clamp(1, 6)))
}

/// Connects and proves the server answers, within `timeout`.
pub async fn connect(uri: &str, database: &str, timeout: Duration) -> Result<Database, String> {
    let mut options = ClientOptions::parse(uri)
        .await
        .map_err(|e| format!("invalid --mongodb-uri: {}", one_line(&e.to_string())))?;
    // The URI's own settings win (e.g. `serverSelectionTimeoutMS`).
    options.server_selection_timeout.get_or_insert(timeout);
    options.connect_timeout.get_or_insert(timeout);
    options.app_name = Some("herald".into());
    let client = Client::with_options(options)
        .map_err(|e| format!("invalid --mongodb-uri: {}", one_line(&e.to_string())))?;
    let db = client.database(database);
    db.run_command(doc! {"ping": 1}).await.map_err(|e| {
        format!(
            "MongoDB unreachable at {}: {}",
            redact_uri(uri),
            one_line(&e.to_string())
        )
    })?;
    Ok(db)
}

/// Creates the indexes every query needs (idempotent).
pub async fn ensure_indexes(db: &Database) -> mongodb::error::Result<()> {
    let deliveries = db.collection::<mongodb::bson::Document>(DELIVERIES);
    let models = [
        // An endpoint reading its spilled (and, at start-up, pending) deliveries back, due
        // oldest first; `distinct` of the webhooks with pending ones; the pending count.
        doc! {"status": 1, "webhook_id": 1, "next_attempt_at": 1, "_id": 1},
        // A webhook's deliveries in `_id` order: the API's listing and its cursor. An
        // event's deliveries need no index of their own: their `_id`s are one range,
        // `<event_id>:…`, of the `_id` index.
        doc! {"webhook_id": 1, "_id": 1},
    ]
    .into_iter()
    .map(|keys| {
        IndexModel::builder()
            .keys(keys)
            .options(IndexOptions::builder().build())
            .build()
    });
    deliveries.create_indexes(models).await?;
    drop_obsolete(&deliveries).await?;
    Ok(())
}

/// Indexes earlier versions of herald created on `deliveries` and no longer use. Every
/// delivery write pays for every index, so they are dropped at start.
pub const OBSOLETE_INDEXES: [&str; 3] = [
    "status_1_next_attempt_at_1",
    "webhook_id_1_created_at_-1",
    "event_id_1",
];

async fn drop_obsolete(deliveries: &Collection<Document>) -> mongodb::error::Result<()> {
    let names = deliveries.list_index_names().await?;
    for name in OBSOLETE_INDEXES {
        if !names.iter().any(|n| n == name) {
            continue;
        }
        match deliveries.drop_index(name).await {
            Ok(()) => info!(index = name, "dropped an index herald no longer uses"),
            // Dropping an index takes more than the readWrite role: without it herald runs
            // on, and the index keeps costing writes.
            Err(e) => warn!(
                index = name,
                error = %one_line(&e.to_string()),
                "cannot drop an index herald no longer uses; drop it to speed up writes"
            ),
        }
    }
    Ok(())
}

/// How long finished records are kept (`--retention-succeeded-days`,
/// `--retention-failed-days`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub succeeded_days: u32,
    pub failed_days: u32,
}

/// One TTL index herald owns, by name.
struct TtlIndex {
    collection: &'static str,
    name: &'static str,
    field: &'static str,
    expire_after: Duration,
    partial: Option<Document>,
}

/// The TTL index names herald creates (and re-creates when the retention changes).
pub const TTL_SUCCEEDED: &str = "herald_ttl_succeeded";
pub const TTL_FAILED: &str = "herald_ttl_failed";
pub const TTL_INBOUND: &str = "herald_ttl_inbound_events";

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 86_400)
}

impl Retention {
    fn indexes(&self) -> [TtlIndex; 3] {
        [
            // Two TTL indexes on one field, told apart by their partial filters: a delivery
            // expires by its final status, and a pending one (completed_at null) never does.
            TtlIndex {
                collection: DELIVERIES,
                name: TTL_SUCCEEDED,
                field: "completed_at",
                expire_after: days(self.succeeded_days),
                partial: Some(doc! {"status": "succeeded"}),
            },
            TtlIndex {
                collection: DELIVERIES,
                name: TTL_FAILED,
                field: "completed_at",
                expire_after: days(self.failed_days),
                partial: Some(doc! {"status": "failed"}),
            },
            // A provider retries for hours, not weeks: past that, the apply-once record
            // is no longer needed.
            TtlIndex {
                collection: crate::inbound::INBOUND_EVENTS,
                name: TTL_INBOUND,
                field: "received_at",
                expire_after: days(self.failed_days),
                partial: None,
            },
        ]
    }
}

/// Creates the TTL indexes of `retention` (idempotent). An index of the same name with
/// other options (the operator changed a retention flag) is changed in place with `collMod`
/// when only its expiry differs and the server allows it, else dropped and re-created.
pub async fn ensure_retention(db: &Database, retention: Retention) -> mongodb::error::Result<()> {
    for ttl in retention.indexes() {
        let collection = db.collection::<Document>(ttl.collection);
        let existing = match collection.list_indexes().await {
            Ok(cursor) => cursor.try_collect::<Vec<IndexModel>>().await?,
            // The collection does not exist yet: creating the index creates it.
            Err(e) if is_namespace_not_found(&e) => Vec::new(),
            Err(e) => return Err(e),
        };
        let found = existing
            .iter()
            .find(|m| m.options.as_ref().and_then(|o| o.name.as_deref()) == Some(ttl.name));
        let wanted_keys = doc! {ttl.field: 1};
        if let Some(model) = found {
            let options = model.options.clone().unwrap_or_default();
            let same_shape = same_keys(&model.keys, &wanted_keys)
                && options.partial_filter_expression == ttl.partial;
            if same_shape && options.expire_after == Some(ttl.expire_after) {
                continue;
            }
            let expire = ttl.expire_after.as_secs() as i64;
            if same_shape {
                let changed = db
                    .run_command(doc! {
                        "collMod": ttl.collection,
                        "index": {"name": ttl.name, "expireAfterSeconds": expire},
                    })
                    .await;
                if changed.is_ok() {
                    info!(
                        collection = ttl.collection,
                        index = ttl.name,
                        expire_after_seconds = expire,
                        "retention changed; TTL index updated in place"
                    );
                    continue;
                }
            }
            info!(
                collection = ttl.collection,
                index = ttl.name,
                expire_after_seconds = expire,
                "retention changed; re-creating the TTL index"
            );
            collection.drop_index(ttl.name).await?;
        }
        let options = IndexOptions::builder()
            .name(ttl.name.to_owned())
            .expire_after(ttl.expire_after)
            .partial_filter_expression(ttl.partial)
            .build();
        collection
            .create_index(
                IndexModel::builder()
                    .keys(wanted_keys)
                    .options(options)
                    .build(),
            )
            .await?;
    }
    Ok(())
}

/// Key patterns compared by field and direction, whatever numeric type the server used.
fn same_keys(a: &Document, b: &Document) -> bool {
    let direction = |v: &mongodb::bson::Bson| match v {
        mongodb::bson::Bson::Int32(n) => Some(f64::from(*n)),
        mongodb::bson::Bson::Int64(n) => Some(*n as f64),
        mongodb::bson::Bson::Double(n) => Some(*n),
        _ => None,
    };
    a.len() == b.len()
        && a.iter()
            .zip(b.iter())
            .all(|((ka, va), (kb, vb))| ka == kb && direction(va) == direction(vb))
}

fn is_namespace_not_found(error: &mongodb::error::Error) -> bool {
    const NAMESPACE_NOT_FOUND: i32 = 26;
    matches!(&*error.kind, mongodb::error::ErrorKind::Command(c) if c.code == NAMESPACE_NOT_FOUND)
}

/// The first line of a driver error, for one-line messages.
pub fn one_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
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
