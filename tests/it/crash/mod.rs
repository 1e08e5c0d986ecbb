//! herald killed with SIGKILL mid-stream loses nothing: restarted, it resumes from its
//! checkpoint and re-loads pending retries. Stopped with SIGTERM, it lets in-flight
//! attempts finish and records them, so a restart sends nothing again. A checkpoint the
//! change stream can no longer resume from falls back to scanning `events`.

use std::collections::HashSet;

use mongodb::bson::{doc, Document};

use crate::fixtures::*;
use crate::support::Receiver;

mod kill;
mod lost_history;
mod random_kills;
mod sigterm;
mod upgrade;

fn distinct_ids(receiver: &Receiver) -> HashSet<String> {
    receiver
        .requests()
        .iter()
        .filter_map(|r| header(r, "webhook-id").map(str::to_owned))
        .collect()
}

/// The resume token of the checkpoint herald stored for `webhook_id`'s partition.
async fn checkpoint_token(db: &mongodb::Database, webhook_id: &str) -> Option<mongodb::bson::Bson> {
    let partition = i32::from(herald_actors::partition_of(webhook_id));
    let lease = db
        .collection::<Document>("herald_partitions")
        .find_one(doc! {"_id": partition})
        .await
        .unwrap()?;
    let mongodb::bson::Bson::Binary(bytes) = lease.get("checkpoint")? else {
        return None;
    };
    mongodb::bson::from_slice::<Document>(&bytes.bytes)
        .ok()?
        .get("token")
        .cloned()
}
