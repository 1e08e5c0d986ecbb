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
