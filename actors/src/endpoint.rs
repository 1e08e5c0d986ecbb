//! One actor per subscribed webhook.
//!
//! The actor owns everything that is particular to its endpoint: the queue of deliveries
//! waiting for their first attempt, the retries waiting for their timers, its rate limiter
//! (consulted before every attempt, retries included), its cap on attempts in flight and its
//! backoff decisions. Attempts run as spawned tasks that report back with
//! [`EndpointMsg::AttemptDone`]: the actor never waits on the network, so a slow or dead
//! endpoint only ever delays itself.
//!
//! A paused endpoint (the webhook's `paused`) accepts deliveries and holds them: it starts
//! no attempt, and its retry timers only move deliveries back to the queue. Deliveries it
//! holds that the ledger has not seen are recorded as `pending` (with their payload), so
//! they are visible, survive a restart and do not hold the feed checkpoint back. Resuming
//! delivers the backlog at the endpoint's rate limit.
//!
//! The work lives in a [`Backlog`] that the router keeps across restarts of this actor:
//! if the actor crashes, its successor starts from the same queue, re-queues what was in
//! flight and re-arms the retry timers.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{debug, info, warn};

use crate::config::EngineConfig;
use crate::delivery::{
    AttemptLogEntry, AttemptResult, DeliveryError, DeliveryRecord, DeliveryStatus,
};
use crate::event::Event;
use crate::health::{event_types, Alert, EndpointHealth, HealthSnapshot};
use crate::ledger_writer::LedgerWriterMsg;
use crate::metrics::{DeliveryCounters, EngineMetrics};
use crate::ports::{OutboundRequest, Transport};
use crate::retry::next_delay;
use crate::webhook::WebhookSpec;

/// One delivery: an event on its way to this endpoint.
#[derive(Debug, Clone)]
pub struct Job {
    pub event: Arc<Event>,
    /// The feed sequence number to retire once this delivery's first record is durable;
    /// `None` for deliveries re-loaded from the ledger.
    pub seq: Option<u64>,
    /// Attempts made so far.
    pub attempts: u32,
    pub created_at: SystemTime,
    /// Whether the ledger already has a document for this delivery.
    pub persisted: bool,
    /// When a re-loaded delivery is next due.
    pub due_at: Option<SystemTime>,
}

impl Job {
    /// A delivery fresh from the feed.
    pub fn new(event: Arc<Event>, seq: Option<u64>) -> Self {
        Self {
            event,
            seq,
            attempts: 0,
            created_at: SystemTime::now(),
            persisted: false,
            due_at: None,
        }
    }
}

/// The endpoint's work, owned jointly with the router so that it survives a restart of the
/// actor. Only the actor touches it while it runs; the lock is never contended.
#[derive(Debug, Default)]
pub struct Backlog {
    /// Waiting for an attempt (first attempts and due retries), in order.
    queue: VecDeque<Job>,
    /// Attempts under way, by job key.
    in_flight: HashMap<u64, Job>,
    /// Retries waiting for their timer, by job key.
    scheduled: HashMap<u64, (Job, SystemTime)>,
    next_key: u64,
    /// The endpoint's health record, kept across restarts of the actor like the work.
    health: EndpointHealth,
}

impl Backlog {
    /// Feed sequence numbers of deliveries whose first record is not yet written: the
    /// router retires them itself when the endpoint goes away.
    pub fn unrecorded_seqs(&self) -> Vec<u64> {
        self.queue
            .iter()
            .chain(self.in_flight.values())
            .filter(|job| !job.persisted)
            .filter_map(|job| job.seq)
            .collect()
    }

    /// Counts by state.
    pub fn stats(&self) -> EndpointStats {
        EndpointStats {
            queued: self.queue.len(),
            in_flight: self.in_flight.len(),
            scheduled: self.scheduled.len(),
        }
    }

