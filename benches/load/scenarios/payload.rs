//! payload: events of 1 KiB, 64 KiB and 1 MiB inserted into MongoDB and delivered by the
//! daemon to one endpoint and to 100: deliveries/s, MiB/s and the peak RSS of the process
//! holding herald, against a bare hyper client POSTing the same bodies.

use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_actors::Event;
use mongodb::bson::{doc, Document};

use super::daemon::Daemon;
use super::shared::insert_webhooks;
use super::Ctx;
use crate::harness::*;

const EVENT_TYPE: &str = "bench.payload";

/// Event `i` whose delivered body is about `size` bytes: a string of that length in `data`.
fn big_event(i: usize, size: usize) -> Document {
    doc! {
        "_id": format!("evt_payload_{i:08}_{:08x}", rand::random::<u32>()),
        "event_type": EVENT_TYPE,
        "data": {"blob": "x".repeat(size.saturating_sub(200))},
    }
}

/// Resets this process's peak RSS (VmHWM), so that the next reading is the next run's.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One run: `n` events of `size` bytes to `fanout` endpoints, on a fresh server.
/// Returns (deliveries/s, peak RSS MiB during the run, CPU s).
async fn run(ctx: &Ctx, size: usize, fanout: usize, n: usize) -> (f64, f64, f64) {
    let db = Database::start().await;
    let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
    let name = format!("bench_payload_{size}_{fanout}");
    let database = client.database(&name);
    let urls: Vec<String> = (0..fanout)
        .map(|k| ctx.receiver.url(&format!("/ok/payload{k}")))
        .collect();
    insert_webhooks(&database, &urls, EVENT_TYPE).await;
    let (daemon, _) = Daemon::start(ctx, &db.uri, &name).await;
    ctx.receiver.reset().await;
    let deliveries = (n * fanout) as u64;
    let bar = progress(
        deliveries,
        &format!("payload {} KiB × {fanout}", size / 1024),
    );
    reset_peak_rss();
    let cpu = cpu_seconds();
    let started = Instant::now();
    let events = database.collection::<Document>("events");
    let inserter = tokio::spawn(async move {
        // About 4 MiB a write (the server's limit is 48 MB a message).
        let per_write = (4 << 20) / size.max(1);
        for chunk in (0..n).collect::<Vec<_>>().chunks(per_write.max(1)) {
            let docs: Vec<Document> = chunk.iter().map(|&i| big_event(i, size)).collect();
            events.insert_many(docs).await.unwrap();
        }
    });
    ctx.receiver
        .wait_ok(deliveries, Duration::from_secs(900), &bar)
        .await;
    let rate = deliveries as f64 / started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    let peak = peak_rss_mib();
    bar.finish_and_clear();
    inserter.await.unwrap();
    daemon.stop();
    (rate, peak, cpu)
}

pub async fn payload(ctx: &Ctx) -> Vec<Outcome> {
    let bare = bare_client(&ctx.receiver.ca);
    // Bytes and deliveries per run: enough to read a rate, few enough for the dev server
    // (which writes a delivery record per delivery).
    let budget: usize = ctx.n(128 << 20, 1 << 30);
    let most: usize = ctx.n(10_000, 50_000);
    let mut out = Vec::new();
    for size in [1usize << 10, 64 << 10, 1 << 20] {
        for fanout in [1usize, 100] {
            let n = (budget / (size * fanout)).min(most / fanout).max(4);
            let (rate, peak, cpu) = run(ctx, size, fanout, n).await;
            let urls: Vec<String> = (0..fanout)
                .map(|k| ctx.receiver.url(&format!("/ok/payload{k}")))
                .collect();
            let body: Bytes = Event::from_payload(&herald_actors::Payload {
                event_id: "evt_payload_bare".into(),
                event_type: EVENT_TYPE.into(),
                occurred_at: "2026-12-06T00:00:00.000Z".into(),
                namespace_id: None,
                task_id: None,
                subject: None,
                data: serde_json::json!({"blob": "x".repeat(size.saturating_sub(200))}),
                cache_scope: None,
            })
            .body;
            let ceiling = bare_rate(&bare, &urls, body, n * fanout, 64).await;
            let mib_s = rate * size as f64 / f64::from(1 << 20);
            let mut outcome = Outcome::new(
                "payload",
                &format!("deliveries/s, {} KiB, fan-out {fanout}", size >> 10),
                rate,
            )
            .against(ceiling, 0.50)
            .cpu(cpu, (n * fanout) as u64)
            .note(format!(
                "{n} events inserted into MongoDB; {mib_s:.1} MiB/s delivered (bare client \
                 {:.1} MiB/s, 64 in flight); peak RSS of the process holding herald \
                 {peak:.0} MiB during the run",
                ceiling * size as f64 / f64::from(1 << 20)
            ));
            outcome.peak_rss_mib = peak;
            out.push(outcome);
        }
    }
    out
}
