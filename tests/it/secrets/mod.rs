//! Secrets at rest and in logs, as an operator running herald with `--secret-key` relies on
//! them: webhook secrets (current and rotated-out), header values (`X-Mixpeek-Secret`) and
//! Mux connection secrets are unreadable in MongoDB, yet receivers get the plaintext header
//! and signatures that verify with the plaintext secret, and Mux's signatures still verify;
//! values an operator wrote into MongoDB in plaintext keep working; and no secret ever shows
//! up in the daemon's log (debug level, JSON), in a list or read answer, or in an error.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use herald::config::Config;
use herald::secrets::SecretBox;
use herald_actors::signing::{verify_header, SigningKey};
use mongodb::bson::{doc, Document};
use mongodb::Database;
use serde_json::{json, Value};

use crate::api_client::{Api, ApiResponse};
use crate::daemon::test_config;
use crate::fixtures::*;
use crate::support::{Receiver, RecordedRequest};

mod at_rest;
mod logs;
mod plaintext;

const API_KEY: &str = "secrets-test-api-key";
/// The `--secret-key` of these stories, and the same 32 bytes as 64 hex characters.
const KEY: [u8; 32] = [
    0x1f, 0x2e, 0x3d, 0x4c, 0x5b, 0x6a, 0x79, 0x88, 0x97, 0xa6, 0xb5, 0xc4, 0xd3, 0xe2, 0xf1, 0x00,
    0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0,
];
const DEADLINE: Duration = Duration::from_secs(30);

fn key_hex() -> String {
    KEY.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh `whsec_` secret, distinctive enough to search for.
fn new_whsec() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// A distinctive plaintext credential.
fn distinctive(tag: &str) -> String {
    format!("{tag}-{:016x}", rand::random::<u64>())
}

/// What to search for to know a secret did not leak: the whole value and, for `whsec_`
/// secrets, the base64 key material alone.
fn needles(secret: &str) -> Vec<String> {
    let mut needles = vec![secret.to_owned()];
    if let Some(body) = secret.strip_prefix("whsec_") {
        needles.push(body.to_owned());
    }
    needles
}

/// Panics if any of `secrets` occurs in `haystack` (named `what` in the message).
fn assert_no_secret<S: AsRef<str>>(what: &str, haystack: &str, secrets: &[S]) {
    for secret in secrets {
        for needle in needles(secret.as_ref()) {
            assert!(
                !haystack.contains(&needle),
                "{what} contains the secret {needle:?}"
            );
        }
    }
}

/// The raw document, as MongoDB holds it.
async fn raw(db: &Database, collection: &str, id: &str) -> Document {
    db.collection::<Document>(collection)
        .find_one(doc! {"_id": id})
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no {collection} document {id}"))
}

/// Every string the document holds, serialized: what someone reading the database sees.
fn dump(document: &Document) -> String {
    format!("{document} {}", serde_json::to_string(document).unwrap())
}

fn sealed_str<'a>(document: &'a Document, path: &[&str]) -> &'a str {
    let mut current = document;
    for key in &path[..path.len() - 1] {
        current = current.get_document(key).unwrap();
    }
    let value = current.get_str(path[path.len() - 1]).unwrap();
    assert!(
        SecretBox::is_sealed(value),
        "{path:?} is not stored encrypted"
    );
    value
}

/// Every encrypted string in the document, however deep.
fn sealed_values(document: &Document) -> Vec<String> {
    fn walk(value: &mongodb::bson::Bson, out: &mut Vec<String>) {
        match value {
            mongodb::bson::Bson::String(s) if SecretBox::is_sealed(s) => out.push(s.clone()),
            mongodb::bson::Bson::Document(d) => d.values().for_each(|v| walk(v, out)),
            mongodb::bson::Bson::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    document.values().for_each(|v| walk(v, &mut out));
    out
}

/// Creates a webhook through the API, expecting 201.
async fn create_webhook(api: &Api, body: Value) -> Value {
    let response = api.post("/v1/webhooks", body).await;
    assert_eq!(response.status, 201, "create failed: {}", response.body);
    response.body
}

/// Publishes `object.created` events through the API until `receiver` gets one that
/// satisfies `accept` (a change made through the API reaches the engine a moment later),
/// and returns that request.
async fn publish_until(
    api: &Api,
    receiver: &Receiver,
    accept: impl Fn(&RecordedRequest) -> bool,
) -> RecordedRequest {
    let until = Instant::now() + DEADLINE;
    loop {
        let event_id = format!("evt_secrets_{:016x}", rand::random::<u64>());
        let published = api
            .post(
                "/v1/events",
                json!({"event_type": "object.created", "event_id": event_id,
                       "data": {"bucket_id": "bkt_1", "object_id": "obj_1"}}),
            )
            .await;
        assert_eq!(published.status, 202, "{}", published.body);
        let wait_until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < wait_until {
            if let Some(request) = receiver
                .requests()
                .into_iter()
                .find(|r| header(r, "webhook-id") == Some(event_id.as_str()))
            {
                if accept(&request) {
                    return request;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            Instant::now() < until,
            "{} never got an acceptable delivery",
            receiver.url
        );
    }
}

/// Whether the request's `webhook-signature` verifies with `secret`, as a receiver
/// following Standard Webhooks checks it.
fn signed_with(request: &RecordedRequest, secret: &str) -> bool {
    let key = SigningKey::parse(secret).unwrap();
    let id = header(request, "webhook-id").unwrap();
    let ts: i64 = header(request, "webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    let signature = header(request, "webhook-signature").unwrap();
    verify_header(&key, id, ts, &request.body, signature)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn asset_deleted(asset_id: &str) -> Vec<u8> {
    json!({
        "type": "video.asset.deleted",
        "id": format!("mux_evt_{:016x}", rand::random::<u64>()),
        "created_at": "2024-05-01T12:00:00.000000Z",
        "object": {"type": "asset", "id": asset_id},
        "data": {"id": asset_id, "passthrough": "p"},
    })
    .to_string()
    .into_bytes()
}

/// POSTs a Mux event to the connection's inbound route, signed with `secret`.
async fn mux_deliver(api: &Api, connection_id: &str, secret: &str, body: Vec<u8>) -> ApiResponse {
    let signature = mux_signature(secret, now_secs(), &body);
    api.anonymous()
        .raw(
            "POST",
            &format!("/v1/webhooks/mux/{connection_id}"),
            body,
            &[
                ("content-type", "application/json"),
                ("mux-signature", &signature),
            ],
        )
        .await
}

async fn insert_synced_object(db: &Database, object_id: &str, connection_id: &str, asset: &str) {
    db.collection::<Document>("objects")
        .insert_one(doc! {
            "_id": object_id, "bucket_id": "bkt_1", "connection_id": connection_id,
            "source": {"provider": "mux", "asset_id": asset}, "metadata": {},
        })
        .await
        .unwrap();
}

async fn keyed(prefix: &str, ca: &Path) -> (Database, Config) {
    let (uri, name, db) = database(prefix).await;
    let mut config = test_config(&uri, &name, ca);
    config.api_key = Some(API_KEY.into());
    config.secret_key = Some(KEY);
    (db, config)
}
