//! Micro-benchmarks of the engine's hot paths: signing, payload building, subscription
//! matching, the retry schedule, and the whole engine on a transport that answers at once
//! (what herald's actors cost per delivery, without HTTP: to one endpoint, and one round of
//! fan-out to 1,000 webhooks on an engine's first round and on a later one).
//! `cargo bench --bench micro`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use futures::future::BoxFuture;
use futures::FutureExt;
use herald_actors::fakes::MemoryLedger;
use herald_actors::ports::{OutboundRequest, Transport};
use herald_actors::signing::{Signer, SigningKey};
use herald_actors::{
    next_delay, AttemptResponse, AttemptResult, Engine, EngineConfig, Event, EventFilter, Payload,
    RetryPolicy, SubscriptionIndex, WebhookSpec,
};
use rand::SeedableRng;

/// The daemon's allocator (see `src/main.rs`), so that the engine's figures are the
/// daemon's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn signing(c: &mut Criterion) {
    let key = SigningKey::parse(SECRET).unwrap();
    let body = vec![b'x'; 1024];
    let mut group = c.benchmark_group("signing");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("sign_1KiB", |b| {
        b.iter(|| {
            key.sign(
                black_box("evt_0123456789"),
                black_box(1_614_265_330),
                black_box(&body),
            )
        })
    });
    group.finish();
}

fn platform_payload(event_id: String) -> Payload {
    Payload {
        event_id,
        event_type: "collection.documents.written".into(),
        occurred_at: "2026-01-01T00:00:00.000Z".into(),
        namespace_id: Some("ns_1".into()),
        task_id: None,
        subject: None,
        data: serde_json::json!({"collection_id": "col_1", "document_ids": (0..20).map(|i| format!("doc_{i}")).collect::<Vec<_>>(), "index_signature": "abc123"}),
        cache_scope: Some(serde_json::json!({"scope": "collection", "collection_id": "col_1"})),
    }
}

fn payload(c: &mut Criterion) {
    let payload = platform_payload("evt_0123456789".into());
    c.bench_function("payload/build", |b| {
        b.iter(|| Event::from_payload(black_box(&payload)))
    });
}

fn matching(c: &mut Criterion) {
    let mut index = SubscriptionIndex::default();
    let types = [
        "object.created",
        "object.updated",
        "batch.completed",
        "cluster.completed",
    ];
    for i in 0..10_000 {
        index.insert(&WebhookSpec {
            id: format!("wh_{i:016x}").into(),
            url: "https://example.com/hook".into(),
            filter: EventFilter::from_list(&[types[i % types.len()].to_owned()]),
            signer: Signer::new(vec![]),
            headers: Arc::new([]),
            enabled: true,
            paused: false,
            rate_limit_per_second: None,
            namespace_id: None,
        });
    }
    c.bench_function("match/10k_webhooks", |b| {
        b.iter(|| {
            let mut n = 0;
            index.for_each_match(black_box("batch.completed"), |_| n += 1);
            n
        })
    });
}

fn retry(c: &mut Criterion) {
    let policy = RetryPolicy::default();
    let outcome = Ok(AttemptResponse {
        status: 503,
        retry_after: None,
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    c.bench_function("retry/next_delay", |b| {
        b.iter(|| next_delay(&policy, black_box(7), &outcome, &mut rng))
    });
}

/// Answers 200 at once, and counts what it sent.
#[derive(Default)]
struct Counting {
    sent: AtomicU64,
    reached: tokio::sync::Notify,
    target: AtomicU64,
}

impl Transport for Counting {
    fn send(&self, _request: OutboundRequest) -> BoxFuture<'static, AttemptResult> {
        if self.sent.fetch_add(1, Ordering::Relaxed) + 1 >= self.target.load(Ordering::Relaxed) {
            self.reached.notify_one();
        }
        futures::future::ready(Ok(AttemptResponse {
            status: 200,
            retry_after: None,
        }))
        .boxed()
    }
}

/// Events submitted per iteration of `engine/deliveries`.
const ENGINE_EVENTS: u64 = 2_000;

/// The engine (router, one endpoint actor, its attempts task, the ledger writer into the
/// memory ledger) delivering `ENGINE_EVENTS` events to one webhook whose transport answers
/// at once: the time from the first submit to the last attempt sent. Two worker threads,
/// as on the 2-core machine.
fn engine(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let counting = Arc::new(Counting::default());
    let config = EngineConfig {
        // Every event of an iteration is held, none spilled: a healthy endpoint's burst.
        max_held_per_endpoint: ENGINE_EVENTS as usize * 2,
        ..EngineConfig::default()
    };
    let engine = runtime
        .block_on(Engine::start(
            config,
            counting.clone(),
            Arc::new(MemoryLedger::default()),
        ))
        .unwrap();
    let handle = engine.handle();
    handle.upsert_webhook(webhook(1, "hook")).unwrap();
    let next_id = AtomicU64::new(0);
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(ENGINE_EVENTS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("deliveries_1_endpoint_instant_transport", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let (handle, counting) = (handle.clone(), counting.clone());
            let first = next_id.fetch_add(iters * ENGINE_EVENTS, Ordering::Relaxed);
            async move {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let base = first + i * ENGINE_EVENTS;
                    total += round(&handle, &counting, base, ENGINE_EVENTS, ENGINE_EVENTS).await;
                }
                total
            }
        })
    });
    group.finish();
    runtime
        .block_on(engine.shutdown(Duration::from_secs(1)))
        .unwrap();
}

