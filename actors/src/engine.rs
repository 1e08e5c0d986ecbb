//! Starting, feeding and stopping the engine.

use std::sync::Arc;
use std::time::Duration;

use crate::window::Window;
use ractor::{Actor, ActorRef};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::EngineConfig;
use crate::delivery::PendingDelivery;
use crate::event::Event;
use crate::ledger_writer;
use crate::partition::{Grant, LeaseClock, PartitionReport, Position, PARTITIONS};
use crate::ports::{Ledger, LedgerError, Transport};
use crate::router::{self, EndpointReport, Rewind, RouterStats};
use crate::supervisor::{self, Supervisor};
use crate::webhook::WebhookSpec;

/// The engine has stopped (shut down, or its router failed).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the delivery engine has stopped")]
pub struct EngineStopped;

/// Why a shutdown could not leave the checkpoint where it belongs (the deliveries are safe:
/// what the checkpoint did not pass is handed over again after a restart).
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    #[error("cannot write the final checkpoint: {0}")]
    Checkpoint(#[from] LedgerError),
    #[error("the router did not answer the final checkpoint in time")]
    NoAnswer,
}

/// Why partitions could not be handed over cleanly (the new owner resumes them from their
/// last stored checkpoints instead: some deliveries may be sent again).
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("cannot write the final checkpoints: {0}")]
    Checkpoint(#[from] LedgerError),
    #[error("the router did not finish the hand-over in time")]
    NoAnswer,
    #[error(transparent)]
    Stopped(EngineStopped),
}

/// A running engine: its handle plus what it takes to stop it.
pub struct Engine {
    handle: EngineHandle,
    supervisor: ActorRef<supervisor::Msg>,
    join: JoinHandle<()>,
}

/// Cheap to clone; what the feed, the webhook watcher and the API use.
#[derive(Clone)]
pub struct EngineHandle {
    router: ActorRef<router::Msg>,
    window: Arc<Window>,
    lease: Arc<LeaseClock>,
}

impl Engine {
    /// Spawns the actor tree owning every partition (epoch 0, from where the feed starts):
    /// an engine alone, with no lease coordinator (tests, benchmarks, embedding).
    pub async fn start(
        config: EngineConfig,
        transport: Arc<dyn Transport>,
        ledger: Arc<dyn Ledger>,
    ) -> Result<Self, ractor::SpawnErr> {
        let engine = Self::start_member(config, transport, ledger).await?;
        let all = (0..PARTITIONS)
            .map(|partition| Grant {
                partition,
                epoch: 0,
                from: None,
                look_up_until: 0,
            })
            .collect();
        engine
            .handle
            .grant(all, None)
            .map_err(|_| ractor::SpawnErr::StartupFailed("router did not start".into()))?;
        Ok(engine)
    }

    /// Spawns the actor tree owning no partition: a member of a cluster, whose lease
    /// coordinator grants it partitions ([`EngineHandle::grant`]).
    pub async fn start_member(
        config: EngineConfig,
        transport: Arc<dyn Transport>,
        ledger: Arc<dyn Ledger>,
    ) -> Result<Self, ractor::SpawnErr> {
        let window = Arc::new(Window::new(
            config.max_events_in_flight,
            config.max_bytes_in_flight,
        ));
        let lease = Arc::new(LeaseClock::default());
        let (supervisor, join) = Actor::spawn(
            None,
            Supervisor {
                config: Arc::new(config),
                transport,
                ledger,
                window: window.clone(),
                lease: lease.clone(),
            },
            (),
        )
        .await?;
        let router = supervisor
            .call(supervisor::Msg::Router, Some(Duration::from_secs(5)))
            .await
            .map_err(|e| ractor::SpawnErr::StartupFailed(e.to_string().into()))?
            .success_or(())
            .map_err(|_| ractor::SpawnErr::StartupFailed("router did not answer".into()))?;
        Ok(Self {
            handle: EngineHandle {
                router,
                window,
                lease,
            },
            supervisor,
            join,
        })
    }

    pub fn handle(&self) -> EngineHandle {
        self.handle.clone()
    }

    /// Resolves when the actor tree has stopped (after [`Engine::shutdown`], or on failure).
    pub fn stopped(&mut self) -> &mut JoinHandle<()> {
        &mut self.join
    }

    /// Stops taking events, lets in-flight attempts finish (at most `grace`), makes every
    /// record durable, writes the checkpoint and stops the tree.
    pub async fn shutdown(self, grace: Duration) -> Result<(), ShutdownError> {
        let router = self.handle.router.clone();
        let drained = router.call(router::Msg::Drain, Some(grace)).await;
        if !matches!(drained, Ok(ractor::rpc::CallResult::Success(()))) {
            warn!("in-flight attempts did not finish within the grace period; they will be retried after restart");
        }
        let writer = router
            .call(router::Msg::LedgerWriter, Some(Duration::from_secs(5)))
            .await;
        if let Ok(ractor::rpc::CallResult::Success(writer)) = writer {
            let _ = writer
                .call(ledger_writer::Msg::Sync, Some(Duration::from_secs(30)))
                .await;
        }
        let result = match router
            .call(router::Msg::FinalCheckpoint, Some(Duration::from_secs(30)))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(result)) => result.map_err(ShutdownError::from),
            _ => Err(ShutdownError::NoAnswer),
        };
        self.supervisor.stop(Some("shutdown".into()));
        let _ = self.join.await;
        info!("engine stopped");
        result
    }
}

