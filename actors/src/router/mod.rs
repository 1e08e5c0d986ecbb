//! The router: feed events in, deliveries out, one checkpoint per partition forward.
//!
//! It owns the [subscription index](SubscriptionIndex) of every webhook and supervises one
//! [endpoint actor](crate::endpoint) per enabled webhook of the [partitions](crate::partition)
//! this engine has been granted. Each event gets a sequence number, and each partition it
//! has deliveries in gets a *ticket* for them; a ticket is settled once every delivery it
//! counts is durable (their first records, written by the ledger writer). A partition's
//! checkpoint is the newest feed position below its oldest unsettled event, so it never
//! passes an event one of whose deliveries could still be lost in a crash, and a slow
//! endpoint holds back only its own partition. An event's window permit is given back as
//! soon as all its tickets are settled, in whatever order: the oldest delivery of the
//! slowest endpoint does not hold the feed.
//!
//! A partition granted from an older checkpoint than the feed has read comes with a rewind:
//! the feed re-reads from there, and until it passes its old position again, the
//! partitions it already owned skip what they have already routed (their *gate*). Events up
//! to the grant's `look_up_until` may have been delivered by the previous owner: their
//! deliveries are looked up in the ledger in batches first, and those already recorded are
//! not sent again.
//!
//! An endpoint actor that fails is restarted with its backlog intact (the router keeps the
//! [`Backlog`]); one that keeps failing is given up on, and its unrecorded deliveries are
//! retired so they do not hold its partition's checkpoint back (this is logged loudly).
//!
//! This file holds the actor (`Msg`, `State`, `impl Actor`) and the webhooks' lifecycle;
//! beside it, [`routing`] (events to tickets, tickets settled), [`partitions`] (granted,
//! dropped, handed over), [`checkpoints`] (what each partition may store, and when) and
//! [`look_ups`] (deliveries a previous owner may have made).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::window::{Released, Window};
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::config::EngineConfig;
use crate::delivery::PendingDelivery;
use crate::endpoint::{self, Backlog, Endpoint, Job};
use crate::event::Event;
use crate::health::HealthSnapshot;
use crate::ledger_writer::{self, LedgerWriter};
use crate::metrics::EngineMetrics;
use crate::partition::{
    partition_of, Grant, PartitionCheckpoint, PartitionReport, Position, QuietMark,
};
use crate::ports::{Ledger, LedgerError, Transport};
use crate::restart::RestartWindow;
use crate::webhook::{SubscriptionIndex, WebhookSpec};

mod checkpoints;
mod look_ups;
mod partitions;
mod pending;
mod routing;

use checkpoints::{due_checkpoint, Due};
use look_ups::{looked_up, LookUp, LOOK_UP_BATCH, LOOK_UP_LINGER};
use partitions::{Part, Seen};
use pending::pending_known;
use routing::{close_ticket, settle};

