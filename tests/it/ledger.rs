//! The MongoDB ledger takes the engine's batches as the contract's `deliveries` documents,
//! and a batch written again — the engine retries a write whose answer it never got, though
//! the server may have applied it — changes nothing the first write did not.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use herald::store::deliveries::MongoLedger;
use herald_actors::delivery::{AttemptLogEntry, DeliveryRecord, DeliveryStatus};
use herald_actors::ports::Ledger;
use mongodb::bson::{doc, Document};

use crate::fixtures::database;

const WEBHOOK: &str = "wh_00000000000001ed";

/// The record of an attempt that started at `at` and answered `status`.
fn record(event_id: &str, attempts: u32, at: SystemTime, status: u16) -> DeliveryRecord {
    let succeeded = (200..300).contains(&status);
    DeliveryRecord {
        delivery_id: format!("{event_id}:{WEBHOOK}"),
        event_id: event_id.to_owned(),
        webhook_id: WEBHOOK.to_owned(),
        event_type: "batch.completed".to_owned(),
        task_id: None,
        status: if succeeded {
            DeliveryStatus::Succeeded
        } else {
            DeliveryStatus::Pending
        },
        attempts,
        next_attempt_at: (!succeeded).then(|| at + Duration::from_secs(5)),
        last_status_code: Some(status),
        last_error: None,
        new_attempts: vec![AttemptLogEntry {
            at,
            status_code: Some(status),
            error: None,
            duration_ms: 3,
        }],
        first_write: attempts == 1,
        created_at: at,
        completed_at: succeeded.then_some(at),
        payload: (!succeeded).then(|| Bytes::from_static(b"{\"n\":1}")),
    }
}

