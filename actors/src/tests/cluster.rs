//! Partitions: an engine delivers only for the partitions it was granted, resumes a
//! partition from its checkpoint, does not send again what a previous owner recorded, and
//! hands a partition over without losing or repeating anything.

use std::sync::Arc;
use std::time::Duration;

use super::{config, event, quiet_for, settle_webhooks, until, webhook};
use crate::engine::{Engine, EngineHandle};
use crate::fakes::{Answer, MemoryLedger, ScriptedTransport};
use crate::partition::{partition_of, Grant, Position, PARTITIONS};
use crate::router::Rewind;

/// Two webhook ids in different partitions.
fn two_partitions() -> (&'static str, &'static str) {
    let a = "a";
    let b = ["b", "c", "d", "e", "f", "g"]
        .into_iter()
        .find(|b| partition_of(b) != partition_of(a))
        .expect("ids in two partitions");
    (a, b)
}

fn at(checkpoint: &str, time: u64) -> Position {
    Position::new(checkpoint.to_owned(), time)
}

fn grant(partition: u16, from: Option<Position>, look_up_until: u64) -> Grant {
    Grant {
        partition,
        epoch: 1,
        from,
        look_up_until,
    }
}

/// Registers webhook `id` (every event type) and grants its partition from the start, once
/// both have reached the router.
async fn owning(handle: &EngineHandle, id: &str) {
    handle.upsert_webhook(webhook(id, &["*"])).unwrap();
    handle
        .grant(vec![grant(partition_of(id), None, 0)], None)
        .unwrap();
    settle_webhooks(handle).await;
}

async fn member(ledger: MemoryLedger) -> (Engine, ScriptedTransport, MemoryLedger) {
    let transport = ScriptedTransport::default();
    let engine = Engine::start_member(
        config(),
        Arc::new(transport.clone()),
        Arc::new(ledger.clone()),
    )
    .await
    .unwrap();
    (engine, transport, ledger)
}

