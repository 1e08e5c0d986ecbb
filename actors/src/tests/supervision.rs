//! Watching over endpoints: a crashed actor restarted with its backlog, a failing
//! endpoint probed gently, and the alerts raised on the way.

use std::time::Duration;

use super::{config, event, once_holding, pos, quiet_for, settle_webhooks, start, until, webhook};
use crate::delivery::DeliveryStatus;
use crate::fakes::Answer;
use crate::health::Alert;

#[tokio::test(start_paused = true)]
async fn a_crashed_endpoint_is_restarted_with_its_backlog() {
    let (engine, transport, ledger) = start(config()).await;
    let handle = engine.handle();
    let url = "https://a.example/hook";
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    // Not proven yet, the endpoint makes one attempt at a time: a first one slow to answer
    // keeps the others queued.
    transport.script(url, vec![Answer::Slow(Duration::from_secs(1))]);
    for i in 0..6 {
        handle
            .submit(event(&format!("evt_{i}"), "x"), Some(pos(format!("t{i}"))))
            .await
            .unwrap();
    }
    let before = once_holding(&handle, "a", 6).await;
    assert_eq!((before.in_flight, before.queued), (1, 5));
    handle.crash_endpoint("a");
    until("all delivered after the restart", || {
        ledger.count_with(DeliveryStatus::Succeeded) == 6
    })
    .await;
    assert!(transport.sent_to(url) >= 6);
    let stats = handle.stats().await.unwrap();
    assert_eq!(stats.endpoint_restarts, 1);
    assert_eq!(stats.endpoints, 1);
    until("checkpoint at the last event", || {
        ledger.everywhere_at(b"t5".as_ref())
    })
    .await;
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// Deliveries routed to an endpoint while its actor crashes, queued behind the crash or
/// sent to the actor already gone, reach its successor: none is dropped, none is counted
/// as settled without a record.
#[tokio::test(start_paused = true)]
async fn deliveries_routed_while_an_endpoint_crashes_reach_its_successor() {
    let (engine, transport, ledger) = start(config()).await;
    let handle = engine.handle();
    let url = "https://a.example/hook";
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    handle.crash_endpoint("a");
    for i in 0..20 {
        handle
            .submit(
                event(&format!("evt_{i}"), "x"),
                Some(pos(format!("t{i:02}"))),
            )
            .await
            .unwrap();
        if i % 5 == 0 {
            tokio::task::yield_now().await;
        }
    }
    until("every delivery made after the restart", || {
        ledger.count_with(DeliveryStatus::Succeeded) == 20
    })
    .await;
    assert!(transport.sent_to(url) >= 20);
    until("checkpoint at the last event", || {
        ledger.everywhere_at(b"t19".as_ref())
    })
    .await;
    assert_eq!(handle.stats().await.unwrap().endpoint_restarts, 1);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failing_endpoint_is_probed_with_few_attempts_until_it_recovers() {
    let mut config = config();
    config.attempt_timeout = Duration::from_millis(100);
    config.retry.max_attempts = 50;
    let (engine, transport, ledger) = start(config).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("dead", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    transport.set_default("https://dead.example/hook", Answer::Hang);

    for i in 0..40 {
        handle
            .submit(event(&format!("evt_{i}"), "x"), None)
            .await
            .unwrap();
    }
    until("the first wave", || {
        transport.sent_to("https://dead.example/hook") >= 40
    })
    .await;
    quiet_for(Duration::from_millis(700)).await;
    // Uncapped, every 100 ms timeout would re-send all 40 (~240 by now); failing, the
    // endpoint is probed two at a time.
    let sent = transport.sent_to("https://dead.example/hook");
    assert!(sent < 80, "{sent} attempts to a dead endpoint");

    // Once it answers again, the backlog flows at full concurrency.
    transport.set_default("https://dead.example/hook", Answer::Status(200));
    until("all delivered after recovery", || {
        ledger.count_with(DeliveryStatus::Succeeded) == 40
    })
    .await;
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failing_endpoint_raises_one_failing_and_one_recovered_alert() {
    let mut config = config();
    config.retry.max_attempts = 100;
    config.health.failing_after = 4;
    let (engine, transport, ledger) = start(config).await;
    let handle = engine.handle();
    transport.set_default("https://a.example/hook", Answer::Status(503));
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    for i in 0..3 {
        handle
            .submit(event(&format!("evt_{i}"), "object.created"), None)
            .await
            .unwrap();
    }
    until("12 failed attempts", || {
        transport.sent_to("https://a.example/hook") >= 12
    })
    .await;
    let report = handle
        .endpoint("a")
        .await
        .unwrap()
        .expect("endpoint a runs");
    assert!(report.health.failing);
    assert!(report.health.consecutive_failures >= 12);
    assert_eq!(report.health.last_status_code, Some(503));
    assert_eq!(report.health.last_success_at, None);
    assert_eq!(report.health.success_rate(), Some(0.0));

    transport.set_default("https://a.example/hook", Answer::Status(200));
    until("3 deliveries succeed", || {
        ledger.count_with(DeliveryStatus::Succeeded) == 3
    })
    .await;
    until("the recovered alert", || ledger.alerts().len() >= 2).await;
    let alerts = ledger.alerts();
    let types: Vec<_> = alerts.iter().map(|a| a.event_type()).collect();
    assert_eq!(
        types,
        ["webhook.endpoint.failing", "webhook.endpoint.recovered"],
        "{alerts:?}"
    );
    match &alerts[0] {
        Alert::EndpointFailing {
            webhook_id,
            consecutive_failures,
            last_status_code,
            ..
        } => {
            assert_eq!(webhook_id, "a");
            assert_eq!(*consecutive_failures, 4);
            assert_eq!(*last_status_code, Some(503));
        }
        other => panic!("{other:?}"),
    }
    let report = handle.endpoint("a").await.unwrap().unwrap();
    assert!(!report.health.failing);
    assert_eq!(report.health.consecutive_failures, 0);
    assert!(report.health.last_success_at.is_some());
    assert!(handle.endpoint("nope").await.unwrap().is_none());
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_delivery_raises_delivery_exhausted_but_not_for_its_own_kind() {
    let (engine, transport, ledger) = start(config()).await;
    let handle = engine.handle();
    transport.set_default("https://a.example/hook", Answer::Status(500));
    handle
        .upsert_webhook(webhook("a", &["*", "delivery.exhausted"]))
        .unwrap();
    settle_webhooks(&handle).await;
    handle
        .submit(event("evt_x", "object.created"), None)
        .await
        .unwrap();
    handle
        .submit(event("evt_y", "delivery.exhausted"), None)
        .await
        .unwrap();
    until("both deliveries failed", || {
        ledger.count_with(DeliveryStatus::Failed) == 2
    })
    .await;
    until("the exhausted alert", || !ledger.alerts().is_empty()).await;
    // Give a wrongly raised second alert the time to show up.
    quiet_for(Duration::from_millis(100)).await;
    let alerts = ledger.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    match &alerts[0] {
        Alert::DeliveryExhausted {
            delivery_id,
            event_id,
            attempts,
            last_status_code,
            ..
        } => {
            assert_eq!(delivery_id, "evt_x:a");
            assert_eq!(event_id, "evt_x");
            assert_eq!(*attempts, 3);
            assert_eq!(*last_status_code, Some(500));
        }
        other => panic!("{other:?}"),
    }
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}
