//! One actor per subscribed webhook.
//!
//! The actor owns everything that is particular to its endpoint: the queue of deliveries
//! waiting for their first attempt, the retries waiting for their timers, its rate limiter
//! (consulted before every attempt, retries included), its cap on attempts in flight and its
//! backoff decisions. Attempts run in [a task of their own](attempts) that reports back
//! with [`Msg::AttemptsEnded`]: the actor never waits on the network, so a slow or dead
//! endpoint only ever delays itself. Under load one message brings many ended attempts, and
//! the records one turn of the actor makes go to the ledger writer as one message (its
//! outbox).
//!
//! A paused endpoint (the webhook's `paused`) accepts deliveries and holds them: it starts
//! no attempt, and its retry timers only move deliveries back to the queue. Deliveries it
//! holds that the ledger has not seen are recorded as `pending` (with their payload), so
//! they are visible, survive a restart and do not hold the feed checkpoint back. Resuming
//! delivers the backlog at the endpoint's rate limit.
//!
//! The work lives in a [`Backlog`] that the router keeps across restarts of this actor:
//! if the actor crashes, its successor starts from the same queue, re-queues what was in
//! flight and re-arms the retry timers. New deliveries come the same way: the router
//! [offers](Backlog::offer) them to the backlog and wakes the actor ([`Msg::Fed`]) only if
//! no wake is on its way, so under load one turn takes many in, and a delivery routed
//! while the actor crashes waits for its successor instead of dying in its mailbox.
//!
//! No endpoint holds the feed: what it holds unrecorded is at most what it can send within
//! its [horizon](pace) (two seconds of its rate limit or of its measured pace; nothing while
//! failing). A queued delivery beyond that is recorded `pending`, so the feed moves on
//! without it, and memory keeps only the horizon (never less than the attempts it may run).
//!
//! Memory is bounded: an endpoint holds at most that, and at most `max_held_per_endpoint`
//! deliveries (and all of them together `max_held_total`). Beyond that, deliveries are
//! [spilled](spill) to the ledger as `pending` and read back, oldest due first, when there
//! is room again; while spilled ones wait, new ones follow them into the ledger; a retry
//! waiting for a far-off timer makes way for a delivery that is due. A failing endpoint
//! records its first attempts as `pending` as soon as it accepts them, like a paused one,
//! so that a dead endpoint never holds the feed checkpoint back.
//!
//! The rooms: this file has the actor's messages, state and turn; [`admission`] takes
//! deliveries in, [`sending`] starts attempts, [`results`] decides what an ended attempt
//! means, [`sweeps`] reads spilled deliveries back, [`pace`] keeps the endpoint within its
//! horizon, [`keeping`] keeps its health in the ledger (read before the first attempt,
//! written as it changes). Beside them: the [`job`], the [`backlog`], the [`outbox`], the
//! connection [`pools`], the [`attempts`] task and the [`spill`] bookkeeping.

mod admission;
mod attempts;
mod backlog;
mod job;
mod keeping;
mod outbox;
mod pace;
mod pools;
mod results;
mod sending;
mod spill;
mod sweeps;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use governor::DefaultDirectRateLimiter;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{info, warn};

use self::attempts::{Attempts, EndedAttempt, Report};
use self::keeping::Keeping;
use self::outbox::Outbox;
use self::pace::Pace;
use self::pools::{limiter_for, Pools};
use self::spill::{Page, Sweep};
use crate::config::EngineConfig;
use crate::health::{Alert, StoredHealth};
use crate::ledger_writer;
use crate::metrics::{DeliveryCounters, EngineMetrics};
use crate::ports::{Ledger, LedgerError, Transport};
use crate::webhook::WebhookSpec;

pub use self::backlog::{Backlog, Stats};
pub use self::job::{delivery_id, Job};
pub use self::keeping::{HEALTH_IO_TIMEOUT, HEALTH_SAVE_EVERY};
pub use self::pace::{HOLD_FEED_FOR, HORIZON};

