//! One actor per subscribed webhook.
//!
//! The actor owns everything that is particular to its endpoint: the queue of deliveries
//! waiting for their first attempt, the retries waiting for their timers, its rate limiter
//! (consulted before every attempt, retries included), its cap on attempts in flight and its
//! backoff decisions. Attempts run in [a task of their own](crate::attempts) that reports
//! back with [`EndpointMsg::AttemptsEnded`]: the actor never waits on the network, so a
//! slow or dead endpoint only ever delays itself. Under load one message brings many ended
//! attempts, and the records one turn of the actor makes go to the ledger writer as one
//! message (its [`Outbox`]).
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
//!
//! Memory is bounded: an endpoint holds at most `max_held_per_endpoint` deliveries (and
//! all of them together `max_held_total`). Beyond that, deliveries are [spilled](crate::spill)
//! to the ledger as `pending` and read back, oldest due first, when there is room again; a
//! retry waiting for a far-off timer makes way for a delivery that is due. A failing
//! endpoint records its first attempts as `pending` as soon as it accepts them, like a
//! paused one, so that a dead endpoint never holds the feed checkpoint back.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{debug, info, warn};

use crate::attempts::{Attempt, Attempts, EndedAttempt};
use crate::config::EngineConfig;
use crate::delivery::{
    AttemptLogEntry, AttemptResult, DeliveryError, DeliveryRecord, DeliveryStatus, PendingDelivery,
};
use crate::event::Event;
use crate::health::{event_types, Alert, EndpointHealth, HealthSnapshot};
use crate::ledger_writer::LedgerWriterMsg;
use crate::metrics::{DeliveryCounters, EngineMetrics};
use crate::ports::{Ledger, LedgerError, OutboundRequest, Transport};
use crate::retry::next_delay;
use crate::spill::{Spilled, Sweep, SweepArgs, LEDGER_READ_TIMEOUT};
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

    /// A record of this delivery to `webhook_id` as it stands: who it is, its attempts so
    /// far, and whether its document exists; the state for the caller to fill in.
    fn record(&self, webhook_id: &str, status: DeliveryStatus) -> DeliveryRecord {
        let event = &self.event;
        DeliveryRecord {
            delivery_id: format!("{}:{webhook_id}", event.id),
            event_id: event.id.to_string(),
            webhook_id: webhook_id.to_owned(),
            event_type: event.event_type.to_string(),
            task_id: event.task_id.as_deref().map(str::to_owned),
            status,
            attempts: self.attempts,
            next_attempt_at: None,
            last_status_code: None,
            last_error: None,
            new_attempts: Vec::new(),
            first_write: !self.persisted,
            created_at: self.created_at,
            completed_at: None,
            payload: None,
        }
    }

    /// A pending delivery read back from the ledger (its document exists).
    pub fn from_pending(pending: PendingDelivery) -> Self {
        let event = Arc::new(Event {
            id: pending.event_id.into(),
            event_type: pending.event_type.into(),
            task_id: pending.task_id.map(Into::into),
            body: pending.payload,
        });
        Self {
            event,
            seq: None,
            attempts: pending.attempts,
            created_at: pending.created_at,
            persisted: true,
            due_at: Some(pending.next_attempt_at),
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
    /// The same retries by due time, latest last: the first to make way for due work.
    by_due: BTreeSet<(SystemTime, u64)>,
    /// Event ids of the deliveries held in any state, with how many times (a replayed event
    /// can meet its re-loaded copy). A delivery read back from the ledger is skipped if held.
    held: HashMap<Arc<str>, u32>,
    /// What the ledger holds of this endpoint that memory does not.
    spilled: Spilled,
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

    /// Whether a delivery of this event is held.
    pub fn holds(&self, event_id: &str) -> bool {
        self.held.contains_key(event_id)
    }

    fn hold(&mut self, event_id: &Arc<str>) {
        *self.held.entry(event_id.clone()).or_default() += 1;
    }

    fn release(&mut self, event_id: &str) {
        if let Some(n) = self.held.get_mut(event_id) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(event_id);
            }
        }
    }

    /// Queues a delivery that is due now.
    fn push_queue(&mut self, job: Job) {
        self.hold(&job.event.id);
        self.queue.push_back(job);
    }

    /// An attempt ended: the job leaves memory (a retry comes back through `schedule`).
    fn finish(&mut self, key: u64) -> Option<Job> {
        let job = self.in_flight.remove(&key)?;
        self.release(&job.event.id);
        Some(job)
    }

    /// Jobs handed over whose attempts will not report (never started, or their actor
    /// crashed): back to the head of the queue, in the order of `keys` (oldest first).
    fn unstart(&mut self, keys: &[u64]) {
        for key in keys.iter().rev() {
            if let Some(job) = self.in_flight.remove(key) {
                self.queue.push_front(job);
            }
        }
    }

    /// A retry timer fired: the job moves to the queue.
    fn due(&mut self, key: u64) {
        if let Some((job, due)) = self.scheduled.remove(&key) {
            self.by_due.remove(&(due, key));
            self.queue.push_back(job);
        }
    }

    /// Drops the retry due last from memory to make room for due work (its record in the
    /// ledger is `pending` with that due time). `false` when no retry waits.
    fn evict_latest(&mut self) -> bool {
        let Some((due, key)) = self.by_due.pop_last() else {
            return false;
        };
        if let Some((job, _)) = self.scheduled.remove(&key) {
            debug_assert!(job.persisted, "only recorded retries wait for a timer");
            self.release(&job.event.id);
            self.spilled.note(due);
        }
        true
    }
}

