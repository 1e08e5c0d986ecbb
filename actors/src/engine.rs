//! Starting, feeding and stopping the engine.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ractor::{Actor, ActorRef};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::EngineConfig;
use crate::delivery::PendingDelivery;
use crate::event::Event;
use crate::ledger_writer;
use crate::ports::{Ledger, LedgerError, Transport};
use crate::router::{self, EndpointReport, RouterStats};
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
    window: Arc<Semaphore>,
}

impl Engine {
    /// Spawns the actor tree.
    pub async fn start(
        config: EngineConfig,
        transport: Arc<dyn Transport>,
        ledger: Arc<dyn Ledger>,
    ) -> Result<Self, ractor::SpawnErr> {
        let window = Arc::new(Semaphore::new(config.max_events_in_flight));
        let (supervisor, join) = Actor::spawn(
            None,
            Supervisor {
                config: Arc::new(config),
                transport,
                ledger,
                window: window.clone(),
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
            handle: EngineHandle { router, window },
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
    /// Hands an event to the router. Waits while `max_events_in_flight` events are not yet
    /// durable: the caller (the change stream) slows down instead of memory growing.
    pub async fn submit(
        &self,
        event: Event,
        checkpoint: Option<Bytes>,
    ) -> Result<(), EngineStopped> {
        let permit = self.window.acquire().await.map_err(|_| EngineStopped)?;
        permit.forget();
        self.router
            .cast(router::Msg::Event {
                event: Arc::new(event),
                checkpoint,
            })
            .map_err(|_| EngineStopped)
    }

    /// A feed position without an event; it becomes the checkpoint once every event
    /// submitted before it is durable.
    pub async fn mark(&self, checkpoint: Bytes) -> Result<(), EngineStopped> {
        let permit = self.window.acquire().await.map_err(|_| EngineStopped)?;
        permit.forget();
        self.router
            .cast(router::Msg::Mark(checkpoint))
            .map_err(|_| EngineStopped)
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

    /// These webhooks have pending deliveries in the ledger (at start-up): their endpoints
    /// read them back a page at a time, as they have room, instead of all at once. Endpoints
    /// started from now on (a webhook created or enabled again) look in the ledger too.
    pub fn page_pending(&self, webhook_ids: Vec<String>) -> Result<(), EngineStopped> {
        self.router
            .cast(router::Msg::PagePending(
                webhook_ids.into_iter().map(Into::into).collect(),
            ))
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
