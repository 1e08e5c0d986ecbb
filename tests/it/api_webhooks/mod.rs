//! The webhook API, as a user relies on it: webhooks created, changed, rotated and deleted
//! through `/v1/webhooks` take effect on deliveries without a restart; lists page through
//! every webhook once; every bad request gets a 4xx naming what is wrong, never a 5xx.

use std::time::{Duration, Instant};

use herald::config::Config;
use mongodb::bson::{doc, Document};
use mongodb::Database;
use serde_json::Value;

use crate::api_client::Api;
use crate::daemon::{test_config, InProcess};
use crate::fixtures::*;
use crate::support::{Receiver, RecordedRequest};

mod auth;
mod catalog;
mod create;
mod delete;
mod errors;
mod fuzz;
mod list;
mod patch;
mod read_your_writes;
mod secrets;

/// herald on a fresh database, with its API.
struct Setup {
    db: Database,
    daemon: InProcess,
    api: Api,
}

async fn setup(prefix: &str, configure: impl FnOnce(&mut Config)) -> Setup {
    let (uri, name, db) = database(prefix).await;
    let mut config = test_config(&uri, &name, crate::support::test_ca_pem_path());
    configure(&mut config);
    let key = config.api_key.clone();
    let daemon = InProcess::start(config).await;
    let api = Api::new(daemon.listen, key.as_deref());
    Setup { db, daemon, api }
}

/// Creates a webhook, expecting 201, and returns the answer.
async fn create(api: &Api, body: Value) -> Value {
    let response = api.post("/v1/webhooks", body).await;
    assert_eq!(response.status, 201, "create failed: {}", response.body);
    response.body
}

fn path(webhook: &Value) -> String {
    format!("/v1/webhooks/{}", webhook["webhook_id"].as_str().unwrap())
}

fn new_event_id(tag: &str) -> String {
    format!("evt_{tag}_{:08x}", rand::random::<u32>())
}

/// The request carrying `event_id` that `receiver` got, if any.
fn delivered(receiver: &Receiver, event_id: &str) -> Option<RecordedRequest> {
    receiver
        .requests()
        .into_iter()
        .find(|r| header(r, "webhook-id") == Some(event_id))
}

/// Waits up to `within` for `receiver` to get `event_id`.
async fn wait_delivered(
    receiver: &Receiver,
    event_id: &str,
    within: Duration,
) -> Option<RecordedRequest> {
    let until = Instant::now() + within;
    loop {
        if let Some(request) = delivered(receiver, event_id) {
            return Some(request);
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Publishes `event_type` events until `receiver` gets one (a change made through the API
/// reaches the engine through a change stream, a moment later), and returns that request.
async fn publish_until_received(
    db: &Database,
    receiver: &Receiver,
    event_type: &str,
) -> RecordedRequest {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let id = new_event_id("probe");
        insert_event(db, &id, event_type).await;
        if let Some(request) = wait_delivered(receiver, &id, Duration::from_secs(2)).await {
            return request;
        }
        assert!(
            Instant::now() < until,
            "no {event_type} event reached {}",
            receiver.url
        );
    }
}

/// How long an event that reached `control` is given to reach `target` too, before a test
/// concludes that it did not: deliveries of one event to several endpoints start together.
/// Only for negative checks, after `control` proved the event was routed.
const GRACE: Duration = Duration::from_millis(400);

/// Publishes one event and waits (with a generous deadline) until `target` gets it.
async fn reaches(db: &Database, target: &Receiver, event_type: &str) -> bool {
    let id = new_event_id("check");
    insert_event(db, &id, event_type).await;
    wait_delivered(target, &id, Duration::from_secs(20))
        .await
        .is_some()
}

/// Publishes one event and reports whether `target` missed it: `control` (subscribed to
/// everything) gets it first, as proof that herald routed the event, then `target` is given
/// [`GRACE`].
async fn missed_by(db: &Database, target: &Receiver, control: &Receiver, event_type: &str) -> bool {
    let id = new_event_id("check");
    insert_event(db, &id, event_type).await;
    assert!(
        wait_delivered(control, &id, Duration::from_secs(20))
            .await
            .is_some(),
        "the control webhook never got {id}"
    );
    wait_delivered(target, &id, GRACE).await.is_none()
}

/// Waits until a change that stops deliveries to `target` has taken effect, then checks
/// that it holds: the next event reaches `control` but not `target`.
async fn assert_stops_receiving(
    db: &Database,
    target: &Receiver,
    control: &Receiver,
    event_type: &str,
) {
    let until = Instant::now() + Duration::from_secs(30);
    while !missed_by(db, target, control, event_type).await {
        assert!(
            Instant::now() < until,
            "{} kept receiving {event_type}",
            target.url
        );
    }
    assert!(
        missed_by(db, target, control, event_type).await,
        "{} received {event_type} again after it stopped",
        target.url
    );
}

async fn stored(db: &Database, id: &str) -> Option<Document> {
    db.collection::<Document>("webhooks")
        .find_one(doc! {"_id": id})
        .await
        .unwrap()
}