/// Shared handle on a [`Backlog`].
pub type SharedBacklog = Arc<Mutex<Backlog>>;

pub enum EndpointMsg {
    /// A new delivery (or a re-loaded one, when `job.due_at` is set).
    Deliver(Job),
    /// A retry timer fired.
    Due(u64),
    /// Attempts ended.
    AttemptsEnded(Vec<EndedAttempt>),
    /// Attempts handed over and not started, returned on recall (by job key).
    AttemptsReturned(Vec<u64>),
    /// Try to start attempts (after a rate-limit wait).
    Pump,
    /// The webhook changed (URL, secret, headers, rate limit).
    Update(Arc<WebhookSpec>),
    /// Start no new attempts; reply once none is in flight.
    Drain(RpcReplyPort<()>),
    /// Counters, for stats and tests.
    Stats(RpcReplyPort<EndpointStats>),
    /// The ledger may hold pending deliveries of this endpoint (at start-up, or the webhook
    /// was enabled again): read them back.
    Spilled,
    /// A page of sweep `sweep` (`true`: the sweep has read everything it covers).
    Paged {
        sweep: u64,
        result: Result<(Vec<PendingDelivery>, bool), LedgerError>,
    },
    /// The ledger's earliest due time among this endpoint's pending deliveries after the
    /// last sweep (`None`: there are none).
    NextDue(Result<Option<SystemTime>, LedgerError>),
    /// Time to look at the ledger again.
    LedgerWake,
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
    /// The ledger itself, to read spilled deliveries back.
    pub store: Arc<dyn Ledger>,
    pub metrics: EngineMetrics,
    /// Deliveries held by all endpoints (each adds what it holds), for `max_held_total`.
    pub held_total: Arc<AtomicUsize>,
    /// Records the ledger writer has not made durable yet.
    pub unwritten: Arc<AtomicUsize>,
}

pub struct EndpointArgs {
    pub spec: Arc<WebhookSpec>,
    pub backlog: SharedBacklog,
}

pub struct EndpointState {
    spec: Arc<WebhookSpec>,
    /// The task running this actor's attempts.
    attempts: Attempts,
    /// Records made during the current turn, for the ledger writer.
    outbox: Outbox,
    /// The engine's transport, whose connections endpoints of one origin share while they
    /// answer (see [`Pools`]).
    pools: Pools,
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
    /// The last attempt that ended answered 2xx. Until one has, the endpoint makes
    /// [`UNPROVEN_IN_FLIGHT`] attempt at a time (slow start).
    proven: bool,
    /// The sweep reading spilled deliveries back, if one runs.
    sweep: Option<Sweep>,
    sweeps: u64,
    /// Waiting for the ledger's answer to "when is the next one due?".
    asking: bool,
    /// A `LedgerWake` is armed for then.
    ledger_wake_at: Option<SystemTime>,
    /// What this actor last added to the shared count of held deliveries.
    reported_held: usize,
}

