//! herald killed with SIGKILL mid-stream loses nothing: restarted, it resumes from its
//! checkpoint and re-loads pending retries.

use std::collections::HashSet;
use std::time::Duration;

use mongodb::bson::{doc, Document};

use crate::daemon::{test_config, ChildDaemon};
use crate::fixtures::*;
use crate::support::Receiver;

const EVENTS: usize = 1_000;

fn distinct_ids(receiver: &Receiver) -> HashSet<String> {
    receiver
        .requests()
        .iter()
        .filter_map(|r| header(r, "webhook-id").map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn kill_9_in_the_middle_of_1000_deliveries_loses_none() {
    let (uri, name, db) = database("crash").await;
    let receiver = Receiver::start().await;
    insert_webhook(&db, webhook("wh_0000000000000c01", &receiver.url, &["*"])).await;
    let config = test_config(&uri, &name, &receiver.ca_pem_path);
    let log = tempfile::NamedTempFile::new().unwrap();

    let mut daemon = ChildDaemon::spawn(&config, log.path());
    daemon.wait_ready().await;

    let producer = {
        let db = db.clone();
        tokio::spawn(async move {
            for batch in 0..(EVENTS / 50) {
                let events: Vec<Document> = (0..50)
                    .map(|i| {
                        event(
                            &format!("evt_crash_{:04}", batch * 50 + i),
                            "batch.completed",
                        )
                    })
                    .collect();
                db.collection::<Document>("events")
                    .insert_many(events)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Kill it twice while deliveries are flowing.
    for threshold in [150, 500] {
        crate::support::eventually(Duration::from_secs(60), "deliveries under way", || {
            let n = receiver.count();
            async move { n >= threshold }
        })
        .await;
        daemon.kill();
        daemon = ChildDaemon::spawn(&config, log.path());
        daemon.wait_ready().await;
    }
    producer.await.unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let ids = distinct_ids(&receiver);
        if ids.len() == EVENTS {
            break;
        }
        if std::time::Instant::now() > deadline {
            let missing: Vec<String> = (0..EVENTS)
                .map(|i| format!("evt_crash_{i:04}"))
                .filter(|id| !ids.contains(id))
                .collect();
            let log = std::fs::read_to_string(log.path()).unwrap_or_default();
            panic!(
                "{} events never arrived (first: {:?})\nherald log:\n{log}",
                missing.len(),
                &missing[..missing.len().min(10)]
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let duplicates = receiver.count() - EVENTS;
    println!("kill -9 twice: {EVENTS} events delivered, {duplicates} duplicate deliveries");

    // Every delivery is recorded as succeeded.
    crate::support::eventually(
        Duration::from_secs(30),
        "1000 succeeded delivery documents",
        || {
            let db = db.clone();
            async move { deliveries(&db, doc! {"status": "succeeded"}).await.len() == EVENTS }
        },
    )
    .await;

    // A clean stop exits 0.
    assert_eq!(
        daemon.terminate(),
        Some(0),
        "herald did not exit cleanly on SIGTERM"
    );
}

#[tokio::test]
async fn pending_retries_survive_a_kill() {
    let (uri, name, db) = database("crashretry").await;
    let receiver = Receiver::start().await;
    receiver.respond_with(503);
    insert_webhook(&db, webhook("wh_0000000000000c02", &receiver.url, &["*"])).await;
    let mut config = test_config(&uri, &name, &receiver.ca_pem_path);
    config.retry_initial_ms = 1_000;
    config.retry_max_ms = 1_000;
    config.retry_max_attempts = 50;
    let log = tempfile::NamedTempFile::new().unwrap();

    let mut daemon = ChildDaemon::spawn(&config, log.path());
    daemon.wait_ready().await;
    insert_event(&db, "evt_crash_retry", "batch.completed").await;
    wait_for_status(&db, "evt_crash_retry:wh_0000000000000c02", "pending").await;
    daemon.kill();

    receiver.respond_with(200);
    let daemon = ChildDaemon::spawn(&config, log.path());
    daemon.wait_ready().await;
    let d = wait_for_status(&db, "evt_crash_retry:wh_0000000000000c02", "succeeded").await;
    assert!(d.get_i64("attempts").unwrap() >= 2);
    let last = receiver.requests().pop().unwrap();
    assert_eq!(header(&last, "webhook-id"), Some("evt_crash_retry"));
    assert_signed(&last);
}

#[tokio::test]
async fn a_checkpoint_lost_from_the_change_stream_history_falls_back_to_scanning_events() {
    let (uri, name, db) = database("historylost").await;
    let receiver = Receiver::start().await;
    insert_webhook(&db, webhook("wh_0000000000000c03", &receiver.url, &["*"])).await;

    // A checkpoint this server cannot resume from, taken ten minutes ago.
    let at = mongodb::bson::DateTime::from_millis(
        mongodb::bson::DateTime::now().timestamp_millis() - 10 * 60_000,
    );
    let stale = mongodb::bson::to_vec(&doc! {"token": {"_data": "00"}, "at": at}).unwrap();
    db.collection::<Document>("herald_state")
        .insert_one(doc! {"_id": "feed", "token": mongodb::bson::Binary {
            subtype: mongodb::bson::spec::BinarySubtype::Generic,
            bytes: stale,
        }})
        .await
        .unwrap();
    // Written while herald was down: one after the checkpoint, one long before it.
    let mut missed = event("evt_missed_while_down", "batch.completed");
    missed.insert("occurred_at", mongodb::bson::DateTime::now());
    let mut ancient = event("evt_long_before", "batch.completed");
    ancient.insert(
        "occurred_at",
        mongodb::bson::DateTime::from_millis(at.timestamp_millis() - 3_600_000),
    );
    db.collection::<Document>("events")
        .insert_many([missed, ancient])
        .await
        .unwrap();

    let daemon =
        crate::daemon::InProcess::start(test_config(&uri, &name, &receiver.ca_pem_path)).await;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(header(&got[0], "webhook-id"), Some("evt_missed_while_down"));

    // And the feed goes on from now.
    insert_event(&db, "evt_after_recovery", "batch.completed").await;
    receiver.wait_for(2, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids: Vec<_> = receiver
        .requests()
        .iter()
        .filter_map(|r| header(r, "webhook-id").map(str::to_owned))
        .collect();
    assert_eq!(ids, ["evt_missed_while_down", "evt_after_recovery"]);
    daemon.stop().await.unwrap();
}
