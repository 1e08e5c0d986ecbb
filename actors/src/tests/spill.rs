//! Bounded memory: what an endpoint cannot hold is spilled to the ledger as pending and
//! paged back in when there is room.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::time::Instant;

use super::{
    bounded, delivered, event, held, pending, pos, quiet_for, settle_webhooks, start, start_with,
    successes, until, watch_held, webhook,
};
use crate::fakes::{Answer, MemoryLedger};
use crate::partition::partition_of;
use crate::webhook::WebhookSpec;

/// On real time: the dead endpoint's retries that do not fit are spilled due later, on the
/// wall clock, which paused time does not move.
#[tokio::test]
async fn a_dead_endpoint_holds_at_most_its_bound_and_delivers_every_spilled_delivery_once_healed() {
    let (engine, transport, ledger) = start(bounded(20, 8)).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("dead", &["*"])).unwrap();
    handle.upsert_webhook(webhook("ok", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    transport.set_default("https://dead.example/hook", Answer::Status(503));
    let (stop, sampler) = watch_held(&handle, "dead");

    for i in 0..300 {
        let token = Bytes::from(format!("t{i}"));
        handle
            .submit(event(&format!("evt_{i}"), "x"), Some(pos(token)))
            .await
            .unwrap();
    }
    // The healthy neighbour gets everything, and the checkpoint passes all 300 events:
    // what the dead endpoint could not hold is recorded as pending.
    until("the healthy endpoint has all 300", || {
        delivered(&ledger, "ok") == 300
    })
    .await;
    until("checkpoint at the last event", || {
        ledger.everywhere_at(b"t299".as_ref())
    })
    .await;
    until("every dead delivery recorded", || {
        ledger
            .deliveries()
            .iter()
            .filter(|d| d.record.webhook_id == "dead")
            .count()
            == 300
    })
    .await;
    assert!(held(&handle, "dead").await <= 20);

    transport.set_default("https://dead.example/hook", Answer::Status(200));
    until("all 300 spilled and held deliveries succeed", || {
        let ok = successes(&ledger, "dead");
        ok.len() == 300 && ok.values().all(|n| *n >= 1)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let most = sampler.await.unwrap();
    assert!(most <= 20, "the dead endpoint held {most} deliveries");
    // Never held twice (in memory and read back): exactly one 2xx per delivery, also once
    // a sweep under way has had the time to bring back a stale copy.
    quiet_for(Duration::from_millis(200)).await;
    let twice: Vec<_> = successes(&ledger, "dead")
        .into_iter()
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert!(ledger.sweeps() > 0);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_checkpoint_never_passes_a_spilled_delivery_before_it_is_recorded() {
    let mut config = bounded(5, 4);
    config.attempt_timeout = Duration::from_millis(300);
    let (engine, transport, ledger) =
        start_with(config, MemoryLedger::auditing_checkpoints()).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("dead", &["*"])).unwrap();
    handle.upsert_webhook(webhook("ok", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    transport.set_default("https://dead.example/hook", Answer::Hang);

    for i in 0..40 {
        let token = Bytes::from(format!("t{i:02}"));
        handle
            .submit(event(&format!("evt_{i:02}"), "x"), Some(pos(token)))
            .await
            .unwrap();
    }
    until("checkpoint at the last event", || {
        ledger.everywhere_at(b"t39".as_ref())
    })
    .await;
    let audited = ledger.audited_checkpoints();
    assert!(!audited.is_empty());
    for (partition, checkpoint, recorded) in audited {
        let last: usize = std::str::from_utf8(&checkpoint[1..])
            .unwrap()
            .parse()
            .unwrap();
        for i in 0..=last {
            for webhook in ["dead", "ok"] {
                if partition_of(webhook) != partition {
                    continue;
                }
                let id = format!("evt_{i:02}:{webhook}");
                assert!(
                    recorded.contains(&id),
                    "checkpoint t{last:02} written before {id} was recorded"
                );
            }
        }
    }
    engine.shutdown(Duration::from_millis(100)).await.unwrap();
}

/// On real time: the deliveries due later are due on the wall clock, and the endpoint has a
/// rate limit (governor's clock is the wall clock too).
#[tokio::test]
async fn pending_deliveries_of_a_previous_run_are_paged_in_not_loaded_at_once() {
    let ledger = MemoryLedger::default();
    let now = SystemTime::now();
    let soon = now + Duration::from_millis(1_500);
    ledger.insert_pending((0..400).map(|i| pending(&format!("evt_{i:03}"), "a", now)));
    ledger.insert_pending((400..405).map(|i| pending(&format!("evt_{i:03}"), "a", soon)));
    ledger.insert_pending((0..10).map(|i| pending(&format!("evt_{i:03}"), "off", now)));
    let (engine, transport, ledger) = start_with(bounded(50, 20), ledger).await;
    let handle = engine.handle();
    handle
        .upsert_webhook(WebhookSpec {
            rate_limit_per_second: Some(1_000),
            ..webhook("a", &["*"])
        })
        .unwrap();
    let off = WebhookSpec {
        enabled: false,
        ..webhook("off", &["*"])
    };
    handle.upsert_webhook(off.clone()).unwrap();
    settle_webhooks(&handle).await;
    let (stop, sampler) = watch_held(&handle, "a");

    handle
        .nudge(vec![partition_of("a"), partition_of("off")])
        .unwrap();
    until("half of them delivered", || delivered(&ledger, "a") >= 200).await;
    // Its successor carries on where a crashed actor stopped reading.
    handle.crash_endpoint("a");
    until("the 400 due ones delivered", || {
        delivered(&ledger, "a") >= 400
    })
    .await;
    until("the 5 due later delivered once due", || {
        delivered(&ledger, "a") == 405
    })
    .await;
    assert!(SystemTime::now() >= soon);
    stop.store(true, Ordering::Relaxed);
    let most = sampler.await.unwrap();
    assert!(most <= 50, "endpoint a held {most} deliveries");
    let twice: Vec<_> = successes(&ledger, "a")
        .into_iter()
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");

    // A disabled webhook's deliveries stay pending until it is enabled again.
    assert_eq!(transport.sent_to("https://off.example/hook"), 0);
    handle
        .upsert_webhook(WebhookSpec {
            enabled: true,
            ..off
        })
        .unwrap();
    until("the enabled webhook's backlog delivered", || {
        delivered(&ledger, "off") == 10
    })
    .await;
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// Endpoints starting without knowing what the ledger holds for them are asked about
/// together: only the one with deliveries left pending reads the ledger, and delivers them;
/// the other fifty go straight to new events.
#[tokio::test]
async fn only_endpoints_with_pending_deliveries_read_the_ledger_as_they_start() {
    let ledger = MemoryLedger::default();
    let now = SystemTime::now();
    ledger.insert_pending((0..5).map(|i| pending(&format!("evt_{i:03}"), "left", now)));
    let (engine, transport, ledger) = start_with(super::config(), ledger).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("left", &["*"])).unwrap();
    for i in 0..50 {
        handle
            .upsert_webhook(webhook(&format!("new{i:02}"), &["*"]))
            .unwrap();
    }
    settle_webhooks(&handle).await;

    until("the deliveries left pending delivered", || {
        delivered(&ledger, "left") == 5
    })
    .await;
    handle
        .submit(event("evt_new", "x"), Some(pos("t_new")))
        .await
        .unwrap();
    until("the new event at all 51 endpoints", || {
        ledger
            .deliveries()
            .iter()
            .filter(|d| d.record.event_id == "evt_new" && d.record.status.as_str() == "succeeded")
            .count()
            == 51
    })
    .await;
    quiet_for(Duration::from_millis(300)).await;
    assert_eq!(ledger.sweeps(), 1, "endpoints that read the ledger");
    assert_eq!(transport.sent_to("https://left.example/hook"), 6);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn all_endpoints_together_hold_at_most_the_total_bound() {
    let mut config = bounded(1_000, 50);
    config.max_held_total = 60;
    config.max_in_flight_per_endpoint = 4;
    config.attempt_timeout = Duration::from_secs(5);
    let (engine, transport, ledger) = start(config).await;
    let handle = engine.handle();
    for id in ["d1", "d2", "d3"] {
        handle.upsert_webhook(webhook(id, &["*"])).unwrap();
        transport.set_default(&format!("https://{id}.example/hook"), Answer::Hang);
    }
    settle_webhooks(&handle).await;
    for i in 0..200 {
        handle
            .submit(event(&format!("evt_{i}"), "x"), None)
            .await
            .unwrap();
    }
    // Each delivery is either held or spilled.
    let deadline = Instant::now() + Duration::from_secs(30);
    let total = loop {
        let stats = handle.stats().await.unwrap();
        let total: usize = stats
            .per_endpoint
            .values()
            .map(|s| s.queued + s.in_flight + s.scheduled)
            .sum();
        if total + ledger.deliveries().len() == 600 {
            break total;
        }
        assert!(Instant::now() < deadline, "{total} held, not all spilled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // Nothing has been attempted to the end yet (5 s timeout): the ledger holds only
    // what was spilled, not a record of an ended attempt.
    let ended: Vec<_> = ledger
        .deliveries()
        .into_iter()
        .filter(|d| !d.attempt_log.is_empty())
        .map(|d| d.record.delivery_id)
        .collect();
    assert!(ended.is_empty(), "attempts ended: {ended:?}");
    // The shared budget, give or take what each endpoint may always hold.
    assert!(total <= 60 + 3 * 4, "{total} held in all");
    assert!(total >= 3 * 4, "{total} held in all");
    engine.shutdown(Duration::from_millis(100)).await.unwrap();
}