async fn stored(db: &mongodb::Database, event_id: &str) -> (i64, usize, String) {
    let d: Document = db
        .collection::<Document>("deliveries")
        .find_one(doc! {"_id": format!("{event_id}:{WEBHOOK}")})
        .await
        .unwrap()
        .expect("the delivery is recorded");
    (
        d.get_i64("attempts")
            .or_else(|_| d.get_i32("attempts").map(i64::from))
            .unwrap(),
        d.get_array("attempt_log").unwrap().len(),
        d.get_str("status").unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_batch_written_twice_records_each_attempt_once() {
    let (_, _, db) = database("ledger_twice").await;
    let ledger = MongoLedger::new(&db);
    let first = SystemTime::now() - Duration::from_secs(60);
    let second = first + Duration::from_secs(10);

    // The first attempt (500), its batch written again.
    let batch = Arc::new(vec![record("evt_l1", 1, first, 500)]);
    ledger.write(batch.clone()).await.unwrap();
    ledger.write(batch).await.unwrap();
    assert_eq!(stored(&db, "evt_l1").await, (1, 1, "pending".into()));

    // The retry (200), its batch written again.
    let batch = Arc::new(vec![record("evt_l1", 2, second, 200)]);
    ledger.write(batch.clone()).await.unwrap();
    ledger.write(batch).await.unwrap();
    assert_eq!(stored(&db, "evt_l1").await, (2, 2, "succeeded".into()));
}

#[tokio::test]
async fn a_delivery_attempted_again_after_a_crash_counts_every_attempt() {
    let (_, _, db) = database("ledger_replay").await;
    let ledger = MongoLedger::new(&db);
    let first = SystemTime::now() - Duration::from_secs(60);
    ledger
        .write(Arc::new(vec![record("evt_l2", 1, first, 500)]))
        .await
        .unwrap();
    // Restarted from an older checkpoint, herald attempts the event anew: a first record
    // whose document exists. Its attempt is a new one, counted on top of the old.
    let replayed = first + Duration::from_secs(30);
    ledger
        .write(Arc::new(vec![record("evt_l2", 1, replayed, 200)]))
        .await
        .unwrap();
    assert_eq!(stored(&db, "evt_l2").await, (2, 2, "succeeded".into()));
}

/// The first record of a delivery spilled before its first attempt: `pending`, due now,
/// with its payload and no attempt.
fn spilled(event_id: &str, at: SystemTime) -> DeliveryRecord {
    DeliveryRecord {
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_attempt_at: Some(at),
        last_status_code: None,
        new_attempts: Vec::new(),
        completed_at: None,
        payload: Some(Bytes::from_static(b"{\"n\":1}")),
        ..record(event_id, 1, at, 500)
    }
}

#[tokio::test]
async fn a_batch_written_again_after_its_delivery_succeeded_leaves_it_succeeded() {
    let (_, _, db) = database("ledger_again").await;
    let ledger = MongoLedger::new(&db);
    let first = SystemTime::now() - Duration::from_secs(60);
    let second = first + Duration::from_secs(10);
    // One batch: the delivery spilled (recorded pending), its first attempt (500), its
    // retry (200). Written twice: the second write's first record meets the document.
    let batch = Arc::new(vec![
        spilled("evt_l3", first),
        DeliveryRecord {
            first_write: false,
            ..record("evt_l3", 1, first, 500)
        },
        record("evt_l3", 2, second, 200),
    ]);
    ledger.write(batch.clone()).await.unwrap();
    assert_eq!(stored(&db, "evt_l3").await, (2, 2, "succeeded".into()));
    ledger.write(batch).await.unwrap();
    assert_eq!(stored(&db, "evt_l3").await, (2, 2, "succeeded".into()));

    // A replay (an event attempted again after a crash) whose batch is written twice
    // counts its attempt once.
    ledger
        .write(Arc::new(vec![record("evt_l4", 1, first, 500)]))
        .await
        .unwrap();
    let replay = Arc::new(vec![record("evt_l4", 1, second, 503)]);
    ledger.write(replay.clone()).await.unwrap();
    ledger.write(replay).await.unwrap();
    assert_eq!(stored(&db, "evt_l4").await, (2, 2, "pending".into()));
}

#[tokio::test]
async fn a_late_record_never_sets_a_succeeded_delivery_back() {
    let (_, _, db) = database("ledger_late").await;
    let ledger = MongoLedger::new(&db);
    let first = SystemTime::now() - Duration::from_secs(60);
    let succeeded_at = first + Duration::from_secs(10);
    ledger
        .write(Arc::new(vec![record("evt_l5", 1, first, 500)]))
        .await
        .unwrap();
    ledger
        .write(Arc::new(vec![record("evt_l5", 2, succeeded_at, 200)]))
        .await
        .unwrap();
    let before: Document = db
        .collection::<Document>("deliveries")
        .find_one(doc! {"_id": format!("evt_l5:{WEBHOOK}")})
        .await
        .unwrap()
        .unwrap();

    let late = [
        // A stale record of a failed attempt (made by a daemon that had not heard of the
        // success): an update.
        DeliveryRecord {
            first_write: false,
            ..record("evt_l5", 2, first + Duration::from_secs(5), 500)
        },
        // The event attempted again after a crash, failing this time: a first record whose
        // document exists (a replay).
        record("evt_l5", 1, succeeded_at + Duration::from_secs(20), 503),
        // The event spilled again after a crash: a pending first record with no attempt.
        spilled("evt_l5", succeeded_at + Duration::from_secs(30)),
        // Its attempts exhausted: `failed`.
        DeliveryRecord {
            status: DeliveryStatus::Failed,
            next_attempt_at: None,
            completed_at: Some(succeeded_at + Duration::from_secs(40)),
            first_write: false,
            ..record("evt_l5", 3, succeeded_at + Duration::from_secs(40), 500)
        },
    ];
    for record in late {
        ledger.write(Arc::new(vec![record])).await.unwrap();
        let after: Document = db
            .collection::<Document>("deliveries")
            .find_one(doc! {"_id": format!("evt_l5:{WEBHOOK}")})
            .await
            .unwrap()
            .unwrap();
        assert_eq!(after, before, "a succeeded delivery changed");
    }
    assert_eq!(stored(&db, "evt_l5").await, (2, 2, "succeeded".into()));
}

/// `webhook_id`'s copy of a record.
fn of_webhook(record: DeliveryRecord, webhook_id: &str) -> DeliveryRecord {
    DeliveryRecord {
        delivery_id: format!("{}:{webhook_id}", record.event_id),
        webhook_id: webhook_id.to_owned(),
        ..record
    }
}

#[tokio::test]
async fn the_ledger_names_the_webhooks_with_pending_deliveries_among_thousands_asked() {
    let (_, _, db) = database("ledger_with_pending").await;
    let ledger = MongoLedger::new(&db);
    let at = SystemTime::now();
    ledger
        .write(Arc::new(vec![
            // Pending: spilled before its first attempt, or retrying.
            of_webhook(spilled("evt_p1", at), "wh_pending_spilled"),
            of_webhook(record("evt_p2", 1, at, 500), "wh_pending_retry"),
            // Not pending: delivered.
            of_webhook(record("evt_p3", 1, at, 200), "wh_delivered"),
            // Pending, but not asked about.
            of_webhook(spilled("evt_p4", at), "wh_not_asked"),
        ]))
        .await
        .unwrap();
    // More webhooks than one question names: the last one asked about falls in the second.
    let mut asked: Vec<Arc<str>> = (0..6_000)
        .map(|i| Arc::from(format!("wh_quiet_{i:04}")))
        .collect();
    asked.extend(
        ["wh_pending_spilled", "wh_delivered", "wh_pending_retry"]
            .into_iter()
            .map(Arc::from),
    );
    let found = ledger.with_pending(asked).await.unwrap();
    let mut found: Vec<String> = found.into_iter().collect();
    found.sort();
    assert_eq!(found, ["wh_pending_retry", "wh_pending_spilled"]);
}
