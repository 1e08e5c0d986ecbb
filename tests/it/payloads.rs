//! Payloads held once: an event's body is stored once in `payloads`, whatever number of
//! endpoints keep failing it, and the deliveries only name it; every attempt and every
//! replay still sends those exact bytes. A payload goes only once no delivery that may be
//! sent again needs it.

use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use herald::store::payloads::{load, store, sweep};
use mongodb::bson::{doc, Bson, DateTime, Document};
use serde_json::json;

use crate::daemon::start_with_key;
use crate::fixtures::*;
use crate::support::{eventually, Receiver};

const KEY: &str = "payloads-test-key";

/// Enough endpoints that a body per delivery would dwarf one body, few enough for CI.
const WEBHOOKS: usize = 60;

/// Large against a delivery document, well under the 1 MiB a body may be.
const BLOB_BYTES: usize = 256 * 1024;

async fn all(db: &mongodb::Database, collection: &str) -> Vec<Document> {
    db.collection::<Document>(collection)
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test]
async fn one_large_event_to_many_failing_endpoints_stores_its_body_once() {
    let (uri, name, db) = database("payloads_once").await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    let webhooks: Vec<Document> = (0..WEBHOOKS)
        .map(|i| webhook(&format!("wh_{:016x}", 0xb000 + i), &receiver.url, &["*"]))
        .collect();
    db.collection::<Document>("webhooks")
        .insert_many(webhooks)
        .await
        .unwrap();
    let (daemon, api) = start_with_key(&uri, &name, KEY, |c| {
        c.retry_max_attempts = 2;
        c.attempt_timeout_ms = 10_000;
    })
    .await;

    db.collection::<Document>("events")
        .insert_one(doc! {
            "_id": "evt_big",
            "event_type": "batch.completed",
            "data": {"blob": "x".repeat(BLOB_BYTES)},
        })
        .await
        .unwrap();
    eventually(
        Duration::from_secs(90),
        "every delivery of the event failed",
        || {
            let db = db.clone();
            async move { deliveries(&db, doc! {"status": "failed"}).await.len() == WEBHOOKS }
        },
    )
    .await;

    // One body in `payloads`: the bytes every endpoint received, with their size.
    let stored = all(&db, "payloads").await;
    assert_eq!(stored.len(), 1, "one payload for the event");
    let body = stored[0].get_str("body").unwrap().as_bytes().to_vec();
    assert_eq!(stored[0].get_str("_id"), Ok("evt_big"));
    assert_eq!(stored[0].get_i64("size"), Ok(body.len() as i64));
    assert!(body.len() > BLOB_BYTES);
    // (An attempt cut off by its timeout on a busy machine may not have reached it.)
    let requests = receiver.requests();
    assert!(requests.len() >= WEBHOOKS, "{} requests", requests.len());
    assert!(requests.iter().all(|r| r.body[..] == body[..]));

    // The deliveries only name it: together they are a fraction of the one body.
    let records = deliveries(&db, doc! {}).await;
    assert_eq!(records.len(), WEBHOOKS);
    let mut delivery_bytes = 0;
    for d in &records {
        assert!(
            d.get("payload").is_none(),
            "a delivery holds the body: {}",
            d.get_str("_id").unwrap()
        );
        assert_eq!(d.get_str("payload_id"), Ok("evt_big"));
        delivery_bytes += mongodb::bson::to_vec(d).unwrap().len();
    }
    println!(
        "{WEBHOOKS} failed deliveries of one {} KiB event: payloads {} KiB, deliveries {} KiB",
        body.len() / 1024,
        body.len() / 1024,
        delivery_bytes / 1024
    );
    assert!(
        delivery_bytes < body.len() / 4,
        "{delivery_bytes} bytes of deliveries"
    );

    // Shown as before (never with the body), and replayed with the same bytes.
    receiver.respond_with(200);
    let id = format!("evt_big:wh_{:016x}", 0xb000);
    let shown = api.get(&format!("/v1/deliveries/{id}")).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.body["status"], "failed");
    assert_eq!(shown.body["attempt_log"].as_array().map(Vec::len), Some(2));
    assert!(shown.body.get("payload").is_none() && shown.body.get("payload_id").is_none());
    let retried = api
        .post(&format!("/v1/deliveries/{id}/retry"), json!({}))
        .await;
    assert_eq!(retried.status, 202, "{}", retried.body);
    wait_for_status(&db, &id, "succeeded").await;
    let replay = receiver.requests().pop().unwrap();
    assert_eq!(replay.body[..], body[..]);
    assert_signed(&replay);
    assert_eq!(all(&db, "payloads").await.len(), 1);
    daemon.stop().await.expect("herald stops cleanly");
}

