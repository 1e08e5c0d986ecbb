//! What the scenarios share: the events and webhooks they make, the engine they run on
//! in-memory fakes, and the delivery records they write through herald's ledger.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herald::config::Config;
use herald::transport::{HttpsTransport, TransportOptions};
use herald_actors::fakes::MemoryLedger;
use herald_actors::signing::{Signer, SigningKey};
use herald_actors::{Engine, EngineConfig, Event, EventFilter, Payload, WebhookSpec};
use mongodb::bson::{doc, Document};

use super::Ctx;
use crate::harness::*;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub(super) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A ~400-byte payload like the platform's `collection.documents.written`.
pub(super) fn payload(i: usize, event_type: &str) -> Payload {
    Payload {
        event_id: format!("evt_bench_{i:08}"),
        event_type: event_type.into(),
        occurred_at: "2026-11-26T00:00:00.000Z".into(),
        namespace_id: Some("ns_bench".into()),
        task_id: None,
        subject: None,
        data: serde_json::json!({
            "collection_id": "col_bench",
            "document_ids": (0..8).map(|d| format!("doc_{i:08}_{d}")).collect::<Vec<_>>(),
            "index_signature": "5f1e7c0a9b3d2e4f6a8c",
        }),
        cache_scope: Some(serde_json::json!({"scope": "collection", "collection_id": "col_bench"})),
    }
}

pub(super) fn event_doc(i: usize, event_type: &str, t_ns: Option<u64>) -> Document {
    let mut data = doc! {
        "collection_id": "col_bench",
        "document_ids": (0..8).map(|d| format!("doc_{i:08}_{d}")).collect::<Vec<_>>(),
        "index_signature": "5f1e7c0a9b3d2e4f6a8c",
    };
    if let Some(t) = t_ns {
        data.insert("t_ns", t as i64);
    }
    doc! {"_id": format!("evt_{i:08}_{:08x}", rand::random::<u32>()), "event_type": event_type, "data": data}
}

pub(super) fn spec(id: &str, url: &str, event_type: &str) -> WebhookSpec {
    WebhookSpec {
        id: id.into(),
        url: url.into(),
        filter: EventFilter::from_list(&[event_type.to_owned()]),
        signer: Signer::new(vec![SigningKey::parse(SECRET).unwrap()]),
        headers: Arc::new([("X-Mixpeek-Secret".to_owned(), "bench".to_owned())]),
        enabled: true,
        paused: false,
        rate_limit_per_second: None,
        namespace_id: None,
    }
}

/// The bench's webhook ids: `wh_` and the webhook's index in 16 hex digits.
pub(super) fn webhook_id(i: usize) -> String {
    format!("wh_{i:016x}")
}

pub(super) fn webhook_doc(id: &str, url: &str, event_type: &str) -> Document {
    doc! {"_id": id, "url": url, "event_types": [event_type], "secret": SECRET,
    "headers": {"X-Mixpeek-Secret": "bench"}, "enabled": true}
}

/// Registers one webhook per URL, named by [`webhook_id`] of its index, 1,000 per write.
pub(super) async fn insert_webhooks(
    database: &mongodb::Database,
    urls: &[String],
    event_type: &str,
) {
    for (c, chunk) in urls.chunks(1_000).enumerate() {
        let docs: Vec<Document> = chunk
            .iter()
            .enumerate()
            .map(|(j, url)| webhook_doc(&webhook_id(c * 1_000 + j), url, event_type))
            .collect();
        database
            .collection::<Document>("webhooks")
            .insert_many(docs)
            .await
            .unwrap();
    }
}

pub(super) fn transport(ctx: &Ctx) -> Arc<HttpsTransport> {
    Arc::new(
        HttpsTransport::new(TransportOptions {
            ca_file: Some(ctx.receiver.ca.clone()),
            allow_private: vec!["127.0.0.0/8".parse().unwrap()],
            ..TransportOptions::default()
        })
        .unwrap(),
    )
}

