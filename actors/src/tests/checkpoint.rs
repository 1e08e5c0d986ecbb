//! The feed checkpoint: it passes an event only once every delivery of it is recorded.

use std::time::Duration;

use super::{config, event, pos, quiet_for, settle_webhooks, start, start_with, until, webhook};
use crate::fakes::{Answer, MemoryLedger};
use crate::partition::{partition_of, QuietMark};

#[tokio::test(start_paused = true)]
async fn checkpoint_waits_for_every_earlier_delivery() {
    let mut config = config();
    config.attempt_timeout = Duration::from_millis(500);
    config.retry.max_attempts = 1;
    let timeout = config.attempt_timeout;
    let (engine, transport, ledger) = start(config).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("slow", &["slow"])).unwrap();
    handle.upsert_webhook(webhook("fast", &["fast"])).unwrap();
    settle_webhooks(&handle).await;
    transport.set_default("https://slow.example/hook", Answer::Hang);

    handle
        .submit(event("evt_1", "slow"), Some(pos("t1")))
        .await
        .unwrap();
    handle
        .submit(event("evt_2", "fast"), Some(pos("t2")))
        .await
        .unwrap();
    until("fast delivered", || ledger.delivery("evt_2:fast").is_some()).await;
    // Until just before the slow attempt times out, nothing is written.
    let slow_sent = transport.sent_at("https://slow.example/hook")[0].timer;
    tokio::time::sleep_until(slow_sent + timeout - Duration::from_millis(10)).await;
    assert!(
        ledger.checkpoints_of(partition_of("slow")).is_empty(),
        "checkpoint passed an unrecorded delivery"
    );

    until("checkpoint after the slow one ends", || {
        ledger.everywhere_at(b"t2".as_ref())
    })
    .await;
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn removing_a_webhook_stops_it_and_frees_the_checkpoint() {
    let mut config = config();
    config.attempt_timeout = Duration::from_secs(30);
    let (engine, transport, ledger) = start(config).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    transport.set_default("https://a.example/hook", Answer::Hang);
    handle
        .submit(event("evt_1", "x"), Some(pos("t1")))
        .await
        .unwrap();
    until("attempt started", || {
        transport.sent_to("https://a.example/hook") == 1
    })
    .await;

    handle.remove_webhook("a").unwrap();
    until("checkpoint moves on", || {
        !ledger.checkpoints_of(partition_of("a")).is_empty()
    })
    .await;
    handle.submit(event("evt_2", "x"), None).await.unwrap();
    settle_webhooks(&handle).await;
    assert_eq!(transport.sent_to("https://a.example/hook"), 1);
    assert_eq!(handle.stats().await.unwrap().endpoints, 0);
    engine.shutdown(Duration::from_millis(100)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_checkpoint_whose_write_failed_is_written_again() {
    let (engine, _transport, ledger) = start(config()).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("a", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    ledger.fail_checkpoints(3);
    // One event and nothing after it: only a retry can store its checkpoint.
    handle
        .submit(event("evt_1", "object.created"), Some(pos("t1")))
        .await
        .unwrap();
    until("the checkpoint stored despite failed writes", || {
        ledger.everywhere_at(b"t1".as_ref())
    })
    .await;
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// Shutdown drains the attempts in flight, then syncs the ledger writer: the record of an
/// attempt that ended during the drain must be durable when `shutdown` returns, or a
/// restart sends that delivery again. On a multi-threaded runtime, like the daemon's, where
/// the drain's answer and the endpoint's records travel on different workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_returns_only_once_the_attempts_it_drained_are_recorded() {
    for round in 0..5 {
        let (engine, transport, ledger) = start(config()).await;
        let handle = engine.handle();
        handle.upsert_webhook(webhook("a", &["*"])).unwrap();
        settle_webhooks(&handle).await;
        transport.set_default(
            "https://a.example/hook",
            Answer::Slow(Duration::from_millis(20)),
        );
        handle
            .submit(event("evt_1", "object.created"), None)
            .await
            .unwrap();
        until("the attempt in flight", || {
            transport.sent_to("https://a.example/hook") == 1
        })
        .await;
        engine.shutdown(Duration::from_secs(5)).await.unwrap();
        let recorded = ledger.delivery("evt_1:a").map(|d| d.record.status);
        assert_eq!(
            recorded,
            Some(crate::delivery::DeliveryStatus::Succeeded),
            "round {round}: the drained attempt's record was not durable at shutdown"
        );
    }
}

/// Every checkpoint is a document the store writes, so only partitions with deliveries are
/// written at every interval; the quiet ones follow the feed at the quiet interval, and
/// catch up with it once the feed stops.
#[tokio::test(start_paused = true)]
async fn quiet_partitions_are_written_at_the_quiet_interval_busy_ones_at_every_interval() {
    let mut config = config();
    config.checkpoint_interval = Duration::from_millis(100);
    config.quiet_checkpoint_interval = Duration::from_secs(1);
    let (engine, _transport, ledger) = start(config).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("busy", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    let busy = partition_of("busy");
    let quiet = (busy + 1) % crate::PARTITIONS;

    // Three seconds of events, 20 a second.
    let last = 60;
    for n in 1..=last {
        handle
            .submit(
                event(&format!("evt_{n}"), "x"),
                Some(pos(format!("t{n:03}"))),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let written = |p| ledger.checkpoints_of(p).len();
    assert!(
        written(busy) >= 15,
        "the busy partition was written {} times in 3 s",
        written(busy)
    );
    assert!(
        (1..=5).contains(&written(quiet)),
        "a quiet partition was written {} times in 3 s (every 1 s expected)",
        written(quiet)
    );
    until("every partition at the last event", || {
        ledger.everywhere_at(format!("t{last:03}").as_bytes())
    })
    .await;
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// A quiet mark (one write for all the partitions with nothing unsettled) names a partition
/// only once every delivery of it up to the mark's position is recorded, under the epoch the
/// partition is held by; and nothing is written again while nothing moves.
#[tokio::test(start_paused = true)]
async fn a_quiet_mark_names_only_partitions_whose_deliveries_are_all_recorded() {
    let mut config = config();
    config.quiet_mark_interval = Some(Duration::from_millis(100));
    config.attempt_timeout = Duration::from_secs(2);
    config.retry.max_attempts = 1;
    let (engine, transport, ledger) =
        start_with(config, MemoryLedger::auditing_checkpoints()).await;
    let handle = engine.handle();
    handle.upsert_webhook(webhook("stuck", &["*"])).unwrap();
    handle.upsert_webhook(webhook("fine", &["*"])).unwrap();
    settle_webhooks(&handle).await;
    let (stuck, fine) = (partition_of("stuck"), partition_of("fine"));
    assert_ne!(
        stuck, fine,
        "the two webhooks must fall in different partitions"
    );
    transport.set_default("https://stuck.example/hook", Answer::Hang);

    for i in 0..20 {
        handle
            .submit(
                event(&format!("evt_{i:02}"), "x"),
                Some(pos(format!("t{i:02}"))),
            )
            .await
            .unwrap();
    }
    let names = |partition: u16| {
        move |(mark, _): &(QuietMark, _)| {
            mark.position.checkpoint.as_ref() == b"t19"
                && mark.partitions.iter().any(|(p, _)| *p == partition)
        }
    };
    until(
        "a mark at the last event naming the answering endpoint's partition",
        || ledger.quiet_marks().iter().any(names(fine)),
    )
    .await;
    assert!(
        !ledger.quiet_marks().iter().any(names(stuck)),
        "a mark named a partition whose first delivery hangs unrecorded"
    );

    // Once the hanging attempt times out, its failure is recorded and the partition is quiet.
    until(
        "a mark at the last event naming the stuck endpoint's partition",
        || ledger.quiet_marks().iter().any(names(stuck)),
    )
    .await;
    let marks = ledger.quiet_marks();
    let held: Vec<(u16, u64)> = engine
        .handle()
        .partitions()
        .await
        .unwrap()
        .iter()
        .map(|r| (r.partition, r.epoch))
        .collect();
    for (mark, recorded) in &marks {
        let last: usize = std::str::from_utf8(&mark.position.checkpoint[1..])
            .unwrap()
            .parse()
            .unwrap();
        for (partition, epoch) in &mark.partitions {
            assert!(
                held.contains(&(*partition, *epoch)),
                "a mark names partition {partition} under epoch {epoch}, not the one held"
            );
            for webhook in ["stuck", "fine"] {
                if partition_of(webhook) != *partition {
                    continue;
                }
                for i in 0..=last {
                    let id = format!("evt_{i:02}:{webhook}");
                    assert!(
                        recorded.contains(&id),
                        "a mark at t{last:02} named partition {partition} before {id} was recorded"
                    );
                }
            }
        }
    }
    // Nothing moves: nothing is written again.
    quiet_for(Duration::from_secs(2)).await;
    assert_eq!(ledger.quiet_marks().len(), marks.len());
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}