pub enum Msg {
    /// Deliveries were [offered](Backlog::offer): new ones, or re-loaded ones (when
    /// `job.due_at` is set).
    Fed,
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
    /// The ledger may hold pending deliveries of this endpoint (at start-up, or the webhook
    /// was enabled again): read them back.
    Spilled,
    /// A page of sweep `sweep` (`true`: the sweep has read everything it covers).
    Paged { sweep: u64, result: Page },
    /// The ledger's earliest due time among this endpoint's pending deliveries after the
    /// last sweep (`None`: there are none).
    NextDue(Result<Option<SystemTime>, LedgerError>),
    /// Time to look at the ledger again.
    LedgerWake,
    /// Time to look at the endpoint's pace again (work waits for an attempt).
    Pace,
    /// Time to look again whether this endpoint still counts as idle (its last delivery
    /// from the feed is getting old).
    IdleCheck,
    /// The webhook was disabled: record what is held and stop.
    Retire,
    /// The health the ledger kept, read at start.
    HealthLoaded(Result<Option<StoredHealth>, LedgerError>),
    /// Time to write the health record, if it changed.
    SaveHealth,
    /// A write of the health record ended.
    HealthSaved(Result<(), LedgerError>),
    /// Fail the handler, as a bug would (tests of supervision).
    #[cfg(test)]
    Crash,
}

/// The actor. Its fields are read-only wiring shared by all endpoints.
#[derive(Clone)]
pub struct Endpoint {
    pub config: Arc<EngineConfig>,
    pub transport: Arc<dyn Transport>,
    pub ledger: ActorRef<ledger_writer::Msg>,
    /// The ledger itself, to read spilled deliveries back.
    pub store: Arc<dyn Ledger>,
    pub metrics: EngineMetrics,
    /// Deliveries held by all endpoints (each adds what it holds), for `max_held_total`.
    pub held_total: Arc<AtomicUsize>,
    /// Endpoints that could take more work now (each adds itself while it could): while
    /// none could, a full feed window holds no one back ([`pace`]).
    pub idle: Arc<AtomicUsize>,
    /// Records the ledger writer has not made durable yet.
    pub unwritten: Arc<AtomicUsize>,
    /// The feed window: while it has room, an endpoint's pace holds no one back.
    pub window: Arc<crate::window::Window>,
    /// No attempt starts while the daemon's leases may have passed to another member.
    pub lease: Arc<crate::partition::LeaseClock>,
}

pub struct Args {
    pub spec: Arc<WebhookSpec>,
    pub backlog: Backlog,
}

pub struct State {
    spec: Arc<WebhookSpec>,
    /// The task running this actor's attempts.
    attempts: Attempts,
    /// Records made during the current turn, for the ledger writer.
    outbox: Outbox,
    /// The engine's transport, whose connections endpoints of one origin share while they
    /// answer (see [`Pools`]).
    pools: Pools,
    backlog: Backlog,
    limiter: Option<DefaultDirectRateLimiter>,
    in_flight: usize,
    /// A `Pump` is already scheduled for when the limiter allows the next attempt.
    wake_armed: bool,
    /// Set by `Drain`: no new attempts; the reply waits for the in-flight ones.
    draining: Option<Vec<RpcReplyPort<()>>>,
    /// `herald_deliveries_total` handles by event type.
    deliveries: DeliveryCounters,
    /// The engine's metric handles, for the attempts: one reference to count per attempt
    /// rather than a clone of every handle.
    attempt_metrics: Arc<EngineMetrics>,
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
    /// Whether this endpoint counts itself in `idle`.
    reported_idle: bool,
    /// When the feed last brought it a delivery.
    last_fed: Option<tokio::time::Instant>,
    /// An `IdleCheck` is scheduled.
    idle_check_armed: bool,
    /// What the endpoint sent lately, for its horizon.
    pace: Pace,
    /// The kept copy of the endpoint's health: read at start, written as it changes.
    keeping: Keeping,
}

/// After a failed read of the ledger, look again this much later.
const LEDGER_RETRY: Duration = Duration::from_secs(2);

/// Failed attempts in a row after which an endpoint is treated as failing.
pub const FAILING_STREAK: u32 = 3;

/// Attempts in flight, at most, to an endpoint that is failing.
pub const PROBE_IN_FLIGHT: usize = 2;

/// Attempts in flight, at most, to an endpoint that has not answered yet: a new endpoint
/// that never answers holds one stream of its origin's shared connection until its attempt
/// times out, not a whole in-flight window of them.
pub const UNPROVEN_IN_FLIGHT: usize = 1;

