//! The root of the actor tree.
//!
//! ```text
//! Supervisor
//! ├── Router ─┬── LedgerWriter
//! │           └── Endpoint × webhooks
//! └── services added by the daemon (the HTTP listener, ...), restarted when they fail
//! ```
//!
//! The router's bookkeeping (which events are settled) cannot be rebuilt in place, so its
//! failure stops the tree: the daemon exits non-zero and, restarted, resumes from the last
//! checkpoint. Services are restarted from their factory, at most
//! `max_restarts_per_minute` times a minute each; beyond that the tree stops.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr,
    SupervisionEvent,
};
use tokio::sync::Semaphore;
use tracing::{error, warn};

use crate::config::EngineConfig;
use crate::ports::{Ledger, Transport};
use crate::router::{Router, RouterMsg};

/// Spawns a service linked to the given supervisor cell.
pub type ServiceFactory =
    Arc<dyn Fn(ActorCell) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> + Send + Sync>;

/// The restarts of one child in the last minute: the cap on restarts per window that both
/// the root supervisor (services) and the router (endpoint actors) apply.
#[derive(Debug, Default)]
pub struct RestartWindow {
    restarts: VecDeque<Instant>,
}

impl RestartWindow {
    /// Records a restart and returns true, unless `max` restarts already happened in the
    /// last minute (then nothing is recorded and the child should be given up on).
    pub fn allow(&mut self, max: usize) -> bool {
        let now = Instant::now();
        self.restarts
            .retain(|t| now.duration_since(*t) < Duration::from_secs(60));
        if self.restarts.len() >= max {
            return false;
        }
        self.restarts.push_back(now);
        true
    }
}

pub enum SupervisorMsg {
    /// Spawn a service under the supervisor and keep it running.
    AddService {
        name: String,
        factory: ServiceFactory,
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// The router, for handles.
    Router(RpcReplyPort<ActorRef<RouterMsg>>),
}

pub struct Supervisor {
    pub config: Arc<EngineConfig>,
    pub transport: Arc<dyn Transport>,
    pub ledger: Arc<dyn Ledger>,
    pub window: Arc<Semaphore>,
}

struct Service {
    name: String,
    factory: ServiceFactory,
    restarts: RestartWindow,
}

pub struct SupervisorState {
    router: ActorRef<RouterMsg>,
    services: HashMap<ActorId, Service>,
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        let (router, _) = Actor::spawn_linked(
            None,
            Router {
                config: self.config.clone(),
                transport: self.transport.clone(),
                ledger: self.ledger.clone(),
                window: self.window.clone(),
            },
            (),
            myself.get_cell(),
        )
        .await?;
        Ok(SupervisorState {
            router,
            services: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::AddService {
                name,
                factory,
                reply,
            } => {
                let result = match factory(myself.get_cell()).await {
                    Ok(cell) => {
                        state.services.insert(
                            cell.get_id(),
                            Service {
                                name,
                                factory,
                                restarts: RestartWindow::default(),
                            },
                        );
                        Ok(())
                    }
                    Err(error) => Err(format!("{name}: {error}")),
                };
                let _ = reply.send(result);
            }
            SupervisorMsg::Router(reply) => {
                let _ = reply.send(state.router.clone());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, reason) => (cell, reason.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        if cell.get_id() == state.router.get_id() {
            error!(%reason, "router stopped; stopping the engine");
            myself.stop(Some(format!("router stopped: {reason}")));
            return Ok(());
        }
        let Some(mut service) = state.services.remove(&cell.get_id()) else {
            return Ok(());
        };
        if !service.restarts.allow(self.config.max_restarts_per_minute) {
            error!(service = %service.name, %reason, "service keeps failing; stopping the engine");
            myself.stop(Some(format!("{} keeps failing: {reason}", service.name)));
            return Ok(());
        }
        warn!(service = %service.name, %reason, "service stopped; restarting it");
        match (service.factory)(myself.get_cell()).await {
            Ok(cell) => {
                state.services.insert(cell.get_id(), service);
            }
            Err(error) => {
                error!(service = %service.name, %error, "service could not be restarted");
                myself.stop(Some(format!("{} could not restart: {error}", service.name)));
            }
        }
        Ok(())
    }
}
