//! Endpoint health is per endpoint, not per engine: it is kept in the ledger as it changes,
//! and an engine that starts an endpoint (a restarted daemon, one taking a partition over)
//! goes on from what was kept — a streak that was failing does not alert again, its next
//! 2xx raises one `recovered`, and the disable clock runs from the streak's first failure.

use std::time::{Duration, SystemTime};

use super::{config, event, settle_webhooks, start, start_with, until, webhook};
use crate::delivery::DeliveryStatus;
use crate::fakes::{Answer, MemoryLedger};
use crate::health::{event_types, Alert, StoredHealth};

const URL: &str = "https://a.example/hook";

/// What a daemon that ran endpoint `a` until it stopped would have kept: failing for ten
/// minutes, `failures` attempts in a row.
fn failing_since(since: SystemTime, failures: u32) -> StoredHealth {
    StoredHealth {
        consecutive_failures: failures,
        streak_since: Some(since),
        failing: true,
        disable_requested: false,
        last_success_at: None,
        last_failure_at: Some(SystemTime::now()),
        last_status_code: Some(503),
        last_error: None,
        buckets: Vec::new(),
        updated_at: SystemTime::now(),
    }
}

fn types(alerts: &[Alert]) -> Vec<&'static str> {
    alerts.iter().map(Alert::event_type).collect()
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_failing_before_a_restart_does_not_alert_again_and_recovers_once() {
    let since = SystemTime::now() - Duration::from_secs(600);
    let ledger = MemoryLedger::default();
    ledger.keep_health("a", failing_since(since, 20));
    let mut config = config();
    config.retry.max_attempts = 100;
    config.health.failing_after = 4;
    let (engine, transport, ledger) = start_with(config, ledger).await;
    let handle = engine.handle();
    transport.set_default(URL, Answer::Status(503));
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    for i in 0..3 {
        handle
            .submit(event(&format!("evt_{i}"), "object.created"), None)
            .await
            .unwrap();
    }
    until("12 more failed attempts", || transport.sent_to(URL) >= 12).await;
    let report = handle
        .endpoint("a")
        .await
        .unwrap()
        .expect("endpoint a runs");
    assert!(report.health.failing);
    assert!(
        report.health.consecutive_failures >= 32,
        "the streak goes on from the 20 kept: {:?}",
        report.health
    );
    assert_eq!(report.health.failing_since, Some(since));
    assert!(
        ledger.alerts().is_empty(),
        "still failing, alerted before the restart: {:?}",
        ledger.alerts()
    );

    transport.set_default(URL, Answer::Status(200));
    until("3 deliveries succeed", || {
        ledger.count_with(DeliveryStatus::Succeeded) == 3
    })
    .await;
    until("the recovered alert", || !ledger.alerts().is_empty()).await;
    let alerts = ledger.alerts();
    assert_eq!(
        types(&alerts),
        [event_types::ENDPOINT_RECOVERED],
        "{alerts:?}"
    );
    match &alerts[0] {
        Alert::EndpointRecovered {
            failing_since,
            failed_attempts,
            ..
        } => {
            assert_eq!(*failing_since, since);
            assert!(*failed_attempts >= 32, "{failed_attempts}");
        }
        other => panic!("{other:?}"),
    }
    // Recovering crossed a line: kept at once.
    until("the recovery kept", || {
        ledger
            .kept_health("a")
            .is_some_and(|h| !h.failing && h.consecutive_failures == 0)
    })
    .await;
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_health_is_kept_as_it_changes_and_the_next_engine_goes_on_from_it() {
    let mut config = config();
    config.retry.max_attempts = 1_000;
    config.health.failing_after = 4;
    let (engine, transport, ledger) = start(config.clone()).await;
    let handle = engine.handle();
    transport.set_default(URL, Answer::Status(503));
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    for i in 0..3 {
        handle
            .submit(event(&format!("evt_{i}"), "object.created"), None)
            .await
            .unwrap();
    }
    // Failing crossed a line: kept at once.
    until("the failing streak kept", || {
        ledger.kept_health("a").is_some_and(|h| h.failing)
    })
    .await;
    until("100 failed attempts", || transport.sent_to(URL) >= 100).await;
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
    let sent = transport.sent_to(URL);
    let kept = ledger.kept_health("a").expect("kept");
    // The drain wrote what changed since the last write: every attempt is counted.
    assert_eq!(kept.consecutive_failures as usize, sent, "{kept:?}");
    assert!(kept.failing);
    assert_eq!(kept.last_status_code, Some(503));
    let window: u32 = kept.buckets.iter().map(|b| b.2).sum();
    assert_eq!(window as usize, sent, "{kept:?}");
    // Not written per attempt.
    let saves = ledger.health_saves("a");
    assert!(saves * 5 <= sent, "{saves} writes for {sent} attempts");
    assert_eq!(
        types(&ledger.alerts()),
        [event_types::ENDPOINT_FAILING],
        "{:?}",
        ledger.alerts()
    );

    // The next engine on the same ledger (a restart, a take-over).
    let (engine, transport, ledger) = start_with(config, ledger).await;
    let handle = engine.handle();
    transport.set_default(URL, Answer::Status(503));
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    handle
        .submit(event("evt_after", "object.created"), None)
        .await
        .unwrap();
    until("10 failed attempts", || transport.sent_to(URL) >= 10).await;
    let report = handle
        .endpoint("a")
        .await
        .unwrap()
        .expect("endpoint a runs");
    assert!(report.health.failing);
    assert!(report.health.consecutive_failures as usize >= sent + 10);
    assert_eq!(report.health.failing_since, kept.streak_since);
    assert_eq!(
        types(&ledger.alerts()),
        [event_types::ENDPOINT_FAILING],
        "no second failing alert: {:?}",
        ledger.alerts()
    );
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_disable_clock_runs_from_the_first_failure_of_the_kept_streak() {
    let since = SystemTime::now() - Duration::from_secs(120);
    let ledger = MemoryLedger::default();
    ledger.keep_health("a", failing_since(since, 50));
    let mut config = config();
    config.retry.max_attempts = 100;
    config.health.disable_after = Some(Duration::from_secs(60));
    let (engine, transport, ledger) = start_with(config, ledger).await;
    let handle = engine.handle();
    transport.set_default(URL, Answer::Status(503));
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    handle
        .submit(event("evt_0", "object.created"), None)
        .await
        .unwrap();
    // Failing for two minutes already: the first failure after the restart asks for it.
    until("an alert", || !ledger.alerts().is_empty()).await;
    let alerts = ledger.alerts();
    assert_eq!(
        types(&alerts),
        [event_types::ENDPOINT_DISABLED],
        "{alerts:?}"
    );
    until("the disable request kept", || {
        ledger.kept_health("a").is_some_and(|h| h.disable_requested)
    })
    .await;
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_whose_kept_health_cannot_be_read_starts_from_scratch_and_delivers() {
    let ledger = MemoryLedger::default();
    ledger.keep_health("a", failing_since(SystemTime::now(), 20));
    ledger.fail_health_loads(1);
    let (engine, transport, ledger) = start_with(config(), ledger).await;
    let handle = engine.handle();
    transport.set_default(URL, Answer::Status(200));
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    handle
        .submit(event("evt_0", "object.created"), None)
        .await
        .unwrap();
    until("delivered", || {
        ledger.count_with(DeliveryStatus::Succeeded) == 1
    })
    .await;
    let report = handle
        .endpoint("a")
        .await
        .unwrap()
        .expect("endpoint a runs");
    assert!(!report.health.failing);
    assert_eq!(report.health.consecutive_failures, 0);
    // From scratch: the streak it could not read is not "recovered".
    assert!(ledger.alerts().is_empty(), "{:?}", ledger.alerts());
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_disabled_webhook_keeps_its_latest_health_as_its_endpoint_stops() {
    let mut config = config();
    config.retry.max_attempts = 1_000;
    config.health.failing_after = 1_000;
    let (engine, transport, ledger) = start(config).await;
    let handle = engine.handle();
    transport.set_default(URL, Answer::Status(503));
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    handle
        .submit(event("evt_0", "object.created"), None)
        .await
        .unwrap();
    // Failures that cross no line: not written yet (at most every couple of seconds).
    until("5 failed attempts", || transport.sent_to(URL) >= 5).await;
    assert!(ledger.kept_health("a").is_none());

    handle
        .upsert_webhook(crate::webhook::WebhookSpec {
            enabled: false,
            ..webhook("a", &["*"])
        })
        .unwrap();
    until("the latest health kept as the endpoint stops", || {
        ledger
            .kept_health("a")
            .is_some_and(|h| h.consecutive_failures >= 5 && !h.failing)
    })
    .await;
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}
