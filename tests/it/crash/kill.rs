//! herald killed with SIGKILL mid-stream loses nothing: restarted, it resumes from its
//! checkpoint, and pending retries come back from the ledger.

use std::time::Duration;

use mongodb::bson::{doc, Document};

use super::{checkpoint_token, distinct_ids};
use crate::daemon::{test_config, ChildDaemon};
use crate::fixtures::*;
use crate::support::Receiver;

const EVENTS: usize = 1_000;

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
        let until = std::time::Instant::now() + Duration::from_secs(60);
        while receiver.count() < threshold {
            assert!(
                std::time::Instant::now() < until,
                "only {} of {threshold} deliveries arrived\nherald log:\n{}",
                receiver.count(),
                crate::support::without_colours(
                    &std::fs::read_to_string(log.path()).unwrap_or_default()
                )
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

/// The resume token of the change that inserted `event_id` into `events`, and of every
/// change after it in the database, collected in the background from a change stream
/// opened now (before the insert).
async fn positions_from(
    db: &mongodb::Database,
    event_id: &str,
) -> std::sync::Arc<std::sync::Mutex<Vec<mongodb::bson::Bson>>> {
    use futures::StreamExt;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut stream = db.watch().await.unwrap();
    let (collected, event_id) = (seen.clone(), event_id.to_owned());
    tokio::spawn(async move {
        let mut reached = false;
        while let Some(Ok(change)) = stream.next().await {
            reached |= change
                .document_key
                .as_ref()
                .is_some_and(|key| key.get_str("_id") == Ok(event_id.as_str()));
            if reached {
                collected
                    .lock()
                    .unwrap()
                    .push(mongodb::bson::to_bson(&change.id).unwrap());
            }
        }
    });
    seen
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
    // The change stream as herald sees it, from just before the event: the positions the
    // checkpoint may hold once it has passed the event.
    let passed = positions_from(&db, "evt_crash_retry").await;
    insert_event(&db, "evt_crash_retry", "batch.completed").await;
    wait_for_status(&db, "evt_crash_retry:wh_0000000000000c02", "pending").await;
    // Killed only once the checkpoint is past the event: after the restart the change
    // stream resumes beyond it, so the retry can only come from the ledger's pending record.
    crate::support::eventually(
        Duration::from_secs(30),
        "the checkpoint has passed the event",
        || {
            let db = db.clone();
            let passed = passed.clone();
            async move {
                checkpoint_token(&db, "wh_0000000000000c02")
                    .await
                    .is_some_and(|token| passed.lock().unwrap().contains(&token))
            }
        },
    )
    .await;
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