/// A sweep stops skipping by name beyond this many deliveries per held one, and a new
/// sweep begins instead (a flood of manual retries during a long sweep).
const MAX_EXCLUDED_PER_HELD: usize = 2;

/// After a failed read of the ledger, look again this much later.
const LEDGER_RETRY: Duration = Duration::from_secs(2);

/// Spilled deliveries are not read back while the ledger writer holds more than this many
/// batches of records: the store is behind, and paging more in would only pile up records.
const MAX_UNWRITTEN_BATCHES: usize = 10;

/// How soon an endpoint held back by the ledger writer looks again.
const UNWRITTEN_RECHECK: Duration = Duration::from_millis(100);

/// Failed attempts in a row after which an endpoint is treated as failing.
pub const FAILING_STREAK: u32 = 3;

/// Attempts in flight, at most, to an endpoint that is failing.
pub const PROBE_IN_FLIGHT: usize = 2;

/// Attempts in flight, at most, to an endpoint that has not answered yet: a new endpoint
/// that never answers holds one stream of its origin's shared connection until its attempt
/// times out, not a whole in-flight window of them.
pub const UNPROVEN_IN_FLIGHT: usize = 1;

/// The records one turn of the actor makes, sent to the ledger writer as one message at the
/// end of the turn (before a sweep can ask the writer for a barrier, so a sweep still sees
/// this endpoint's earlier writes). Whatever is left when the actor stops, even by a crash,
/// is sent as it is dropped.
struct Outbox {
    writer: ActorRef<LedgerWriterMsg>,
    records: Vec<DeliveryRecord>,
    retire: Vec<u64>,
}

impl Outbox {
    fn new(writer: ActorRef<LedgerWriterMsg>) -> Self {
        Self {
            writer,
            records: Vec::new(),
            retire: Vec::new(),
        }
    }

    /// `retire` is the feed sequence number the record settles once durable, if any.
    fn push(&mut self, record: DeliveryRecord, retire: Option<u64>) {
        self.records.push(record);
        self.retire.extend(retire);
    }

