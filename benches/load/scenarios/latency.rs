//! latency: insert→receipt at a steady rate, against a bare change stream's insert→arrival.

use std::time::Duration;

use futures::StreamExt;
use mongodb::bson::Document;

use super::daemon::Daemon;
use super::shared::{event_doc, insert_webhooks, now_ns};
use super::Ctx;
use crate::harness::*;

/// Inserts one event every 1/rate s for `seconds` (open loop) into `collection`.
async fn open_loop(
    collection: mongodb::Collection<Document>,
    rate: u64,
    seconds: u64,
    event_type: &'static str,
) {
    // One write per 10 ms at most, as a platform batches its writes: at 1,000 events/s a
    // write per event would be 1,000 round trips a second, which is all the dev server can
    // take by itself (its bare change stream then lags by seconds). Each event is stamped
    // when its write is sent, so batching adds nothing to the latency measured.
    let per_tick = (rate / 100).max(1);
    let ticks = rate * seconds / per_tick;
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 * per_tick / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for tick in 0..ticks as usize {
        ticker.tick().await;
        let collection = collection.clone();
        tasks.push(tokio::spawn(async move {
            let first = tick * per_tick as usize;
            let sent = now_ns();
            let docs: Vec<Document> = (first..first + per_tick as usize)
                .map(|i| event_doc(i, event_type, Some(sent)))
                .collect();
            collection.insert_many(docs).await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Watches `collection` until `n` events have come, each event's insert→arrival latency
/// in ns (the event's `data.t_ns` is when its write was sent).
async fn watch_latencies(
    collection: &mongodb::Collection<Document>,
    n: usize,
) -> tokio::task::JoinHandle<Vec<u64>> {
    let mut stream = collection.watch().await.unwrap();
    tokio::spawn(async move {
        let mut samples = Vec::with_capacity(n);
        while samples.len() < n {
            let change = stream.next().await.unwrap().unwrap();
            let t = change.full_document.and_then(|d| {
                d.get_document("data")
                    .ok()
                    .and_then(|d| d.get_i64("t_ns").ok())
            });
            samples.push(now_ns().saturating_sub(t.unwrap_or(0) as u64));
        }
        samples
    })
}

/// What one run of herald at a rate gave.
struct HeraldRun {
    /// Insert→receipt latencies, in ns.
    latencies: Vec<u64>,
    /// With `beside`: those a bare watcher on the same `events` collection saw meanwhile.
    beside: Option<Vec<u64>>,
    /// How busy the dev server was from the first insert to the last receipt.
    server_busy: String,
}

/// herald delivering `rate` events/s for `seconds` from database `name`.
async fn herald_latencies(
    ctx: &Ctx,
    db: &Database,
    client: &mongodb::Client,
    name: &str,
    rate: u64,
    seconds: u64,
    beside: bool,
) -> HeraldRun {
    let n = (rate * seconds) as usize;
    let database = client.database(name);
    insert_webhooks(
        &database,
        &[ctx.receiver.url("/ok/latency")],
        "bench.latency",
    )
    .await;
    let (daemon, _) = Daemon::start(ctx, &db.uri, name).await;
    ctx.receiver.reset().await;
    let events = database.collection::<Document>("events");
    let watcher = if beside {
        Some(watch_latencies(&events, n).await)
    } else {
        None
    };
    let beside_label = if beside { ", bare watcher beside" } else { "" };
    let bar = progress(n as u64, &format!("latency at {rate}/s{beside_label}"));
    let busy = ServerBusy::start(db);
    open_loop(events, rate, seconds, "bench.latency").await;
    ctx.receiver
        .wait_ok(n as u64, Duration::from_secs(120), &bar)
        .await;
    let server_busy = busy.percent();
    bar.finish_and_clear();
    let samples = ctx.receiver.stats().await.latencies_ns;
    daemon.stop();
    let beside = match watcher {
        Some(watcher) => Some(watcher.await.unwrap()),
        None => None,
    };
    HeraldRun {
        latencies: samples,
        beside,
        server_busy,
    }
}

pub async fn latency(ctx: &Ctx) -> Vec<Outcome> {
    let seconds = if ctx.quick { 5 } else { 15 };
    let db = Database::start().await;
    let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
    let mut out = Vec::new();
    for rate in [100u64, 1_000] {
        // The bare change stream's latency at the same rate.
        let ceiling_collection = client
            .database(CEILING_DATABASE)
            .collection::<Document>(&format!("lat{rate}"));
        let n = (rate * seconds) as usize;
        let consumer = watch_latencies(&ceiling_collection, n).await;
        let busy = ServerBusy::start(&db);
        open_loop(ceiling_collection, rate, seconds, "bench.latency").await;
        let mut bare = consumer.await.unwrap();
        let bare_busy = busy.percent();
        let bare_p99 = percentile_ms(&mut bare, 99.0);
        crate::samples::record_latencies(&format!("bare change stream at {rate}/s"), &bare);

        let name = format!("bench_latency_{rate}");
        let run = herald_latencies(ctx, &db, &client, &name, rate, seconds, false).await;
        let mut samples = run.latencies;
        crate::samples::record_latencies(&format!("herald at {rate}/s"), &samples);
        let (p50, p99, p999) = (
            percentile_ms(&mut samples, 50.0),
            percentile_ms(&mut samples, 99.0),
            percentile_ms(&mut samples, 99.9),
        );
        out.push(
            Outcome::new(
                "latency",
                &format!("p99 ms insert→receipt at {rate}/s"),
                p99,
            )
            .goal("p99 ≤ 2 × bare change stream p99", p99 <= 2.0 * bare_p99)
            .note(format!(
                "p50 {p50:.2} ms, p99.9 {p999:.2} ms; bare stream p50 {:.2} p99 {bare_p99:.2} \
                 ms; dev server busy {} of a core with herald, {bare_busy} with the bare stream",
                percentile_ms(&mut bare, 50.0),
                run.server_busy,
            )),
        );
        out.last_mut().unwrap().ceiling = Some(bare_p99);
    }
    // Once more with a bare watcher on herald's own `events` beside it: how much of herald's
    // latency is the server's, loaded with herald's work. After the measured runs, as the
    // watcher's change stream adds to that load and the server slows as it fills.
    for (rate, outcome) in [100u64, 1_000].into_iter().zip(out.iter_mut()) {
        let name = format!("bench_latency_{rate}_beside");
        let run = herald_latencies(ctx, &db, &client, &name, rate, seconds, true).await;
        let mut herald = run.latencies;
        let mut beside = run.beside.unwrap_or_default();
        outcome.notes.push_str(&format!(
            "; with a bare watcher beside herald: herald p99 {:.2} ms, the watcher p50 {:.2} \
             p99 {:.2} ms",
            percentile_ms(&mut herald, 99.0),
            percentile_ms(&mut beside, 50.0),
            percentile_ms(&mut beside, 99.0),
        ));
    }
    out
}