    /// Deliveries held in memory in any state.
    pub fn len(&self) -> usize {
        self.queue.len() + self.in_flight.len() + self.scheduled.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The endpoint's health as of `now`.
    pub fn health(&self, now: SystemTime) -> HealthSnapshot {
        self.health.snapshot(now)
    }

    fn key(&mut self) -> u64 {
        self.next_key += 1;
        self.next_key
    }
}

/// Shared handle on a [`Backlog`].
pub type SharedBacklog = Arc<Mutex<Backlog>>;

pub enum EndpointMsg {
    /// A new delivery (or a re-loaded one, when `job.due_at` is set).
    Deliver(Job),
    /// A retry timer fired.
    Due(u64),
    /// An attempt ended.
    AttemptDone {
        key: u64,
        started_at: SystemTime,
        elapsed: Duration,
        result: AttemptResult,
    },
    /// Try to start attempts (after a rate-limit wait).
    Pump,
    /// The webhook changed (URL, secret, headers, rate limit).
    Update(Arc<WebhookSpec>),
    /// Start no new attempts; reply once none is in flight.
    Drain(RpcReplyPort<()>),
    /// Counters, for stats and tests.
    Stats(RpcReplyPort<EndpointStats>),
    /// Fail the handler, as a bug would (tests of supervision).
    #[cfg(test)]
    Crash,
}

/// What an endpoint holds right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    pub queued: usize,
    pub in_flight: usize,
    pub scheduled: usize,
}

/// The actor. Its fields are read-only wiring shared by all endpoints.
pub struct EndpointActor {
    pub config: Arc<EngineConfig>,
    pub transport: Arc<dyn Transport>,
    pub ledger: ActorRef<LedgerWriterMsg>,
    pub metrics: EngineMetrics,
}

pub struct EndpointArgs {
    pub spec: Arc<WebhookSpec>,
    pub backlog: SharedBacklog,
}

pub struct EndpointState {
    spec: Arc<WebhookSpec>,
    /// This endpoint's own connections (see [`Transport::isolated`]).
    transport: Arc<dyn Transport>,
    backlog: SharedBacklog,
    limiter: Option<DefaultDirectRateLimiter>,
    in_flight: usize,
    /// A `Pump` is already scheduled for when the limiter allows the next attempt.
    wake_armed: bool,
    /// Set by `Drain`: no new attempts; the reply waits for the in-flight ones.
    draining: Option<Vec<RpcReplyPort<()>>>,
    /// `herald_deliveries_total` handles by event type.
    deliveries: DeliveryCounters,
    /// What this actor last added to the `herald_deliveries_paused` gauge.
    reported_paused: usize,
    /// Attempts in a row that did not answer 2xx. From [`FAILING_STREAK`] on, the endpoint
    /// probes with at most [`PROBE_IN_FLIGHT`] attempts at a time until one succeeds, so a
    /// dead endpoint stops costing connections and handshakes its neighbours need.
    failing_streak: u32,
}

/// Failed attempts in a row after which an endpoint is treated as failing.
pub const FAILING_STREAK: u32 = 3;

/// Attempts in flight, at most, to an endpoint that is failing.
pub const PROBE_IN_FLIGHT: usize = 2;

/// Evenly spaced attempts (no burst): a receiver that asked for 50/s never sees more than
/// 50 requests in any one-second window, even right after a backlog builds up.
fn limiter_for(spec: &WebhookSpec) -> Option<DefaultDirectRateLimiter> {
    let per_second = NonZeroU32::new(spec.rate_limit_per_second?)?;
    Some(RateLimiter::direct(
        Quota::per_second(per_second).allow_burst(NonZeroU32::MIN),
    ))
}

