//! publish: events published through the HTTP API (`POST /v1/events`) by 16 concurrent
//! publishers to one endpoint, from the first request until the receiver has every event;
//! against the server's own rate for the same events inserted directly in `insert_many`
//! batches and drained by a plain change stream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use mongodb::bson::Document;

use super::daemon::Daemon;
use super::shared::{event_doc, insert_webhooks};
use super::Ctx;
use crate::harness::*;

/// Concurrent publishers, each with one request in flight.
const PUBLISHERS: usize = 16;

/// Event type the bench's webhook subscribes to. The API publishes only catalogued types;
/// the bench's runs use the built-in one the platform publishes most.
const EVENT_TYPE: &str = "collection.documents.written";

/// publish→delivery with `insert_many` batches of 500 and a plain `watch()`: how fast
/// the server takes and streams these events when nothing stands in between.
async fn database_rate(db: &mongodb::Database, n: usize) -> f64 {
    let collection = db.collection::<Document>("publish_ceiling");
    let mut stream = collection.watch().await.unwrap();
    let started = Instant::now();
    let inserter = {
        let collection = collection.clone();
        tokio::spawn(async move {
            for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
                let docs: Vec<Document> = chunk
                    .iter()
                    .map(|&i| event_doc(i, EVENT_TYPE, None))
                    .collect();
                collection.insert_many(docs).await.unwrap();
            }
        })
    };
    for _ in 0..n {
        stream.next().await.unwrap().unwrap();
    }
    inserter.await.unwrap();
    n as f64 / started.elapsed().as_secs_f64()
}

/// Event `i`: the bench's usual ~400-byte `collection.documents.written`.
fn event(i: usize) -> serde_json::Value {
    serde_json::json!({
        "event_id": format!("evt_pub_{i:08}"),
        "event_type": EVENT_TYPE,
        "namespace_id": "ns_bench",
        "data": {
            "collection_id": "col_bench",
            "document_ids": (0..8).map(|d| format!("doc_{i:08}_{d}")).collect::<Vec<_>>(),
            "index_signature": "5f1e7c0a9b3d2e4f6a8c",
        },
    })
}

/// `n` events published by [`PUBLISHERS`] closed-loop publishers to `api`, `per_request`
/// a request (1: `POST /v1/events`; more: `POST /v1/events/batch`): each request's latency
/// in ns. Panics on any answer but 202 with the event's own id.
async fn publish_all(api: String, n: usize, per_request: usize) -> Vec<u64> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..PUBLISHERS {
        let (client, next, api) = (client.clone(), next.clone(), api.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let first = next.fetch_add(per_request, Ordering::Relaxed);
                if first >= n {
                    return latencies;
                }
                let events = first..(first + per_request).min(n);
                let (path, body) = if per_request == 1 {
                    ("/v1/events", event(first))
                } else {
                    (
                        "/v1/events/batch",
                        serde_json::json!({"events": events.clone().map(event).collect::<Vec<_>>()}),
                    )
                };
                let request = hyper::Request::post(format!("{api}{path}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body.to_string())))
                    .unwrap();
                let sent = Instant::now();
                let response = client.request(request).await.expect("publish request");
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                latencies.push(sent.elapsed().as_nanos() as u64);
                let text = String::from_utf8_lossy(&body);
                let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
                if per_request == 1 {
                    assert_eq!(status, 202, "{text}");
                    assert_eq!(answer["event_id"], format!("evt_pub_{first:08}"));
                } else {
                    assert_eq!(status, 200, "{text}");
                    for (result, i) in answer["results"].as_array().unwrap().iter().zip(events) {
                        assert_eq!(result["status"], 202, "{text}");
                        assert_eq!(result["event_id"], format!("evt_pub_{i:08}"));
                    }
                }
            }
        }));
    }
    let mut all = Vec::with_capacity(n);
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

