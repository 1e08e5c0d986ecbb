//! Endpoint health, as an operator relies on it: `GET /v1/webhooks/{id}` shows an
//! endpoint's failing streak, last success and failure and success rate; a webhook
//! subscribed to the operational events receives exactly one `webhook.endpoint.failing`
//! per failing streak and one `webhook.endpoint.recovered` at the next 2xx,
//! `delivery.exhausted` when a delivery runs out of retries, and
//! `webhook.endpoint.disabled` when herald disables an endpoint that kept failing.

use std::time::Duration;

use herald::config::Config;
use mongodb::bson::{doc, Document};
use serde_json::{json, Value};

use crate::api_client::Api;
use crate::daemon::InProcess;
use crate::fixtures::*;
use crate::support::{self, Receiver, RecordedRequest};

const KEY: &str = "health-test-key";
const DEADLINE: Duration = Duration::from_secs(30);

const OPS_TYPES: &[&str] = &[
    "webhook.endpoint.failing",
    "webhook.endpoint.recovered",
    "webhook.endpoint.disabled",
    "delivery.exhausted",
];

async fn start(uri: &str, name: &str, tweak: impl FnOnce(&mut Config)) -> (InProcess, Api) {
    crate::daemon::start_with_key(uri, name, KEY, tweak).await
}

fn of_type<'a>(requests: &'a [RecordedRequest], event_type: &str) -> Vec<&'a RecordedRequest> {
    requests
        .iter()
        .filter(|r| r.json()["event_type"] == event_type)
        .collect()
}

async fn health(api: &Api, id: &str) -> Value {
    let response = api.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.body["health"].clone()
}

/// `herald_deliveries_pending` of this test's database, from `GET /metrics`.
async fn pending_gauge(api: &Api, database: &str) -> Option<f64> {
    let text = api.anonymous().get("/metrics").await.body;
    let series = format!("herald_deliveries_pending{{database=\"{database}\"}} ");
    text.as_str()?
        .lines()
        .find_map(|line| line.strip_prefix(&series)?.parse().ok())
}