    fn flush(&mut self) {
        if self.records.is_empty() {
            return;
        }
        let _ = self.writer.cast(LedgerWriterMsg::Write {
            records: std::mem::take(&mut self.records),
            retire: std::mem::take(&mut self.retire),
        });
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Which connections an attempt goes through. Endpoints share the engine's transport (one
/// pool, so one HTTP/2 connection per origin: fan-out to many webhooks on one host costs
/// one TLS handshake, not one per webhook) for as long as their attempts answer 2xx. From
/// its first attempt that does not, an endpoint moves to connections of its own
/// ([`Transport::isolated`], built on first use) until it answers 2xx again, so an endpoint
/// that hangs cannot hold the streams its origin's other endpoints need.
struct Pools {
    shared: Arc<dyn Transport>,
    own: Option<Arc<dyn Transport>>,
}

impl Pools {
    fn new(shared: Arc<dyn Transport>) -> Self {
        Self { shared, own: None }
    }

    fn pick(&mut self, failing_streak: u32) -> Arc<dyn Transport> {
        if failing_streak == 0 {
            return self.shared.clone();
        }
        let shared = &self.shared;
        self.own
            .get_or_insert_with(|| shared.isolated().unwrap_or_else(|| shared.clone()))
            .clone()
    }
}

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
            let mut orphans: Vec<u64> = backlog.in_flight.keys().copied().collect();
            orphans.sort_unstable();
            backlog.unstart(&orphans);
            let now = SystemTime::now();
            for (key, (_, due)) in backlog.scheduled.iter() {
                let key = *key;
                let wait = due.duration_since(now).unwrap_or_default();
                myself.send_after(wait, move || EndpointMsg::Due(key));
            }
            // Its sweep (or question to the ledger) died with it.
            backlog.spilled.restart(now);
        }
        let _ = myself.cast(EndpointMsg::Pump);
        let mut state = EndpointState {
            attempts: Attempts::default(),
            outbox: Outbox::new(self.ledger.clone()),
            pools: Pools::new(self.transport.clone()),
            limiter: limiter_for(&args.spec),
            spec: args.spec,
            backlog: args.backlog,
            in_flight: 0,
            wake_armed: false,
            draining: None,
            deliveries: DeliveryCounters::default(),
            reported_paused: 0,
            failing_streak: 0,
            proven: false,
            sweep: None,
            sweeps: 0,
            asking: false,
            ledger_wake_at: None,
            reported_held: 0,
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
        self.held_total
            .fetch_sub(state.reported_held, Ordering::Relaxed);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EndpointMsg::Deliver(job) => self.admit(&myself, state, job),
            EndpointMsg::Due(key) => {
                if state.draining.is_none() {
                    state.backlog.lock().expect("backlog lock").due(key);
                }
            }
            EndpointMsg::AttemptsEnded(ended) => {
                for attempt in ended {
                    state.in_flight -= 1;
                    let job = state
                        .backlog
                        .lock()
                        .expect("backlog lock")
                        .finish(attempt.key);
                    if let Some(job) = job {
                        self.conclude(&myself, state, job, attempt);
                    }
                }
                if state.failing_streak > 0 {
                    // What was handed over for a healthy endpoint waits for the probes.
                    state.attempts.recall();
                }
                self.settle_in_flight(state);
            }
            EndpointMsg::AttemptsReturned(keys) => {
                state.in_flight -= keys.len();
                state.backlog.lock().expect("backlog lock").unstart(&keys);
                if state.spec.paused || state.failing_streak >= FAILING_STREAK {
                    self.record_held(state);
                }
                self.settle_in_flight(state);
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
                // Attempts not started yet start anew, as the webhook now is.
                state.attempts.recall();
            }
            EndpointMsg::Drain(reply) => {
                state.attempts.recall();
                state.draining.get_or_insert_with(Vec::new).push(reply);
                self.settle_in_flight(state);
            }
            EndpointMsg::Stats(reply) => {
                let _ = reply.send(state.backlog.lock().expect("backlog lock").stats());
            }
            EndpointMsg::Spilled => {
                let mut backlog = state.backlog.lock().expect("backlog lock");
                backlog.spilled.note_unknown(SystemTime::now());
            }
            EndpointMsg::Paged { sweep, result } => self.paged(&myself, state, sweep, result),
            EndpointMsg::NextDue(result) => {
                state.asking = false;
                let mut backlog = state.backlog.lock().expect("backlog lock");
                match result {
                    Ok(Some(due)) => backlog.spilled.note(due),
                    Ok(None) => backlog.spilled.known(),
                    Err(error) => {
                        warn!(webhook_id = %state.spec.id, %error, "cannot read the next due time from the ledger; retrying");
                        backlog.spilled.note(SystemTime::now() + LEDGER_RETRY);
                    }
                }
            }
            // Whichever timer this was, `refill` arms the next one if it is still needed.
            EndpointMsg::LedgerWake => state.ledger_wake_at = None,
            #[cfg(test)]
            EndpointMsg::Crash => return Err("crash requested by a test".into()),
        }
        // Before `refill`, which may start a sweep: it asks the writer for a barrier.
        state.outbox.flush();
        self.pump(&myself, state);
        self.refill(&myself, state);
        self.report_paused(state);
        self.report_held(state);
        Ok(())
    }
}

/// Records a delivery whose first attempt has not been made as `pending`, due at `due`,
/// with its payload. Its feed sequence number retires once the record is durable.
fn record_pending(outbox: &mut Outbox, webhook_id: &str, job: &mut Job, due: SystemTime) {
    let record = DeliveryRecord {
        next_attempt_at: Some(due),
        payload: Some(job.event.body.clone()),
        ..job.record(webhook_id, DeliveryStatus::Pending)
    };
    job.persisted = true;
    outbox.push(record, job.seq);
}

fn schedule(myself: &ActorRef<EndpointMsg>, backlog: &mut Backlog, job: Job, due: SystemTime) {
    let key = backlog.key();
    let wait = due.duration_since(SystemTime::now()).unwrap_or_default();
    backlog.hold(&job.event.id);
    backlog.scheduled.insert(key, (job, due));
    backlog.by_due.insert((due, key));
    myself.send_after(wait, move || EndpointMsg::Due(key));
}

