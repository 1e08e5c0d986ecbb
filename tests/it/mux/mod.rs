//! Inbound Mux webhooks, as a platform syncing Mux assets into buckets relies on them: a
//! connection is created through the API with its signing secret (which never comes back);
//! Mux's signed `video.asset.deleted` / `video.asset.updated` remove or update exactly that
//! asset's objects in that connection, once per Mux event id however often (and however
//! concurrently) Mux delivers it, and subscribers hear `object.deleted` / `object.updated`;
//! anything not signed by that connection's secret, stale, unreadable or too large changes
//! nothing.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::Database;
use serde_json::{json, Value};

use crate::api_client::{Api, ApiResponse};
use crate::daemon::{test_config, InProcess};
use crate::fixtures::*;
use crate::support::Receiver;

mod auth;
mod connections;
mod deletes;
mod namespace;
mod order;
mod redelivery;
mod signature;
mod unhandled;
mod updates;

const API_KEY: &str = "test-api-key";
const SECRET_A: &str = "mux-secret-for-connection-a";
const SECRET_B: &str = "mux-secret-for-connection-b";
const WEBHOOK: &str = "wh_00000000000000d1";
const DEADLINE: Duration = Duration::from_secs(20);

/// herald with an API key, a receiver subscribed to `object.deleted` and `object.updated`.
struct Story {
    db: Database,
    receiver: Receiver,
    api: Api,
    daemon: InProcess,
}

async fn story(prefix: &str) -> Story {
    let (uri, name, db) = database(prefix).await;
    let receiver = Receiver::start().await;
    insert_webhook(
        &db,
        webhook(
            WEBHOOK,
            &receiver.url,
            &["object.deleted", "object.updated"],
        ),
    )
    .await;
    let mut config = test_config(&uri, &name, &receiver.ca_pem_path);
    config.api_key = Some(API_KEY.into());
    let daemon = InProcess::start(config).await;
    let api = Api::new(daemon.listen, Some(API_KEY));
    Story {
        db,
        receiver,
        api,
        daemon,
    }
}

/// Creates a Mux connection, expecting 201; returns its id.
async fn connect(api: &Api, bucket_id: &str, secret: &str, filters: Option<Value>) -> String {
    let mut body = json!({"provider": "mux", "bucket_id": bucket_id, "webhook_secret": secret});
    if let Some(filters) = filters {
        body["metadata_filters"] = filters;
    }
    let response = api.post("/v1/connections", body).await;
    assert_eq!(response.status, 201, "create failed: {}", response.body);
    response.body["connection_id"].as_str().unwrap().to_owned()
}

/// An object synced from Mux.
fn object(id: &str, bucket_id: &str, connection_id: &str, asset_id: &str) -> Document {
    doc! {
        "_id": id,
        "bucket_id": bucket_id,
        "connection_id": connection_id,
        "source": {"provider": "mux", "asset_id": asset_id},
        "metadata": {"passthrough": "old", "meta": {"title": "old title"}},
    }
}

async fn insert_objects(db: &Database, objects: Vec<Document>) {
    db.collection::<Document>("objects")
        .insert_many(objects)
        .await
        .unwrap();
}

/// Every document of `collection`, sorted by `_id`.
async fn all(db: &Database, collection: &str) -> Vec<Document> {
    db.collection::<Document>(collection)
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

async fn object_ids(db: &Database) -> BTreeSet<String> {
    all(db, "objects")
        .await
        .iter()
        .map(|d| d.get_str("_id").unwrap().to_owned())
        .collect()
}

/// The outbox documents herald wrote for objects (not the ones tests insert).
async fn object_events(db: &Database) -> Vec<Document> {
    db.collection::<Document>("events")
        .find(doc! {"event_type": {"$in": ["object.deleted", "object.updated"]}})
        .sort(doc! {"_id": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// What a test can observe of herald's data.
async fn snapshot(db: &Database) -> (Vec<Document>, Vec<Document>, Vec<Document>) {
    (
        all(db, "objects").await,
        object_events(db).await,
        all(db, "inbound_events").await,
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A Mux event about an asset, as Mux sends it.
fn mux_event(event_type: &str, event_id: &str, asset: Value) -> Vec<u8> {
    json!({
        "type": event_type,
        "id": event_id,
        "created_at": "2024-05-01T12:00:00.000000Z",
        "object": {"type": "asset", "id": asset["id"]},
        "environment": {"name": "Production", "id": "env1"},
        "data": asset,
    })
    .to_string()
    .into_bytes()
}

fn inbound_path(connection_id: &str) -> String {
    format!("/v1/webhooks/mux/{connection_id}")
}

/// POSTs `body` to the connection's inbound route with this `Mux-Signature` (if any),
/// without an API key, as Mux would.
async fn deliver_with(
    api: &Api,
    connection_id: &str,
    body: Vec<u8>,
    signature: Option<&str>,
) -> ApiResponse {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(signature) = signature {
        headers.push(("mux-signature", signature));
    }
    api.anonymous()
        .raw("POST", &inbound_path(connection_id), body, &headers)
        .await
}

/// POSTs `body` signed with `secret` now.
async fn deliver(api: &Api, connection_id: &str, secret: &str, body: Vec<u8>) -> ApiResponse {
    let signature = mux_signature(secret, now(), &body);
    deliver_with(api, connection_id, body, Some(&signature)).await
}

/// Gives herald a moment to (not) publish more than expected.
async fn quiet_period() {
    tokio::time::sleep(Duration::from_millis(700)).await;
}