impl Actor for EndpointActor {
    type Msg = EndpointMsg;
    type State = EndpointState;
    type Arguments = EndpointArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: EndpointArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        // A predecessor may have crashed: what it had in flight is attempted again (at
        // least once), and its retry timers died with it, so arm them anew.
        {
            let mut backlog = args.backlog.lock().expect("backlog lock");
            let orphans: Vec<Job> = backlog.in_flight.drain().map(|(_, job)| job).collect();
            for job in orphans.into_iter().rev() {
                backlog.queue.push_front(job);
            }
            let now = SystemTime::now();
            for (key, (_, due)) in backlog.scheduled.iter() {
                let key = *key;
                let wait = due.duration_since(now).unwrap_or_default();
                myself.send_after(wait, move || EndpointMsg::Due(key));
            }
        }
        let _ = myself.cast(EndpointMsg::Pump);
        let mut state = EndpointState {
            transport: self
                .transport
                .isolated()
                .unwrap_or_else(|| self.transport.clone()),
            limiter: limiter_for(&args.spec),
            spec: args.spec,
            backlog: args.backlog,
            in_flight: 0,
            wake_armed: false,
            draining: None,
            deliveries: DeliveryCounters::default(),
            reported_paused: 0,
            failing_streak: 0,
        };
        if state.spec.paused {
            self.record_held(&mut state);
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // A successor (after a crash) reports the same backlog anew.
        self.metrics.paused.decrement(state.reported_paused as f64);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EndpointMsg::Deliver(job) => {
                let mut backlog = state.backlog.lock().expect("backlog lock");
                match job.due_at {
                    Some(due) if due > SystemTime::now() => {
                        schedule(&myself, &mut backlog, job, due);
                    }
                    _ => backlog.queue.push_back(job),
                }
                drop(backlog);
                if state.spec.paused {
                    self.record_held(state);
                }
            }
            EndpointMsg::Due(key) => {
                if state.draining.is_none() {
                    let mut backlog = state.backlog.lock().expect("backlog lock");
                    if let Some((job, _)) = backlog.scheduled.remove(&key) {
                        backlog.queue.push_back(job);
                    }
                }
            }
            EndpointMsg::AttemptDone {
                key,
                started_at,
                elapsed,
                result,
            } => {
                state.in_flight -= 1;
                let job = state
                    .backlog
                    .lock()
                    .expect("backlog lock")
                    .in_flight
                    .remove(&key);
                if let Some(job) = job {
                    self.conclude(&myself, state, job, started_at, elapsed, result);
                }
                if state.in_flight == 0 {
                    if let Some(waiters) = state.draining.as_mut() {
                        waiters.drain(..).for_each(|reply| {
                            let _ = reply.send(());
                        });
                    }
                }
            }
            EndpointMsg::Pump => state.wake_armed = false,
            EndpointMsg::Update(spec) => {
                if spec.rate_limit_per_second != state.spec.rate_limit_per_second {
                    state.limiter = limiter_for(&spec);
                }
                if spec.paused != state.spec.paused {
                    let held = state.backlog.lock().expect("backlog lock").len();
                    info!(webhook_id = %spec.id, held, paused = spec.paused,
                        "{}", if spec.paused { "endpoint paused" } else { "endpoint resumed" });
                }
                state.spec = spec;
                if state.spec.paused {
                    self.record_held(state);
                }
            }
            EndpointMsg::Drain(reply) => {
                if state.in_flight == 0 {
                    let _ = reply.send(());
                    state.draining = Some(Vec::new());
                } else {
                    state.draining.get_or_insert_with(Vec::new).push(reply);
                }
            }
            EndpointMsg::Stats(reply) => {
                let _ = reply.send(state.backlog.lock().expect("backlog lock").stats());
            }
            #[cfg(test)]
            EndpointMsg::Crash => return Err("crash requested by a test".into()),
        }
        self.pump(&myself, state);
        self.report_paused(state);
        Ok(())
    }
}

fn schedule(myself: &ActorRef<EndpointMsg>, backlog: &mut Backlog, job: Job, due: SystemTime) {
    let key = backlog.key();
    let wait = due.duration_since(SystemTime::now()).unwrap_or_default();
    backlog.scheduled.insert(key, (job, due));
    myself.send_after(wait, move || EndpointMsg::Due(key));
}

impl EndpointActor {
    /// Starts as many attempts as the in-flight cap and the rate limiter allow.
    fn pump(&self, myself: &ActorRef<EndpointMsg>, state: &mut EndpointState) {
        if state.draining.is_some() || state.spec.paused {
            return;
        }
        let cap = if state.failing_streak >= FAILING_STREAK {
            PROBE_IN_FLIGHT.min(self.config.max_in_flight_per_endpoint)
        } else {
            self.config.max_in_flight_per_endpoint
        };
        while state.in_flight < cap {
            let mut backlog = state.backlog.lock().expect("backlog lock");
            if backlog.queue.is_empty() {
                return;
            }
            if let Some(limiter) = &state.limiter {
                if let Err(not_until) = limiter.check() {
                    if !state.wake_armed {
                        state.wake_armed = true;
                        let wait = not_until.wait_time_from(DefaultClock::default().now());
                        myself.send_after(wait, || EndpointMsg::Pump);
                    }
                    return;
                }
            }
            let Some(job) = backlog.queue.pop_front() else {
                return;
            };
            let key = backlog.key();
            let event = job.event.clone();
            backlog.in_flight.insert(key, job);
            drop(backlog);
            state.in_flight += 1;
            self.spawn_attempt(
                myself.clone(),
                state.transport.clone(),
                state.spec.clone(),
                event,
                key,
            );
        }
    }