impl EngineHandle {
    /// Hands an event to the router. Waits while `max_events_in_flight` events, or
    /// `max_bytes_in_flight` bytes of their bodies, are not yet durable: the caller (the
    /// change stream) slows down instead of memory growing.
    pub async fn submit(
        &self,
        event: Event,
        position: Option<Position>,
    ) -> Result<(), EngineStopped> {
        let weight = self.window.weight(event.body.len());
        self.window
            .acquire(weight)
            .await
            .map_err(|_| EngineStopped)?;
        self.router
            .cast(router::Msg::Event {
                event: Arc::new(event),
                position,
            })
            .map_err(|_| EngineStopped)
    }

    /// A feed position without an event; it becomes a partition's checkpoint once every
    /// event submitted before it is durable there.
    pub async fn mark(&self, position: Position) -> Result<(), EngineStopped> {
        self.window.acquire(0).await.map_err(|_| EngineStopped)?;
        self.router
            .cast(router::Msg::Mark(position))
            .map_err(|_| EngineStopped)
    }

    /// The clock of this daemon's leases: the coordinator moves it on at every renewal.
    pub fn lease_clock(&self) -> Arc<LeaseClock> {
        self.lease.clone()
    }

    /// Partitions this engine now owns. With `rewind`, the events submitted from now on are
    /// the feed re-read from an earlier position (the first grant's checkpoint): the
    /// partitions already owned skip what they have routed before.
    pub fn grant(&self, grants: Vec<Grant>, rewind: Option<Rewind>) -> Result<(), EngineStopped> {
        self.router
            .cast(router::Msg::Grant { grants, rewind })
            .map_err(|_| EngineStopped)
    }

    /// Partitions lost to another daemon: their endpoints stop at once and nothing more is
    /// written for them (the new owner resumes from their checkpoints). Returns once no
    /// attempt of theirs can start any more (only those already under way run on), so the
    /// caller may then let the leases it still holds count again.
    pub async fn revoke(&self, partitions: Vec<u16>) -> Result<(), EngineStopped> {
        ractor::call!(self.router, router::Msg::Revoke, partitions).map_err(|_| EngineStopped)
    }

    /// Hands partitions over cleanly: their in-flight attempts end and are recorded, their
    /// final checkpoints are written, their endpoints stop. Answers the partitions whose
    /// final checkpoint the store refused (their lease had already moved on).
    pub async fn release(
        &self,
        partitions: Vec<u16>,
        grace: Duration,
    ) -> Result<Vec<u16>, ReleaseError> {
        match self
            .router
            .call(
                |reply| router::Msg::Release(partitions, reply),
                Some(grace + Duration::from_secs(35)),
            )
            .await
        {
            Ok(ractor::rpc::CallResult::Success(result)) => result.map_err(ReleaseError::from),
            Ok(_) => Err(ReleaseError::NoAnswer),
            Err(_) => Err(ReleaseError::Stopped(EngineStopped)),
        }
    }

    /// Someone re-queued deliveries of these partitions in the ledger: their endpoints read
    /// their pending deliveries back.
    pub fn nudge(&self, partitions: Vec<u16>) -> Result<(), EngineStopped> {
        self.router
            .cast(router::Msg::Nudge(partitions))
            .map_err(|_| EngineStopped)
    }

    /// The partitions this engine owns.
    pub async fn partitions(&self) -> Result<Vec<PartitionReport>, EngineStopped> {
        match self
            .router
            .call(router::Msg::Partitions, Some(Duration::from_secs(5)))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(reports)) => Ok(reports),
            _ => Err(EngineStopped),
        }
    }

    /// A webhook was created or changed (disabled ones stop their endpoint).
    pub fn upsert_webhook(&self, spec: WebhookSpec) -> Result<(), EngineStopped> {
        self.router
            .cast(router::Msg::Upsert(spec))
            .map_err(|_| EngineStopped)
    }

    /// A webhook was deleted.
    pub fn remove_webhook(&self, id: &str) -> Result<(), EngineStopped> {
        self.router
            .cast(router::Msg::Remove(id.into()))
            .map_err(|_| EngineStopped)
    }

    /// Re-queues a pending delivery loaded from the ledger (attempted at its due time).
    pub fn resume(&self, pending: PendingDelivery) -> Result<(), EngineStopped> {
        self.router
            .cast(router::Msg::Resume(pending))
            .map_err(|_| EngineStopped)
    }

    /// The router's bookkeeping.
    pub async fn stats(&self) -> Result<RouterStats, EngineStopped> {
        match self
            .router
            .call(router::Msg::Stats, Some(Duration::from_secs(5)))
            .await
        {
            Ok(ractor::rpc::CallResult::Success(stats)) => Ok(stats),
            _ => Err(EngineStopped),
        }
    }

    /// One endpoint's backlog and health; `None` when no endpoint actor runs for the
    /// webhook (unknown, disabled or deleted).
    pub async fn endpoint(
        &self,
        webhook_id: &str,
    ) -> Result<Option<EndpointReport>, EngineStopped> {
        match self
            .router
            .call(
                |reply| router::Msg::Endpoint(webhook_id.into(), reply),
                Some(Duration::from_secs(5)),
            )
            .await
        {
            Ok(ractor::rpc::CallResult::Success(report)) => Ok(report),
            _ => Err(EngineStopped),
        }
    }
}

#[cfg(test)]
impl EngineHandle {
    /// Makes an endpoint actor fail as a bug would (the engine's tests, in `crate::tests`).
    pub(crate) fn crash_endpoint(&self, webhook_id: &str) {
        self.router
            .cast(router::Msg::CrashEndpoint(webhook_id.into()))
            .unwrap();
    }
}
