//! Retrying one delivery on request: a failed one gets exactly one more attempt, and what
//! cannot be requeued is refused and left untouched.

use mongodb::bson::{doc, Document};
use serde_json::json;

use super::{delivery_id, publish, quiet_period, start, TYPE, WH_A, WH_B};
use crate::api_client::assert_error;
use crate::fixtures::*;
use crate::support::Receiver;

#[tokio::test]
async fn a_failed_delivery_is_retried_once_more_on_request() {
    let (uri, name, db) = database("api_retry").await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    insert_webhook(&db, webhook(WH_A, &receiver.url, &[TYPE])).await;
    let (daemon, api) = start(&uri, &name, |c| c.retry_max_attempts = 2).await;

    let fixed = publish(
        &api,
        json!({"event_type": TYPE, "event_id": "evt_r1", "data": {}}),
    )
    .await;
    let still_broken = publish(
        &api,
        json!({"event_type": TYPE, "event_id": "evt_r2", "data": {}}),
    )
    .await;
    let fixed = delivery_id(&fixed, WH_A);
    let still_broken = delivery_id(&still_broken, WH_A);
    for id in [&fixed, &still_broken] {
        let d = wait_for_status(&db, id, "failed").await;
        assert_eq!(d.get_i64("attempts").unwrap(), 2);
    }
    assert_eq!(receiver.count(), 4);

    // The endpoint is still broken: the retry is one more attempt, not a new schedule.
    let response = api
        .post(&format!("/v1/deliveries/{still_broken}/retry"), json!({}))
        .await;
    assert_eq!(response.status, 202, "{}", response.body);
    assert_eq!(
        response.body,
        json!({"delivery_id": still_broken, "status": "pending"})
    );
    let d = wait_for_status(&db, &still_broken, "failed").await;
    assert_eq!(d.get_i64("attempts").unwrap(), 3);
    quiet_period().await;
    assert_eq!(receiver.count(), 5);
    let d = delivery(&db, &still_broken).await.unwrap();
    assert_eq!(d.get_i64("attempts").unwrap(), 3);
    assert_eq!(d.get_str("status").unwrap(), "failed");

    // Fixed now. Two operators click "retry" at once: it is queued, and attempted, once.
    receiver.respond_with(200);
    let path = format!("/v1/deliveries/{fixed}/retry");
    let (a, b) = tokio::join!(api.post(&path, json!({})), api.post(&path, json!({})));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [202, 409], "{} / {}", a.body, b.body);
    let d = wait_for_status(&db, &fixed, "succeeded").await;
    assert_eq!(d.get_i64("attempts").unwrap(), 3);
    assert_eq!(d.get_array("attempt_log").unwrap().len(), 3);
    quiet_period().await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 6, "{}", receiver.describe(&requests));
    // The retry sent the very same bytes, signed afresh.
    let of_fixed: Vec<_> = requests
        .iter()
        .filter(|r| header(r, "webhook-id") == Some("evt_r1"))
        .collect();
    assert_eq!(of_fixed.len(), 3);
    assert_eq!(of_fixed[0].body, of_fixed[2].body);
    assert_signed(of_fixed[2]);

    let via_api = api.get(&format!("/v1/deliveries/{fixed}")).await;
    assert_eq!(via_api.body["status"], "succeeded");
    assert_eq!(via_api.body["attempts"], 3);
    assert!(via_api.body["completed_at"].is_string());

    // Delivered already: nothing to retry.
    let again = api.post(&path, json!({})).await;
    assert!(assert_error(&again, 409).contains("succeeded"));
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn retry_refuses_what_it_cannot_requeue() {
    let (uri, name, db) = database("api_retry_refused").await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    let other = Receiver::start().await;
    insert_webhook(&db, webhook(WH_A, &receiver.url, &[TYPE])).await;
    let mut disabled = webhook(WH_B, &other.url, &[TYPE]);
    disabled.insert("enabled", false);
    insert_webhook(&db, disabled).await;
    // Slow retries: after its first attempt the delivery stays pending for this story.
    let (daemon, api) = start(&uri, &name, |c| {
        c.retry_initial_ms = 60_000;
        c.retry_max_ms = 60_000;
        c.retry_max_attempts = 15;
    })
    .await;

    let event = publish(&api, json!({"event_type": TYPE, "data": {}})).await;
    let pending = delivery_id(&event, WH_A);
    wait_for_status(&db, &pending, "pending").await;
    let response = api
        .post(&format!("/v1/deliveries/{pending}/retry"), json!({}))
        .await;
    assert!(assert_error(&response, 409).contains("queued"));

    let unknown = api
        .post("/v1/deliveries/evt_nope:wh_nope/retry", json!({}))
        .await;
    assert_error(&unknown, 404);

    // Failed deliveries written by an older herald, or by hand.
    let deliveries = db.collection::<Document>("deliveries");
    let failed = |event: &str, webhook: &str, payload: bool| {
        let mut d = doc! {
            "_id": delivery_id(event, webhook), "event_id": event, "webhook_id": webhook,
            "event_type": TYPE, "status": "failed", "attempts": 15i64, "attempt_log": [],
            "next_attempt_at": mongodb::bson::Bson::Null, "last_status_code": 500,
            "created_at": mongodb::bson::DateTime::now(),
            "completed_at": mongodb::bson::DateTime::now(),
        };
        if payload {
            d.insert(
                "payload",
                json!({"event_id": event, "event_type": TYPE, "data": {}}).to_string(),
            );
        }
        d
    };
    deliveries
        .insert_many([
            failed("evt_no_payload", WH_A, false),
            failed("evt_disabled", WH_B, true),
            failed("evt_orphan", "wh_00000000000000ff", true),
        ])
        .await
        .unwrap();
    let cases = [
        (delivery_id("evt_no_payload", WH_A), "payload"),
        (delivery_id("evt_disabled", WH_B), "disabled"),
        (
            delivery_id("evt_orphan", "wh_00000000000000ff"),
            "no longer exists",
        ),
    ];
    for (id, why) in cases {
        let response = api
            .post(&format!("/v1/deliveries/{id}/retry"), json!({}))
            .await;
        let message = assert_error(&response, 409);
        assert!(message.contains(why), "{id}: {message}");
        // Refused means untouched.
        let d = delivery(&db, &id).await.unwrap();
        assert_eq!(d.get_str("status").unwrap(), "failed", "{id}");
    }
    // Recovering a disabled webhook is refused the same way.
    let response = api
        .post(
            &format!("/v1/webhooks/{WH_B}/recover"),
            json!({"since": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert!(assert_error(&response, 409).contains("disabled"));
    assert_eq!(other.count(), 0);
    daemon.stop().await.unwrap();
}
