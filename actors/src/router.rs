//! The router: feed events in, deliveries out, checkpoint forward.
//!
//! It owns the [subscription index](SubscriptionIndex) and supervises one
//! [endpoint actor](crate::endpoint) per enabled webhook, spawning, updating and stopping
//! them as webhooks change. Every event gets a sequence number; the router counts the
//! deliveries of each event that are not yet durable and, when the oldest events are fully
//! settled, advances the feed checkpoint past them. So the checkpoint never passes an event
//! one of whose deliveries could still be lost in a crash.
//!
//! An endpoint actor that fails is restarted with its backlog intact (the router keeps the
//! [`Backlog`]); one that keeps failing is given up on, and its unrecorded deliveries are
//! retired so they do not hold the checkpoint back (they are re-delivered after a restart
//! of the daemon only if they precede the checkpoint, i.e. never: this is logged loudly).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
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
use crate::ports::{Ledger, LedgerError, Transport};
use crate::restart::RestartWindow;
use crate::webhook::{SubscriptionIndex, WebhookSpec};

pub enum Msg {
    /// An event from the feed, with the feed position just after it.
    Event {
        event: Arc<Event>,
        checkpoint: Option<Bytes>,
    },
    /// A feed position with no event (e.g. where a re-opened feed starts): it settles as
    /// soon as everything before it has.
    Mark(Bytes),
    /// A webhook was created or changed.
    Upsert(WebhookSpec),
    /// A webhook was deleted.
    Remove(Arc<str>),
    /// A pending delivery re-loaded from the ledger.
    Resume(PendingDelivery),
    /// These webhooks have pending deliveries in the ledger (at start-up): their endpoints
    /// read them back, a page at a time. From then on, an endpoint that starts (a webhook
    /// created or enabled again) looks in the ledger too.
    PagePending(Vec<Arc<str>>),
    /// The first records of deliveries of these events are durable (one entry per delivery).
    Durable(Vec<u64>),
    /// A checkpoint write ended (the checkpoint it wrote, to write again if it failed).
    CheckpointSaved(Bytes, Result<(), LedgerError>),
    /// The checkpoint interval has passed: write the newest one if it is still pending.
    CheckpointTick,
    /// Shutdown, step 1: endpoints start no new attempts; reply when none is in flight.
    Drain(RpcReplyPort<()>),
    /// Shutdown, step 2 (after the ledger writer synced): write the checkpoint now.
    FinalCheckpoint(RpcReplyPort<Result<(), LedgerError>>),
    Stats(RpcReplyPort<RouterStats>),
    /// What one endpoint holds and how healthy it is; `None` if no actor runs for it
    /// (unknown, disabled or deleted webhook).
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
}

struct EndpointEntry {
    actor: ActorRef<endpoint::Msg>,
    spec: Arc<WebhookSpec>,
    backlog: Backlog,
    restarts: RestartWindow,
}

/// Deliveries of one event not yet durable, and the feed position after it.
struct Unsettled {
    remaining: u32,
    checkpoint: Option<Bytes>,
}