impl EndpointActor {
    /// Starts as many attempts as the in-flight cap and the rate limiter allow.
    fn pump(&self, myself: &ActorRef<EndpointMsg>, state: &mut EndpointState) {
        if state.draining.is_some() || state.spec.paused {
            return;
        }
        let cap = if state.failing_streak >= FAILING_STREAK {
            PROBE_IN_FLIGHT
        } else if !state.proven && state.failing_streak == 0 {
            UNPROVEN_IN_FLIGHT
        } else {
            self.config.max_in_flight_per_endpoint
        }
        .min(self.config.max_in_flight_per_endpoint);
        // A healthy endpoint's attempts task gets as many again to start as others end.
        let handed = if cap == self.config.max_in_flight_per_endpoint
            && state.failing_streak == 0
            && state.limiter.is_none()
        {
            cap * 2
        } else {
            cap
        };
        let mut batch = Vec::new();
        while state.in_flight < handed {
            let mut backlog = state.backlog.lock().expect("backlog lock");
            if backlog.queue.is_empty() {
                break;
            }
            if let Some(limiter) = &state.limiter {
                if let Err(not_until) = limiter.check() {
                    if !state.wake_armed {
                        state.wake_armed = true;
                        let wait = not_until.wait_time_from(DefaultClock::default().now());
                        myself.send_after(wait, || EndpointMsg::Pump);
                    }
                    break;
                }
            }
            let Some(job) = backlog.queue.pop_front() else {
                break;
            };
            let key = backlog.key();
            let event = job.event.clone();
            backlog.in_flight.insert(key, job);
            drop(backlog);
            state.in_flight += 1;
            batch.push(self.attempt(
                state.pools.pick(state.failing_streak),
                state.spec.clone(),
                event,
                key,
            ));
        }
        state.attempts.start(myself, batch, cap);
    }

    /// Once nothing is handed over to the attempts task: it may end, and a drain is done.
    fn settle_in_flight(&self, state: &mut EndpointState) {
        if state.in_flight > 0 {
            return;
        }
        state.attempts.idle();
        if let Some(waiters) = state.draining.as_mut() {
            waiters.drain(..).for_each(|reply| {
                let _ = reply.send(());
            });
        }
    }

    /// One attempt, to run in the attempts task.
    fn attempt(
        &self,
        transport: Arc<dyn Transport>,
        spec: Arc<WebhookSpec>,
        event: Arc<Event>,
        key: u64,
    ) -> Attempt {
        let timeout = self.config.attempt_timeout;
        let metrics = self.metrics.clone();
        let run = Box::pin(async move {
            // Counted here rather than in the actor, so that an attempt whose actor died
            // meanwhile still leaves the gauge.
            metrics.in_flight.increment(1.0);
            let started_at = SystemTime::now();
            let started = Instant::now();
            let result = attempt(&*transport, &spec, &event, started_at, timeout).await;
            let elapsed = started.elapsed();
            metrics.in_flight.decrement(1.0);
            metrics.attempt(&result, elapsed);
            EndedAttempt {
                key,
                started_at,
                elapsed,
                result,
            }
        });
        Attempt { key, run }
    }

    /// While paused or failing: records every queued delivery the ledger has not seen yet
    /// as `pending`, due now, with its payload — visible through the API, re-loaded after a
    /// restart, and no longer holding the feed checkpoint back.
    fn record_held(&self, state: &mut EndpointState) {
        let mut backlog = state.backlog.lock().expect("backlog lock");
        let now = SystemTime::now();
        for job in backlog.queue.iter_mut().filter(|job| !job.persisted) {
            record_pending(&mut state.outbox, &state.spec.id, job, now);
        }
    }

    /// How many more deliveries fit in memory, for an endpoint holding `held`. Every
    /// endpoint may hold `max_in_flight_per_endpoint` whatever the others hold, so that a
    /// healthy one keeps its attempts flowing when dead ones have taken the shared budget.
    fn room(&self, held: usize) -> usize {
        let own = self.config.max_held_per_endpoint.saturating_sub(held);
        let shared = self
            .config
            .max_held_total
            .saturating_sub(self.held_total.load(Ordering::Relaxed));
        let floor = self.config.max_in_flight_per_endpoint.saturating_sub(held);
        own.min(shared.max(floor))
    }

