//! backlog: peak memory and drain rate with a large backlog of pending deliveries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_actors::Event;
use mongodb::bson::{doc, Document};

use super::daemon::Daemon;
use super::shared::{insert_webhooks, payload, webhook_id};
use super::Ctx;
use crate::harness::*;

pub async fn backlog(ctx: &Ctx) -> Vec<Outcome> {
    // HERALD_BENCH_BACKLOG=N sizes it by hand (the full run's 200,000 takes long).
    let pending = std::env::var("HERALD_BENCH_BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| ctx.n(20_000, 200_000));
    let db = Database::start().await;
    let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
    let database = client.database("bench_backlog");
    insert_webhooks(
        &database,
        &[ctx.receiver.url("/ok/backlog")],
        "bench.backlog",
    )
    .await;
    let webhook = webhook_id(0);
    let body = String::from_utf8(
        Event::from_payload(&payload(0, "bench.backlog"))
            .body
            .to_vec(),
    )
    .unwrap();
    let now = mongodb::bson::DateTime::now();
    for start in (0..pending).step_by(1_000) {
        let docs: Vec<Document> = (start..(start + 1_000).min(pending))
            .map(|i| {
                doc! {"_id": format!("evt_{i:08}:{webhook}"), "event_id": format!("evt_{i:08}"),
                "webhook_id": &webhook, "event_type": "bench.backlog", "status": "pending",
                "attempts": 3_i64, "next_attempt_at": now, "attempt_log": [], "created_at": now,
                "payload": &body}
            })
            .collect();
        database
            .collection::<Document>("deliveries")
            .insert_many(docs)
            .await
            .unwrap();
    }
    ctx.receiver.reset().await;
    let before = rss_mib();
    // herald runs in this process: sample its resident set while it drains.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut most = 0.0_f64;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(rss_mib());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            most
        })
    };
    let started = Instant::now();
    let (daemon, ready) = Daemon::start(ctx, &db.uri, "bench_backlog").await;
    let bar = progress(pending as u64, "backlog drain");
    ctx.receiver
        .wait_ok(pending as u64, Duration::from_secs(900), &bar)
        .await;
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let rate = pending as f64 / elapsed.as_secs_f64();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.await.unwrap() - before;
    daemon.stop();
    vec![
        Outcome::new(
            "backlog",
            &format!("peak RSS MiB draining {pending} pending deliveries"),
            peak,
        )
        .note(format!(
            "ready after {:.1} s; pending deliveries paged in (at most 10,000 held)",
            ready.as_secs_f64()
        )),
        Outcome::new("backlog", "drain deliveries/s after healing", rate).note(format!(
            "start (index builds over the backlog) to last receipt: {:.1} s",
            elapsed.as_secs_f64()
        )),
    ]
}