#[tokio::test]
async fn a_payload_goes_once_no_delivery_that_may_be_sent_again_needs_it() {
    let (_, _, db) = database("payloads_sweep").await;
    let hour_ago = DateTime::from_system_time(SystemTime::now() - Duration::from_secs(3_600));
    let payload = |id: &str, touched_at: DateTime| {
        doc! {"_id": id, "body": format!("{{\"event_id\":\"{id}\"}}"), "size": 20i64,
        "created_at": touched_at, "touched_at": touched_at}
    };
    db.collection::<Document>("payloads")
        .insert_many([
            payload("evt_failed", hour_ago),
            payload("evt_pending", hour_ago),
            payload("evt_done", hour_ago),
            payload("evt_orphan", hour_ago),
            payload("evt_fresh", DateTime::now()),
        ])
        .await
        .unwrap();
    let delivery = |event: &str, status: &str| {
        doc! {"_id": format!("{event}:wh_00000000000b0001"), "event_id": event,
        "webhook_id": "wh_00000000000b0001", "event_type": "batch.completed",
        "status": status, "attempts": 1i64, "payload_id": event,
        "created_at": hour_ago, "completed_at": Bson::Null}
    };
    let deliveries = db.collection::<Document>("deliveries");
    deliveries
        .insert_many([
            delivery("evt_failed", "failed"),
            delivery("evt_pending", "pending"),
            delivery("evt_done", "succeeded"),
        ])
        .await
        .unwrap();
    let left = |db: mongodb::Database| async move {
        let mut ids: Vec<String> = all(&db, "payloads")
            .await
            .iter()
            .map(|d| d.get_str("_id").unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };

    // Needed by a failed (replayable) or pending delivery, or stored again lately: kept.
    let cutoff = SystemTime::now() - Duration::from_secs(60);
    assert_eq!(sweep(&db, cutoff).await.unwrap(), 2);
    assert_eq!(
        left(db.clone()).await,
        ["evt_failed", "evt_fresh", "evt_pending"]
    );
    // Retention removes the failed delivery: its payload follows at the next sweep.
    deliveries
        .delete_one(doc! {"event_id": "evt_failed"})
        .await
        .unwrap();
    assert_eq!(sweep(&db, cutoff).await.unwrap(), 1);
    assert_eq!(left(db.clone()).await, ["evt_fresh", "evt_pending"]);
}

/// Storing a body again (a ledger batch written again, an event spilled again) keeps the
/// first body stored under its id and only touches it, so the sweep leaves it; new bodies
/// stored beside it in the same call are stored whole.
#[tokio::test]
async fn storing_again_keeps_the_first_body_and_touches_it() {
    let (_, _, db) = database("payloads_store").await;
    let first = bytes::Bytes::from_static(b"{\"v\":1}");
    store(&db, &[("evt_a", &first)]).await.unwrap();
    let before = all(&db, "payloads").await;
    assert_eq!(before.len(), 1);
    let touched = *before[0].get_datetime("touched_at").unwrap();
    assert_eq!(before[0].get_i64("size"), Ok(7));

    tokio::time::sleep(Duration::from_millis(20)).await;
    let other = bytes::Bytes::from_static(b"{\"v\":2}");
    let new = bytes::Bytes::from(vec![0xff, 0x00, 0x7f]);
    store(&db, &[("evt_b", &new), ("evt_a", &other)])
        .await
        .unwrap();
    let mut after = all(&db, "payloads").await;
    after.sort_by_key(|d| d.get_str("_id").unwrap().to_owned());
    assert_eq!(after.len(), 2);
    assert_eq!(
        after[0].get_str("body"),
        Ok("{\"v\":1}"),
        "the first body stays"
    );
    assert!(
        *after[0].get_datetime("touched_at").unwrap() > touched,
        "stored again, it is touched"
    );
    assert_eq!(
        after[0].get_datetime("created_at"),
        before[0].get_datetime("created_at")
    );
    // Not UTF-8: kept as binary, byte for byte.
    match after[1].get("body") {
        Some(Bson::Binary(binary)) => assert_eq!(binary.bytes, [0xff, 0x00, 0x7f]),
        other => panic!("evt_b's body: {other:?}"),
    }
    // Touched now: a sweep with an earlier cutoff leaves both.
    let cutoff = SystemTime::now() - Duration::from_secs(60);
    assert_eq!(sweep(&db, cutoff).await.unwrap(), 0);
}

/// A page of spilled deliveries names many events: their bodies are read in several
/// commands, and every one is found, once, with its own bytes.
#[tokio::test]
async fn bodies_of_a_large_page_are_all_read_back() {
    let (_, _, db) = database("payloads_load").await;
    let bodies: Vec<(String, bytes::Bytes)> = (0..250)
        .map(|i| {
            (
                format!("evt_{i:03}"),
                bytes::Bytes::from(format!("{{\"n\":{i}}}")),
            )
        })
        .collect();
    let stored: Vec<(&str, &bytes::Bytes)> = bodies
        .iter()
        .map(|(id, body)| (id.as_str(), body))
        .collect();
    store(&db, &stored).await.unwrap();
    // Every id, one twice, and one with no body.
    let mut ids: Vec<String> = bodies.iter().map(|(id, _)| id.clone()).collect();
    ids.push("evt_007".into());
    ids.push("evt_missing".into());
    let found = load(&db, &ids).await.unwrap();
    assert_eq!(found.len(), 250);
    for (id, body) in &bodies {
        assert_eq!(found.get(id), Some(body), "{id}");
    }
}
