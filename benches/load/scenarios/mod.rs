//! The scenarios. Each measures herald and, in the same run, the ceiling it is compared with.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use herald::config::Config;
use herald::transport::{HttpsTransport, TransportOptions};
use herald_actors::delivery::{AttemptLogEntry, DeliveryRecord, DeliveryStatus};
use herald_actors::fakes::MemoryLedger;
use herald_actors::ports::Ledger;
use herald_actors::signing::{Signer, SigningKey};
use herald_actors::{Engine, EngineConfig, Event, EventFilter, Payload, WebhookSpec};
use mongodb::bson::{doc, Document};
use tokio_util::sync::CancellationToken;

use crate::harness::*;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub struct Ctx {
    pub quick: bool,
    pub receiver: ReceiverProcess,
}

impl Ctx {
    fn n(&self, quick: usize, full: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A ~400-byte payload like the platform's `collection.documents.written`.
fn payload(i: usize, event_type: &str) -> Payload {
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

fn event_doc(i: usize, event_type: &str, t_ns: Option<u64>) -> Document {
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

fn spec(id: &str, url: &str, event_type: &str) -> WebhookSpec {
    WebhookSpec {
        id: id.into(),
        url: url.into(),
        filter: EventFilter::from_list(&[event_type.to_owned()]),
        signer: Signer::new(vec![SigningKey::parse(SECRET).unwrap()]),
        headers: Arc::new([("X-Mixpeek-Secret".to_owned(), "bench".to_owned())]),
        enabled: true,
        paused: false,
        rate_limit_per_second: None,
    }
}

/// The bench's webhook ids: `wh_` and the webhook's index in 16 hex digits.
fn webhook_id(i: usize) -> String {
    format!("wh_{i:016x}")
}

fn webhook_doc(id: &str, url: &str, event_type: &str) -> Document {
    doc! {"_id": id, "url": url, "event_types": [event_type], "secret": SECRET,
    "headers": {"X-Mixpeek-Secret": "bench"}, "enabled": true}
}

/// Registers one webhook per URL, named by [`webhook_id`] of its index, 1,000 per write.
async fn insert_webhooks(database: &mongodb::Database, urls: &[String], event_type: &str) {
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

fn transport(ctx: &Ctx) -> Arc<HttpsTransport> {
    Arc::new(
        HttpsTransport::new(TransportOptions {
            ca_file: Some(ctx.receiver.ca.clone()),
            allow_private: vec!["127.0.0.0/8".parse().unwrap()],
            ..TransportOptions::default()
        })
        .unwrap(),
    )
}

/// Events from an in-memory feed through the real actor tree, signing and HTTPS, into an
/// in-memory ledger, to `endpoints` URLs. Returns (healthy deliveries/s, CPU s).
async fn run_engine(
    ctx: &Ctx,
    n: usize,
    urls: &[String],
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
        handle
            .upsert_webhook(spec(&webhook_id(i), url, "bench.engine"))
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

pub async fn engine(ctx: &Ctx) -> Vec<Outcome> {
    let n = ctx.n(50_000, 100_000);
    let url = ctx.receiver.url("/ok/engine");
    let body = Event::from_payload(&payload(0, "bench.engine")).body;
    let client = bare_client(&ctx.receiver.ca);
    bare_rate(&client, std::slice::from_ref(&url), body.clone(), 2_000, 64).await; // warm-up
    let mut rounds = Vec::new();
    for round in 1..=ROUNDS {
        let ceiling = bare_rate(&client, std::slice::from_ref(&url), body.clone(), n, 64).await;
        let label = format!("engine, round {round}/{ROUNDS}");
        let (value, cpu_seconds) = run_engine(
            ctx,
            n,
            std::slice::from_ref(&url),
            n as u64,
            Duration::from_secs(10),
            &label,
        )
        .await;
        rounds.push(Round {
            value,
            ceiling,
            cpu_seconds,
        });
    }
    let (median, ratios) = median_round(&rounds);
    vec![Outcome::new("engine", "deliveries/s, 1 endpoint", median.value)
        .against(median.ceiling, 0.70)
        .cpu(median.cpu_seconds, n as u64)
        .note(format!(
            "{n} events; median of {ROUNDS} rounds ({ratios}); ceiling: bare hyper client, 64 in flight"
        ))]
}

pub async fn isolation(ctx: &Ctx) -> Vec<Outcome> {
    let per_endpoint = ctx.n(200, 1_000);
    let healthy: Vec<String> = (0..50)
        .map(|i| ctx.receiver.url(&format!("/ok/iso{i}")))
        .collect();
    let mut mixed = healthy.clone();
    mixed.extend((0..50).map(|i| ctx.receiver.url(&format!("/hang/iso{i}"))));
    let expected = (per_endpoint * 50) as u64;
    let (alone, _) = run_engine(
        ctx,
        per_endpoint,
        &healthy,
        expected,
        Duration::from_secs(2),
        "isolation: healthy only",
    )
    .await;
    let (with_bad, cpu) = run_engine(
        ctx,
        per_endpoint,
        &mixed,
        expected,
        Duration::from_secs(2),
        "isolation: with 50 hanging",
    )
    .await;
    vec![Outcome::new(
        "isolation",
        "healthy deliveries/s with 50 hanging",
        with_bad,
    )
    .against(alone, 0.90)
    .cpu(cpu, expected)
    .note(format!(
        "100 endpoints, {per_endpoint} events; ceiling: the healthy 50 alone"
    ))]
}

/// herald in this process (its own runtime), against `db`.
struct Daemon {
    listen: SocketAddr,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    async fn start(ctx: &Ctx, uri: &str, database: &str) -> (Self, Duration) {
        let listen: SocketAddr = format!(
            "127.0.0.1:{}",
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        )
        .parse()
        .unwrap();
        let config = Config {
            mongodb_uri: uri.to_owned(),
            database: database.to_owned(),
            listen,
            ca_file: Some(ctx.receiver.ca.clone()),
            allow_private_networks: vec!["127.0.0.0/8".parse().unwrap()],
            ..Config::default()
        };
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let started = Instant::now();
        // herald gets its own runtime, as in production; the bench's clients use another.
        let thread = std::thread::spawn(move || {
            // Named, so that a profile tells herald's threads from the bench's.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("herald")
                .build()
                .unwrap();
            if let Err(e) = runtime.block_on(herald::serve::run(config, token)) {
                eprintln!("herald: {e}");
            }
        });
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<Bytes>>();
        loop {
            let ready = client
                .get(format!("http://{listen}/readyz").parse().unwrap())
                .await
                .map(|r| r.status() == 200)
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "herald never became ready"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (
            Self {
                listen,
                shutdown,
                thread: Some(thread),
            },
            started.elapsed(),
        )
    }

    /// A value from herald's `/metrics` (0 when absent).
    async fn metric(&self, name: &str) -> f64 {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<Bytes>>();
        let Ok(response) = client
            .get(format!("http://{}/metrics", self.listen).parse().unwrap())
            .await
        else {
            return 0.0;
        };
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

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

/// herald's ledger on `db`, with the indexes herald creates.
async fn ledger_as_herald_makes_it(
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
fn succeeded(event_id: &str, webhook_id: &str, event_type: &str) -> DeliveryRecord {
    let now = SystemTime::now();
    DeliveryRecord {
        delivery_id: format!("{event_id}:{webhook_id}"),
        event_id: event_id.to_owned(),
        webhook_id: webhook_id.to_owned(),
        event_type: event_type.to_owned(),
        task_id: None,
        status: DeliveryStatus::Succeeded,
        attempts: 1,
        next_attempt_at: None,
        last_status_code: Some(200),
        last_error: None,
        new_attempts: vec![AttemptLogEntry {
            at: now,
            status_code: Some(200),
            error: None,
            duration_ms: 1,
        }],
        first_write: true,
        created_at: now,
        completed_at: Some(now),
        payload: None,
    }
}

/// What any consumer that keeps the contract's ledger gets from this server: herald's own
/// change stream (a database watch with its `$match`) and, for every event, `fanout`
/// delivery records written through herald's own `MongoLedger` into `deliveries` with
/// herald's indexes — in batches of what has come in (up to 1,000), one write at a time, as
/// herald's ledger writer does — and nothing else: no HTTP, no signing, no actors. Events
/// are inserted as in [`e2e`]. Returns records durable per second.
async fn recording_consumer(db: &mongodb::Database, n: usize, fanout: usize) -> f64 {
    let ledger = ledger_as_herald_makes_it(db).await;
    let mut stream = db
        .watch()
        .pipeline(herald::store::events::feed_pipeline())
        .await
        .unwrap();
    let (records, mut incoming) = tokio::sync::mpsc::unbounded_channel::<DeliveryRecord>();
    let writer = tokio::spawn(async move {
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
    writer.await.unwrap();
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
        let ledger_before = daemon.metric("herald_ledger_batch_size_sum").await;
        let deliveries = (n * fanout) as u64;
        let bar = progress(deliveries, &format!("e2e, fan-out {fanout}"));
        let cpu = cpu_seconds();
        let started = Instant::now();
        let inserter = insert_events(database.collection("events"), n, "bench.e2e");
        ctx.receiver
            .wait_ok(deliveries, Duration::from_secs(900), &bar)
            .await;
        // ... and recorded in MongoDB. Counting documents is a scan on the dev server that
        // would compete with herald for its one core, so follow herald's own metric of
        // records handed to the ledger, then confirm the count once.
        while daemon.metric("herald_ledger_batch_size_sum").await
            < ledger_before + deliveries as f64
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let recorded = database.collection::<Document>("deliveries");
        while recorded.estimated_document_count().await.unwrap() < deliveries {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bar.finish_and_clear();
        let rate = deliveries as f64 / started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu;
        inserter.await.unwrap();
        daemon.stop();
        let outcome = Outcome::new("e2e", &format!("deliveries/s, fan-out {fanout}"), rate)
            .cpu(cpu, deliveries);
        let recording = format!(
            "the server's own limit, a consumer that only records (no HTTP): {recording:.0}/s, \
             herald {:.0} % of it",
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

/// herald delivering `rate` events/s for `seconds` from database `name`: insert→receipt
/// latencies in ns, and — with `beside` — those a bare watcher on the same `events`
/// collection saw meanwhile.
async fn herald_latencies(
    ctx: &Ctx,
    db: &Database,
    client: &mongodb::Client,
    name: &str,
    rate: u64,
    seconds: u64,
    beside: bool,
) -> (Vec<u64>, Option<Vec<u64>>) {
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
    open_loop(events, rate, seconds, "bench.latency").await;
    ctx.receiver
        .wait_ok(n as u64, Duration::from_secs(120), &bar)
        .await;
    bar.finish_and_clear();
    let samples = ctx.receiver.stats().await.latencies_ns;
    daemon.stop();
    let beside = match watcher {
        Some(watcher) => Some(watcher.await.unwrap()),
        None => None,
    };
    (samples, beside)
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
        open_loop(ceiling_collection, rate, seconds, "bench.latency").await;
        let mut bare = consumer.await.unwrap();
        let bare_p99 = percentile_ms(&mut bare, 99.0);

        let name = format!("bench_latency_{rate}");
        let (mut samples, _) =
            herald_latencies(ctx, &db, &client, &name, rate, seconds, false).await;
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
                "p50 {p50:.2} ms, p99.9 {p999:.2} ms; bare stream p50 {:.2} p99 {bare_p99:.2} ms",
                percentile_ms(&mut bare, 50.0)
            )),
        );
        out.last_mut().unwrap().ceiling = Some(bare_p99);
    }
    // Once more with a bare watcher on herald's own `events` beside it: how much of herald's
    // latency is the server's, loaded with herald's work. After the measured runs, as the
    // watcher's change stream adds to that load and the server slows as it fills.
    for (rate, outcome) in [100u64, 1_000].into_iter().zip(out.iter_mut()) {
        let name = format!("bench_latency_{rate}_beside");
        let (mut herald, beside) =
            herald_latencies(ctx, &db, &client, &name, rate, seconds, true).await;
        let mut beside = beside.unwrap_or_default();
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
        let mut beside = Vec::new();
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
            let docs: Vec<Document> = (0..events)
                .map(|i| event_doc(i, "bench.fanout", None))
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
            daemon.stop();
        }
        let (median, ratios) = median_round(&rounds);
        let receipts = last_receipt
            .iter()
            .map(|s| format!("{s:.2}"))
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
                     {receipts} s; ceiling: bare client, 256 in flight; the same while the dev \
                     server ingests the records: {}",
                rounds
                    .iter()
                    .zip(&beside)
                    .map(|(round, beside)| format!(
                        "{beside:.0}/s (herald {:.0} %)",
                        100.0 * round.value / beside
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        );
    }
    out
}

pub async fn scale(ctx: &Ctx) -> Vec<Outcome> {
    let webhooks = ctx.n(20_000, 100_000);
    let db = Database::start().await;
    let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
    let database = client.database("bench_scale");
    let url = ctx.receiver.url("/ok/scale");
    for start in (0..webhooks).step_by(1_000) {
        let docs: Vec<Document> = (start..(start + 1_000).min(webhooks))
            .map(|i| webhook_doc(&webhook_id(i), &url, "bench.scale"))
            .collect();
        database
            .collection::<Document>("webhooks")
            .insert_many(docs)
            .await
            .unwrap();
    }
    let before = rss_mib();
    let (daemon, ready) = Daemon::start(ctx, &db.uri, "bench_scale").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_mib();
    daemon.stop();
    let per_actor_kib = (after - before) * 1024.0 / webhooks as f64;
    vec![
        Outcome::new(
            "scale",
            &format!("seconds until ready, {webhooks} webhooks"),
            ready.as_secs_f64(),
        )
        .goal("≤ 5 s", ready <= Duration::from_secs(5)),
        Outcome::new("scale", "idle RSS MiB (herald's share)", after - before)
            .goal("≤ 512 MiB", after - before <= 512.0)
            .note(format!("{per_actor_kib:.1} KiB per endpoint actor")),
    ]
}

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
