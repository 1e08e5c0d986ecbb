//! The engine's scenario tests, by topic, against the in-memory [fakes](crate::fakes).
//!
//! Most run on paused time (`start_paused`): tokio's clock stands still while any task can
//! run and jumps to the next timer when none can, so a scenario of seconds takes
//! milliseconds, and "within 200 ms" means 200 ms of the engine's own timers, however
//! loaded the machine. Every wait is a condition ([`until`]); a wait for something *not*
//! to happen is [`quiet_for`], which on paused time lets the engine do all it would do in
//! that span before it returns.
//!
//! The engine also reads clocks that paused time does not move:
//! - Due times are `SystemTime`s, turned into tokio timers when they are armed. A test
//!   that checks a wait measures it with
//!   [`Moment::since`](crate::fakes::Moment::since), which counts both clocks.
//!   Spilled deliveries due later are different: when its timer fires, the endpoint
//!   compares their due time with `SystemTime::now()` again and re-arms the timer for what
//!   is left, so on paused time it spins until the wall clock catches up while tokio's
//!   clock races ahead. The two spill tests whose deliveries are spilled due later run on
//!   real time.
//! - The rate limiter (governor's `DefaultClock`, quanta) reads the wall clock and the
//!   endpoint re-arms its wake-up the same way: the tests with a rate limit run on real
//!   time, and the only timing they assert is a lower bound, which load cannot break.
//! - The router spaces checkpoint writes on tokio's clock, so they follow paused time.
//! - An endpoint measures its pace on tokio's clock: a test can let a slow receiver show
//!   its pace on paused time, then `tokio::time::resume()` for what follows on the wall
//!   clock (reading spilled deliveries back).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::EngineConfig;
use crate::delivery::PendingDelivery;
use crate::endpoint::Stats as EndpointStats;
use crate::engine::{Engine, EngineHandle};
use crate::event::{Event, Payload};
use crate::fakes::{MemoryLedger, ScriptedTransport};
use crate::partition::Position;
use crate::retry::RetryPolicy;
use crate::signing::{Signer, SigningKey};
use crate::webhook::{EventFilter, WebhookSpec};

mod checkpoint;
mod cluster;
mod delivery;
mod disable;
mod health_persisted;
mod namespace;
mod pause;
mod slow;
mod spill;
mod supervision;
mod traces;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A feed position for tests (no cluster time: these engines own every partition).
fn pos(checkpoint: impl Into<bytes::Bytes>) -> Position {
    Position::new(checkpoint, 0)
}

fn config() -> EngineConfig {
    EngineConfig {
        retry: RetryPolicy {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(40),
            max_attempts: 3,
        },
        attempt_timeout: Duration::from_millis(200),
        ..EngineConfig::default()
    }
}

fn webhook(id: &str, types: &[&str]) -> WebhookSpec {
    WebhookSpec {
        id: id.into(),
        url: format!("https://{id}.example/hook").into(),
        filter: EventFilter::from_list(&types.iter().map(|t| t.to_string()).collect::<Vec<_>>()),
        signer: Signer::new(vec![SigningKey::parse(SECRET).unwrap()]),
        headers: Arc::new([("X-Mixpeek-Secret".to_owned(), "shh".to_owned())]),
        enabled: true,
        paused: false,
        rate_limit_per_second: None,
        namespace_id: None,
    }
}

fn event(id: &str, event_type: &str) -> Event {
    Event::from_payload(&Payload {
        event_id: id.into(),
        event_type: event_type.into(),
        occurred_at: "2026-01-01T00:00:00Z".into(),
        namespace_id: None,
        task_id: None,
        subject: None,
        data: serde_json::json!({"n": id}),
        cache_scope: None,
    })
}

async fn start(config: EngineConfig) -> (Engine, ScriptedTransport, MemoryLedger) {
    start_with(config, MemoryLedger::default()).await
}

async fn start_with(
    config: EngineConfig,
    ledger: MemoryLedger,
) -> (Engine, ScriptedTransport, MemoryLedger) {
    let transport = ScriptedTransport::default();
    let engine = Engine::start(
        config,
        Arc::new(transport.clone()),
        Arc::new(ledger.clone()),
    )
    .await
    .unwrap();
    (engine, transport, ledger)
}

/// Waits until `done`, polling on tokio's clock; fails after 30 s of it (of the engine's
/// time on paused time, far beyond what any scenario here takes).
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Lets `span` of tokio's clock pass before a check that something did *not* happen. On
/// paused time the clock moves only when no task can run, so when this returns the engine
/// has done everything it would do in `span`.
async fn quiet_for(span: Duration) {
    tokio::time::sleep(span).await;
}

/// Webhook changes are asynchronous messages; a stats call is processed after them.
async fn settle_webhooks(handle: &EngineHandle) {
    handle.stats().await.unwrap();
}

/// Small bounds so that a few hundred events overflow them.
fn bounded(max_held: usize, page: usize) -> EngineConfig {
    let mut config = config();
    config.retry.max_attempts = 1_000;
    config.max_held_per_endpoint = max_held;
    config.ledger_page_size = page;
    config
}

/// Deliveries an endpoint holds in memory, in any state.
async fn held(handle: &EngineHandle, id: &str) -> usize {
    let stats = handle.stats().await.unwrap();
    stats
        .per_endpoint
        .get(id)
        .map_or(0, |s| s.queued + s.in_flight + s.scheduled)
}

/// An endpoint's backlog once it holds `n` deliveries (polled like [`until`]).
async fn once_holding(handle: &EngineHandle, id: &str, n: usize) -> EndpointStats {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = handle.stats().await.unwrap();
        if let Some(stats) = stats.per_endpoint.get(id) {
            if stats.queued + stats.in_flight + stats.scheduled == n {
                return *stats;
            }
        }
        assert!(Instant::now() < deadline, "{id} never held {n}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Samples what an endpoint holds until stopped; returns the largest figure seen.
fn watch_held(handle: &EngineHandle, id: &'static str) -> (Arc<AtomicBool>, JoinHandle<usize>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (handle, flag) = (handle.clone(), stop.clone());
    let sampler = tokio::spawn(async move {
        let mut most = 0;
        while !flag.load(Ordering::Relaxed) {
            most = most.max(held(&handle, id).await);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        most
    });
    (stop, sampler)
}

/// Successful attempts per delivery of `webhook`, from the attempt logs.
fn successes(ledger: &MemoryLedger, webhook: &str) -> HashMap<String, usize> {
    ledger
        .deliveries()
        .into_iter()
        .filter(|d| d.record.webhook_id == webhook)
        .map(|d| {
            let ok = d
                .attempt_log
                .iter()
                .filter(|a| a.status_code == Some(200))
                .count();
            (d.record.event_id, ok)
        })
        .collect()
}

/// Deliveries of `webhook` that got a 2xx.
fn delivered(ledger: &MemoryLedger, webhook: &str) -> usize {
    successes(ledger, webhook)
        .values()
        .filter(|n| **n > 0)
        .count()
}

fn pending(event_id: &str, webhook_id: &str, due: SystemTime) -> PendingDelivery {
    PendingDelivery {
        event_id: event_id.into(),
        webhook_id: webhook_id.into(),
        event_type: "x".into(),
        task_id: None,
        attempts: 1,
        next_attempt_at: due,
        created_at: SystemTime::now(),
        payload: event(event_id, "x").body,
    }
}