/// The rounds of a scenario against the bare client on one URL: in each, the bare client
/// (64 in flight, `n` POSTs of `body`), then `herald(round)`, which answers its (rate, CPU
/// s). Answers the rounds and the bare client's CPU s per 1,000 requests, listed as the
/// scenarios' notes print them.
pub(super) async fn rounds_against_bare<F, Fut>(
    client: &BareClient,
    url: &str,
    body: &bytes::Bytes,
    n: usize,
    mut herald: F,
) -> (Vec<Round>, String)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = (f64, f64)>,
{
    let urls = [url.to_owned()];
    let mut rounds = Vec::new();
    let mut bare_cpu = Vec::new();
    for round in 1..=ROUNDS {
        let cpu = cpu_seconds();
        let ceiling = bare_rate(client, &urls, body.clone(), n, 64).await;
        bare_cpu.push(format!("{:.3}", (cpu_seconds() - cpu) / n as f64 * 1000.0));
        let (value, cpu_seconds) = herald(round).await;
        rounds.push(Round {
            value,
            ceiling,
            cpu_seconds,
        });
    }
    (rounds, bare_cpu.join(", "))
}

/// Events from an in-memory feed through the real actor tree, signing and HTTPS, into an
/// in-memory ledger, to `endpoints` URLs. Returns (healthy deliveries/s, CPU s).
pub(super) async fn run_engine(
    ctx: &Ctx,
    n: usize,
    urls: &[String],
    healthy: u64,
    timeout: Duration,
    label: &str,
) -> (f64, f64) {
    run_engine_limited(ctx, n, urls, &[], healthy, timeout, label).await
}

/// [`run_engine`], with a rate limit (requests/s) on the webhooks of some URLs (by index).
pub(super) async fn run_engine_limited(
    ctx: &Ctx,
    n: usize,
    urls: &[String],
    limited: &[(usize, u32)],
    healthy: u64,
    timeout: Duration,
    label: &str,
) -> (f64, f64) {
    // The feed hands over every event at once, far faster than any change stream would:
    // endpoints may hold them all rather than spill the excess to the ledger and read it
    // back, which is what a dead endpoint's backlog needs, not a healthy one's burst.
    let config = EngineConfig {
        attempt_timeout: timeout,
        max_held_per_endpoint: n.max(EngineConfig::default().max_held_per_endpoint),
        max_held_total: (n * urls.len()).max(EngineConfig::default().max_held_total),
        ..EngineConfig::default()
    };
    let ledger = MemoryLedger::default();
    let engine = Engine::start(config, transport(ctx), Arc::new(ledger))
        .await
        .unwrap();
    let handle = engine.handle();
    for (i, url) in urls.iter().enumerate() {
        let limit = limited
            .iter()
            .find(|(at, _)| *at == i)
            .map(|(_, per_s)| *per_s);
        handle
            .upsert_webhook(WebhookSpec {
                rate_limit_per_second: limit,
                ..spec(&webhook_id(i), url, "bench.engine")
            })
            .unwrap();
    }
    handle.stats().await.unwrap();
    ctx.receiver.reset().await;
    let events: Vec<Event> = (0..n)
        .map(|i| Event::from_payload(&payload(i, "bench.engine")))
        .collect();
    let bar = progress(healthy, label);
    let cpu = cpu_seconds();
    let started = Instant::now();
    let submitter = {
        let handle = handle.clone();
        tokio::spawn(async move {
            for event in events {
                handle.submit(event, None).await.unwrap();
            }
        })
    };
    let done = ctx
        .receiver
        .wait_ok(healthy, Duration::from_secs(600), &bar)
        .await;
    bar.finish_and_clear();
    let rate = healthy as f64 / done.duration_since(started).as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    submitter.abort();
    let _ = engine.shutdown(Duration::from_millis(100)).await;
    (rate, cpu)
}

/// herald's ledger on `db`, with the indexes herald creates.
pub(super) async fn ledger_as_herald_makes_it(
    db: &mongodb::Database,
) -> herald::store::deliveries::MongoLedger {
    herald::store::ensure_indexes(db).await.unwrap();
    let defaults = Config::default();
    herald::store::ensure_retention(
        db,
        herald::store::Retention {
            succeeded_days: defaults.retention_succeeded_days,
            failed_days: defaults.retention_failed_days,
        },
    )
    .await
    .unwrap();
    herald::store::deliveries::MongoLedger::new(db)
}

/// The first and only record of a delivery whose first attempt answered 200.
pub(super) use herald_actors::fakes::succeeded_record as succeeded;