/// Where a rewound feed starts reading again.
#[derive(Debug, Clone)]
pub enum Rewind {
    /// Just after this position (the feed resumes after its checkpoint bytes).
    After(bytes::Bytes),
    /// At this cluster time, inclusive.
    At(u64),
    /// The feed lost its history and starts over at the present (after a scan of what it
    /// may have missed): every partition takes everything from now on.
    Lost,
}
impl Rewind {
    /// For logs.
    pub fn describe(&self) -> &'static str {
        match self {
            Rewind::After(_) => "after a checkpoint",
            Rewind::At(_) => "at a cluster time",
            Rewind::Lost => "history lost",
        }
    }
}
pub enum Msg {
    /// An event from the feed, with the feed position just after it.
    Event {
        event: Arc<Event>,
        position: Option<Position>,
    },
    /// A feed position with no event (where a feed starts, or a quiet feed's latest).
    Mark(Position),
    /// Partitions granted by the lease coordinator; `rewind` when the feed re-reads from
    /// an earlier position from the next event on.
    Grant {
        grants: Vec<Grant>,
        rewind: Option<Rewind>,
    },
    /// Partitions lost (another daemon owns them now): stop at once, write nothing more.
    /// Answered once their endpoints are fenced: nothing of theirs starts after that.
    Revoke(Vec<u16>, RpcReplyPort<()>),
    /// Hand partitions over: drain their in-flight attempts, make their records durable,
    /// write their final checkpoints; the reply lists those the store refused (fenced).
    Release(Vec<u16>, RpcReplyPort<Result<Vec<u16>, LedgerError>>),
    /// Step 2 of a release, once the drained records are durable.
    ReleaseDrained(Vec<u16>, RpcReplyPort<Result<Vec<u16>, LedgerError>>),
    /// Deliveries of these partitions were re-queued in the ledger by someone else: their
    /// endpoints read their pending deliveries back.
    Nudge(Vec<u16>),
    /// A webhook was created or changed.
    Upsert(WebhookSpec),
    /// A webhook was deleted.
    Remove(Arc<str>),
    /// A pending delivery re-loaded from the ledger.
    Resume(PendingDelivery),
    /// The first records of deliveries holding these tickets are durable (one entry per
    /// delivery).
    Durable(Vec<u64>),
    /// The ledger answered which of these webhooks have pending deliveries.
    PendingKnown(Vec<Arc<str>>, Result<HashSet<String>, LedgerError>),
    /// A batch of look-ups answered: the ids among them the ledger already has.
    LookedUp(Vec<LookUp>, Result<HashSet<String>, LedgerError>),
    LookUpTick,
    /// A checkpoint write ended: the partitions the store refused.
    CheckpointsSaved(Vec<Due>, Result<Vec<u16>, LedgerError>),
    /// The checkpoint interval has passed: write what is due.
    CheckpointTick,
    /// A quiet mark's write ended.
    QuietMarked(QuietMark, Result<(), LedgerError>),
    /// Shutdown, step 1: endpoints start no new attempts; reply when none is in flight.
    Drain(RpcReplyPort<()>),
    /// Shutdown, step 2 (after the ledger writer synced): write every checkpoint now.
    FinalCheckpoint(RpcReplyPort<Result<(), LedgerError>>),
    Stats(RpcReplyPort<RouterStats>),
    Partitions(RpcReplyPort<Vec<PartitionReport>>),
    /// What one endpoint holds and how healthy it is; `None` if no actor runs for it
    /// (unknown, disabled or deleted webhook, or one of a partition another daemon owns).
    Endpoint(Arc<str>, RpcReplyPort<Option<EndpointReport>>),
    /// The ledger writer, for the shutdown sequence.
    LedgerWriter(RpcReplyPort<ActorRef<ledger_writer::Msg>>),
    /// Make an endpoint actor fail (tests of supervision).
    #[cfg(test)]
    CrashEndpoint(Arc<str>),
}
/// One endpoint, as the API shows it.
#[derive(Debug, Clone)]
pub struct EndpointReport {
    pub stats: endpoint::Stats,
    pub health: HealthSnapshot,
}
/// A snapshot of the router's bookkeeping.
#[derive(Debug, Clone, Default)]
pub struct RouterStats {
    /// Endpoint actors alive.
    pub endpoints: usize,
    /// Events accepted whose deliveries are not all durable yet.
    pub events_in_flight: usize,
    /// Events fully settled since start.
    pub events_settled: u64,
    /// Endpoint actor restarts since start.
    pub endpoint_restarts: u64,
    /// Per endpoint: queued, in flight, scheduled.
    pub per_endpoint: HashMap<String, endpoint::Stats>,
}
pub struct Router {
    pub config: Arc<EngineConfig>,
    pub transport: Arc<dyn Transport>,
    pub ledger: Arc<dyn Ledger>,
    /// Permits of the feed window, given back as events settle.
    pub window: Arc<crate::window::Window>,
    /// How long the daemon's leases surely hold (endpoints send nothing past it).
    pub lease: Arc<crate::partition::LeaseClock>,
}
struct EndpointEntry {
    actor: ActorRef<endpoint::Msg>,
    spec: Arc<WebhookSpec>,
    partition: u16,
    backlog: Backlog,
    restarts: RestartWindow,
}

impl EndpointEntry {
    /// Hands a delivery to the endpoint, waking its actor unless a wake is on its way. It
    /// stays with the endpoint's backlog even if the actor has just failed: the successor
    /// takes it in, or it is retired with the rest of the backlog if the endpoint is given
    /// up on.
    fn offer(&self, job: Job) {
        if self.backlog.offer(job) {
            let _ = self.actor.cast(endpoint::Msg::Fed);
        }
    }
}