/// What one run measured.
struct Run {
    /// Events/s from the first request until the receiver has all of them.
    delivered: f64,
    /// Events/s from the first request until the last was answered.
    accepted: f64,
    /// CPU s of this process (herald and the publishers).
    cpu: f64,
    /// Each request's latency, ns.
    latencies: Vec<u64>,
}

/// One run on a fresh database of `db`.
async fn run(ctx: &Ctx, db: &Database, n: usize, per_request: usize) -> Run {
    let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
    let name = format!("bench_publish_{per_request}");
    let database = client.database(&name);
    insert_webhooks(&database, &[ctx.receiver.url("/ok/publish")], EVENT_TYPE).await;
    let (daemon, _) = Daemon::start(ctx, &db.uri, &name).await;
    ctx.receiver.reset().await;
    let bar = progress(n as u64, &format!("publish, {per_request} a request"));
    let cpu = cpu_seconds();
    let started = Instant::now();
    let api = format!("http://{}", daemon.listen());
    let publishers = tokio::spawn(async move {
        let latencies = publish_all(api, n, per_request).await;
        (latencies, Instant::now())
    });
    ctx.receiver
        .wait_ok(n as u64, Duration::from_secs(900), &bar)
        .await;
    let delivered = n as f64 / started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    bar.finish_and_clear();
    let (latencies, answered) = publishers.await.unwrap();
    daemon.stop();
    Run {
        delivered,
        accepted: n as f64 / answered.duration_since(started).as_secs_f64(),
        cpu,
        latencies,
    }
}

pub async fn publish(ctx: &Ctx) -> Vec<Outcome> {
    let n = ctx.n(4_000, 20_000);
    let db = Database::start().await;
    let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
    let ceiling = database_rate(&client.database(CEILING_DATABASE), n).await;

    let Run {
        delivered,
        accepted,
        cpu,
        mut latencies,
    } = run(ctx, &db, n, 1).await;
    let (p50, p99) = (
        percentile_ms(&mut latencies, 50.0),
        percentile_ms(&mut latencies, 99.0),
    );
    let mut out = vec![
        Outcome::new(
            "publish",
            "events/s published→delivered, 16 publishers",
            delivered,
        )
        .against(ceiling, min_ratio(ctx))
        .cpu(cpu, n as u64)
        .note(format!(
            "{n} POST /v1/events, {PUBLISHERS} in flight, 1 endpoint; ceiling: the same \
                 events inserted in batches of 500, drained by a plain watch(); API p50 \
                 {p50:.1} ms, p99 {p99:.1} ms; answered at {accepted:.0}/s; CPU is the \
                 bench process's (publishers too)"
        )),
        Outcome::new("publish", "API p99 ms, 16 publishers", p99)
            .goal("p99 ≤ 2 × p50", p99 <= 2.0 * p50)
            .note(format!("p50 {p50:.1} ms")),
    ];
    // The same events, 100 to a POST /v1/events/batch, from the same 16 publishers.
    let Run {
        delivered,
        accepted,
        cpu,
        mut latencies,
    } = run(ctx, &db, n, BATCH).await;
    out.push(
        Outcome::new(
            "publish",
            "events/s published→delivered, batches of 100",
            delivered,
        )
        .against(ceiling, min_ratio(ctx))
        .cpu(cpu, n as u64)
        .note(format!(
            "{n} events, {BATCH} a POST /v1/events/batch, {PUBLISHERS} in flight; request \
             p50 {:.1} ms, p99 {:.1} ms; answered at {accepted:.0} events/s",
            percentile_ms(&mut latencies, 50.0),
            percentile_ms(&mut latencies, 99.0)
        )),
    );
    out
}

/// Events a request in the batch run.
const BATCH: usize = 100;

/// The goal against the ceiling: five times the ratio the code before group commit
/// reached in alternating runs (BENCHMARKS.md, 2026-12-06): 11 % with `--quick` (4,000
/// events), 1.2–1.3 % at full size (20,000: one write per event slows as `events` grows).
fn min_ratio(ctx: &Ctx) -> f64 {
    if ctx.quick {
        0.55
    } else {
        0.06
    }
}