#[tokio::test(start_paused = true)]
async fn only_granted_partitions_are_delivered_for() {
    let (a, b) = two_partitions();
    let (engine, transport, ledger) = member(MemoryLedger::default()).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook(a, &["*"])).unwrap();
    handle.upsert_webhook(webhook(b, &["*"])).unwrap();
    handle
        .grant(vec![grant(partition_of(a), None, 0)], None)
        .unwrap();
    settle_webhooks(&handle).await;
    handle
        .submit(event("evt_1", "x"), Some(at("t1", 1)))
        .await
        .unwrap();
    until("a delivered", || ledger.delivery("evt_1:a").is_some()).await;
    quiet_for(Duration::from_millis(200)).await;
    assert_eq!(transport.sent_to(&format!("https://{b}.example/hook")), 0);
    assert_eq!(handle.stats().await.unwrap().endpoints, 1);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_partition_resumes_after_its_checkpoint_and_the_others_skip_what_they_routed() {
    let (a, b) = two_partitions();
    let (engine, transport, ledger) = member(MemoryLedger::default()).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook(a, &["*"])).unwrap();
    handle.upsert_webhook(webhook(b, &["*"])).unwrap();
    // `a` is owned from the start and reads t1..t3.
    handle
        .grant(vec![grant(partition_of(a), None, 0)], None)
        .unwrap();
    for i in 1..=3 {
        handle
            .submit(
                event(&format!("evt_{i}"), "x"),
                Some(at(&format!("t{i}"), i)),
            )
            .await
            .unwrap();
    }
    until("a has t1..t3", || {
        transport.sent_to("https://a.example/hook") == 3
    })
    .await;
    // `b` is taken over from its checkpoint at t1: the feed re-reads t1..t3, then t4.
    handle
        .grant(
            vec![grant(partition_of(b), Some(at("t1", 1)), 0)],
            Some(Rewind::After("t1".into())),
        )
        .unwrap();
    for i in 2..=4 {
        handle
            .submit(
                event(&format!("evt_{i}"), "x"),
                Some(at(&format!("t{i}"), i)),
            )
            .await
            .unwrap();
    }
    until("b has t2..t4 and a has t4", || {
        transport.sent_to(&format!("https://{b}.example/hook")) == 3
            && transport.sent_to("https://a.example/hook") == 4
    })
    .await;
    quiet_for(Duration::from_millis(200)).await;
    // Nothing twice, nothing of b before its checkpoint.
    assert_eq!(transport.sent_to("https://a.example/hook"), 4);
    assert_eq!(transport.sent_to(&format!("https://{b}.example/hook")), 3);
    assert!(ledger.delivery(&format!("evt_1:{b}")).is_none());
    until("both checkpoints at t4", || {
        [a, b].iter().all(|id| {
            ledger
                .checkpoints_of(partition_of(id))
                .last()
                .map(|c| c.as_ref())
                == Some(b"t4".as_ref())
        })
    })
    .await;
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_taken_over_partition_does_not_resend_what_the_previous_owner_recorded() {
    let (a, _) = two_partitions();
    // The previous owner delivered evt_1 and recorded it, then died before its checkpoint
    // passed it.
    let ledger = MemoryLedger::default();
    let (first, _, _) = member(ledger.clone()).await;
    first.handle().upsert_webhook(webhook(a, &["*"])).unwrap();
    first
        .handle()
        .grant(vec![grant(partition_of(a), None, 0)], None)
        .unwrap();
    first
        .handle()
        .submit(event("evt_1", "x"), Some(at("t1", 1)))
        .await
        .unwrap();
    until("evt_1 recorded", || ledger.delivery("evt_1:a").is_some()).await;
    first.shutdown(Duration::from_secs(1)).await.unwrap();

    let (engine, transport, ledger) = member(ledger).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook(a, &["*"])).unwrap();
    handle
        .grant(vec![grant(partition_of(a), Some(at("t0", 0)), 2)], None)
        .unwrap();
    for i in 1..=3 {
        handle
            .submit(
                event(&format!("evt_{i}"), "x"),
                Some(at(&format!("t{i}"), i)),
            )
            .await
            .unwrap();
    }
    until("evt_2 and evt_3 delivered", || {
        ledger.delivery("evt_2:a").is_some() && ledger.delivery("evt_3:a").is_some()
    })
    .await;
    quiet_for(Duration::from_millis(200)).await;
    let mut sent: Vec<_> = transport
        .sent()
        .iter()
        .map(|r| r.msg_id.to_string())
        .collect();
    // (Looked-up deliveries may go out after later ones: order is not promised.)
    sent.sort();
    assert_eq!(
        sent,
        ["evt_2", "evt_3"],
        "evt_1 was recorded: not sent again"
    );
    until("the checkpoint passes all three", || {
        ledger
            .checkpoints_of(partition_of(a))
            .last()
            .map(|c| c.as_ref())
            == Some(b"t3".as_ref())
    })
    .await;
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_refused_checkpoint_drops_the_partition() {
    let (a, _) = two_partitions();
    let (engine, transport, ledger) = member(MemoryLedger::default()).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook(a, &["*"])).unwrap();
    handle
        .grant(vec![grant(partition_of(a), None, 0)], None)
        .unwrap();
    // Another daemon took the lease at epoch 2.
    ledger.fence(partition_of(a), 2);
    handle
        .submit(event("evt_1", "x"), Some(at("t1", 1)))
        .await
        .unwrap();
    while handle.stats().await.unwrap().endpoints > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle
        .submit(event("evt_2", "x"), Some(at("t2", 2)))
        .await
        .unwrap();
    quiet_for(Duration::from_millis(200)).await;
    assert!(transport.sent_to("https://a.example/hook") <= 1);
    assert!(ledger.checkpoints_of(partition_of(a)).is_empty());
    assert!(handle.partitions().await.unwrap().is_empty());
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_released_partition_records_what_was_under_way_and_its_checkpoint_stops_before_the_rest()
{
    let (a, _) = two_partitions();
    let mut config = config();
    config.max_in_flight_per_endpoint = 1;
    let transport = ScriptedTransport::default();
    let ledger = MemoryLedger::default();
    let engine = Engine::start_member(
        config,
        Arc::new(transport.clone()),
        Arc::new(ledger.clone()),
    )
    .await
    .unwrap();
    let handle = engine.handle();
    owning(&handle, a).await;
    transport.set_default(
        "https://a.example/hook",
        Answer::Slow(Duration::from_millis(100)),
    );
    for i in 1..=5 {
        handle
            .submit(
                event(&format!("evt_{i}"), "x"),
                Some(at(&format!("t{i}"), i)),
            )
            .await
            .unwrap();
    }
    until("the first attempt under way", || {
        transport.sent_to("https://a.example/hook") >= 1
    })
    .await;
    let fenced = handle
        .release(vec![partition_of(a)], Duration::from_secs(5))
        .await
        .unwrap();
    assert!(fenced.is_empty());
    let sent = transport.sent_to("https://a.example/hook");
    // Every attempt that started is recorded; the checkpoint stops before the first event
    // not sent (the next owner sends it, once).
    for i in 1..=sent {
        assert!(
            ledger.delivery(&format!("evt_{i}:a")).is_some(),
            "evt_{i} recorded"
        );
    }
    assert!(sent < 5, "the release did not wait for the whole queue");
    assert_eq!(
        ledger
            .checkpoints_of(partition_of(a))
            .last()
            .map(|c| c.to_vec()),
        Some(format!("t{sent}").into_bytes())
    );
    assert!(handle.partitions().await.unwrap().is_empty());
    assert_eq!(handle.stats().await.unwrap().endpoints, 0);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_that_does_not_answer_does_not_hold_the_feed_window() {
    let (a, b) = two_partitions();
    let mut config = config();
    config.max_events_in_flight = 8;
    config.attempt_timeout = Duration::from_secs(600);
    let transport = ScriptedTransport::default();
    let ledger = MemoryLedger::default();
    let engine = Engine::start(
        config,
        Arc::new(transport.clone()),
        Arc::new(ledger.clone()),
    )
    .await
    .unwrap();
    let handle = engine.handle();
    handle.upsert_webhook(webhook(a, &["slow"])).unwrap();
    handle.upsert_webhook(webhook(b, &["fast"])).unwrap();
    settle_webhooks(&handle).await;
    transport.set_default("https://a.example/hook", Answer::Hang);
    // The oldest events wait on a receiver that never answers...
    for i in 0..4 {
        handle
            .submit(
                event(&format!("evt_slow_{i}"), "slow"),
                Some(at(&format!("s{i}"), i)),
            )
            .await
            .unwrap();
    }
    // ...and many more than the window go to the other endpoint regardless.
    for i in 0..(PARTITIONS as u64) {
        handle
            .submit(
                event(&format!("evt_fast_{i}"), "fast"),
                Some(at(&format!("f{i}"), 100 + i)),
            )
            .await
            .unwrap();
    }
    until("every fast event delivered", || {
        transport.sent_to(&format!("https://{b}.example/hook")) == PARTITIONS as usize
    })
    .await;
    engine.shutdown(Duration::from_millis(10)).await.ok();
}

#[tokio::test(start_paused = true)]
async fn events_that_arrive_during_a_hand_over_stay_after_its_final_checkpoint() {
    let (a, _) = two_partitions();
    let transport = ScriptedTransport::default();
    let ledger = MemoryLedger::default();
    let engine = Engine::start_member(
        config(),
        Arc::new(transport.clone()),
        Arc::new(ledger.clone()),
    )
    .await
    .unwrap();
    let handle = engine.handle();
    owning(&handle, a).await;
    transport.set_default(
        "https://a.example/hook",
        Answer::Slow(Duration::from_millis(100)),
    );
    handle
        .submit(event("evt_1", "x"), Some(at("t1", 1)))
        .await
        .unwrap();
    until("the attempt under way", || {
        transport.sent_to("https://a.example/hook") == 1
    })
    .await;
    // The hand-over waits for that attempt; meanwhile the feed goes on.
    let releasing = {
        let handle = handle.clone();
        tokio::spawn(async move {
            handle
                .release(vec![partition_of(a)], Duration::from_secs(5))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    for i in 2..=4 {
        handle
            .submit(
                event(&format!("evt_{i}"), "x"),
                Some(at(&format!("t{i}"), i)),
            )
            .await
            .unwrap();
    }
    assert!(releasing.await.unwrap().unwrap().is_empty());
    // Those events were not the releasing partition's to send: its next owner must read
    // them, so its last checkpoint stays at evt_1's.
    assert_eq!(
        ledger
            .checkpoints_of(partition_of(a))
            .last()
            .map(|c| c.to_vec()),
        Some(b"t1".to_vec())
    );
    assert_eq!(transport.sent_to("https://a.example/hook"), 1);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// A partition lost to another member while its endpoint has attempts lined up (a healthy
/// endpoint's attempts task holds as many again as may run): once `revoke` has answered,
/// none of them starts, though the lease clock still says the member's leases hold (it
/// holds others). Only the attempts already under way run to their end.
#[tokio::test(start_paused = true)]
async fn once_a_partition_is_revoked_none_of_its_lined_up_attempts_starts() {
    const EVENTS: usize = 300;
    let (engine, transport, _ledger) = member(MemoryLedger::default()).await;
    let handle = engine.handle();
    owning(&handle, "a").await;
    // One answer proves the endpoint: it may then have its full window under way.
    handle
        .submit(event("evt_first", "x"), Some(at("t0", 0)))
        .await
        .unwrap();
    until("the first delivery sent", || {
        transport.sent_to("https://a.example/hook") == 1
    })
    .await;
    transport.set_default(
        "https://a.example/hook",
        Answer::Slow(Duration::from_millis(150)),
    );
    for i in 1..=EVENTS {
        handle
            .submit(
                event(&format!("evt_{i}"), "x"),
                Some(at(&format!("t{i}"), i as u64)),
            )
            .await
            .unwrap();
    }
    let in_flight = config().max_in_flight_per_endpoint;
    until("a full window under way", || {
        transport.sent_to("https://a.example/hook") == 1 + in_flight
    })
    .await;

    handle.revoke(vec![partition_of("a")]).await.unwrap();
    quiet_for(Duration::from_secs(2)).await;
    assert_eq!(
        transport.sent_to("https://a.example/hook"),
        1 + in_flight,
        "attempts started after the partition was revoked"
    );
    assert_eq!(handle.stats().await.unwrap().endpoints, 0);
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}