    /// Takes a delivery in: queued (due now) or scheduled (due later) if it fits, else
    /// spilled to the ledger (recorded first if the ledger has not seen it).
    fn admit(&self, myself: &ActorRef<EndpointMsg>, state: &mut EndpointState, mut job: Job) {
        let now = SystemTime::now();
        let reserved = state.sweep.as_ref().map_or(0, |sweep| sweep.requested);
        let mut backlog = state.backlog.lock().expect("backlog lock");
        // A re-loaded delivery (a manual retry) that is here already.
        if job.persisted && backlog.holds(&job.event.id) {
            return;
        }
        let later = job.due_at.filter(|due| *due > now);
        let fits =
            self.room(backlog.len() + reserved) > 0 || (later.is_none() && backlog.evict_latest());
        if !fits {
            let due = job.due_at.unwrap_or(now);
            if !job.persisted {
                record_pending(&mut state.outbox, &state.spec.id, &mut job, due);
            }
            backlog.spilled.note(due);
            return;
        }
        if job.persisted {
            // The running sweep may have read its older copy.
            if let Some(sweep) = state.sweep.as_mut() {
                sweep.exclude(job.event.id.clone());
            }
        } else if state.spec.paused || state.failing_streak >= FAILING_STREAK {
            // It may wait long: recorded now, it no longer holds the checkpoint back.
            record_pending(&mut state.outbox, &state.spec.id, &mut job, now);
        }
        match later {
            Some(due) => schedule(myself, &mut backlog, job, due),
            None => backlog.push_queue(job),
        }
    }

    /// Reads spilled deliveries back once some are due and a page fits: starts a sweep,
    /// or pulls the next page of the running one.
    fn refill(&self, myself: &ActorRef<EndpointMsg>, state: &mut EndpointState) {
        if state.draining.is_some() || state.spec.paused || state.asking {
            return;
        }
        if state
            .sweep
            .as_ref()
            .is_some_and(|sweep| sweep.requested > 0)
        {
            return;
        }
        let now = SystemTime::now();
        let page = self.config.ledger_page_size.max(1);
        // A page is read once this much fits; never more than an endpoint may always hold
        // (`room` guarantees it that much even when others have taken the shared budget).
        let low_water = (self.config.max_held_per_endpoint / 2)
            .clamp(1, page)
            .min(self.config.max_in_flight_per_endpoint.max(1));
        let mut backlog = state.backlog.lock().expect("backlog lock");
        if state.sweep.is_none() {
            let Some(at) = backlog.spilled.next_sweep_at() else {
                return;
            };
            if at > now {
                drop(backlog);
                self.arm_ledger_wake(myself, state, at, now);
                return;
            }
        }
        let unwritten_max = MAX_UNWRITTEN_BATCHES * self.config.ledger_batch_max.max(1);
        if self.unwritten.load(Ordering::Relaxed) > unwritten_max {
            drop(backlog);
            self.arm_ledger_wake(myself, state, now + UNWRITTEN_RECHECK, now);
            return;
        }
        // Due work first: retries waiting for a later timer make way.
        while self.room(backlog.len()) < low_water && backlog.evict_latest() {}
        let room = self.room(backlog.len());
        if room < low_water {
            return;
        }
        let sweep = match &mut state.sweep {
            Some(sweep) => sweep,
            None => {
                state.sweeps += 1;
                backlog.spilled.begin(now);
                debug!(webhook_id = %state.spec.id, held = backlog.len(), "reading spilled deliveries back");
                state.sweep.insert(Sweep::start(SweepArgs {
                    id: state.sweeps,
                    began: now,
                    exclude: backlog.held.keys().cloned().collect::<HashSet<_>>(),
                    webhook_id: state.spec.id.clone(),
                    batch_size: page,
                    ledger: self.store.clone(),
                    writer: self.ledger.clone(),
                    endpoint: myself.clone(),
                }))
            }
        };
        sweep.pull(room.min(page));
    }