async fn wait_for_health(api: &Api, id: &str, what: &str, check: impl Fn(&Value) -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let health = health(api, id).await;
        if check(&health) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; health: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_failing_endpoint_alerts_once_and_recovers_once() {
    let (uri, name, db) = database("health_streak").await;
    let bad = Receiver::start().await;
    let ops = Receiver::start().await;
    bad.respond_with(503);
    const BAD: &str = "wh_00000000000e0001";
    const OPS: &str = "wh_00000000000e0002";
    insert_webhook(&db, webhook(BAD, &bad.url, &["batch.completed"])).await;
    insert_webhook(&db, webhook(OPS, &ops.url, OPS_TYPES)).await;
    let (herald, api) = start(&uri, &name, |c| {
        c.retry_max_attempts = 1_000;
        c.retry_max_ms = 100;
        c.endpoint_failing_after = 5;
    })
    .await;
    assert_eq!(health(&api, BAD).await["state"], "unknown");

    for i in 0..3 {
        insert_event(&db, &format!("evt_health_{i}"), "batch.completed").await;
    }
    // Well past the threshold: the streak goes on, the alert is not repeated.
    bad.wait_for(20, DEADLINE).await;
    wait_for_health(&api, BAD, "a failing endpoint", |h| {
        h["state"] == "failing" && h["consecutive_failures"].as_u64() >= Some(20)
    })
    .await;
    let failing = health(&api, BAD).await;
    assert_eq!(failing["last_failure"]["status_code"], 503, "{failing}");
    assert!(failing["last_failure"]["at"].is_string(), "{failing}");
    assert!(failing["failing_since"].is_string(), "{failing}");
    assert_eq!(failing["last_success_at"], Value::Null);
    assert_eq!(failing["success_rate"], 0.0);
    assert_eq!(failing["window_seconds"], 3600);
    // The three deliveries wait for their next attempt, and the gauge says so.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while pending_gauge(&api, &name).await != Some(3.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "herald_deliveries_pending never showed 3: {:?}",
            pending_gauge(&api, &name).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let alerts = ops.wait_for(1, DEADLINE).await;
    let first = of_type(&alerts, "webhook.endpoint.failing");
    assert_eq!(first.len(), 1, "{}", ops.describe(&alerts));
    assert_signed(first[0]);
    let data = &first[0].json()["data"];
    assert_eq!(data["webhook_id"], BAD);
    assert_eq!(data["url"], bad.url.as_str());
    assert_eq!(data["consecutive_failures"], 5);
    assert_eq!(data["last_status_code"], 503);
    assert_eq!(
        first[0].json()["subject"],
        json!({"type": "webhook", "id": BAD})
    );

    // The endpoint heals: all three deliveries succeed and one `recovered` follows.
    bad.respond_with(200);
    for i in 0..3 {
        wait_for_status(&db, &format!("evt_health_{i}:{BAD}"), "succeeded").await;
    }
    let alerts = ops.wait_for(2, DEADLINE).await;
    let recovered = of_type(&alerts, "webhook.endpoint.recovered");
    assert_eq!(recovered.len(), 1, "{}", ops.describe(&alerts));
    let data = &recovered[0].json()["data"];
    assert_eq!(data["webhook_id"], BAD);
    assert!(data["failed_attempts"].as_u64() >= Some(20), "{data}");
    assert_eq!(
        data["failing_since"],
        first[0].json()["data"]["failing_since"]
    );

    let healthy = health(&api, BAD).await;
    assert_eq!(healthy["state"], "healthy", "{healthy}");
    assert_eq!(healthy["consecutive_failures"], 0);
    assert!(healthy["last_success_at"].is_string(), "{healthy}");
    let rate = healthy["success_rate"].as_f64().unwrap();
    assert!(rate > 0.0 && rate < 1.0, "{healthy}");

    // Both alerts are ordinary events: in the outbox, delivered and recorded once each.
    let published = deliveries(&db, doc! {"webhook_id": OPS}).await;
    assert_eq!(published.len(), 2, "{published:?}");
    assert_eq!(
        of_type(&ops.requests(), "webhook.endpoint.failing").len(),
        1,
        "a second failing alert arrived"
    );
    herald.stop().await.unwrap();
}

#[tokio::test]
async fn an_exhausted_delivery_is_announced_with_its_attempts() {
    let (uri, name, db) = database("health_exhausted").await;
    let bad = Receiver::start().await;
    let ops = Receiver::start().await;
    bad.respond_with(500);
    const BAD: &str = "wh_00000000000e0011";
    const OPS: &str = "wh_00000000000e0012";
    insert_webhook(&db, webhook(BAD, &bad.url, &["object.created"])).await;
    insert_webhook(&db, webhook(OPS, &ops.url, &["delivery.exhausted"])).await;
    let (herald, _api) = start(&uri, &name, |c| c.retry_max_attempts = 3).await;

    let mut event = event("evt_health_exhausted", "object.created");
    event.insert("task_id", "task_health_1");
    db.collection::<Document>("events")
        .insert_one(event)
        .await
        .unwrap();
    wait_for_status(&db, &format!("evt_health_exhausted:{BAD}"), "failed").await;
    let alerts = ops.wait_for(1, DEADLINE).await;
    assert_eq!(alerts.len(), 1, "{}", ops.describe(&alerts));
    assert_signed(&alerts[0]);
    let body = alerts[0].json();
    assert_eq!(body["event_type"], "delivery.exhausted");
    assert_eq!(body["task_id"], "task_health_1");
    let data = &body["data"];
    assert_eq!(data["delivery_id"], format!("evt_health_exhausted:{BAD}"));
    assert_eq!(data["event_id"], "evt_health_exhausted");
    assert_eq!(data["webhook_id"], BAD);
    assert_eq!(data["event_type"], "object.created");
    assert_eq!(data["attempts"], 3);
    assert_eq!(data["last_status_code"], 500);
    herald.stop().await.unwrap();
}

#[tokio::test]
async fn an_endpoint_failing_for_the_configured_period_is_disabled() {
    let (uri, name, db) = database("health_disable").await;
    let bad = Receiver::start().await;
    let ops = Receiver::start().await;
    bad.respond_with(502);
    const BAD: &str = "wh_00000000000e0021";
    const OPS: &str = "wh_00000000000e0022";
    insert_webhook(&db, webhook(BAD, &bad.url, &["batch.completed"])).await;
    insert_webhook(&db, webhook(OPS, &ops.url, OPS_TYPES)).await;
    let (herald, api) = start(&uri, &name, |c| {
        c.retry_max_attempts = 1_000;
        c.retry_max_ms = 100;
        c.endpoint_failing_after = 3;
        c.endpoint_disable_after_secs = 1;
    })
    .await;

    insert_event(&db, "evt_health_disable", "batch.completed").await;
    let webhooks = db.collection::<Document>("webhooks");
    support::eventually(DEADLINE, "the webhook disabled", || {
        let webhooks = webhooks.clone();
        async move {
            let doc = webhooks.find_one(doc! {"_id": BAD}).await.unwrap().unwrap();
            doc.get_bool("enabled") == Ok(false)
        }
    })
    .await;
    let shown = api.get(&format!("/v1/webhooks/{BAD}")).await.body;
    assert_eq!(shown["enabled"], false, "{shown}");
    assert_eq!(shown["disabled_reason"], "endpoint failing", "{shown}");
    assert!(shown["disabled_at"].is_string(), "{shown}");

    let alerts = ops.wait_for(2, DEADLINE).await;
    let disabled = of_type(&alerts, "webhook.endpoint.disabled");
    assert_eq!(disabled.len(), 1, "{}", ops.describe(&alerts));
    assert_eq!(disabled[0].json()["data"]["webhook_id"], BAD);
    assert_eq!(disabled[0].json()["data"]["last_status_code"], 502);
    assert_eq!(of_type(&alerts, "webhook.endpoint.failing").len(), 1);

    // Stopped: once the endpoint actor is gone, no attempt reaches the receiver any more,
    // and the health shown is the one kept (still failing; nothing held).
    wait_for_health(&api, BAD, "no endpoint actor", |h| {
        h["queued"].is_null() && h["state"] == "failing"
    })
    .await;
    let seen = bad.count();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bad.count(), seen, "a disabled webhook was still attempted");
    // The delivery stays pending for when the operator enables the webhook again.
    let pending = delivery(&db, &format!("evt_health_disable:{BAD}"))
        .await
        .unwrap();
    assert_eq!(pending.get_str("status").unwrap(), "pending", "{pending}");
    herald.stop().await.unwrap();
}
