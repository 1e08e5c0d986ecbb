//! MongoDB adapters: the outbox feed, the webhook watcher and the delivery ledger.
//!
//! Collection names are part of the contract (`events`, `objects`, `webhooks`,
//! `deliveries`); `herald_state` holds the feed checkpoint.

pub mod deliveries;
pub mod events;
pub mod webhooks;

use std::time::Duration;

use mongodb::bson::doc;
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Database, IndexModel};

pub const EVENTS: &str = "events";
pub const OBJECTS: &str = "objects";
pub const WEBHOOKS: &str = "webhooks";
pub const DELIVERIES: &str = "deliveries";
pub const STATE: &str = "herald_state";

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
        // Re-loading due retries.
        doc! {"status": 1, "next_attempt_at": 1},
        // A webhook's deliveries, newest first.
        doc! {"webhook_id": 1, "created_at": -1},
        doc! {"event_id": 1},
    ]
    .into_iter()
    .map(|keys| {
        IndexModel::builder()
            .keys(keys)
            .options(IndexOptions::builder().build())
            .build()
    });
    deliveries.create_indexes(models).await?;
    Ok(())
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
