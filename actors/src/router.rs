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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::config::EngineConfig;
use crate::delivery::PendingDelivery;
use crate::endpoint::{self, Backlog, Endpoint, Job};
use crate::event::Event;
use crate::health::HealthSnapshot;
use crate::ledger_writer::{self, LedgerWriter};
use crate::metrics::EngineMetrics;
use crate::partition::{partition_of, Grant, PartitionCheckpoint, PartitionReport, Position};
use crate::ports::{Ledger, LedgerError, Transport};
use crate::restart::RestartWindow;
use crate::webhook::{SubscriptionIndex, WebhookSpec};

/// Deliveries waiting for a ledger look-up are sent to the store in batches of this many.
const LOOK_UP_BATCH: usize = 500;
/// How long a look-up waits for companions before its batch goes.
const LOOK_UP_LINGER: Duration = Duration::from_millis(2);
/// How long the store may take to answer a look-up before the deliveries go out anyway
/// (a duplicate is better than a delay without end).
const LOOK_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// Positions are pruned once more than this many are kept.
const PRUNE_ABOVE: usize = 1_024;

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
    Revoke(Vec<u16>),
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
    /// A batch of look-ups answered: the ids among them the ledger already has.
    LookedUp(Vec<LookUp>, Result<HashSet<String>, LedgerError>),
    LookUpTick,
    /// A checkpoint write ended: the partitions the store refused.
    CheckpointsSaved(Vec<Due>, Result<Vec<u16>, LedgerError>),
    /// The checkpoint interval has passed: write what is due.
    CheckpointTick,
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
    pub window: Arc<Semaphore>,
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

/// A delivery waiting for the ledger to say whether the previous owner already made it.
pub struct LookUp {
    webhook_id: Arc<str>,
    job: Job,
}

/// A checkpoint to write, and when its position was read from the feed.
pub struct Due {
    checkpoint: PartitionCheckpoint,
    read_at: std::time::Instant,
}

/// One owned partition.
struct Part {
    epoch: u64,
    /// Not yet passed in the feed: events up to it are not this partition's to route.
    gate: Option<Position>,
    /// Positions before this sequence number are not this partition's checkpoints.
    min_seq: u64,
    /// Events with deliveries here not yet durable: sequence number → open deliveries.
    unsettled: BTreeMap<u64, u32>,
    /// Look deliveries of events up to this cluster time up in the ledger first.
    look_up_until: u64,
    /// The checkpoint last stored, and when its position was read.
    written: Option<bytes::Bytes>,
    written_read_at: Option<std::time::Instant>,
    /// Being handed over: no new deliveries, no more periodic checkpoints.
    releasing: bool,
    /// Set when the hand-over began: events from this sequence number on were not routed
    /// here, so the final checkpoint stays before them.
    until_seq: Option<u64>,
}

impl Part {
    fn new(grant: &Grant, next_seq: u64, last: Option<(u64, &Position)>) -> Self {
        let (gate, min_seq) = match (&grant.from, last) {
            (Some(from), _) => (Some(from.clone()), next_seq),
            // No checkpoint yet: the partition starts where the feed is now.
            (None, Some((seq, _))) => (None, seq),
            (None, None) => (None, next_seq),
        };
        Self {
            epoch: grant.epoch,
            gate,
            min_seq,
            unsettled: BTreeMap::new(),
            look_up_until: grant.look_up_until,
            written: grant.from.as_ref().map(|p| p.checkpoint.clone()),
            written_read_at: None,
            releasing: false,
            until_seq: None,
        }
    }
}

