//! The delivery engine end to end: MongoDB change stream in, signed HTTPS POSTs out.

use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document};

use crate::daemon::{test_config, InProcess};
use crate::fixtures::*;
use crate::support::{Receiver, Response};

/// Gives herald a moment to (not) deliver more than expected. Only for negative checks,
/// after a positive one showed herald has caught up.
async fn quiet_period() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn an_event_reaches_every_matching_enabled_webhook_exactly_once() {
    let (uri, name, db) = database("fanout").await;
    let created = Receiver::start().await;
    let batches = Receiver::start().await;
    let everything = Receiver::start().await;
    let disabled = Receiver::start().await;
    insert_webhook(
        &db,
        webhook("wh_00000000000000a1", &created.url, &["object.created"]),
    )
    .await;
    insert_webhook(
        &db,
        webhook("wh_00000000000000a2", &batches.url, &["batch.completed"]),
    )
    .await;
    insert_webhook(&db, webhook("wh_00000000000000a3", &everything.url, &["*"])).await;
    let mut off = webhook("wh_00000000000000a4", &disabled.url, &["*"]);
    off.insert("enabled", false);
    insert_webhook(&db, off).await;
    let daemon = InProcess::start(test_config(&uri, &name, &created.ca_pem_path)).await;

    insert_event(&db, "evt_fanout_1", "object.created").await;
    let got = created.wait_for(1, Duration::from_secs(20)).await;
    everything.wait_for(1, Duration::from_secs(20)).await;
    quiet_period().await;
    assert_eq!(created.count(), 1);
    assert_eq!(everything.count(), 1);
    assert_eq!(batches.count(), 0);
    assert_eq!(disabled.count(), 0);

    let request = &got[0];
    assert_signed(request);
    assert_eq!(header(request, "webhook-id"), Some("evt_fanout_1"));
    assert_eq!(header(request, "x-mixpeek-secret"), Some("shared-secret"));
    assert_eq!(header(request, "content-type"), Some("application/json"));
    let body = body_json(request);
    assert_eq!(body["event_id"], "evt_fanout_1");
    assert_eq!(body["event_type"], "object.created");
    assert_eq!(body["data"]["document_ids"][1], "d2");
    assert_eq!(body["cache_scope"]["scope"], "collection");
    assert!(body["occurred_at"].as_str().unwrap().ends_with('Z'));
    // The same bytes went to both endpoints.
    assert_eq!(request.body, everything.requests()[0].body);

    let d = wait_for_status(&db, "evt_fanout_1:wh_00000000000000a1", "succeeded").await;
    assert_eq!(d.get_i64("attempts").unwrap(), 1);
    assert_eq!(d.get_array("attempt_log").unwrap().len(), 1);
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn inserting_a_bucket_object_publishes_object_created() {
    let (uri, name, db) = database("objects").await;
    let receiver = Receiver::start().await;
    insert_webhook(
        &db,
        webhook("wh_00000000000000b1", &receiver.url, &["object.created"]),
    )
    .await;
    let daemon = InProcess::start(test_config(&uri, &name, &receiver.ca_pem_path)).await;

    db.collection::<Document>("objects")
        .insert_one(doc! {"_id": "obj_1", "bucket_id": "bkt_1", "metadata": {"title": "cat"}})
        .await
        .unwrap();
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    let body = body_json(&got[0]);
    assert_eq!(body["event_type"], "object.created");
    assert_eq!(body["data"]["bucket_id"], "bkt_1");
    assert_eq!(body["data"]["object_id"], "obj_1");
    assert_eq!(body["data"]["metadata"]["title"], "cat");
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn failures_are_retried_until_2xx_with_the_same_body() {
    let (uri, name, db) = database("retry").await;
    let receiver = Receiver::start().await;
    receiver.script(vec![Response::status(500), Response::status(500)]);
    insert_webhook(&db, webhook("wh_00000000000000c1", &receiver.url, &["*"])).await;
    let daemon = InProcess::start(test_config(&uri, &name, &receiver.ca_pem_path)).await;

    insert_event(&db, "evt_retry_1", "batch.completed").await;
    let d = wait_for_status(&db, "evt_retry_1:wh_00000000000000c1", "succeeded").await;
    assert_eq!(d.get_i64("attempts").unwrap(), 3);
    let codes: Vec<i32> = d
        .get_array("attempt_log")
        .unwrap()
        .iter()
        .map(|a| a.as_document().unwrap().get_i32("status_code").unwrap())
        .collect();
    assert_eq!(codes, [500, 500, 200]);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| r.body == requests[0].body));
    assert!(requests
        .iter()
        .all(|r| header(r, "webhook-id") == Some("evt_retry_1")));
    requests.iter().for_each(assert_signed);
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn retry_after_is_respected() {
    let (uri, name, db) = database("retryafter").await;
    let receiver = Receiver::start().await;
    receiver.script(vec![Response::status(429).header("retry-after", "2")]);
    insert_webhook(&db, webhook("wh_00000000000000d1", &receiver.url, &["*"])).await;
    let mut config = test_config(&uri, &name, &receiver.ca_pem_path);
    config.retry_max_ms = 10_000;
    let daemon = InProcess::start(config).await;

    insert_event(&db, "evt_ra_1", "batch.completed").await;
    let got = receiver.wait_for(2, Duration::from_secs(20)).await;
    let gap = got[1].at.duration_since(got[0].at);
    assert!(
        gap >= Duration::from_millis(1_900),
        "retried after {gap:?}, asked for 2 s"
    );
    wait_for_status(&db, "evt_ra_1:wh_00000000000000d1", "succeeded").await;
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn an_endpoint_that_always_fails_ends_failed_with_its_attempt_log() {
    let (uri, name, db) = database("exhaust").await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    insert_webhook(&db, webhook("wh_00000000000000e1", &receiver.url, &["*"])).await;
    let mut config = test_config(&uri, &name, &receiver.ca_pem_path);
    config.retry_max_attempts = 4;
    let daemon = InProcess::start(config).await;

    insert_event(&db, "evt_fail_1", "batch.completed").await;
    let d = wait_for_status(&db, "evt_fail_1:wh_00000000000000e1", "failed").await;
    assert_eq!(d.get_i64("attempts").unwrap(), 4);
    assert_eq!(d.get_i32("last_status_code").unwrap(), 500);
    let log = d.get_array("attempt_log").unwrap();
    assert_eq!(log.len(), 4);
    assert!(log
        .iter()
        .all(|a| a.as_document().unwrap().get_i32("status_code") == Ok(500)));
    assert!(d.get_datetime("completed_at").is_ok());
    // Kept for inspection and replay: stored once for the event, named by the delivery.
    assert_eq!(d.get_str("payload_id").unwrap(), "evt_fail_1");
    let stored = db
        .collection::<Document>("payloads")
        .find_one(doc! {"_id": "evt_fail_1"})
        .await
        .unwrap()
        .unwrap();
    assert!(stored.get_str("body").unwrap().contains("evt_fail_1"));
    quiet_period().await;
    assert_eq!(receiver.count(), 4);
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_and_does_not_slow_a_healthy_one() {
    let (uri, name, db) = database("timeout").await;
    let stuck = Receiver::start().await;
    stuck.respond_with_response(Response::hang());
    let healthy = Receiver::start().await;
    insert_webhook(&db, webhook("wh_00000000000000f1", &stuck.url, &["*"])).await;
    insert_webhook(&db, webhook("wh_00000000000000f2", &healthy.url, &["*"])).await;
    let mut config = test_config(&uri, &name, &stuck.ca_pem_path);
    config.attempt_timeout_ms = 3_000;
    config.retry_max_attempts = 2;
    let daemon = InProcess::start(config).await;

    let events: Vec<Document> = (0..30)
        .map(|i| event(&format!("evt_to_{i}"), "batch.completed"))
        .collect();
    db.collection::<Document>("events")
        .insert_many(events)
        .await
        .unwrap();
    let healthy_got = healthy.wait_for(30, Duration::from_secs(20)).await;

    // A failing endpoint is probed two attempts at a time, so its deliveries end one by
    // one; the first to end shows what every attempt met.
    let deadline = Instant::now() + Duration::from_secs(60);
    let d = loop {
        let failed = deliveries(
            &db,
            doc! {"webhook_id": "wh_00000000000000f1", "status": "failed"},
        )
        .await;
        if let Some(d) = failed.into_iter().next() {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "no delivery to the stuck endpoint ended failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Every healthy delivery arrived while the stuck endpoint's first attempts were still
    // waiting for their timeout: before the first retry reached it (a retry follows a
    // timed-out attempt, so it comes after the first timeout).
    let stuck_got = stuck.requests();
    let mut seen = std::collections::HashSet::new();
    let first_retry = stuck_got
        .iter()
        .filter(|r| !seen.insert(header(r, "webhook-id").map(str::to_owned)))
        .map(|r| r.at)
        .min()
        .expect("a delivery that failed after two attempts was retried");
    let healthy_done = healthy_got.iter().map(|r| r.at).max().unwrap();
    assert!(
        healthy_done < first_retry,
        "the healthy endpoint's last delivery came {:?} after the stuck endpoint's first retry",
        healthy_done.duration_since(first_retry)
    );

    let log = d.get_array("attempt_log").unwrap();
    assert_eq!(log.len(), 2);
    for attempt in log {
        let attempt = attempt.as_document().unwrap();
        assert!(
            attempt.get_str("error").unwrap().contains("timed out"),
            "{attempt}"
        );
        assert!(attempt.get_i64("duration_ms").unwrap() >= 2_900);
    }
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn webhook_changes_take_effect_without_a_restart() {
    let (uri, name, db) = database("live").await;
    let receiver = Receiver::start().await;
    let daemon = InProcess::start(test_config(&uri, &name, &receiver.ca_pem_path)).await;
    let webhooks = db.collection::<Document>("webhooks");
    let id = "wh_0000000000000101";
    // Tells when herald has applied a change, and routed an event.
    let mut marker = Marker::start(&db, "wh_00000000000001ff").await;

    // Created while running.
    insert_webhook(&db, webhook(id, &receiver.url, &["batch.completed"])).await;
    marker.changes_applied().await;
    insert_event(&db, "evt_live_created", "batch.completed").await;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(header(&got[0], "webhook-id"), Some("evt_live_created"));

    // Disabled: nothing more arrives.
    webhooks
        .update_one(doc! {"_id": id}, doc! {"$set": {"enabled": false}})
        .await
        .unwrap();
    marker.changes_applied().await;
    let before = receiver.count();
    insert_event(&db, "evt_live_while_disabled", "batch.completed").await;
    marker.events_routed().await;
    quiet_period().await;
    assert_eq!(
        receiver.count(),
        before,
        "a disabled webhook received an event"
    );

    // Re-enabled: events flow again.
    webhooks
        .update_one(doc! {"_id": id}, doc! {"$set": {"enabled": true}})
        .await
        .unwrap();
    marker.changes_applied().await;
    insert_event(&db, "evt_live_reenabled", "batch.completed").await;
    // (An attempt under way when the webhook was disabled is recorded pending and may go
    // out again now — at least once — so the new event need not be the last to arrive.)
    crate::support::eventually(
        Duration::from_secs(20),
        "the re-enabled webhook's event",
        || {
            let got = receiver
                .requests()
                .iter()
                .any(|r| header(r, "webhook-id") == Some("evt_live_reenabled"));
            async move { got }
        },
    )
    .await;

    // Event types changed: the old type no longer matches.
    webhooks
        .update_one(
            doc! {"_id": id},
            doc! {"$set": {"event_types": ["cluster.completed"]}},
        )
        .await
        .unwrap();
    marker.changes_applied().await;
    let before = receiver.count();
    insert_event(&db, "evt_live_old_type", "batch.completed").await;
    insert_event(&db, "evt_live_new_type", "cluster.completed").await;
    receiver.wait_for(before + 1, Duration::from_secs(20)).await;
    quiet_period().await;
    assert_eq!(receiver.count(), before + 1);
    assert_eq!(
        header(&receiver.requests().pop().unwrap(), "webhook-id"),
        Some("evt_live_new_type")
    );

    // Deleted: nothing more arrives.
    webhooks.delete_one(doc! {"_id": id}).await.unwrap();
    marker.changes_applied().await;
    let before = receiver.count();
    insert_event(&db, "evt_live_after_delete", "cluster.completed").await;
    marker.events_routed().await;
    quiet_period().await;
    assert_eq!(
        receiver.count(),
        before,
        "a deleted webhook received an event"
    );
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn rate_limits_are_enforced_at_the_receiver() {
    let (uri, name, db) = database("ratelimit").await;
    let receiver = Receiver::start().await;
    let mut hook = webhook("wh_0000000000000201", &receiver.url, &["*"]);
    hook.insert("rate_limit_per_second", 5);
    insert_webhook(&db, hook).await;
    let daemon = InProcess::start(test_config(&uri, &name, &receiver.ca_pem_path)).await;

    let events: Vec<Document> = (0..15)
        .map(|i| event(&format!("evt_rl_{i}"), "batch.completed"))
        .collect();
    db.collection::<Document>("events")
        .insert_many(events)
        .await
        .unwrap();
    let got = receiver.wait_for(15, Duration::from_secs(30)).await;
    let times: Vec<Instant> = got.iter().map(|r| r.at).collect();
    // No one-second window holds more than the limit (one extra for window edges).
    let most = most_in_one_second(&times);
    assert!(most <= 6, "{most} requests within one second");
    let span = times.last().unwrap().duration_since(times[0]);
    assert!(
        span >= Duration::from_millis(2_500),
        "15 requests at 5/s took only {span:?}"
    );
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn plaintext_and_private_addresses_are_refused() {
    let (uri, name, db) = database("refuse").await;
    let receiver = Receiver::start().await;
    let plain_url = receiver.url.replace("https://", "http://");
    insert_webhook(&db, webhook("wh_0000000000000301", &plain_url, &["*"])).await;
    insert_webhook(&db, webhook("wh_0000000000000302", &receiver.url, &["*"])).await;
    let mut config = test_config(&uri, &name, &receiver.ca_pem_path);
    config.allow_private_networks = Vec::new();
    config.retry_max_attempts = 2;
    let daemon = InProcess::start(config).await;

    insert_event(&db, "evt_refuse_1", "batch.completed").await;
    let plain = wait_for_status(&db, "evt_refuse_1:wh_0000000000000301", "failed").await;
    assert_eq!(
        plain.get_i64("attempts").unwrap(),
        1,
        "a plaintext URL is never worth retrying"
    );
    assert!(plain
        .get_str("last_error")
        .unwrap()
        .contains("HTTPS is required"));
    let private = wait_for_status(&db, "evt_refuse_1:wh_0000000000000302", "failed").await;
    let error = private.get_str("last_error").unwrap();
    assert!(
        error.contains("127.0.0.1") && error.contains("loopback"),
        "{error}"
    );
    assert_eq!(receiver.count(), 0, "a refused address was dialled");
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_documents_are_skipped_without_blocking_the_rest() {
    let (uri, name, db) = database("malformed").await;
    let receiver = Receiver::start().await;
    let bad_secret = Receiver::start().await;
    insert_webhook(&db, webhook("wh_0000000000000401", &receiver.url, &["*"])).await;
    let mut broken = webhook("wh_0000000000000402", &bad_secret.url, &["*"]);
    broken.insert("secret", "not-a-secret");
    insert_webhook(&db, broken).await;
    let daemon = InProcess::start(test_config(&uri, &name, &receiver.ca_pem_path)).await;

    let events = db.collection::<Document>("events");
    events
        .insert_one(doc! {"_id": "evt_bad_1", "data": {"no": "type"}})
        .await
        .unwrap();
    events
        .insert_one(doc! {"_id": "evt_bad_2", "event_type": 42})
        .await
        .unwrap();
    events
        .insert_one(doc! {"_id": "evt_bad_3", "event_type": "x", "data": "not a document"})
        .await
        .unwrap();
    let huge = "x".repeat(2 << 20);
    events
        .insert_one(doc! {"_id": "evt_bad_4", "event_type": "x", "data": {"blob": huge}})
        .await
        .unwrap();
    insert_event(&db, "evt_good_after_bad", "batch.completed").await;

    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(header(&got[0], "webhook-id"), Some("evt_good_after_bad"));
    quiet_period().await;
    assert_eq!(receiver.count(), 1);
    assert_eq!(
        bad_secret.count(),
        0,
        "a webhook with an invalid secret was delivered to"
    );
    daemon.stop().await.unwrap();
}