    /// Runs one attempt in its own task and reports back.
    fn spawn_attempt(
        &self,
        myself: ActorRef<EndpointMsg>,
        transport: Arc<dyn Transport>,
        spec: Arc<WebhookSpec>,
        event: Arc<Event>,
        key: u64,
    ) {
        let timeout = self.config.attempt_timeout;
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            // Counted here rather than in the actor, so that an attempt whose actor died
            // meanwhile still leaves the gauge.
            metrics.in_flight.increment(1.0);
            let started_at = SystemTime::now();
            let started = Instant::now();
            let result = attempt(&*transport, &spec, &event, started_at, timeout).await;
            let elapsed = started.elapsed();
            metrics.in_flight.decrement(1.0);
            metrics.attempt(&result, elapsed);
            let _ = myself.cast(EndpointMsg::AttemptDone {
                key,
                started_at,
                elapsed,
                result,
            });
        });
    }

    /// While paused: records every held delivery the ledger has not seen yet as `pending`,
    /// due now, with its payload — visible through the API, re-loaded after a restart, and
    /// no longer holding the feed checkpoint back.
    fn record_held(&self, state: &mut EndpointState) {
        let mut backlog = state.backlog.lock().expect("backlog lock");
        let now = SystemTime::now();
        let webhook_id = &*state.spec.id;
        for job in backlog.queue.iter_mut().filter(|job| !job.persisted) {
            let event_id = &*job.event.id;
            let record = DeliveryRecord {
                delivery_id: format!("{event_id}:{webhook_id}"),
                event_id: event_id.to_owned(),
                webhook_id: webhook_id.to_owned(),
                event_type: job.event.event_type.to_string(),
                task_id: job.event.task_id.as_deref().map(str::to_owned),
                status: DeliveryStatus::Pending,
                attempts: job.attempts,
                next_attempt_at: Some(now),
                last_status_code: None,
                last_error: None,
                new_attempts: Vec::new(),
                first_write: true,
                created_at: job.created_at,
                completed_at: None,
                payload: Some(job.event.body.clone()),
            };
            job.persisted = true;
            let _ = self.ledger.cast(LedgerWriterMsg::Write {
                record: Box::new(record),
                retire: job.seq,
            });
        }
    }

    /// Keeps `herald_deliveries_paused` equal to what paused endpoints hold.
    fn report_paused(&self, state: &mut EndpointState) {
        let held = if state.spec.paused {
            state.backlog.lock().expect("backlog lock").len()
        } else {
            0
        };
        if held != state.reported_paused {
            self.metrics
                .paused
                .increment(held as f64 - state.reported_paused as f64);
            state.reported_paused = held;
        }
    }

    /// Decides what an ended attempt means, records it and schedules the retry.
    fn conclude(
        &self,
        myself: &ActorRef<EndpointMsg>,
        state: &mut EndpointState,
        mut job: Job,
        started_at: SystemTime,
        elapsed: Duration,
        result: AttemptResult,
    ) {
        job.attempts += 1;
        match &result {
            Ok(response) if response.is_success() => state.failing_streak = 0,
            _ => state.failing_streak = state.failing_streak.saturating_add(1),
        }
        let alerts = state.backlog.lock().expect("backlog lock").health.record(
            &self.config.health,
            started_at + elapsed,
            &result,
            (&state.spec.id, &state.spec.url),
        );
        for alert in alerts {
            self.raise(alert);
        }
        let delay = next_delay(&self.config.retry, job.attempts, &result, &mut rand::rng());
        let (status_code, error) = match &result {
            Ok(response) => (Some(response.status), None),
            Err(error) => (None, Some(error.to_string())),
        };
        let status = match (&result, delay) {
            (Ok(response), _) if response.is_success() => DeliveryStatus::Succeeded,
            (_, Some(_)) => DeliveryStatus::Pending,
            (_, None) => DeliveryStatus::Failed,
        };
        let now = SystemTime::now();
        let next_attempt_at = delay.map(|d| now + d);
        let event_id = &*job.event.id;
        let webhook_id = &*state.spec.id;
        state.deliveries.record(&job.event.event_type, status);
        match status {
            DeliveryStatus::Succeeded => {
                debug!(event_id, webhook_id, attempt = job.attempts, status = ?status_code, "delivered")
            }
            DeliveryStatus::Pending => warn!(
                event_id, webhook_id, attempt = job.attempts, status = ?status_code, error = ?error,
                retry_in_ms = delay.unwrap_or_default().as_millis() as u64,
                "delivery attempt failed, retrying"
            ),
            DeliveryStatus::Failed => warn!(
                event_id, webhook_id, attempt = job.attempts, status = ?status_code, error = ?error,
                "delivery failed for good"
            ),
        }
        let record = DeliveryRecord {
            delivery_id: format!("{event_id}:{webhook_id}"),
            event_id: event_id.to_owned(),
            webhook_id: webhook_id.to_owned(),
            event_type: job.event.event_type.to_string(),
            task_id: job.event.task_id.as_deref().map(str::to_owned),
            status,
            attempts: job.attempts,
            next_attempt_at,
            last_status_code: status_code,
            last_error: error.clone(),
            new_attempts: vec![AttemptLogEntry {
                at: started_at,
                status_code,
                error,
                duration_ms: elapsed.as_millis() as u64,
            }],
            first_write: !job.persisted,
            created_at: job.created_at,
            completed_at: (status != DeliveryStatus::Pending).then_some(now),
            // Kept while the delivery may be attempted again (a retry after a restart, a
            // replay of a failed one) so that the same bytes are sent.
            payload: (!job.persisted && status != DeliveryStatus::Succeeded)
                .then(|| job.event.body.clone()),
        };
        let retire = if job.persisted { None } else { job.seq };
        job.persisted = true;
        // An exhausted `delivery.exhausted` raises no other: a dead operator endpoint must
        // not feed itself an endless chain.
        let exhausted = (status == DeliveryStatus::Failed
            && &*job.event.event_type != event_types::DELIVERY_EXHAUSTED)
            .then(|| Alert::DeliveryExhausted {
                delivery_id: record.delivery_id.clone(),
                event_id: record.event_id.clone(),
                webhook_id: record.webhook_id.clone(),
                event_type: record.event_type.clone(),
                task_id: record.task_id.clone(),
                attempts: record.attempts,
                last_status_code: record.last_status_code,
                last_error: record.last_error.clone(),
            });
        let _ = self.ledger.cast(LedgerWriterMsg::Write {
            record: Box::new(record),
            retire,
        });
        if let Some(alert) = exhausted {
            self.raise(alert);
        }
        if let Some(due) = next_attempt_at {
            let mut backlog = state.backlog.lock().expect("backlog lock");
            schedule(myself, &mut backlog, job, due);
        }
    }
}

impl EndpointActor {
    /// Hands an alert to the ledger writer, which publishes it.
    fn raise(&self, alert: Alert) {
        info!(event_type = alert.event_type(), alert = ?alert, "alert");
        let _ = self.ledger.cast(LedgerWriterMsg::Alert(Box::new(alert)));
    }
}

/// One signed POST with the whole-attempt timeout around it.
async fn attempt(
    transport: &dyn Transport,
    spec: &WebhookSpec,
    event: &Event,
    now: SystemTime,
    timeout: Duration,
) -> AttemptResult {
    if !spec
        .url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        return Err(DeliveryError::InvalidUrl(
            "plaintext URL refused: HTTPS is required".into(),
        ));
    }
    let timestamp = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let request = OutboundRequest {
        url: spec.url.clone(),
        msg_id: event.id.clone(),
        timestamp,
        signature: spec
            .signer
            .header_value(&event.id, timestamp, &event.body, now),
        headers: spec.headers.clone(),
        body: event.body.clone(),
    };
    match tokio::time::timeout(timeout, transport.send(request)).await {
        Ok(result) => result,
        Err(_) => Err(DeliveryError::Timeout(timeout.as_millis() as u64)),
    }
}