impl Actor for Endpoint {
    type Msg = Msg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Args,
    ) -> Result<Self::State, ActorProcessingErr> {
        // A predecessor may have crashed: what it had in flight is attempted again (at
        // least once), and its retry timers died with it, so arm them anew.
        for (key, due) in args.backlog.take_over(SystemTime::now()) {
            let wait = due.duration_since(SystemTime::now()).unwrap_or_default();
            myself.send_after(wait, move || Msg::Due(key));
        }
        let _ = myself.cast(Msg::Pump);
        // The router waits for this start: it offers nothing meanwhile.
        if args.backlog.woken() {
            let _ = myself.cast(Msg::Fed);
        }
        let reports = myself.clone();
        let report = move |report| {
            reports
                .cast(match report {
                    Report::Ended(ended) => Msg::AttemptsEnded(ended),
                    Report::Returned(keys) => Msg::AttemptsReturned(keys),
                })
                .is_ok()
        };
        let mut state = State {
            attempts: Attempts::new(Arc::new(report), {
                // No lined-up attempt starts while the daemon's leases may have passed on,
                // nor once this endpoint's partition is known to have.
                let (lease, backlog) = (self.lease.clone(), args.backlog.clone());
                Arc::new(move || lease.valid() && !backlog.fenced())
            }),
            outbox: Outbox::new(self.ledger.clone(), self.metrics.recorded_ahead.clone()),
            pools: Pools::new(self.transport.clone()),
            limiter: limiter_for(&args.spec),
            spec: args.spec,
            backlog: args.backlog,
            in_flight: 0,
            wake_armed: false,
            draining: None,
            deliveries: DeliveryCounters::default(),
            attempt_metrics: Arc::new(self.metrics.clone()),
            reported_paused: 0,
            failing_streak: 0,
            proven: false,
            sweep: None,
            sweeps: 0,
            asking: false,
            ledger_wake_at: None,
            reported_held: 0,
            reported_idle: false,
            last_fed: None,
            idle_check_armed: false,
            pace: Pace::new(tokio::time::Instant::now()),
            keeping: Keeping::default(),
        };
        self.load_health(&myself, &mut state);
        if state.spec.paused {
            self.record_held(&mut state);
        }
        self.report_idle(&myself, &mut state);
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
        if state.reported_idle {
            self.idle.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Fed => self.take_offered(&myself, state),
            Msg::Due(key) => {
                if state.draining.is_none() {
                    state.backlog.due(key);
                }
            }
            Msg::AttemptsEnded(ended) => {
                state.pace.ended(tokio::time::Instant::now(), ended.len());
                for attempt in ended {
                    state.in_flight -= 1;
                    let finished = state.backlog.finish(
                        attempt.key,
                        &self.config.health,
                        attempt.started_at + attempt.elapsed,
                        &attempt.result,
                        (&state.spec.id, &state.spec.url),
                    );
                    if let Some((job, alerts)) = finished {
                        self.conclude(&myself, state, job, alerts, attempt);
                    }
                }
                if state.failing_streak > 0 {
                    // What was handed over for a healthy endpoint waits for the probes.
                    state.attempts.recall();
                }
                self.settle_in_flight(state);
            }
            Msg::AttemptsReturned(keys) => {
                state.in_flight -= keys.len();
                state.backlog.unstart(&keys);
                if state.spec.paused || state.failing_streak >= FAILING_STREAK {
                    self.record_held(state);
                }
                self.settle_in_flight(state);
            }
            Msg::Pump => state.wake_armed = false,
            Msg::Update(spec) => {
                if spec.rate_limit_per_second != state.spec.rate_limit_per_second {
                    state.limiter = limiter_for(&spec);
                }
                if spec.paused != state.spec.paused {
                    let held = state.backlog.len();
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
            Msg::Drain(reply) => {
                state.attempts.recall();
                state.draining.get_or_insert_with(Vec::new).push(reply);
                self.save_health_before_drain(&myself, state);
                self.settle_in_flight(state);
            }
            Msg::HealthLoaded(result) => self.health_loaded(state, result),
            Msg::SaveHealth => self.save_tick(&myself, state),
            Msg::HealthSaved(result) => {
                self.health_saved(&myself, state, result);
                self.settle_in_flight(state);
            }
            Msg::Spilled => {
                let now = SystemTime::now();
                state.backlog.spilled(|spilled| spilled.note_unknown(now));
            }
            Msg::Paged { sweep, result } => self.paged(&myself, state, sweep, result),
            Msg::NextDue(result) => {
                state.asking = false;
                state.backlog.spilled(|spilled| match result {
                    Ok(Some(due)) => spilled.note(due),
                    Ok(None) => spilled.known(),
                    Err(error) => {
                        warn!(webhook_id = %state.spec.id, %error, "cannot read the next due time from the ledger; retrying");
                        spilled.note(SystemTime::now() + LEDGER_RETRY);
                    }
                });
            }
            // Whichever timer this was, `refill` arms the next one if it is still needed.
            Msg::LedgerWake => state.ledger_wake_at = None,
            // `keep_to_horizon` below does the looking.
            Msg::Pace => state.pace.looked(),
            Msg::IdleCheck => state.idle_check_armed = false,
            Msg::Retire => {
                self.take_offered(&myself, state);
                self.record_all_held(state);
                // What changed since the last write, kept without waiting for it.
                self.save_health_on_retire(&myself, state);
                // On its way to the ledger writer before the router hears the actor ended.
                state.outbox.flush();
                myself.stop(Some("disabled".into()));
                return Ok(());
            }
            #[cfg(test)]
            Msg::Crash => return Err("crash requested by a test".into()),
        }
        self.keep_to_horizon(state);
        // Before `refill`, which may start a sweep: it asks the writer for a barrier.
        state.outbox.flush();
        self.pump(&myself, state);
        self.watch_pace(&myself, state);
        self.refill(&myself, state);
        self.report_paused(state);
        self.report_held(state);
        self.report_idle(&myself, state);
        Ok(())
    }
}

impl Endpoint {
    /// Keeps the shared count of held deliveries (for `max_held_total`) up to date.
    fn report_held(&self, state: &mut State) {
        let held = state.backlog.len();
        if held > state.reported_held {
            self.held_total
                .fetch_add(held - state.reported_held, Ordering::Relaxed);
        } else {
            self.held_total
                .fetch_sub(state.reported_held - held, Ordering::Relaxed);
        }
        state.reported_held = held;
    }

    /// Counts this endpoint in `idle` while it could take more work now and would get it
    /// if the feed read on: it may send, it has nothing queued and room for more attempts,
    /// the ledger holds nothing of its that is due, and the feed brought it a delivery
    /// within [`HOLD_FEED_FOR`]. One that has had none for longer (its events are rare, or
    /// it subscribes to none that come) waits at most that long for a burst that keeps the
    /// others busy ([`pace`]); counting it would have every burst larger than the window
    /// go through the ledger as long as any such endpoint exists.
    fn report_idle(&self, myself: &ActorRef<Msg>, state: &mut State) {
        let now = tokio::time::Instant::now();
        let fed_until = state.last_fed.map(|at| at + HOLD_FEED_FOR);
        let fed = fed_until.is_some_and(|until| until > now);
        // The backlog's lock last, and once: this runs at the end of every turn.
        let idle = fed
            && !state.spec.paused
            && state.draining.is_none()
            && state.failing_streak < FAILING_STREAK
            && state.in_flight < self.config.max_in_flight_per_endpoint
            && state.backlog.nothing_waits(SystemTime::now());
        if let (true, false, Some(until)) = (idle, state.idle_check_armed, fed_until) {
            state.idle_check_armed = true;
            myself.send_after(until.saturating_duration_since(now), || Msg::IdleCheck);
        }
        if idle != state.reported_idle {
            if idle {
                self.idle.fetch_add(1, Ordering::Relaxed);
            } else {
                self.idle.fetch_sub(1, Ordering::Relaxed);
            }
            state.reported_idle = idle;
        }
    }

    /// Keeps `herald_deliveries_paused` equal to what paused endpoints hold.
    fn report_paused(&self, state: &mut State) {
        let held = if state.spec.paused {
            state.backlog.len()
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

    /// Hands an alert to the ledger writer, which publishes it.
    fn raise(&self, alert: Alert) {
        info!(event_type = alert.event_type(), alert = ?alert, "alert");
        let _ = self.ledger.cast(ledger_writer::Msg::Alert(Box::new(alert)));
    }
}
