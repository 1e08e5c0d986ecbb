//! The reads and the action the inspector added to the API, without a browser: a webhook's
//! hour in buckets (`/stats`), a delivery's signed payload (`include=payload`), deliveries
//! by event type and creation time, and a test event that reaches one webhook only.

use std::time::Duration;

use serde_json::json;

use super::{DEADLINE, KEY};
use crate::daemon::start_with_key;
use crate::fixtures::{database, wait_for_status};
use crate::support::{eventually, Receiver};

#[tokio::test]
async fn the_inspector_reads_stats_payloads_and_filtered_deliveries_and_sends_test_events() {
    let (uri, name, db) = database("ui_api").await;
    let failing = Receiver::start().await;
    failing.respond_with(500);
    let healthy = Receiver::start().await;
    let (daemon, api) = start_with_key(&uri, &name, KEY, |c| c.retry_max_attempts = 2).await;

    let mut ids = Vec::new();
    for receiver in [&failing, &healthy] {
        let created = api
            .post(
                "/v1/webhooks",
                json!({"url": receiver.url, "event_types": ["object.created"]}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
        ids.push(created.body["webhook_id"].as_str().unwrap().to_owned());
    }
    let (to_failing, to_healthy) = (&ids[0], &ids[1]);
    let published = api
        .post(
            "/v1/events",
            json!({"event_type": "object.created", "event_id": "evt_api_1", "data": {"object_id": "o1"}}),
        )
        .await;
    assert_eq!(published.status, 202);
    let failed = format!("evt_api_1:{to_failing}");
    let succeeded = format!("evt_api_1:{to_healthy}");
    wait_for_status(&db, &failed, "failed").await;
    wait_for_status(&db, &succeeded, "succeeded").await;

    // The signed body, from the ledger for the failed one; rebuilt from the outbox event
    // for the one that succeeded at once (its body was never stored). Same bytes as sent.
    let sent = healthy.requests()[0].json();
    for (id, sources) in [
        (&failed, &["ledger"][..]),
        (&succeeded, &["ledger", "event"][..]),
    ] {
        let read = api
            .get(&format!("/v1/deliveries/{id}?include=payload"))
            .await;
        assert_eq!(read.status, 200, "{}", read.body);
        assert_eq!(read.body["payload"], sent, "{id}");
        let source = read.body["payload_source"].as_str().unwrap();
        assert!(sources.contains(&source), "{id}: {source}");
    }
    let plain = api.get(&format!("/v1/deliveries/{failed}")).await;
    assert!(plain.body.get("payload").is_none(), "only when asked");
    assert_eq!(
        api.get(&format!("/v1/deliveries/{failed}?include=secrets"))
            .await
            .status,
        400
    );

    // Filters by event type and creation time.
    let count = |query: String| {
        let api = &api;
        async move {
            let page = api.get(&format!("/v1/deliveries?{query}")).await;
            assert_eq!(page.status, 200, "{query}: {}", page.body);
            page.body["results"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("event_type=object.created".into()).await, 2);
    assert_eq!(count("event_type=object.deleted".into()).await, 0);
    assert_eq!(count("created_after=2000-01-01T00:00:00Z".into()).await, 2);
    assert_eq!(count("created_before=2000-01-01T00:00:00Z".into()).await, 0);
    assert_eq!(
        count(format!(
            "created_after=2000-01-01T00:00:00Z&webhook_id={to_failing}"
        ))
        .await,
        1
    );
    let bad = api.get("/v1/deliveries?created_after=yesterday").await;
    assert_eq!(bad.status, 400, "{}", bad.body);

    // The hour in buckets: the failing endpoint's two attempts, none succeeded.
    eventually(DEADLINE, "the failing endpoint's stats", || async {
        let stats = api.get(&format!("/v1/webhooks/{to_failing}/stats")).await;
        stats.status == 200 && stats.body["attempts"] == 2
    })
    .await;
    let stats = api.get(&format!("/v1/webhooks/{to_failing}/stats")).await;
    assert_eq!(stats.body["successes"], 0);
    assert_eq!(stats.body["buckets"].as_array().unwrap().len(), 12);
    assert_eq!(stats.body["bucket_seconds"], 300);
    assert_eq!(
        api.get("/v1/webhooks/wh_0000000000000000/stats")
            .await
            .status,
        404
    );

    // A test event reaches the healthy webhook, and only it.
    let (failing_before, healthy_before) = (failing.count(), healthy.count());
    let sent = api
        .post(&format!("/v1/webhooks/{to_healthy}/test"), json!({}))
        .await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    let delivery_id = sent.body["delivery_id"].as_str().unwrap().to_owned();
    let requests = healthy.wait_for(healthy_before + 1, DEADLINE).await;
    let test = requests.last().unwrap().json();
    assert_eq!(test["event_type"], "webhook.test");
    assert_eq!(test["event_id"], sent.body["event_id"]);
    wait_for_status(&db, &delivery_id, "succeeded").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        failing.count(),
        failing_before,
        "the other webhook got nothing"
    );

    // Not for a disabled or unknown webhook.
    let disabled = api
        .patch(
            &format!("/v1/webhooks/{to_failing}"),
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(disabled.status, 200);
    let refused = api
        .post(&format!("/v1/webhooks/{to_failing}/test"), json!({}))
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(
        api.post("/v1/webhooks/wh_0000000000000000/test", json!({}))
            .await
            .status,
        404
    );

    daemon.stop().await.unwrap();
}
