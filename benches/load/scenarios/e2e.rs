//! e2e: events inserted into MongoDB, delivered over HTTPS and recorded, against a plain
//! change-stream consumer and a consumer that only records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald_actors::delivery::DeliveryRecord;
use herald_actors::ports::Ledger;
use mongodb::bson::Document;

use super::daemon::Daemon;
use super::shared::{event_doc, insert_webhooks, ledger_as_herald_makes_it, succeeded, webhook_id};
use super::Ctx;
use crate::harness::*;

/// Inserts `n` events of `event_type` into `collection` in `insert_many` batches of 500, as
/// fast as the server takes them, in a task of its own.
fn insert_events(
    collection: mongodb::Collection<Document>,
    n: usize,
    event_type: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for batch in (0..n).collect::<Vec<_>>().chunks(500) {
            let docs: Vec<Document> = batch
                .iter()
                .map(|&i| event_doc(i, event_type, None))
                .collect();
            collection.insert_many(docs).await.unwrap();
        }
    })
}

/// A plain change-stream consumer draining `n` inserts: events/s.
async fn change_stream_ceiling(db: &mongodb::Database, n: usize) -> f64 {
    let collection = db.collection::<Document>("ceiling_events");
    let mut stream = collection.watch().await.unwrap();
    let started = Instant::now();
    let inserter = insert_events(collection.clone(), n, "bench.ceiling");
    let mut seen = 0;
    while seen < n {
        stream.next().await.unwrap().unwrap();
        seen += 1;
    }
    inserter.await.unwrap();
    n as f64 / started.elapsed().as_secs_f64()
}

/// What any consumer that keeps the contract's ledger gets from this server: herald's own
/// change stream (a database watch with its `$match`) and, for every event, `fanout`
/// delivery records written through herald's own `MongoLedger` into `deliveries` with
/// herald's indexes — in batches of what has come in (up to 1,000), one write at a time, as
/// herald's ledger writer does — and nothing else: no HTTP, no signing, no actors. Events
/// are inserted as in [`e2e`]. Its change stream stays open until the last record is
/// durable, as a running consumer's does: the server runs every record written into the
/// database through it (and filters it out), which costs the dev server about a tenth of
/// its time at fan-out 10. Returns records durable per second.
async fn recording_consumer(db: &mongodb::Database, n: usize, fanout: usize) -> f64 {
    let ledger = ledger_as_herald_makes_it(db).await;
    let mut stream = db
        .watch()
        .pipeline(herald::store::events::feed_pipeline())
        .await
        .unwrap();
    let (records, mut incoming) = tokio::sync::mpsc::unbounded_channel::<DeliveryRecord>();
    let mut writer = tokio::spawn(async move {
        let mut batch = Vec::new();
        while incoming.recv_many(&mut batch, 1_000).await > 0 {
            ledger
                .write(Arc::new(std::mem::take(&mut batch)))
                .await
                .unwrap();
        }
    });
    let started = Instant::now();
    let inserter = insert_events(db.collection("events"), n, "bench.e2e");
    for _ in 0..n {
        let change = stream.next().await.unwrap().unwrap();
        let event_id = change
            .document_key
            .as_ref()
            .and_then(|key| key.get_str("_id").ok())
            .unwrap()
            .to_owned();
        for k in 0..fanout {
            let _ = records.send(succeeded(&event_id, &webhook_id(k), "bench.e2e"));
        }
    }
    drop(records);
    loop {
        tokio::select! {
            written = &mut writer => {
                written.unwrap();
                break;
            }
            // Nothing more matches; the server still reads what is written past it.
            change = stream.next_if_any() => {
                change.unwrap();
            }
        }
    }
    inserter.await.unwrap();
    (n * fanout) as f64 / started.elapsed().as_secs_f64()
}

pub async fn e2e(ctx: &Ctx) -> Vec<Outcome> {
    let n = ctx.n(10_000, 50_000);
    let mut out = Vec::new();
    for fanout in [1usize, 10] {
        // The dev server slows down as it fills (a consumer that only records read 2,105/s
        // on a fresh server, 907/s on one holding herald's 100,000 records), so each
        // fan-out starts on a fresh one rather than on the one the fan-out before filled.
        let db = Database::start().await;
        let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
        // The goal at fan-out 1 is set against a plain consumer on the same server.
        let consumer = if fanout == 1 {
            Some(change_stream_ceiling(&client.database(CEILING_DATABASE), n).await)
        } else {
            None
        };
        let name = format!("bench_e2e_{fanout}");
        let database = client.database(&name);
        let urls: Vec<String> = (0..fanout)
            .map(|i| ctx.receiver.url(&format!("/ok/e2e{i}")))
            .collect();
        // On a server of its own too. Herald's run at fan-out 1 has the plain consumer's
        // events to contend with; the recording consumer has none, so the comparison
        // flatters it, not herald.
        let recording = {
            let server = Database::start().await;
            let client = mongodb::Client::with_uri_str(&server.uri).await.unwrap();
            let db = client.database(&format!("bench_e2e_recording_{fanout}"));
            let rate = recording_consumer(&db, n, fanout).await;
            db.drop().await.unwrap();
            rate
        };
        insert_webhooks(&database, &urls, "bench.e2e").await;
        let (daemon, _) = Daemon::start(ctx, &db.uri, &name).await;
        ctx.receiver.reset().await;
        let written_before = daemon.metric("herald_ledger_records_written_total").await;
        let deliveries = (n * fanout) as u64;
        let bar = progress(deliveries, &format!("e2e, fan-out {fanout}"));
        let cpu = cpu_seconds();
        let started = Instant::now();
        let inserter = insert_events(database.collection("events"), n, "bench.e2e");
        ctx.receiver
            .wait_ok(deliveries, Duration::from_secs(900), &bar)
            .await;
        // ... and recorded in MongoDB. Counting documents is a scan on the dev server that
        // would compete with herald for its one core (each count of 100,000 records took
        // it ~0.4 s), so follow herald's own metric of records made durable, and confirm
        // with one count once the clock has stopped.
        while daemon.metric("herald_ledger_records_written_total").await
            < written_before + deliveries as f64
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bar.finish_and_clear();
        let rate = deliveries as f64 / started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu;
        let recorded = database.collection::<Document>("deliveries");
        assert!(
            recorded.estimated_document_count().await.unwrap() >= deliveries,
            "herald counted its records durable before the server held them all"
        );
        let ahead = daemon
            .metric("herald_deliveries_recorded_ahead_total")
            .await;
        let read_back = daemon.metric("herald_deliveries_read_back_total").await;
        inserter.await.unwrap();
        daemon.stop();
        let outcome = Outcome::new("e2e", &format!("deliveries/s, fan-out {fanout}"), rate)
            .cpu(cpu, deliveries);
        let recording = format!(
            "the server's own limit, a consumer that only records (no HTTP): {recording:.0}/s, \
             herald {:.0} % of it; recorded pending ahead of an attempt {ahead:.0}, read back \
             {read_back:.0}",
            100.0 * rate / recording
        );
        out.push(match consumer {
            Some(consumer) => outcome.against(consumer, 0.50).note(format!(
                "{n} events inserted in batches of 500; ceiling: plain watch() consumer; \
                 {recording}"
            )),
            None => outcome
                .goal("≥ 10,000 deliveries/s", rate >= 10_000.0)
                .note(format!(
                    "{n} events × {fanout} webhooks, on a fresh server; {recording}"
                )),
        });
    }
    out
}
