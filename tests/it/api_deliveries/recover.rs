//! Recovering after an outage: a webhook's failed deliveries since a time are requeued in
//! bulk, and nothing else.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use super::{delivery_id, publish, quiet_period, start, TYPE, WH_A, WH_B};
use crate::fixtures::*;
use crate::support::Receiver;

#[tokio::test]
async fn recover_requeues_a_webhooks_failed_deliveries_since_a_time() {
    let (uri, name, db) = database("api_recover").await;
    let a = Receiver::start().await;
    let b = Receiver::start().await;
    a.respond_with(500);
    b.respond_with(500);
    insert_webhook(&db, webhook(WH_A, &a.url, &[TYPE])).await;
    insert_webhook(&db, webhook(WH_B, &b.url, &[TYPE])).await;
    let (daemon, api) = start(&uri, &name, |c| c.retry_max_attempts = 2).await;

    // One failure before the outage window...
    publish(
        &api,
        json!({"event_type": TYPE, "event_id": "evt_old", "data": {}}),
    )
    .await;
    for webhook in [WH_A, WH_B] {
        wait_for_status(&db, &delivery_id("evt_old", webhook), "failed").await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(20)).await;
    // ...and three during it.
    let during = ["evt_out_1", "evt_out_2", "evt_out_3"];
    for event in during {
        publish(
            &api,
            json!({"event_type": TYPE, "event_id": event, "data": {}}),
        )
        .await;
    }
    for event in during {
        for webhook in [WH_A, WH_B] {
            wait_for_status(&db, &delivery_id(event, webhook), "failed").await;
        }
    }
    let b_requests = b.count();

    // A's endpoint is back: recover what failed since the outage began.
    a.respond_with(200);
    let response = api
        .post(
            &format!("/v1/webhooks/{WH_A}/recover"),
            json!({"since": since}),
        )
        .await;
    assert_eq!(response.status, 202, "{}", response.body);
    assert_eq!(response.body, json!({"recovered": 3}));
    for event in during {
        let d = wait_for_status(&db, &delivery_id(event, WH_A), "succeeded").await;
        assert_eq!(d.get_i64("attempts").unwrap(), 3);
    }
    quiet_period().await;
    // Before `since`: untouched. The other webhook: untouched.
    let old = delivery(&db, &delivery_id("evt_old", WH_A)).await.unwrap();
    assert_eq!(old.get_str("status").unwrap(), "failed");
    for event in during.iter().chain(["evt_old"].iter()) {
        let d = delivery(&db, &delivery_id(event, WH_B)).await.unwrap();
        assert_eq!(d.get_str("status").unwrap(), "failed", "{event}");
        assert_eq!(d.get_i64("attempts").unwrap(), 2, "{event}");
    }
    assert_eq!(b.count(), b_requests);
    let delivered: BTreeSet<String> = a
        .requests()
        .iter()
        .skip(8)
        .filter_map(|r| header(r, "webhook-id").map(str::to_owned))
        .collect();
    assert_eq!(
        delivered,
        during
            .iter()
            .map(|e| e.to_string())
            .collect::<BTreeSet<_>>()
    );

    // Nothing failed since then any more; a future `since` finds nothing either.
    let again = api
        .post(
            &format!("/v1/webhooks/{WH_A}/recover"),
            json!({"since": since}),
        )
        .await;
    assert_eq!(again.body, json!({"recovered": 0}));
    let future = api
        .post(
            &format!("/v1/webhooks/{WH_A}/recover"),
            json!({"since": "2999-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(future.status, 202, "{}", future.body);
    assert_eq!(future.body, json!({"recovered": 0}));

    // Going further back picks up the older one.
    let older = api
        .post(
            &format!("/v1/webhooks/{WH_A}/recover"),
            json!({"since": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(older.body, json!({"recovered": 1}));
    wait_for_status(&db, &delivery_id("evt_old", WH_A), "succeeded").await;
    daemon.stop().await.unwrap();
}

/// Many failed deliveries (several pages of them), recovered by two requests at once: every
/// one is re-queued, counted by exactly one of the two answers and sent exactly once more.
#[tokio::test]
async fn concurrent_recovers_requeue_every_page_once() {
    const EVENTS: usize = 450;
    let (uri, name, db) = database("api_recover_many").await;
    let a = Receiver::start().await;
    a.respond_with(500);
    insert_webhook(&db, webhook(WH_A, &a.url, &[TYPE])).await;
    let (daemon, api) = start(&uri, &name, |c| c.retry_max_attempts = 1).await;

    let events: Vec<_> = (0..EVENTS)
        .map(|i| json!({"event_type": TYPE, "event_id": format!("evt_many_{i:04}"), "data": {}}))
        .collect();
    let response = api
        .post("/v1/events/batch", json!({ "events": events }))
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let failed = mongodb::bson::doc! {"webhook_id": WH_A, "status": "failed"};
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while deliveries(&db, failed.clone()).await.len() < EVENTS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the {EVENTS} deliveries never all failed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first_round = a.count();
    assert_eq!(first_round, EVENTS);

    a.respond_with(200);
    let path = format!("/v1/webhooks/{WH_A}/recover");
    let body = json!({"since": "2020-01-01T00:00:00Z"});
    let (one, two) = tokio::join!(api.post(&path, body.clone()), api.post(&path, body));
    assert_eq!(one.status, 202, "{}", one.body);
    assert_eq!(two.status, 202, "{}", two.body);
    let recovered =
        one.body["recovered"].as_u64().unwrap() + two.body["recovered"].as_u64().unwrap();
    assert_eq!(recovered, EVENTS as u64, "{} + {}", one.body, two.body);

    for i in 0..EVENTS {
        let d = wait_for_status(
            &db,
            &delivery_id(&format!("evt_many_{i:04}"), WH_A),
            "succeeded",
        )
        .await;
        assert_eq!(d.get_i64("attempts").unwrap(), 2);
    }
    quiet_period().await;
    let resent: BTreeSet<String> = a
        .requests()
        .iter()
        .skip(first_round)
        .filter_map(|r| header(r, "webhook-id").map(str::to_owned))
        .collect();
    assert_eq!(resent.len(), EVENTS);
    assert_eq!(
        a.count(),
        2 * EVENTS,
        "each delivery is sent once more, not twice"
    );
    daemon.stop().await.unwrap();
}