/// A feed position and when it was read.
struct Seen {
    position: Position,
    read_at: std::time::Instant,
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
    /// Open tickets per event not yet settled (its window permit is still taken).
    events: HashMap<u64, u32>,
    /// Ticket → (event, partition).
    tickets: HashMap<u64, (u64, u16)>,
    /// Feed positions by sequence number, from the oldest any partition may still need.
    positions: BTreeMap<u64, Seen>,
    /// The newest position read, with its sequence number.
    last: Option<(u64, Position)>,
    look_ups: Vec<LookUp>,
    look_up_timer_armed: bool,
    checkpoint_writing: bool,
    /// On tokio's clock, like the timer that spaces the writes.
    last_checkpoint_check: Option<Instant>,
    checkpoint_timer_armed: bool,
    /// Waiting for the in-flight checkpoint write before writing final ones.
    deferred_finals: Vec<Final>,
    draining: bool,
    events_settled: u64,
    endpoint_restarts: u64,
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
                unwritten,
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
            events: HashMap::new(),
            tickets: HashMap::new(),
            positions: BTreeMap::new(),
            last: None,
            look_ups: Vec::new(),
            look_up_timer_armed: false,
            checkpoint_writing: false,
            last_checkpoint_check: None,
            checkpoint_timer_armed: false,
            deferred_finals: Vec::new(),
            draining: false,
            events_settled: 0,
            endpoint_restarts: 0,
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
            Msg::Revoke(partitions) => {
                for partition in partitions {
                    self.drop_partition(state, partition, "revoked");
                }
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
            Msg::CheckpointTick => state.checkpoint_timer_armed = false,
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
        }
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

fn resume(state: &mut State, pending: PendingDelivery) {
    let Some(entry) = state.endpoints.get(pending.webhook_id.as_str()) else {
        // Disabled, deleted, or owned by another daemon: the delivery stays pending in the
        // ledger (the owner is nudged by whoever re-queued it).
        return;
    };
    let _ = entry
        .actor
        .cast(endpoint::Msg::Deliver(Job::from_pending(pending)));
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

/// Settles one delivery per ticket: its partition's count of the event drops, and the
/// event's window permit is given back once none of its tickets is open. Tickets of
/// partitions no longer owned are gone already and ignored.
fn settle(window: &Semaphore, state: &mut State, tickets: Vec<u64>) {
    let mut released = 0;
    for ticket in tickets {
        let Some(&(seq, partition)) = state.tickets.get(&ticket) else {
            continue;
        };
        if let Some(part) = state.parts.get_mut(&partition) {
            if let Some(open) = part.unsettled.get_mut(&seq) {
                *open = open.saturating_sub(1);
                if *open == 0 {
                    part.unsettled.remove(&seq);
                    state.tickets.remove(&ticket);
                    released += close_ticket(state, seq);
                }
            }
        }
    }
    if released > 0 {
        state.events_settled += released as u64;
        window.add_permits(released);
    }
}

/// One of the event's tickets is closed; 1 when that was its last (its permit is free).
fn close_ticket(state: &mut State, seq: u64) -> usize {
    let Some(open) = state.events.get_mut(&seq) else {
        return 0;
    };
    *open -= 1;
    if *open == 0 {
        state.events.remove(&seq);
        1
    } else {
        0
    }
}

fn looked_up(
    window: &Semaphore,
    state: &mut State,
    batch: Vec<LookUp>,
    found: Result<HashSet<String>, LedgerError>,
) {
    let recorded = match found {
        Ok(recorded) => recorded,
        Err(error) => {
            warn!(%error, deliveries = batch.len(), "cannot look up deliveries of a taken-over partition; sending them (some may be duplicates)");
            HashSet::new()
        }
    };
    let mut done = Vec::new();
    let mut skipped = 0;
    for LookUp { webhook_id, job } in batch {
        let ticket = job.seq;
        if recorded.contains(&job.delivery_id(&webhook_id)) {
            skipped += 1;
            done.extend(ticket);
            continue;
        }
        match state.endpoints.get(&webhook_id) {
            Some(entry) if entry.actor.cast(endpoint::Msg::Deliver(job)).is_ok() => {}
            _ => done.extend(ticket),
        }
    }
    if skipped > 0 {
        debug!(skipped, "deliveries already recorded by the previous owner");
    }
    settle(window, state, done);
}

impl Router {
    /// Routes one event (or only notes a position, for a mark) to the owned partitions whose
    /// gate it has passed.
    fn route(
        &self,
        myself: &ActorRef<Msg>,
        state: &mut State,
        event: Option<Arc<Event>>,
        position: Option<Position>,
    ) {
        if state.draining {
            // Shutting down: the event lies past the final checkpoints, so the feed hands
            // it over again after the restart.
            return;
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        // Partitions for which this very change is their gate: already theirs, not routed.
        let mut at_gate: Vec<u16> = Vec::new();
        if let Some(position) = &position {
            for (&partition, part) in state.parts.iter_mut() {
                let Some(gate) = &part.gate else { continue };
                if gate.passed_by(position) {
                    if gate.checkpoint == position.checkpoint {
                        at_gate.push(partition);
                    }
                    part.gate = None;
                    part.min_seq = seq;
                }
            }
        }
        let mut open = 0u32;
        if let Some(event) = event {
            state.metrics.events_routed.increment(1);
            let time = position.as_ref().map_or(0, |p| p.time);
            // Tickets of this event, one per partition it has deliveries in.
            let mut tickets: Vec<(u16, u64, u32)> = Vec::new();
            let State {
                index,
                endpoints,
                parts,
                look_ups,
                next_seq,
                ..
            } = state;
            index.for_each_match(&event.event_type, |id| {
                let Some(entry) = endpoints.get(id) else {
                    return;
                };
                let Some(part) = parts.get(&entry.partition) else {
                    return;
                };
                if part.gate.is_some() || part.releasing || at_gate.contains(&entry.partition) {
                    return;
                }
                let ticket = match tickets.iter_mut().find(|t| t.0 == entry.partition) {
                    Some(t) => {
                        t.2 += 1;
                        t.1
                    }
                    None => {
                        let ticket = *next_seq;
                        *next_seq += 1;
                        tickets.push((entry.partition, ticket, 1));
                        ticket
                    }
                };
                let job = Job::new(event.clone(), Some(ticket));
                if part.look_up_until > 0 && (time == 0 || time <= part.look_up_until) {
                    look_ups.push(LookUp {
                        webhook_id: entry.spec.id.clone(),
                        job,
                    });
                } else if entry.actor.cast(endpoint::Msg::Deliver(job)).is_err() {
                    // Gone: a restart or a retirement settles it; count it as never sent.
                    if let Some(t) = tickets.iter_mut().find(|t| t.0 == entry.partition) {
                        t.2 -= 1;
                    }
                }
            });
            for (partition, ticket, count) in tickets {
                if count == 0 {
                    continue;
                }
                open += 1;
                state.tickets.insert(ticket, (seq, partition));
                if let Some(part) = state.parts.get_mut(&partition) {
                    part.unsettled.insert(seq, count);
                }
            }
        }
        if open > 0 {
            state.events.insert(seq, open);
        } else {
            state.events_settled += 1;
            self.window.add_permits(1);
        }
        if let Some(position) = position {
            state.positions.insert(
                seq,
                Seen {
                    position: position.clone(),
                    read_at: std::time::Instant::now(),
                },
            );
            state.last = Some((seq, position));
        }
        if !state.look_ups.is_empty() {
            if state.look_ups.len() >= LOOK_UP_BATCH {
                self.flush_look_ups(myself, state);
            } else if !state.look_up_timer_armed {
                state.look_up_timer_armed = true;
                myself.send_after(LOOK_UP_LINGER, || Msg::LookUpTick);
            }
        }
    }

    /// Sends the waiting look-ups to the ledger as one batch.
    fn flush_look_ups(&self, myself: &ActorRef<Msg>, state: &mut State) {
        if state.look_ups.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut state.look_ups);
        let ids: Vec<String> = batch
            .iter()
            .map(|l| l.job.delivery_id(&l.webhook_id))
            .collect();
        let look_up = self.ledger.recorded(ids);
        let myself = myself.clone();
        tokio::spawn(async move {
            let found = match tokio::time::timeout(LOOK_UP_TIMEOUT, look_up).await {
                Ok(found) => found,
                Err(_) => Err(LedgerError::TimedOut(LOOK_UP_TIMEOUT)),
            };
            let _ = myself.cast(Msg::LookedUp(batch, found));
        });
    }

    async fn grant(
        &self,
        myself: &ActorRef<Msg>,
        state: &mut State,
        grants: Vec<Grant>,
        rewind: Option<Rewind>,
    ) -> Result<(), ActorProcessingErr> {
        let rewound_after = match &rewind {
            Some(Rewind::After(bytes)) => Some(bytes.clone()),
            _ => None,
        };
        if matches!(rewind, Some(Rewind::Lost)) {
            for part in state.parts.values_mut() {
                part.gate = None;
                part.min_seq = state.next_seq;
            }
        } else if rewind.is_some() {
            // The feed re-reads from earlier: what the partitions already owned have routed
            // must not reach them twice. They wait until the feed passes where it was.
            if let Some((_, last)) = &state.last {
                for part in state.parts.values_mut() {
                    if part.gate.is_none() && rewound_after.as_ref() != Some(&last.checkpoint) {
                        part.gate = Some(last.clone());
                    }
                }
            }
        }
        if !grants.is_empty() {
            info!(
                partitions = grants.len(),
                from_checkpoints = grants.iter().filter(|g| g.from.is_some()).count(),
                looking_up = grants.iter().filter(|g| g.look_up_until > 0).count(),
                rewind = rewind.as_ref().map(Rewind::describe),
                "partitions granted"
            );
        }
        for grant in grants {
            if let Some(part) = state.parts.get_mut(&grant.partition) {
                // Renewed under a new epoch (the store refused the old one): keep going.
                part.epoch = grant.epoch;
                continue;
            }
            let last = state.last.as_ref().map(|(seq, p)| (*seq, p));
            let mut part = Part::new(&grant, state.next_seq, last);
            let gate = part.gate.as_ref().map(|g| &g.checkpoint);
            if rewound_after.is_some() && gate == rewound_after.as_ref() {
                // The feed starts just after this very position.
                part.gate = None;
            } else if rewind.is_none() && gate.is_some() && gate == last.map(|(_, p)| &p.checkpoint)
            {
                // The feed stands exactly there: everything from now on is the partition's.
                part.gate = None;
                part.min_seq = last.map_or(state.next_seq, |(seq, _)| seq);
            }
            debug!(
                partition = grant.partition,
                epoch = grant.epoch,
                from_checkpoint = grant.from.is_some(),
                looks_up = grant.look_up_until > 0,
                "partition granted"
            );
            state.parts.insert(grant.partition, part);
            let specs: Vec<Arc<WebhookSpec>> = state
                .specs
                .values()
                .filter(|spec| partition_of(&spec.id) == grant.partition)
                .cloned()
                .collect();
            for spec in specs {
                // The previous owner may have left pending deliveries: read them back.
                self.start_endpoint(myself, state, spec, true).await?;
            }
        }
        Ok(())
    }

    /// Stops a partition's endpoints and forgets its bookkeeping: its unsettled deliveries
    /// are another daemon's now (or the final checkpoint already lies before them).
    fn drop_partition(&self, state: &mut State, partition: u16, why: &str) {
        let Some(part) = state.parts.remove(&partition) else {
            return;
        };
        let ids: Vec<Arc<str>> = state
            .endpoints
            .iter()
            .filter(|(_, e)| e.partition == partition)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            if let Some(entry) = detach(state, id) {
                entry.actor.stop(Some(why.to_owned()));
            }
        }
        state.tickets.retain(|_, (_, p)| *p != partition);
        state
            .look_ups
            .retain(|l| partition_of(&l.webhook_id) != partition);
        let mut released = 0;
        for seq in part.unsettled.keys() {
            released += close_ticket(state, *seq);
        }
        if released > 0 {
            self.window.add_permits(released);
        }
        info!(
            partition,
            endpoints = ids.len(),
            "partition dropped ({why})"
        );
    }

    /// Starts handing partitions over: no new deliveries for them; drains their endpoints'
    /// in-flight attempts and syncs the ledger writer, then finishes in `ReleaseDrained`.
    fn release(
        &self,
        myself: &ActorRef<Msg>,
        state: &mut State,
        partitions: Vec<u16>,
        reply: RpcReplyPort<Result<Vec<u16>, LedgerError>>,
    ) {
        let partitions: Vec<u16> = partitions
            .into_iter()
            .filter(|p| state.parts.contains_key(p))
            .collect();
        for partition in &partitions {
            if let Some(part) = state.parts.get_mut(partition) {
                part.releasing = true;
                part.until_seq = Some(state.next_seq);
            }
        }
        let endpoints: Vec<_> = state
            .endpoints
            .values()
            .filter(|e| partitions.contains(&e.partition))
            .map(|e| e.actor.clone())
            .collect();
        let writer = state.ledger_writer.clone();
        let myself = myself.clone();
        tokio::spawn(async move {
            drain(endpoints).await;
            let _ = writer
                .call(ledger_writer::Msg::Sync, Some(Duration::from_secs(30)))
                .await;
            let _ = myself.cast(Msg::ReleaseDrained(partitions, reply));
        });
    }

    /// Writes the released partitions' final checkpoints and drops them.
    async fn finish_release(
        &self,
        state: &mut State,
        partitions: &[u16],
    ) -> Result<Vec<u16>, LedgerError> {
        let finals: Vec<PartitionCheckpoint> = partitions
            .iter()
            .filter_map(|&p| due_checkpoint(state, p, true))
            .map(|due| due.checkpoint)
            .collect();
        let result = if finals.is_empty() {
            Ok(Vec::new())
        } else {
            self.ledger.checkpoint(finals).await
        };
        for &partition in partitions {
            self.drop_partition(state, partition, "released");
        }
        result
    }

    /// Writes every partition's checkpoint in place (only at shutdown, when nothing else
    /// runs).
    async fn final_checkpoints(&self, state: &mut State) -> Result<(), LedgerError> {
        let finals: Vec<PartitionCheckpoint> = state
            .parts
            .keys()
            .copied()
            .collect::<Vec<_>>()
            .into_iter()
            .filter_map(|p| due_checkpoint(state, p, true))
            .map(|due| due.checkpoint)
            .collect();
        if finals.is_empty() {
            return Ok(());
        }
        let fenced = self.ledger.checkpoint(finals).await?;
        if !fenced.is_empty() {
            warn!(
                ?fenced,
                "final checkpoints refused: those partitions have a new owner"
            );
        }
        Ok(())
    }

    /// Writes the checkpoints that moved, at most one write in flight and one per
    /// `checkpoint_interval`: under load the store sees a few writes a second (each one
    /// command for every partition that moved), not one per settled batch.
    fn write_checkpoints(&self, myself: &ActorRef<Msg>, state: &mut State) {
        if state.checkpoint_writing || state.parts.is_empty() {
            return;
        }
        let since_last = state.last_checkpoint_check.map(|t| t.elapsed());
        // Exactly one interval after the last write (a timer that fired on time) is time.
        let wait = since_last
            .and_then(|e| self.config.checkpoint_interval.checked_sub(e))
            .filter(|wait| !wait.is_zero());
        if let Some(wait) = wait {
            if !state.checkpoint_timer_armed {
                state.checkpoint_timer_armed = true;
                myself.send_after(wait, || Msg::CheckpointTick);
            }
            return;
        }
        let due: Vec<Due> = state
            .parts
            .keys()
            .copied()
            .collect::<Vec<_>>()
            .into_iter()
            .filter_map(|p| due_checkpoint(state, p, false))
            .collect();
        state.last_checkpoint_check = Some(Instant::now());
        refresh_current(state);
        prune_positions(state);
        if due.is_empty() {
            return;
        }
        state.checkpoint_writing = true;
        let write = self
            .ledger
            .checkpoint(due.iter().map(|d| d.checkpoint.clone()).collect());
        let myself = myself.clone();
        tokio::spawn(async move {
            let result = write.await;
            let _ = myself.cast(Msg::CheckpointsSaved(due, result));
        });
    }

    fn checkpoints_saved(
        &self,
        state: &mut State,
        written: Vec<Due>,
        result: Result<Vec<u16>, LedgerError>,
    ) {
        match result {
            Ok(fenced) => {
                for Due {
                    checkpoint,
                    read_at,
                } in written
                {
                    if fenced.contains(&checkpoint.partition) {
                        continue;
                    }
                    if let Some(part) = state.parts.get_mut(&checkpoint.partition) {
                        if part.epoch == checkpoint.epoch {
                            part.written = Some(checkpoint.position.checkpoint);
                            part.written_read_at = Some(read_at);
                        }
                    }
                }
                for partition in fenced {
                    warn!(
                        partition,
                        "checkpoint refused: the partition has a new owner; dropping it"
                    );
                    self.drop_partition(state, partition, "fenced");
                }
                debug!(events_settled = state.events_settled, "checkpoints written");
            }
            // Written again at the next interval (nothing was marked written).
            Err(error) => warn!(%error, "checkpoint write failed; retrying"),
        }
    }

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
            let _ = actor.cast(endpoint::Msg::Spilled);
        }
        info!(webhook_id = %spec.id, url = %spec.url, paused = spec.paused, "endpoint started");
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

/// The checkpoint partition `partition` may store now, if it moved: the newest position
/// below its oldest unsettled event (and not before the partition became this engine's).
/// `final_write`: also for a partition being released.
fn due_checkpoint(state: &State, partition: u16, final_write: bool) -> Option<Due> {
    let part = state.parts.get(&partition)?;
    if part.gate.is_some() || (part.releasing && !final_write) {
        return None;
    }
    let bound = part
        .unsettled
        .keys()
        .next()
        .copied()
        .unwrap_or(u64::MAX)
        .min(part.until_seq.unwrap_or(u64::MAX));
    if bound <= part.min_seq {
        return None;
    }
    let (_, seen) = state.positions.range(part.min_seq..bound).next_back()?;
    if part.written.as_ref() == Some(&seen.position.checkpoint) {
        // Stored already; read again from the feed (a quiet feed's mark), it is current.
        return None;
    }
    Some(Due {
        checkpoint: PartitionCheckpoint {
            partition,
            epoch: part.epoch,
            position: seen.position.clone(),
        },
        read_at: seen.read_at,
    })
}

/// A partition whose stored checkpoint is the newest position it may store is as current
/// as the feed's last reading of that position (a quiet feed marks the same position again
/// and again): its checkpoint's age restarts from there.
fn refresh_current(state: &mut State) {
    let mut current = Vec::new();
    for (&partition, part) in &state.parts {
        let bound = part.unsettled.keys().next().copied().unwrap_or(u64::MAX);
        if part.gate.is_some() || bound <= part.min_seq {
            continue;
        }
        let Some((_, seen)) = state.positions.range(part.min_seq..bound).next_back() else {
            continue;
        };
        if part.written.as_ref() == Some(&seen.position.checkpoint) {
            current.push((partition, seen.read_at));
        }
    }
    for (partition, read_at) in current {
        if let Some(part) = state.parts.get_mut(&partition) {
            part.written_read_at = Some(read_at);
        }
    }
}

/// Forgets positions no partition can need any more: for each partition only the newest
/// position below each of its unsettled events (and the newest of all) can become its
/// checkpoint.
fn prune_positions(state: &mut State) {
    if state.positions.len() < PRUNE_ABOVE {
        return;
    }
    let Some(&newest) = state.positions.keys().next_back() else {
        return;
    };
    let mut keep: HashSet<u64> = HashSet::from([newest]);
    for part in state.parts.values() {
        let lower = part.min_seq;
        let until = part.until_seq.unwrap_or(u64::MAX);
        for &seq in part.unsettled.keys().chain([until, u64::MAX].iter()) {
            if seq <= lower {
                continue;
            }
            if let Some((&found, _)) = state.positions.range(lower..seq).next_back() {
                keep.insert(found);
            }
        }
    }
    if keep.len() < state.positions.len() {
        state.positions.retain(|seq, _| keep.contains(seq));
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
