//! Pausing an endpoint: it holds its deliveries as pending and starts no attempt until
//! resumed.

use std::time::Duration;

use bytes::Bytes;

use super::{
    config, delivered, event, pos, quiet_for, settle_webhooks, start, successes, until, webhook,
};
use crate::delivery::DeliveryStatus;
use crate::fakes::Answer;
use crate::webhook::WebhookSpec;

#[tokio::test(start_paused = true)]
async fn a_paused_endpoint_holds_its_deliveries_as_pending_until_resumed() {
    let (engine, transport, ledger) = start(config()).await;
    let handle = engine.handle();
    let paused = WebhookSpec {
        paused: true,
        ..webhook("a", &["*"])
    };
    handle.upsert_webhook(paused.clone()).unwrap();
    settle_webhooks(&handle).await;
    for i in 0..5 {
        let token = Bytes::from(format!("t{i}"));
        handle
            .submit(event(&format!("evt_{i}"), "x"), Some(pos(token)))
            .await
            .unwrap();
    }
    // Recorded as pending, and the checkpoint moves past them: nothing is lost in a
    // crash and the feed is not held back.
    until("5 pending records", || {
        ledger.count_with(DeliveryStatus::Pending) == 5
    })
    .await;
    until("checkpoint at the last event", || {
        ledger.everywhere_at(b"t4".as_ref())
    })
    .await;
    quiet_for(Duration::from_millis(100)).await;
    assert_eq!(
        transport.sent().len(),
        0,
        "a paused endpoint sent something"
    );

    handle
        .upsert_webhook(WebhookSpec {
            paused: false,
            ..paused
        })
        .unwrap();
    until("5 deliveries", || {
        ledger.count_with(DeliveryStatus::Succeeded) == 5
    })
    .await;
    assert_eq!(transport.sent().len(), 5);
    let stored = ledger.delivery("evt_0:a").unwrap();
    assert_eq!(stored.record.attempts, 1);
    assert_eq!(stored.attempt_log.len(), 1);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn pausing_a_busy_endpoint_starts_nothing_more_and_resuming_delivers_each_once() {
    let mut config = config();
    config.max_in_flight_per_endpoint = 2;
    config.attempt_timeout = Duration::from_secs(5);
    let (engine, transport, ledger) = start(config).await;
    let handle = engine.handle();
    let spec = webhook("a", &["*"]);
    let url = spec.url.to_string();
    handle.upsert_webhook(spec.clone()).unwrap();
    settle_webhooks(&handle).await;
    // Proven by a first delivery, the endpoint lines up more attempts than it runs.
    handle.submit(event("evt_first", "x"), None).await.unwrap();
    until("the first delivery", || delivered(&ledger, "a") == 1).await;
    transport.set_default(&url, Answer::Slow(Duration::from_millis(500)));
    for i in 0..20 {
        handle
            .submit(event(&format!("evt_{i}"), "x"), None)
            .await
            .unwrap();
    }
    until("two attempts under way", || transport.sent_to(&url) >= 3).await;
    handle
        .upsert_webhook(WebhookSpec {
            paused: true,
            ..spec.clone()
        })
        .unwrap();
    settle_webhooks(&handle).await;
    // What was under way (answered after 500 ms) ends; what was lined up behind it
    // never starts.
    quiet_for(Duration::from_millis(20)).await;
    let sent = transport.sent_to(&url);
    assert_eq!(sent, 1 + 2, "the cap is 2");
    quiet_for(Duration::from_millis(800)).await;
    let after = transport.sent_to(&url);
    assert_eq!(after, sent, "a paused endpoint started attempts");
    assert_eq!(delivered(&ledger, "a"), 1 + 2, "what was under way ended");
    transport.set_default(&url, Answer::Status(200));

    handle
        .upsert_webhook(WebhookSpec {
            paused: false,
            ..spec
        })
        .unwrap();
    until("every delivery", || delivered(&ledger, "a") == 21).await;
    let successes = successes(&ledger, "a");
    assert!(
        successes.values().all(|n| *n == 1),
        "a delivery succeeded more than once: {successes:?}"
    );
    assert_eq!(transport.sent_to(&url), 21);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}
