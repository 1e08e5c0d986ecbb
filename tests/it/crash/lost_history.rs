//! A checkpoint the change stream can no longer resume from (pruned from its history, or
//! unreadable) falls back to scanning `events` from the checkpoint's time: a replay,
//! never a loss, and the feed goes on from now.

use std::time::Duration;

use mongodb::bson::{doc, Document};

use super::checkpoint_token;
use crate::daemon::{test_config, ChildDaemon};
use crate::fixtures::*;
use crate::support::Receiver;

#[tokio::test]
async fn a_checkpoint_pruned_from_the_change_stream_history_falls_back_to_scanning_events() {
    // A server of the test's own with a tiny oplog, so the history can really be lost.
    let mongo = crate::support::TestMongo::spawn_with_config("[oplog]\nmax_entries = 20\n").await;
    let client = mongo.client().await;
    let db = client.database("historypruned");
    let receiver = Receiver::start().await;
    insert_webhook(&db, webhook("wh_0000000000000c04", &receiver.url, &["*"])).await;
    let config = test_config(&mongo.uri, "historypruned", &receiver.ca_pem_path);

    // A first run leaves a checkpoint at its last event.
    let daemon = crate::daemon::InProcess::start(config.clone()).await;
    insert_event(&db, "evt_before_stop", "batch.completed").await;
    receiver.wait_for(1, Duration::from_secs(20)).await;
    wait_for_status(&db, "evt_before_stop:wh_0000000000000c04", "succeeded").await;
    daemon.stop().await.unwrap();
    let checkpoint = checkpoint_token(&db, "wh_0000000000000c04")
        .await
        .expect("a checkpoint");

    // While herald is down: the event it must not miss, then enough writes for the oplog
    // to drop the checkpoint's position.
    // (The scan finds events by their `occurred_at`: one without it is not recovered, as
    // herald warns when it falls back.)
    let mut missed = event("evt_missed_while_down", "batch.completed");
    missed.insert("occurred_at", mongodb::bson::DateTime::now());
    db.collection::<Document>("events")
        .insert_one(missed)
        .await
        .unwrap();
    let filler = db.collection::<Document>("filler");
    for i in 0..60 {
        filler.insert_one(doc! {"_id": i}).await.unwrap();
    }
    client
        .database("admin")
        .run_command(doc! {"secantusAdmin.pruneOplog": 1})
        .await
        .unwrap();
    // The real condition: resuming from the checkpoint is refused as history lost.
    let token: mongodb::change_stream::event::ResumeToken =
        mongodb::bson::from_bson(checkpoint).unwrap();
    let Err(refused) = db.watch().resume_after(token).await else {
        panic!("the checkpoint's position was not pruned");
    };
    assert!(
        matches!(&*refused.kind, mongodb::error::ErrorKind::Command(c) if c.code == 286),
        "{refused}"
    );

    // Restarted, herald scans `events` from the checkpoint's time and delivers the missed
    // event (the one before the stop may come again: a replay, never a loss).
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = ChildDaemon::spawn(&config, log.path());
    child.wait_ready().await;
    let delivered = |id: &'static str| {
        let receiver = &receiver;
        move || {
            let got = receiver
                .requests()
                .iter()
                .any(|r| header(r, "webhook-id") == Some(id));
            async move { got }
        }
    };
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while !delivered("evt_missed_while_down")().await {
        assert!(
            std::time::Instant::now() < until,
            "the event written while herald was down never arrived\nherald log:\n{}",
            crate::support::without_colours(&child.log_text())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = crate::support::without_colours(&child.log_text());
    assert!(
        text.contains("falling back to scanning"),
        "herald did not report the lost history:\n{text}"
    );
    // And the feed goes on from now.
    insert_event(&db, "evt_after_recovery", "batch.completed").await;
    crate::support::eventually(
        Duration::from_secs(30),
        "an event after the recovery is delivered",
        delivered("evt_after_recovery"),
    )
    .await;
    assert_eq!(child.terminate(), Some(0), "{}", child.log_text());
}

/// A checkpoint whose token this server cannot even parse (FailedToParse, code 9), as a
/// checkpoint written by another server version might be: handled like a lost history.
#[tokio::test]
async fn an_unreadable_checkpoint_token_falls_back_to_scanning_events() {
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
