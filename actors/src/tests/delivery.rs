//! Delivering: fan-out, signing, retries, timeouts, rate limits, connection pools.

use std::time::Duration;

use bytes::Bytes;

use super::{config, event, pos, settle_webhooks, start, until, webhook, SECRET};
use crate::delivery::{DeliveryStatus, PendingDelivery};
use crate::fakes::{Answer, Moment};
use crate::signing::{verify_header, SigningKey};
use crate::webhook::WebhookSpec;

#[tokio::test(start_paused = true)]
async fn delivers_each_event_once_to_each_matching_enabled_webhook() {
    let (engine, transport, ledger) = start(config()).await;
    let handle = engine.handle();
    handle
        .upsert_webhook(webhook("a", &["object.created"]))
        .unwrap();
    handle
        .upsert_webhook(webhook("b", &["batch.completed"]))
        .unwrap();
    handle.upsert_webhook(webhook("all", &["*"])).unwrap();
    handle
        .upsert_webhook(WebhookSpec {
            enabled: false,
            ..webhook("off", &["*"])
        })
        .unwrap();
    settle_webhooks(&handle).await;

    for i in 0..10 {
        let token = Bytes::from(format!("t{i}"));
        handle
            .submit(
                event(&format!("evt_{i}"), "object.created"),
                Some(pos(token)),
            )
            .await
            .unwrap();
    }
    until("20 deliveries", || {
        ledger.count_with(DeliveryStatus::Succeeded) == 20
    })
    .await;
    until("checkpoint at the last event", || {
        ledger.everywhere_at(b"t9".as_ref())
    })
    .await;

    assert_eq!(transport.sent_to("https://a.example/hook"), 10);
    assert_eq!(transport.sent_to("https://all.example/hook"), 10);
    assert_eq!(transport.sent_to("https://b.example/hook"), 0);
    assert_eq!(transport.sent_to("https://off.example/hook"), 0);

    // Signed per Standard Webhooks, with the webhook's own headers and identical bytes.
    let key = SigningKey::parse(SECRET).unwrap();
    for request in transport.sent() {
        assert!(verify_header(
            &key,
            &request.msg_id,
            request.timestamp,
            &request.body,
            &request.signature
        ));
        assert_eq!(
            &*request.headers,
            &[("X-Mixpeek-Secret".to_owned(), "shh".to_owned())]
        );
    }
    // Batched: far fewer ledger writes than deliveries.
    assert!(ledger.writes() < 20, "{} writes", ledger.writes());
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn retries_until_2xx_and_keeps_the_attempt_log() {
    let (engine, transport, ledger) = start(config()).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    transport.script(
        "https://a.example/hook",
        vec![Answer::Status(500), Answer::Status(500)],
    );

    handle.submit(event("evt_1", "x"), None).await.unwrap();
    until("success", || {
        ledger.count_with(DeliveryStatus::Succeeded) == 1
    })
    .await;

    let stored = ledger.delivery("evt_1:a").unwrap();
    assert_eq!(stored.record.attempts, 3);
    let codes: Vec<_> = stored.attempt_log.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [Some(500), Some(500), Some(200)]);
    // Every attempt sent the same bytes.
    let bodies: Vec<_> = transport.sent().into_iter().map(|r| r.body).collect();
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_end_failed_with_payload_kept_for_replay() {
    let (engine, transport, ledger) = start(config()).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    transport.set_default("https://a.example/hook", Answer::Status(503));

    handle.submit(event("evt_1", "x"), None).await.unwrap();
    until("failure", || ledger.count_with(DeliveryStatus::Failed) == 1).await;
    let stored = ledger.delivery("evt_1:a").unwrap();
    assert_eq!(stored.record.attempts, 3);
    assert_eq!(stored.attempt_log.len(), 3);
    assert_eq!(stored.record.last_status_code, Some(503));
    assert!(stored.payload.is_some());
    assert_eq!(transport.sent_to("https://a.example/hook"), 3);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_waited_for() {
    let mut config = config();
    config.retry.max = Duration::from_secs(10);
    let (engine, transport, ledger) = start(config).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    let url = "https://a.example/hook";
    transport.script(
        url,
        vec![Answer::StatusRetryAfter(429, Duration::from_millis(400))],
    );
    handle.submit(event("evt_1", "x"), None).await.unwrap();
    until("success", || {
        ledger.count_with(DeliveryStatus::Succeeded) == 1
    })
    .await;
    // The backoff alone would have retried within milliseconds.
    let sent = transport.sent_at(url);
    assert_eq!(sent.len(), 2);
    let waited = sent[1].since(&sent[0]);
    assert!(
        waited >= Duration::from_millis(400),
        "retried after {waited:?}"
    );
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn plaintext_urls_fail_without_being_dialled() {
    let (engine, transport, ledger) = start(config()).await;
    let handle = engine.handle();
    handle
        .upsert_webhook(WebhookSpec {
            url: "http://a.example/hook".into(),
            ..webhook("a", &["*"])
        })
        .unwrap();
    settle_webhooks(&handle).await;
    handle.submit(event("evt_1", "x"), None).await.unwrap();
    until("failure", || ledger.count_with(DeliveryStatus::Failed) == 1).await;
    let stored = ledger.delivery("evt_1:a").unwrap();
    assert_eq!(stored.record.attempts, 1);
    assert!(stored
        .record
        .last_error
        .unwrap()
        .contains("HTTPS is required"));
    assert!(transport.sent().is_empty());
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_hanging_endpoint_times_out_and_does_not_delay_others() {
    let config = config();
    let timeout = config.attempt_timeout;
    let (engine, transport, ledger) = start(config).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("slow", &["*"])).unwrap();
    handle.upsert_webhook(webhook("fast", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    let (slow, fast) = ("https://slow.example/hook", "https://fast.example/hook");
    transport.set_default(slow, Answer::Hang);

    for i in 0..20 {
        handle
            .submit(event(&format!("evt_{i}"), "x"), None)
            .await
            .unwrap();
    }
    until("fast endpoint done", || transport.sent_to(fast) == 20).await;
    // Every delivery to the answering endpoint was made before the hanging one's first
    // attempt timed out.
    let first_timeout = transport.sent_at(slow)[0].timer + timeout;
    let last_fast = transport.sent_at(fast)[19].timer;
    assert!(
        last_fast < first_timeout,
        "the last fast delivery came {:?} after the first timeout",
        last_fast - first_timeout
    );

    until("slow endpoint exhausted", || {
        ledger.count_with(DeliveryStatus::Failed) == 20
    })
    .await;
    let stored = ledger.delivery("evt_0:slow").unwrap();
    assert!(stored
        .attempt_log
        .iter()
        .all(|a| a.error.as_deref() == Some("timed out after 200 ms")));
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// On real time: the limiter reads the wall clock (governor's `DefaultClock`), which paused
/// time does not move.
#[tokio::test]
async fn rate_limit_spaces_attempts() {
    let (engine, transport, ledger) = start(config()).await;
    let handle = engine.handle();
    let url = "https://a.example/hook";
    handle
        .upsert_webhook(WebhookSpec {
            rate_limit_per_second: Some(10),
            ..webhook("a", &["*"])
        })
        .unwrap();
    settle_webhooks(&handle).await;
    let started = Moment::now();
    for i in 0..25 {
        handle
            .submit(event(&format!("evt_{i}"), "x"), None)
            .await
            .unwrap();
    }
    until("all delivered", || {
        ledger.count_with(DeliveryStatus::Succeeded) == 25
    })
    .await;
    // One every 100 ms, no burst: the k-th attempt was allowed at least k × 100 ms after
    // the first could be. A loaded machine only sends later. (95 ms: the limiter's clock,
    // quanta's calibrated TSC, may run slightly apart from tokio's.)
    let sent = transport.sent_at(url);
    assert_eq!(sent.len(), 25);
    for (k, at) in sent.iter().enumerate() {
        let after = at.timer - started.timer;
        assert!(
            after >= Duration::from_millis(95) * k as u32,
            "attempt {k} sent {after:?} after the first could be"
        );
    }
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn answering_endpoints_share_connections_and_one_that_hangs_moves_to_its_own() {
    let mut config = config();
    config.attempt_timeout = Duration::from_secs(2);
    config.retry.max_attempts = 50;
    let (engine, transport, ledger) = start(config).await;
    let handle = engine.handle();
    let (ok, dead) = ("https://ok.example/hook", "https://dead.example/hook");
    transport.set_default(dead, Answer::Hang);
    handle.upsert_webhook(webhook("ok", &["*"])).unwrap();
    handle.upsert_webhook(webhook("dead", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    for i in 0..10 {
        handle
            .submit(event(&format!("evt_{i}"), "x"), None)
            .await
            .unwrap();
    }
    until("the answering endpoint served", || {
        transport.sent_to(ok) == 10
    })
    .await;
    assert_eq!(transport.sent_through(ok, false), 10, "shared connections");
    // Not answered yet: one attempt at a time, so a new endpoint that hangs holds one
    // stream of the shared connection, not a whole in-flight window.
    assert_eq!(transport.sent_to(dead), 1, "slow start");

    // Its first attempt timed out: the queued ones go through connections of its own.
    until("the rest sent after the timeout", || {
        transport.sent_through(dead, true) >= 9
    })
    .await;
    assert_eq!(transport.sent_through(dead, false), 1);

    // Answering again, it shares the connections again.
    transport.set_default(dead, Answer::Status(200));
    until("everything delivered", || {
        ledger.count_with(DeliveryStatus::Succeeded) == 20
    })
    .await;
    let shared_before = transport.sent_through(dead, false);
    handle.submit(event("evt_after", "x"), None).await.unwrap();
    until("the new event delivered", || {
        ledger.count_with(DeliveryStatus::Succeeded) == 22
    })
    .await;
    assert_eq!(transport.sent_through(dead, false), shared_before + 1);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn resumed_deliveries_are_attempted_at_their_due_time() {
    let (engine, transport, ledger) = start(config()).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    let url = "https://a.example/hook";
    let body = event("evt_9", "x").body;
    let wait = Duration::from_secs(5);
    let resumed = Moment::now();
    handle
        .resume(PendingDelivery {
            event_id: "evt_9".into(),
            webhook_id: "a".into(),
            event_type: "x".into(),
            task_id: None,
            attempts: 2,
            next_attempt_at: resumed.wall + wait,
            created_at: resumed.wall,
            payload: body.clone(),
        })
        .unwrap();
    settle_webhooks(&handle).await;
    assert!(transport.sent().is_empty());
    until("resumed delivery succeeds", || {
        ledger.count_with(DeliveryStatus::Succeeded) == 1
    })
    .await;
    // Attempted once, and not before it was due.
    let sent = transport.sent_at(url);
    assert_eq!(sent.len(), 1);
    let after = sent[0].since(&resumed);
    assert!(after >= wait, "attempted {after:?} after resuming");
    let stored = ledger.delivery("evt_9:a").unwrap();
    assert_eq!(stored.record.attempts, 3);
    assert!(!stored.record.first_write);
    assert_eq!(transport.sent()[0].body, body);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// The byte bound of the feed window holds events back while their bodies add up past it,
/// and an event larger than the whole bound still goes through, alone.
#[tokio::test(start_paused = true)]
async fn events_larger_than_the_byte_window_go_through_one_at_a_time() {
    let (engine, transport, ledger) = start(crate::config::EngineConfig {
        max_bytes_in_flight: 16,
        ..config()
    })
    .await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    handle.upsert_webhook(webhook("b", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    for i in 0..10 {
        let token = Bytes::from(format!("t{i}"));
        let event = event(&format!("evt_{i}"), "object.created");
        assert!(event.body.len() > 16);
        handle.submit(event, Some(pos(token))).await.unwrap();
    }
    until("every delivery", || {
        ledger.count_with(DeliveryStatus::Succeeded) == 20
    })
    .await;
    until("checkpoint at the last event", || {
        ledger.everywhere_at(b"t9".as_ref())
    })
    .await;
    assert_eq!(transport.sent_to("https://a.example/hook"), 10);
    assert_eq!(transport.sent_to("https://b.example/hook"), 10);
}
