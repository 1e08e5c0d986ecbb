//! fanout: one event to thousands of webhooks, against a bare client — alone and while the
//! server ingests the records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_actors::ports::Ledger;
use herald_actors::Event;
use mongodb::bson::Document;

use super::daemon::Daemon;
use super::shared::{
    event_doc, insert_webhooks, ledger_as_herald_makes_it, now_ns, payload, succeeded,
};
use super::Ctx;
use crate::harness::*;

/// The bare client's rate (as [`bare_rate`]) while the dev server ingests `records` delivery
/// records through herald's ledger, as it does while herald delivers a burst: what this
/// machine allows when its two cores are shared with the server. Returns once the records
/// are written, so that the next phase finds the server idle.
async fn bare_rate_beside_records(
    bare: &BareClient,
    urls: &[String],
    body: Bytes,
    db: &mongodb::Database,
    records: usize,
) -> f64 {
    let ledger = ledger_as_herald_makes_it(db).await;
    let writer = tokio::spawn(async move {
        let ids: Vec<usize> = (0..records).collect();
        for chunk in ids.chunks(1_000) {
            let batch = chunk
                .iter()
                .map(|i| {
                    succeeded(
                        &format!("evt_{i:08}"),
                        "wh_00000000000000fa",
                        "bench.fanout",
                    )
                })
                .collect();
            ledger.write(Arc::new(batch)).await.unwrap();
        }
    });
    // The first batch reaches the server before the requests start.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let rate = bare_rate(bare, urls, body, records, 256).await;
    writer.await.unwrap();
    rate
}

pub async fn fanout(ctx: &Ctx) -> Vec<Outcome> {
    let db = Database::start().await;
    let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
    let bare = bare_client(&ctx.receiver.ca);
    let mut out = Vec::new();
    let sizes: &[usize] = if ctx.quick {
        &[1_000]
    } else {
        &[1_000, 10_000]
    };
    for &webhooks in sizes {
        let events = if webhooks >= 10_000 { 1 } else { 5 };
        let urls: Vec<String> = (0..webhooks)
            .map(|i| ctx.receiver.url(&format!("/ok/fan{i}")))
            .collect();
        let deliveries = (webhooks * events) as u64;
        let body = Event::from_payload(&payload(0, "bench.fanout")).body;
        let mut rounds = Vec::new();
        let mut last_receipt = Vec::new();
        // Per round, insert→first and insert→last receipt as the receiver timed them.
        let mut receipts_spread = Vec::new();
        let mut beside = Vec::new();
        let mut ahead = Vec::new();
        for round in 1..=ROUNDS {
            // A database per round: a daemon started on the previous round's would resume
            // from its checkpoint.
            let database = client.database(&format!("bench_fanout_{webhooks}_{round}"));
            insert_webhooks(&database, &urls, "bench.fanout").await;
            let ceiling = bare_rate(&bare, &urls, body.clone(), deliveries as usize, 256).await;
            let shared = client.database(&format!("bench_fanout_{webhooks}_{round}_records"));
            beside.push(
                bare_rate_beside_records(&bare, &urls, body.clone(), &shared, deliveries as usize)
                    .await,
            );
            shared.drop().await.unwrap();
            let (daemon, _) = Daemon::start(ctx, &db.uri, database.name()).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            ctx.receiver.reset().await;
            let bar = progress(
                deliveries,
                &format!("fan-out to {webhooks}, round {round}/{ROUNDS}"),
            );
            let cpu = cpu_seconds();
            let started = Instant::now();
            // Stamped: the receiver takes each request's insert→receipt time, to the
            // nanosecond rather than to its 20 ms polls.
            let stamp = now_ns();
            let docs: Vec<Document> = (0..events)
                .map(|i| event_doc(i, "bench.fanout", Some(stamp)))
                .collect();
            database
                .collection::<Document>("events")
                .insert_many(docs)
                .await
                .unwrap();
            let last = ctx
                .receiver
                .wait_ok(deliveries, Duration::from_secs(600), &bar)
                .await;
            bar.finish_and_clear();
            let elapsed = last.duration_since(started);
            rounds.push(Round {
                value: deliveries as f64 / elapsed.as_secs_f64(),
                ceiling,
                cpu_seconds: cpu_seconds() - cpu,
            });
            last_receipt.push(elapsed.as_secs_f64());
            let latencies = ctx.receiver.stats().await.latencies_ns;
            receipts_spread.push((
                latencies.iter().min().copied().unwrap_or(0) as f64 / 1e9,
                latencies.iter().max().copied().unwrap_or(0) as f64 / 1e9,
            ));
            ahead.push(
                daemon
                    .metric("herald_deliveries_recorded_ahead_total")
                    .await,
            );
            daemon.stop();
        }
        let (median, ratios) = median_round(&rounds);
        let receipts = last_receipt
            .iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(", ");
        let spread = receipts_spread
            .iter()
            .map(|(first, last)| format!("{first:.3}–{last:.3}"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(
            Outcome::new(
                "fanout",
                &format!("deliveries/s to {webhooks} webhooks"),
                median.value,
            )
            .against(median.ceiling, 0.70)
            .cpu(median.cpu_seconds, deliveries)
            .note(format!(
                "{events} event(s); median of {ROUNDS} rounds ({ratios}); insert→last receipt \
                     {receipts} s (receiver's clock: first–last {spread} s); ceiling: bare \
                     client, 256 in flight; the same while the dev \
                     server ingests the records: {}; recorded pending ahead of an attempt: {}",
                rounds
                    .iter()
                    .zip(&beside)
                    .map(|(round, beside)| format!(
                        "{beside:.0}/s (herald {:.0} %)",
                        100.0 * round.value / beside
                    ))
                    .collect::<Vec<_>>()
                    .join(", "),
                ahead
                    .iter()
                    .map(|n| format!("{n:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        );
    }
    out
}