/// Webhooks and events of `engine/fanout_*`: one round of the load bench's `fanout`.
const FANOUT_WEBHOOKS: u64 = 1_000;
const FANOUT_EVENTS: u64 = 5;

/// Webhook `n`, to `path` on the one origin every webhook of these benchmarks shares.
fn webhook(n: u64, path: &str) -> WebhookSpec {
    WebhookSpec {
        id: format!("wh_{n:016x}").into(),
        url: format!("https://receiver.example/{path}").into(),
        filter: EventFilter::from_list(&["collection.documents.written".to_owned()]),
        signer: Signer::new(vec![SigningKey::parse(SECRET).unwrap()]),
        headers: Arc::new([("X-Mixpeek-Secret".to_owned(), "bench".to_owned())]),
        enabled: true,
        paused: false,
        rate_limit_per_second: None,
        namespace_id: None,
    }
}

/// Submits `events` events numbered from `first` and waits until the transport has sent
/// `attempts` more attempts: the time that took (the events are built before the clock
/// starts).
async fn round(
    handle: &herald_actors::EngineHandle,
    counting: &Counting,
    first: u64,
    events: u64,
    attempts: u64,
) -> Duration {
    let events: Vec<Event> = (first..first + events)
        .map(|n| Event::from_payload(&platform_payload(format!("evt_{n:012}"))))
        .collect();
    let target = counting.sent.load(Ordering::Relaxed) + attempts;
    counting.target.store(target, Ordering::Relaxed);
    let started = Instant::now();
    for event in events {
        handle.submit(event, None).await.unwrap();
    }
    while counting.sent.load(Ordering::Relaxed) < target {
        tokio::time::timeout(Duration::from_secs(30), counting.reached.notified())
            .await
            .expect("every delivery sent within 30 s");
    }
    started.elapsed()
}

/// One round of `engine/fanout_*`: `FANOUT_EVENTS` events from `first`, an attempt per
/// (event, webhook).
async fn fanout_round(
    handle: &herald_actors::EngineHandle,
    counting: &Counting,
    first: u64,
) -> Duration {
    round(
        handle,
        counting,
        first,
        FANOUT_EVENTS,
        FANOUT_EVENTS * FANOUT_WEBHOOKS,
    )
    .await
}

/// An engine with `FANOUT_WEBHOOKS` webhooks whose endpoints have all started.
async fn fanout_engine(counting: Arc<Counting>) -> Engine {
    let engine = Engine::start(
        EngineConfig::default(),
        counting,
        Arc::new(MemoryLedger::default()),
    )
    .await
    .unwrap();
    let handle = engine.handle();
    for i in 0..FANOUT_WEBHOOKS {
        // One webhook per URL path, as the load bench's `fanout` makes them.
        handle
            .upsert_webhook(webhook(i, &format!("fan{i}")))
            .unwrap();
    }
    // Upserts are messages: once the router has answered a later call, it has taken them.
    handle.stats().await.unwrap();
    engine
}

/// The engine fanning `FANOUT_EVENTS` events out to `FANOUT_WEBHOOKS` webhooks on a
/// transport that answers at once, as the load bench's `fanout` does over HTTPS: `cold` is
/// an engine's first round (its endpoints have sent nothing yet), `warm` a later one.
fn fanout(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(FANOUT_EVENTS * FANOUT_WEBHOOKS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("fanout_1000_webhooks_cold", |b| {
        b.to_async(&runtime).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let counting = Arc::new(Counting::default());
                let engine = fanout_engine(counting.clone()).await;
                total += fanout_round(&engine.handle(), &counting, 0).await;
                engine.shutdown(Duration::from_secs(1)).await.unwrap();
            }
            total
        })
    });
    let counting = Arc::new(Counting::default());
    let engine = runtime.block_on(fanout_engine(counting.clone()));
    let handle = engine.handle();
    runtime.block_on(fanout_round(&handle, &counting, 0));
    let next_id = AtomicU64::new(FANOUT_EVENTS);
    group.bench_function("fanout_1000_webhooks_warm", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let (handle, counting) = (handle.clone(), counting.clone());
            let first = next_id.fetch_add(iters * FANOUT_EVENTS, Ordering::Relaxed);
            async move {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    total += fanout_round(&handle, &counting, first + i * FANOUT_EVENTS).await;
                }
                total
            }
        })
    });
    group.finish();
    runtime
        .block_on(engine.shutdown(Duration::from_secs(1)))
        .unwrap();
}

criterion_group!(benches, signing, payload, matching, retry, engine, fanout);

/// `criterion_main!`, after the daemon's memory setting (`herald::memory`): without it the
/// kernel's zeroing of huge pages was a fifth of the engine benchmarks' samples.
fn main() {
    let _ = herald::memory::no_transparent_huge_pages();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