    /// A page of a sweep arrived: what is not held already is queued (a sweep reads only
    /// what is due).
    fn paged(
        &self,
        myself: &ActorRef<EndpointMsg>,
        state: &mut EndpointState,
        id: u64,
        result: Result<(Vec<PendingDelivery>, bool), LedgerError>,
    ) {
        let Some(sweep) = state.sweep.as_mut().filter(|sweep| sweep.id == id) else {
            return;
        };
        sweep.requested = 0;
        let began = sweep.began;
        let mut backlog = state.backlog.lock().expect("backlog lock");
        let mut done = match result {
            Ok((page, done)) => {
                for pending in page {
                    if sweep.excludes(&pending.event_id) || backlog.holds(&pending.event_id) {
                        continue;
                    }
                    backlog.push_queue(Job::from_pending(pending));
                }
                done
            }
            Err(error) => {
                warn!(webhook_id = %state.spec.id, %error, "cannot read spilled deliveries back from the ledger; retrying");
                backlog.spilled.note(SystemTime::now() + LEDGER_RETRY);
                true
            }
        };
        let max_excluded = MAX_EXCLUDED_PER_HELD * self.config.max_held_per_endpoint.max(1);
        if !done && sweep.excluded() > max_excluded {
            // Start over with a fresh (smaller) set; what this sweep had left is due.
            backlog.spilled.note(began);
            done = true;
        }
        if !done {
            return;
        }
        backlog.spilled.end();
        let ask = backlog.spilled.unknown();
        drop(backlog);
        state.sweep = None;
        if ask {
            state.asking = true;
            let query = self.store.next_due_for(&state.spec.id, began);
            let myself = myself.clone();
            tokio::spawn(async move {
                let answer = tokio::time::timeout(LEDGER_READ_TIMEOUT, query)
                    .await
                    .unwrap_or_else(|_| Err(LedgerError("no answer in time".into())));
                let _ = myself.cast(EndpointMsg::NextDue(answer));
            });
        }
    }

    /// Wakes the actor at `at` to read the ledger (an earlier wake-up replaces a later one).
    fn arm_ledger_wake(
        &self,
        myself: &ActorRef<EndpointMsg>,
        state: &mut EndpointState,
        at: SystemTime,
        now: SystemTime,
    ) {
        if state.ledger_wake_at.is_some_and(|armed| armed <= at) {
            return;
        }
        state.ledger_wake_at = Some(at);
        let wait = at.duration_since(now).unwrap_or_default();
        myself.send_after(wait, || EndpointMsg::LedgerWake);
    }

    /// Keeps the shared count of held deliveries (for `max_held_total`) up to date.
    fn report_held(&self, state: &mut EndpointState) {
        let held = state.backlog.lock().expect("backlog lock").len();
        if held > state.reported_held {
            self.held_total
                .fetch_add(held - state.reported_held, Ordering::Relaxed);
        } else {
            self.held_total
                .fetch_sub(state.reported_held - held, Ordering::Relaxed);
        }
        state.reported_held = held;
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
        attempt: EndedAttempt,
    ) {
        let EndedAttempt {
            started_at,
            elapsed,
            result,
            ..
        } = attempt;
        job.attempts += 1;
        match &result {
            Ok(response) if response.is_success() => {
                state.failing_streak = 0;
                state.proven = true;
            }
            _ => {
                state.failing_streak = state.failing_streak.saturating_add(1);
                state.proven = false;
            }
        }
        if state.failing_streak == FAILING_STREAK {
            // First attempts queued behind a failing endpoint may wait long: record them.
            self.record_held(state);
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
            next_attempt_at,
            last_status_code: status_code,
            last_error: error.clone(),
            new_attempts: vec![AttemptLogEntry {
                at: started_at,
                status_code,
                error,
                duration_ms: elapsed.as_millis() as u64,
            }],
            completed_at: (status != DeliveryStatus::Pending).then_some(now),
            // Kept while the delivery may be attempted again (a retry after a restart, a
            // replay of a failed one) so that the same bytes are sent.
            payload: (!job.persisted && status != DeliveryStatus::Succeeded)
                .then(|| job.event.body.clone()),
            ..job.record(webhook_id, status)
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
        state.outbox.push(record, retire);
        if let Some(alert) = exhausted {
            self.raise(alert);
        }
        if let Some(due) = next_attempt_at {
            let reserved = state.sweep.as_ref().map_or(0, |sweep| sweep.requested);
            let mut backlog = state.backlog.lock().expect("backlog lock");
            if self.room(backlog.len() + reserved) > 0 {
                schedule(myself, &mut backlog, job, due);
            } else {
                // Memory is full: the record just made says `pending`, due then.
                backlog.spilled.note(due);
            }
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
