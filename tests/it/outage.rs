//! MongoDB goes away for ten seconds mid-stream and comes back on the same port and
//! storage: herald stays up, says it is not ready while the database is gone, reconnects on
//! its own, and delivers every event inserted before, during (once acknowledged) and after.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::Document;
use mongodb::error::ErrorKind;
use mongodb::Database;

use crate::daemon::{http_get_status, test_config, ChildDaemon};
use crate::fixtures::*;
use crate::support::{eventually, without_colours, Receiver, TestMongo};

/// How long the database is down.
const OUTAGE: Duration = Duration::from_secs(10);

/// Inserts one event, retrying until the server acknowledges it. A duplicate-key error on a
/// retry means an earlier try was applied and only its answer was lost.
async fn insert_until_acknowledged(db: &Database, id: &str) {
    loop {
        let result = db
            .collection::<Document>("events")
            .insert_one(event(id, "batch.completed"))
            .await;
        match result {
            Ok(_) => return,
            Err(e)
                if matches!(&*e.kind, ErrorKind::Write(_)) && e.to_string().contains("E11000") =>
            {
                return
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The events of `inserted` that have not reached `receiver`.
fn not_arrived<'a>(receiver: &Receiver, inserted: &'a [String]) -> Vec<&'a String> {
    let arrived: HashSet<String> = receiver
        .requests()
        .iter()
        .filter_map(|r| header(r, "webhook-id").map(str::to_owned))
        .collect();
    inserted
        .iter()
        .filter(|id| !arrived.contains(*id))
        .collect()
}

#[tokio::test]
async fn a_ten_second_mongodb_outage_loses_nothing_and_readiness_follows_it() {
    // A server of the test's own, also when HERALD_TEST_MONGODB_URI names an external one:
    // the test stops and restarts it (it used to pass by skipping itself there).
    let mut mongo = TestMongo::spawn().await;
    let db = mongo.client().await.database("outage");
    let receiver = Receiver::start().await;
    // A second endpoint fails its first 60 requests, so retries are pending (and their
    // ledger updates due) across the outage.
    let flaky = Receiver::start().await;
    flaky.fail_first(60, 500);
    insert_webhook(&db, webhook("wh_00000000000a0001", &receiver.url, &["*"])).await;
    insert_webhook(&db, webhook("wh_00000000000a0002", &flaky.url, &["*"])).await;
    // A server-selection timeout shorter than the outage, so that the driver's own single
    // resume attempt fails too and herald's reconnect loops (feed, watcher, ledger) run.
    let uri = format!("{}&serverSelectionTimeoutMS=2000", mongo.uri);
    let mut config = test_config(&uri, "outage", &receiver.ca_pem_path);
    config.retry_initial_ms = 200;
    config.retry_max_ms = 2_000;
    config.retry_max_attempts = 30;
    let log = tempfile::NamedTempFile::new().unwrap();
    let herald_log = || std::fs::read_to_string(log.path()).unwrap_or_default();

    let mut daemon = ChildDaemon::spawn(&config, log.path());
    daemon.wait_ready().await;
    let healthz = format!("http://{}/healthz", daemon.listen());
    let readyz = format!("http://{}/readyz", daemon.listen());

    // A producer inserting an event every 50 ms until told to stop; it records each event
    // once the server has acknowledged it.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop_producing = tokio_util::sync::CancellationToken::new();
    let producer = {
        let db = db.clone();
        let acknowledged = acknowledged.clone();
        let stop = stop_producing.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                let id = format!("evt_outage_{n:04}");
                insert_until_acknowledged(&db, &id).await;
                acknowledged.lock().unwrap().push(id);
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    receiver.wait_for(20, Duration::from_secs(30)).await;
    // A burst just before the outage, so that the change stream, the endpoints and the
    // ledger all have work in hand when the database goes.
    let burst: Vec<Document> = (0..300)
        .map(|i| event(&format!("evt_burst_{i:04}"), "batch.completed"))
        .collect();
    db.collection::<Document>("events")
        .insert_many(burst)
        .await
        .unwrap();
    acknowledged
        .lock()
        .unwrap()
        .extend((0..300).map(|i| format!("evt_burst_{i:04}")));
    let before = acknowledged.lock().unwrap().len();

    // The outage.
    mongo.stop().await;
    let down_at = Instant::now();
    let mut saw_not_ready = false;
    while down_at.elapsed() < OUTAGE {
        assert_eq!(
            http_get_status(&healthz).await,
            Some(200),
            "/healthz must stay 200 while MongoDB is down\n{}",
            herald_log()
        );
        let ready = http_get_status(&readyz).await;
        assert!(
            ready.is_some(),
            "herald stopped answering\n{}",
            herald_log()
        );
        saw_not_ready |= ready != Some(200);
        assert!(
            matches!(daemon.child.try_wait(), Ok(None)),
            "herald exited while MongoDB was down\n{}",
            herald_log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        saw_not_ready,
        "/readyz answered 200 throughout a {OUTAGE:?} MongoDB outage"
    );
    mongo.restart().await;
    println!("MongoDB was down for {:?}", down_at.elapsed());

    // Back: ready again, on its own.
    eventually(Duration::from_secs(60), "/readyz is 200 again", || {
        let readyz = readyz.clone();
        async move { http_get_status(&readyz).await == Some(200) }
    })
    .await;
    println!(
        "ready again {:?} after the restart began",
        down_at.elapsed().saturating_sub(OUTAGE)
    );

    // Keep producing for a while after the outage, then stop.
    let resumed_at = acknowledged.lock().unwrap().len();
    eventually(
        Duration::from_secs(30),
        "more events inserted after the outage",
        || {
            let n = acknowledged.lock().unwrap().len();
            async move { n >= resumed_at + 40 }
        },
    )
    .await;
    stop_producing.cancel();
    producer.await.unwrap();
    let inserted: Vec<String> = acknowledged.lock().unwrap().clone();
    println!(
        "{} events inserted: {before} before the outage, {} during or after",
        inserted.len(),
        inserted.len() - before
    );

    // Every event, before and after, arrives at both endpoints...
    let deadline = Instant::now() + Duration::from_secs(60);
    for (name, receiver, other) in [("healthy", &receiver, &flaky), ("flaky", &flaky, &receiver)] {
        loop {
            let missing: Vec<&String> = not_arrived(receiver, &inserted);
            if missing.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                // What became of them: at the other endpoint, and in the ledger.
                let total = missing.len();
                let missing = &missing[..total.min(10)];
                let elsewhere = not_arrived(other, &inserted);
                let at_other: Vec<&&String> = missing
                    .iter()
                    .filter(|id| !elsewhere.contains(id))
                    .collect();
                let ids: Vec<&str> = missing.iter().map(|id| id.as_str()).collect();
                let records: Vec<String> =
                    deliveries(&db, mongodb::bson::doc! {"event_id": {"$in": ids}})
                        .await
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                panic!(
                    "{} of {} events never arrived at the {name} endpoint (first: {missing:?}); \
                     of those, the other endpoint got {at_other:?}; their delivery records: \
                     {records:?}\nherald log:\n{}\nMongoDB log:\n{}",
                    total,
                    inserted.len(),
                    herald_log(),
                    mongo.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // ...and the ledger catches up: every delivery recorded as succeeded.
    let expected = 2 * inserted.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Only this test's events: herald's own alerts (an endpoint failing, recovered) are
        // delivered too.
        let docs = deliveries(
            &db,
            mongodb::bson::doc! {"event_id": {"$regex": "^evt_(outage|burst)_"}},
        )
        .await;
        let succeeded = docs
            .iter()
            .filter(|d| d.get_str("status") == Ok("succeeded"))
            .count();
        if succeeded == expected {
            break;
        }
        if Instant::now() > deadline {
            let recorded: HashSet<&str> =
                docs.iter().filter_map(|d| d.get_str("_id").ok()).collect();
            let unrecorded: Vec<String> = inserted
                .iter()
                .flat_map(|e| {
                    [
                        format!("{e}:wh_00000000000a0001"),
                        format!("{e}:wh_00000000000a0002"),
                    ]
                })
                .filter(|id| !recorded.contains(id.as_str()))
                .take(10)
                .collect();
            let other: Vec<String> = docs
                .iter()
                .filter(|d| d.get_str("status") != Ok("succeeded"))
                .take(3)
                .map(|d| d.to_string())
                .collect();
            panic!(
                "{succeeded} of {expected} deliveries recorded succeeded, {} documents; \
                 unrecorded: {unrecorded:?}; not succeeded: {other:?}\nherald log:\n{}",
                docs.len(),
                herald_log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The outage outlasted the driver's own resume attempt: herald reopened its change
    // stream itself, resuming from its last token (no fallback scan of `events`).
    let log_text = without_colours(&herald_log());
    assert!(
        log_text.contains("change stream reopened") && log_text.contains("resumed=true"),
        "herald's feed never reopened its change stream itself\n{log_text}"
    );
    assert!(
        !log_text.contains("falling back to scanning"),
        "the feed could not resume from its token\n{log_text}"
    );
    if std::env::var_os("HERALD_OUTAGE_DUMP").is_some() {
        for line in herald_log().lines() {
            if !line.contains("herald_actors::endpoint") {
                println!("{line}");
            }
        }
    }
    assert!(
        matches!(daemon.child.try_wait(), Ok(None)),
        "herald exited\n{}",
        herald_log()
    );
    assert_eq!(
        daemon.terminate(),
        Some(0),
        "herald did not exit cleanly on SIGTERM\n{}",
        herald_log()
    );
}

/// SIGTERM while MongoDB is gone: herald still exits, within the lease TTL of its last
/// step (the leases it cannot free expire by themselves), not after one server-selection
/// timeout per lease it held (64 of them: minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_mongodb_is_down_still_stops_herald() {
    let mut mongo = TestMongo::spawn().await;
    let receiver = Receiver::start().await;
    let uri = format!("{}&serverSelectionTimeoutMS=2000", mongo.uri);
    let config = test_config(&uri, "outage_sigterm", &receiver.ca_pem_path);
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut daemon = ChildDaemon::spawn(&config, log.path());
    daemon.wait_ready().await;
    mongo.stop().await;

    let code = daemon.terminate();
    let log_text = without_colours(&std::fs::read_to_string(log.path()).unwrap_or_default());
    assert_eq!(
        code,
        Some(0),
        "herald did not stop on SIGTERM with MongoDB gone\n{log_text}"
    );
    assert!(
        log_text.contains("expire by themselves"),
        "herald did not say that its leases expire by themselves\n{log_text}"
    );
}