pub struct State {
    ledger_writer: ActorRef<ledger_writer::Msg>,
    /// The wiring every endpoint actor is spawned with.
    endpoint: Endpoint,
    index: SubscriptionIndex,
    endpoints: HashMap<Arc<str>, EndpointEntry>,
    by_actor: HashMap<ActorId, Arc<str>>,
    /// Endpoints of disabled webhooks recording what they hold before they stop, with their
    /// work: what they could not record is retired when they end.
    retiring: HashMap<ActorId, Backlog>,
    next_seq: u64,
    unsettled: BTreeMap<u64, Unsettled>,
    /// The newest checkpoint below which everything is settled, not yet written.
    pending_checkpoint: Option<Bytes>,
    checkpoint_writing: bool,
    /// On tokio's clock, like the timer that spaces the writes.
    last_checkpoint_write: Option<Instant>,
    checkpoint_timer_armed: bool,
    /// Shutdown is waiting for the in-flight checkpoint write before writing the last one.
    final_reply: Option<RpcReplyPort<Result<(), LedgerError>>>,
    draining: bool,
    /// Set by `PagePending`: new endpoints look for pending deliveries in the ledger.
    page_new_endpoints: bool,
    events_settled: u64,
    endpoint_restarts: u64,
    metrics: EngineMetrics,
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
                    Box::new(move |seqs| {
                        let _ = router.cast(Msg::Durable(seqs));
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
            },
            ledger_writer,
            index: SubscriptionIndex::default(),
            endpoints: HashMap::new(),
            by_actor: HashMap::new(),
            retiring: HashMap::new(),
            next_seq: 0,
            unsettled: BTreeMap::new(),
            pending_checkpoint: None,
            checkpoint_writing: false,
            last_checkpoint_write: None,
            checkpoint_timer_armed: false,
            final_reply: None,
            draining: false,
            page_new_endpoints: false,
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
            Msg::Event { event, checkpoint } => self.route(state, event, checkpoint),
            Msg::Mark(checkpoint) => {
                if !state.draining {
                    let seq = state.next_seq;
                    state.next_seq += 1;
                    state.unsettled.insert(
                        seq,
                        Unsettled {
                            remaining: 0,
                            checkpoint: Some(checkpoint),
                        },
                    );
                    self.settle(state);
                }
            }
            Msg::Upsert(spec) => self.upsert(&myself, state, spec).await?,
            Msg::Remove(id) => self.remove(state, &id, "deleted"),
            Msg::Resume(pending) => resume(state, pending),
            Msg::PagePending(ids) => {
                state.page_new_endpoints = true;
                for id in ids {
                    if let Some(entry) = state.endpoints.get(&id) {
                        let _ = entry.actor.cast(endpoint::Msg::Spilled);
                    }
                }
            }
            Msg::Durable(seqs) => {
                for seq in seqs {
                    if let Some(entry) = state.unsettled.get_mut(&seq) {
                        entry.remaining = entry.remaining.saturating_sub(1);
                    }
                }
                self.settle(state);
            }
            Msg::CheckpointTick => state.checkpoint_timer_armed = false,
            Msg::CheckpointSaved(checkpoint, result) => {
                state.checkpoint_writing = false;
                match result {
                    Ok(()) => debug!(events_settled = state.events_settled, "checkpoint written"),
                    Err(error) => {
                        // Written again at the next interval, unless a newer one is waiting.
                        warn!(%error, "checkpoint write failed; retrying");
                        state.pending_checkpoint.get_or_insert(checkpoint);
                    }
                }
                if let Some(reply) = state.final_reply.take() {
                    let _ = reply.send(self.final_checkpoint(state).await);
                }
            }
            Msg::Drain(reply) => {
                state.draining = true;
                let endpoints: Vec<_> = state.endpoints.values().map(|e| e.actor.clone()).collect();
                tokio::spawn(async move {
                    for endpoint in endpoints {
                        let _ = endpoint
                            .call(endpoint::Msg::Drain, Some(Duration::from_secs(30)))
                            .await;
                    }
                    let _ = reply.send(());
                });
            }
            Msg::FinalCheckpoint(reply) => {
                if state.checkpoint_writing {
                    // An older checkpoint is being written: write ours after it, never before.
                    state.final_reply = Some(reply);
                } else {
                    let _ = reply.send(self.final_checkpoint(state).await);
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
            Msg::Stats(reply) => {
                let mut per_endpoint = HashMap::new();
                for (id, entry) in &state.endpoints {
                    per_endpoint.insert(id.to_string(), entry.backlog.stats());
                }
                let _ = reply.send(RouterStats {
                    endpoints: state.endpoints.len(),
                    events_in_flight: state.unsettled.len(),
                    events_settled: state.events_settled,
                    endpoint_restarts: state.endpoint_restarts,
                    per_endpoint,
                });
            }
        }
        if state.final_reply.is_none() {
            self.write_checkpoint(&myself, state);
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
            // A retired endpoint ended: its records carry the sequence numbers they settle;
            // what it had not recorded (it failed first) is retired here.
            self.retire(state, backlog.unrecorded_seqs());
            return Ok(());
        }
        match event {
            SupervisionEvent::ActorFailed(cell, reason) => {
                if cell.get_id() == state.ledger_writer.get_id() {
                    // Its buffer is gone: nothing below the checkpoint can be trusted any
                    // more. Stop; the daemon exits and resumes from the last checkpoint.
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
        // Disabled or deleted since: the delivery stays pending in the ledger.
        return;
    };
    let _ = entry
        .actor
        .cast(endpoint::Msg::Deliver(Job::from_pending(pending)));
}

impl Router {
    fn route(&self, state: &mut State, event: Arc<Event>, checkpoint: Option<Bytes>) {
        if state.draining {
            // Shutting down: the event lies past the final checkpoint, so the feed hands
            // it over again after the restart.
            return;
        }
        state.metrics.events_routed.increment(1);
        let seq = state.next_seq;
        state.next_seq += 1;
        let mut remaining = 0;
        let endpoints = &state.endpoints;
        state.index.for_each_match(&event.event_type, |id| {
            if let Some(entry) = endpoints.get(id) {
                let job = Job::new(event.clone(), Some(seq));
                if entry.actor.cast(endpoint::Msg::Deliver(job)).is_ok() {
                    remaining += 1;
                }
            }
        });
        state.unsettled.insert(
            seq,
            Unsettled {
                remaining,
                checkpoint,
            },
        );
        if remaining == 0 {
            self.settle(state);
        }
    }

    /// Pops the settled prefix of events, gives their window permits back and moves the
    /// checkpoint.
    fn settle(&self, state: &mut State) {
        let mut released = 0;
        while let Some(entry) = state.unsettled.first_entry() {
            if entry.get().remaining > 0 {
                break;
            }
            let settled = entry.remove();
            released += 1;
            if settled.checkpoint.is_some() {
                state.pending_checkpoint = settled.checkpoint;
            }
        }
        if released > 0 {
            state.events_settled += released as u64;
            self.window.add_permits(released);
        }
    }

    /// Writes the newest checkpoint in place (only at shutdown, when nothing else runs).
    async fn final_checkpoint(&self, state: &mut State) -> Result<(), LedgerError> {
        match state.pending_checkpoint.take() {
            Some(checkpoint) => self.ledger.checkpoint(checkpoint).await,
            None => Ok(()),
        }
    }

    /// Writes the newest checkpoint, at most one write in flight and one per
    /// `checkpoint_interval`: under load the store sees a few writes a second, not one per
    /// settled batch.
    fn write_checkpoint(&self, myself: &ActorRef<Msg>, state: &mut State) {
        if state.checkpoint_writing || state.pending_checkpoint.is_none() {
            return;
        }
        let since_last = state.last_checkpoint_write.map(|t| t.elapsed());
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
        let Some(checkpoint) = state.pending_checkpoint.take() else {
            return;
        };
        state.checkpoint_writing = true;
        state.last_checkpoint_write = Some(Instant::now());
        let write = self.ledger.checkpoint(checkpoint.clone());
        let myself = myself.clone();
        tokio::spawn(async move {
            let result = write.await;
            let _ = myself.cast(Msg::CheckpointSaved(checkpoint, result));
        });
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
            self.disable(state, &spec.id);
            // Keep it out of the index (remove() also drops it there).
            return Ok(());
        }
        if let Some(entry) = state.endpoints.get_mut(&spec.id) {
            entry.spec = spec.clone();
            let _ = entry.actor.cast(endpoint::Msg::Update(spec));
            return Ok(());
        }
        let backlog = Backlog::default();
        let actor = spawn_endpoint(myself, state, spec.clone(), backlog.clone()).await?;
        if state.page_new_endpoints {
            // Enabled again, it may have deliveries left pending while it was off.
            let _ = actor.cast(endpoint::Msg::Spilled);
        }
        info!(webhook_id = %spec.id, url = %spec.url, paused = spec.paused, "endpoint started");
        state.metrics.endpoint_actors.increment(1.0);
        state.endpoints.insert(
            spec.id.clone(),
            EndpointEntry {
                actor,
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
        let seqs = entry.backlog.unrecorded_seqs();
        info!(webhook_id = %id, dropped = seqs.len(), "endpoint stopped ({why})");
        self.retire(state, seqs);
    }

    fn retire(&self, state: &mut State, seqs: Vec<u64>) {
        for seq in seqs {
            if let Some(entry) = state.unsettled.get_mut(&seq) {
                entry.remaining = entry.remaining.saturating_sub(1);
            }
        }
        self.settle(state);
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
