//! The kept endpoint health through the ledger when thousands of endpoints read and write
//! it at once (a daemon starting its endpoints): reads and writes share round trips, yet
//! every caller gets its own answer — its webhook's copy back as written, none for a
//! webhook never kept; an older copy never replaces a newer one, whether they meet in one
//! write or in two; and with the database down every waiting caller is answered with an
//! error rather than left hanging.

use std::time::{Duration, SystemTime};

use futures::future::join_all;
use herald::store::deliveries::MongoLedger;
use herald_actors::health::StoredHealth;
use herald_actors::ports::Ledger;
use mongodb::bson::{doc, Document};

use crate::fixtures::database;
use crate::support::TestMongo;

/// More webhooks than one read or one write takes.
const WEBHOOKS: usize = 1_500;

/// A time `ms` milliseconds into 2027 (the store keeps milliseconds).
fn at(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + ms)
}

/// Webhook `i`'s health as of `version`: every field tells them apart.
fn health(i: usize, version: u64) -> StoredHealth {
    let n = i as u32;
    StoredHealth {
        consecutive_failures: n + version as u32,
        streak_since: Some(at(i as u64)),
        failing: i % 2 == 0,
        disable_requested: i % 3 == 0,
        last_success_at: (i % 4 == 0).then(|| at(version)),
        last_failure_at: Some(at(1_000 + version)),
        last_status_code: Some(500 + (i % 4) as u16),
        last_error: Some(format!("error {i} v{version}")),
        buckets: vec![(30_000_000 + version, n % 7, n % 7 + 1)],
        updated_at: at(10_000 * version + i as u64),
    }
}

fn webhook_id(i: usize) -> String {
    format!("wh_{i:016x}")
}

async fn kept(db: &mongodb::Database, i: usize) -> StoredHealth {
    let d: Document = db
        .collection::<Document>("endpoint_health")
        .find_one(doc! {"_id": webhook_id(i)})
        .await
        .unwrap()
        .expect("the health is kept");
    herald::store::health::from_doc(&d)
}

#[tokio::test]
async fn thousands_of_endpoints_at_once_each_get_their_own_health_back() {
    let (_, _, db) = database("health_batched").await;
    let ledger = MongoLedger::new(&db);

    // Every endpoint writes its health at once.
    let saved =
        join_all((0..WEBHOOKS).map(|i| ledger.save_health(&webhook_id(i), health(i, 1)))).await;
    for (i, result) in saved.iter().enumerate() {
        assert!(result.is_ok(), "webhook {i}: {result:?}");
    }

    // Every endpoint reads it back at once, beside endpoints that never kept any, some
    // asking twice.
    let reads = (0..WEBHOOKS + 200).chain(0..50);
    let loaded = join_all(reads.clone().map(|i| ledger.load_health(&webhook_id(i)))).await;
    for (i, result) in reads.zip(loaded) {
        let result = result.unwrap_or_else(|e| panic!("webhook {i}: {e}"));
        if i < WEBHOOKS {
            assert_eq!(result, Some(health(i, 1)), "webhook {i}");
        } else {
            assert_eq!(result, None, "webhook {i} was never kept");
        }
    }
    let count = db
        .collection::<Document>("endpoint_health")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(count, WEBHOOKS as u64);
}

#[tokio::test]
async fn an_older_copy_never_replaces_a_newer_one_in_one_write_or_across_writes() {
    let (_, _, db) = database("health_batched_order").await;
    let ledger = MongoLedger::new(&db);

    // Two copies of each webhook's health at once, the older one asked last for half of
    // them: however they are grouped, both callers are answered and the newer copy stays.
    let pairs = (0..WEBHOOKS).flat_map(|i| {
        let (first, second) = if i % 2 == 0 { (2, 1) } else { (1, 2) };
        [(i, first), (i, second)]
    });
    let saved =
        join_all(pairs.map(|(i, version)| ledger.save_health(&webhook_id(i), health(i, version))))
            .await;
    assert!(
        saved.iter().all(Result::is_ok),
        "{:?}",
        saved.iter().find(|r| r.is_err())
    );
    for i in (0..WEBHOOKS).step_by(97) {
        assert_eq!(kept(&db, i).await, health(i, 2), "webhook {i}");
    }

    // An older copy written after the newer one is kept (a daemon that lost the endpoint,
    // writing late): answered as done, and changes nothing; a newer one replaces it.
    let late =
        join_all((0..WEBHOOKS).map(|i| ledger.save_health(&webhook_id(i), health(i, 1)))).await;
    assert!(
        late.iter().all(Result::is_ok),
        "{:?}",
        late.iter().find(|r| r.is_err())
    );
    let loaded = join_all((0..WEBHOOKS).map(|i| ledger.load_health(&webhook_id(i)))).await;
    for (i, result) in loaded.into_iter().enumerate() {
        assert_eq!(result.unwrap(), Some(health(i, 2)), "webhook {i}");
    }
    let newer =
        join_all((0..WEBHOOKS).map(|i| ledger.save_health(&webhook_id(i), health(i, 3)))).await;
    assert!(newer.iter().all(Result::is_ok));
    for i in (0..WEBHOOKS).step_by(89) {
        assert_eq!(kept(&db, i).await, health(i, 3), "webhook {i}");
    }
}

#[tokio::test]
async fn with_the_database_down_every_waiting_read_and_write_is_answered_with_an_error() {
    let mut mongo = TestMongo::spawn().await;
    // Server selection gives up after two seconds, as in the outage story.
    let uri = format!("{}&serverSelectionTimeoutMS=2000", mongo.uri);
    let db = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database("health_batched_down");
    let ledger = MongoLedger::new(&db);
    ledger
        .save_health(&webhook_id(0), health(0, 1))
        .await
        .unwrap();
    assert_eq!(
        ledger.load_health(&webhook_id(0)).await.unwrap(),
        Some(health(0, 1))
    );

    mongo.stop().await;
    let answers = tokio::time::timeout(Duration::from_secs(120), async {
        let loads = join_all((0..300).map(|i| ledger.load_health(&webhook_id(i))));
        let saves = join_all((0..300).map(|i| ledger.save_health(&webhook_id(i), health(i, 2))));
        futures::join!(loads, saves)
    })
    .await
    .expect("every read and write is answered while MongoDB is down");
    assert!(
        answers.0.iter().all(Result::is_err),
        "{:?}",
        answers.0.iter().find(|r| r.is_ok())
    );
    assert!(
        answers.1.iter().all(Result::is_err),
        "{:?}",
        answers.1.iter().find(|r| r.is_ok())
    );

    // Back up: the same ledger reads and writes again.
    mongo.restart().await;
    let mut recovered = false;
    for _ in 0..120 {
        if ledger
            .save_health(&webhook_id(1), health(1, 3))
            .await
            .is_ok()
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(recovered, "writing the health never recovered");
    assert_eq!(
        ledger.load_health(&webhook_id(1)).await.unwrap(),
        Some(health(1, 3))
    );
    assert_eq!(
        ledger.load_health(&webhook_id(0)).await.unwrap(),
        Some(health(0, 1))
    );
}