pub struct State {
    ledger_writer: ActorRef<ledger_writer::Msg>,
    /// The wiring every endpoint actor is spawned with.
    endpoint: Endpoint,
    index: SubscriptionIndex,
    /// Every enabled webhook, whichever daemon owns its partition.
    specs: HashMap<Arc<str>, Arc<WebhookSpec>>,
    endpoints: HashMap<Arc<str>, EndpointEntry>,
    by_actor: HashMap<ActorId, Arc<str>>,
    /// Endpoints of disabled webhooks recording what they hold before they stop, with their
    /// work: what they could not record is retired when they end.
    retiring: HashMap<ActorId, Backlog>,
    parts: BTreeMap<u16, Part>,
    next_seq: u64,
    /// Per event not yet settled (its window permits are still taken): its open tickets
    /// and its weight in bytes ([`Window::weight`]). Keyed, like `tickets`, by the router's
    /// own counter, touched for every event: a fast unkeyed hasher does.
    events: HashMap<u64, (u32, u32), foldhash::fast::RandomState>,
    /// Ticket → (event, partition).
    tickets: HashMap<u64, (u64, u16), foldhash::fast::RandomState>,
    /// Feed positions by sequence number, from the oldest any partition may still need.
    positions: BTreeMap<u64, Seen>,
    /// The newest position read, with its sequence number.
    last: Option<(u64, Position)>,
    look_ups: Vec<LookUp>,
    look_up_timer_armed: bool,
    /// Endpoints started without knowing whether the ledger holds pending deliveries of
    /// theirs, not asked about yet ([`pending`]).
    unasked: Vec<Arc<str>>,
    /// A question about pending deliveries is out.
    asking_pending: bool,
    checkpoint_writing: bool,
    /// On tokio's clock, like the timer that spaces the writes.
    last_checkpoint_check: Option<Instant>,
    checkpoint_tick_at: Option<Instant>,
    /// A quiet mark is being written.
    mark_writing: bool,
    /// When a quiet mark was last looked for (found, stored or not), and the last one
    /// stored.
    mark_taken_at: Option<Instant>,
    mark_stored: Option<QuietMark>,
    /// Waiting for the in-flight checkpoint write before writing final ones.
    deferred_finals: Vec<Final>,
    draining: bool,
    events_settled: u64,
    endpoint_restarts: u64,
    /// `events.len()` as last added to the process-wide gauge (engines in one process,
    /// the tests', share it: each adds its own change).
    reported_in_flight: usize,
    metrics: EngineMetrics,
}
/// A final checkpoint write waiting for the periodic one in flight (never before it).
enum Final {
    Release(Vec<u16>, RpcReplyPort<Result<Vec<u16>, LedgerError>>),
    Shutdown(RpcReplyPort<Result<(), LedgerError>>),
}
impl Actor for Router {
    type Msg = Msg;
    type State = State;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        let metrics = EngineMetrics::new();
        let unwritten = Arc::new(AtomicUsize::new(0));
        let (ledger_writer, _) = Actor::spawn_linked(
            None,
            LedgerWriter {
                config: self.config.clone(),
                ledger: self.ledger.clone(),
                metrics: metrics.clone(),
                unwritten: unwritten.clone(),
            },
            ledger_writer::Args {
                on_durable: {
                    let router = myself.clone();
                    Box::new(move |tickets| {
                        let _ = router.cast(Msg::Durable(tickets));
                    })
                },
            },
            myself.get_cell(),
        )
        .await?;
        Ok(State {
            endpoint: Endpoint {
                config: self.config.clone(),
                transport: self.transport.clone(),
                ledger: ledger_writer.clone(),
                store: self.ledger.clone(),
                metrics: metrics.clone(),
                held_total: Arc::new(AtomicUsize::new(0)),
                idle: Arc::new(AtomicUsize::new(0)),
                unwritten,
                window: self.window.clone(),
                lease: self.lease.clone(),
            },
            ledger_writer,
            index: SubscriptionIndex::default(),
            specs: HashMap::new(),
            endpoints: HashMap::new(),
            by_actor: HashMap::new(),
            retiring: HashMap::new(),
            parts: BTreeMap::new(),
            next_seq: 0,
            events: HashMap::default(),
            tickets: HashMap::default(),
            positions: BTreeMap::new(),
            last: None,
            look_ups: Vec::new(),
            look_up_timer_armed: false,
            unasked: Vec::new(),
            asking_pending: false,
            checkpoint_writing: false,
            last_checkpoint_check: None,
            checkpoint_tick_at: None,
            mark_writing: false,
            mark_taken_at: None,
            mark_stored: None,
            deferred_finals: Vec::new(),
            draining: false,
            events_settled: 0,
            endpoint_restarts: 0,
            reported_in_flight: 0,
            metrics,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // The endpoint actors stop with the router.
        state
            .metrics
            .endpoint_actors
            .decrement(state.endpoints.len() as f64);
        state
            .metrics
            .events_in_flight
            .decrement(state.reported_in_flight as f64);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Event { event, position } => self.route(&myself, state, Some(event), position),
            Msg::Mark(position) => self.route(&myself, state, None, Some(position)),
            Msg::Grant { grants, rewind } => self.grant(&myself, state, grants, rewind).await?,
            Msg::Revoke(partitions, reply) => {
                for partition in partitions {
                    self.drop_partition(state, partition, "revoked");
                }
                let _ = reply.send(());
            }
            Msg::Release(partitions, reply) => self.release(&myself, state, partitions, reply),
            Msg::ReleaseDrained(partitions, reply) => {
                if state.checkpoint_writing {
                    state
                        .deferred_finals
                        .push(Final::Release(partitions, reply));
                } else {
                    let result = self.finish_release(state, &partitions).await;
                    let _ = reply.send(result);
                }
            }
            Msg::Nudge(partitions) => {
                let partitions: HashSet<u16> = partitions.into_iter().collect();
                for entry in state.endpoints.values() {
                    if partitions.contains(&entry.partition) {
                        let _ = entry.actor.cast(endpoint::Msg::Spilled);
                    }
                }
            }
            Msg::Upsert(spec) => self.upsert(&myself, state, spec).await?,
            Msg::Remove(id) => {
                state.specs.remove(&id);
                self.remove(state, &id, "deleted");
            }
            Msg::Resume(pending) => resume(state, pending),
            Msg::Durable(tickets) => settle(&self.window, state, tickets),
            Msg::LookUpTick => {
                state.look_up_timer_armed = false;
                self.flush_look_ups(&myself, state);
            }
            Msg::LookedUp(batch, found) => looked_up(&self.window, state, batch, found),
            Msg::PendingKnown(webhook_ids, found) => {
                pending_known(state, webhook_ids, found);
                self.ask_pending(&myself, state);
            }
            Msg::CheckpointTick => state.checkpoint_tick_at = None,
            Msg::QuietMarked(mark, result) => {
                state.mark_writing = false;
                match result {
                    Ok(()) => state.mark_stored = Some(mark),
                    // Taken again at the next interval.
                    Err(error) => debug!(%error, "quiet mark not stored; trying again"),
                }
            }
            Msg::CheckpointsSaved(written, result) => {
                state.checkpoint_writing = false;
                self.checkpoints_saved(state, written, result);
                for deferred in std::mem::take(&mut state.deferred_finals) {
                    match deferred {
                        Final::Release(partitions, reply) => {
                            let _ = reply.send(self.finish_release(state, &partitions).await);
                        }
                        Final::Shutdown(reply) => {
                            let _ = reply.send(self.final_checkpoints(state).await);
                        }
                    }
                }
            }
            Msg::Drain(reply) => {
                state.draining = true;
                let endpoints: Vec<_> = state.endpoints.values().map(|e| e.actor.clone()).collect();
                tokio::spawn(async move {
                    drain(endpoints).await;
                    let _ = reply.send(());
                });
            }
            Msg::FinalCheckpoint(reply) => {
                if state.checkpoint_writing {
                    // An older checkpoint is being written: write ours after it, never before.
                    state.deferred_finals.push(Final::Shutdown(reply));
                } else {
                    let _ = reply.send(self.final_checkpoints(state).await);
                }
            }
            #[cfg(test)]
            Msg::CrashEndpoint(id) => {
                if let Some(entry) = state.endpoints.get(&id) {
                    let _ = entry.actor.cast(endpoint::Msg::Crash);
                }
            }
            Msg::LedgerWriter(reply) => {
                let _ = reply.send(state.ledger_writer.clone());
            }
            Msg::Endpoint(id, reply) => {
                let report = state.endpoints.get(&id).map(|entry| EndpointReport {
                    stats: entry.backlog.stats(),
                    health: entry.backlog.health(std::time::SystemTime::now()),
                });
                let _ = reply.send(report);
            }
            Msg::Partitions(reply) => {
                let mut counts: HashMap<u16, usize> = HashMap::new();
                for entry in state.endpoints.values() {
                    *counts.entry(entry.partition).or_default() += 1;
                }
                let reports = state
                    .parts
                    .iter()
                    .map(|(&partition, part)| PartitionReport {
                        partition,
                        epoch: part.epoch,
                        endpoints: counts.get(&partition).copied().unwrap_or(0),
                        unsettled_events: part.unsettled.len(),
                        checkpoint_read_at: part.written_read_at,
                        catching_up: part.gate.is_some(),
                    })
                    .collect();
                let _ = reply.send(reports);
            }
            Msg::Stats(reply) => {
                let mut per_endpoint = HashMap::new();
                for (id, entry) in &state.endpoints {
                    per_endpoint.insert(id.to_string(), entry.backlog.stats());
                }
                let _ = reply.send(RouterStats {
                    endpoints: state.endpoints.len(),
                    events_in_flight: state.events.len(),
                    events_settled: state.events_settled,
                    endpoint_restarts: state.endpoint_restarts,
                    per_endpoint,
                });
            }
        }
        if state.deferred_finals.is_empty() {
            self.write_checkpoints(&myself, state);
            self.write_quiet_mark(&myself, state);
        }
        report_in_flight(state);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let ended = match &event {
            SupervisionEvent::ActorFailed(cell, _)
            | SupervisionEvent::ActorTerminated(cell, ..) => state.retiring.remove(&cell.get_id()),
            _ => None,
        };
        if let Some(backlog) = ended {
            // A retired endpoint ended: its records carry the tickets they settle; what it
            // had not recorded (it failed first) is retired here.
            settle(&self.window, state, backlog.unrecorded_seqs());
            return Ok(());
        }
        match event {
            SupervisionEvent::ActorFailed(cell, reason) => {
                if cell.get_id() == state.ledger_writer.get_id() {
                    // Its buffer is gone: nothing below the checkpoints can be trusted any
                    // more. Stop; the daemon exits and resumes from the last checkpoints.
                    return Err(format!("ledger writer failed: {reason}").into());
                }
                let Some(id) = state.by_actor.remove(&cell.get_id()) else {
                    return Ok(());
                };
                error!(webhook_id = %id, %reason, "endpoint actor failed");
                self.restart(&myself, state, id).await?;
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if cell.get_id() == state.ledger_writer.get_id() && !state.draining {
                    return Err(format!("ledger writer stopped: {reason:?}").into());
                }
                state.by_actor.remove(&cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}
/// Moves the events-in-flight gauge by what changed since it was last moved.
fn report_in_flight(state: &mut State) {
    let now = state.events.len();
    if now != state.reported_in_flight {
        let gauge = &state.metrics.events_in_flight;
        gauge.increment(now as f64 - state.reported_in_flight as f64);
        state.reported_in_flight = now;
    }
}

fn resume(state: &mut State, pending: PendingDelivery) {
    let Some(entry) = state.endpoints.get(pending.webhook_id.as_str()) else {
        // Disabled, deleted, or owned by another daemon: the delivery stays pending in the
        // ledger (the owner is nudged by whoever re-queued it).
        return;
    };
    entry.offer(Job::from_pending(pending));
}
/// Asks each endpoint to drain, one after the other (each answers once its in-flight
/// attempts have ended and their records are handed to the ledger writer).
async fn drain(endpoints: Vec<ActorRef<endpoint::Msg>>) {
    for endpoint in endpoints {
        let _ = endpoint
            .call(endpoint::Msg::Drain, Some(Duration::from_secs(30)))
            .await;
    }
}

impl Router {
    async fn upsert(
        &self,
        myself: &ActorRef<Msg>,
        state: &mut State,
        spec: WebhookSpec,
    ) -> Result<(), ActorProcessingErr> {
        let spec = Arc::new(spec);
        state.index.insert(&spec);
        if !spec.enabled {
            state.specs.remove(&spec.id);
            self.disable(state, &spec.id);
            // Keep it out of the index (remove() also drops it there).
            return Ok(());
        }
        state.specs.insert(spec.id.clone(), spec.clone());
        if let Some(entry) = state.endpoints.get_mut(&spec.id) {
            entry.spec = spec.clone();
            let _ = entry.actor.cast(endpoint::Msg::Update(spec));
            return Ok(());
        }
        if !state.parts.contains_key(&partition_of(&spec.id)) {
            // Another daemon's, or none yet: started when its partition is granted here.
            return Ok(());
        }
        // New, or enabled again: it may have deliveries left pending while it was off.
        self.start_endpoint(myself, state, spec, true).await
    }

    async fn start_endpoint(
        &self,
        myself: &ActorRef<Msg>,
        state: &mut State,
        spec: Arc<WebhookSpec>,
        read_pending: bool,
    ) -> Result<(), ActorProcessingErr> {
        if state.endpoints.contains_key(&spec.id) {
            return Ok(());
        }
        let backlog = Backlog::default();
        let actor = spawn_endpoint(myself, state, spec.clone(), backlog.clone()).await?;
        if read_pending {
            state.unasked.push(spec.id.clone());
            self.ask_pending(myself, state);
        }
        info!(webhook_id = %spec.id, url = %crate::webhook::loggable_url(&spec.url), paused = spec.paused, "endpoint started");
        state.metrics.endpoint_actors.increment(1.0);
        state.endpoints.insert(
            spec.id.clone(),
            EndpointEntry {
                actor,
                partition: partition_of(&spec.id),
                spec,
                backlog,
                restarts: RestartWindow::default(),
            },
        );
        Ok(())
    }

    /// Stops an endpoint. Its unrecorded deliveries will never be recorded: retire them so
    /// the checkpoint moves on (the webhook no longer wants them).
    fn remove(&self, state: &mut State, id: &str, why: &str) {
        if let Some(entry) = detach(state, id) {
            self.stop_dropping(state, id, entry, why);
        }
    }

    /// Stops the endpoint of a disabled webhook without losing what it holds: the actor
    /// records every delivery the ledger has not seen as `pending` (inspectable, and
    /// delivered if the webhook is enabled again) and stops; those records settle their
    /// events once durable, like any other.
    fn disable(&self, state: &mut State, id: &str) {
        let Some(entry) = detach(state, id) else {
            return;
        };
        if entry.actor.cast(endpoint::Msg::Retire).is_err() {
            // Already gone: nothing left to record what it held.
            self.stop_dropping(state, id, entry, "disabled");
            return;
        }
        let held = entry.backlog.len();
        info!(webhook_id = %id, held, "endpoint stopped (disabled); what it held is recorded as pending");
        state.retiring.insert(entry.actor.get_id(), entry.backlog);
    }

    /// Stops a detached endpoint's actor and retires what it had not recorded.
    fn stop_dropping(&self, state: &mut State, id: &str, entry: EndpointEntry, why: &str) {
        entry.actor.stop(Some(why.to_owned()));
        let tickets = entry.backlog.unrecorded_seqs();
        info!(webhook_id = %id, dropped = tickets.len(), "endpoint stopped ({why})");
        settle(&self.window, state, tickets);
    }

    /// Restarts a failed endpoint with the same backlog, unless it fails too often.
    async fn restart(
        &self,
        myself: &ActorRef<Msg>,
        state: &mut State,
        id: Arc<str>,
    ) -> Result<(), ActorProcessingErr> {
        let Some(entry) = state.endpoints.get_mut(&id) else {
            return Ok(());
        };
        if !entry.restarts.allow(self.config.max_restarts_per_minute) {
            error!(webhook_id = %id, "endpoint actor keeps failing; giving up on it until the webhook changes");
            self.remove(state, &id, "failing");
            return Ok(());
        }
        let (spec, backlog) = (entry.spec.clone(), entry.backlog.clone());
        let actor = spawn_endpoint(myself, state, spec, backlog).await?;
        state.endpoint_restarts += 1;
        state.metrics.endpoint_restarts.increment(1);
        if let Some(entry) = state.endpoints.get_mut(&id) {
            entry.actor = actor;
        }
        Ok(())
    }
}

/// Takes an endpoint out of the routing: no event reaches it any more, and its actor's end
/// is no longer the router's to supervise.
fn detach(state: &mut State, id: &str) -> Option<EndpointEntry> {
    state.index.remove(id, None);
    let entry = state.endpoints.remove(id)?;
    // Still routed by the index if it is only moving to another daemon.
    if let Some(spec) = state.specs.get(id) {
        state.index.insert(spec);
    }
    state.by_actor.remove(&entry.actor.get_id());
    state.metrics.endpoint_actors.decrement(1.0);
    Some(entry)
}
async fn spawn_endpoint(
    myself: &ActorRef<Msg>,
    state: &mut State,
    spec: Arc<WebhookSpec>,
    backlog: Backlog,
) -> Result<ActorRef<endpoint::Msg>, ActorProcessingErr> {
    let supervisor: ActorCell = myself.get_cell();
    let (actor, _) = Actor::spawn_linked(
        None,
        state.endpoint.clone(),
        endpoint::Args {
            spec: spec.clone(),
            backlog,
        },
        supervisor,
    )
    .await?;
    state.by_actor.insert(actor.get_id(), spec.id.clone());
    Ok(actor)
}
