//! The root of the actor tree.
//!
//! ```text
//! Supervisor
//! └── Router ─┬── LedgerWriter
//!             └── Endpoint × webhooks
//! ```
//!
//! The router restarts endpoint actors that fail (their work survives in their backlog).
//! The router's own bookkeeping (which events are settled) cannot be rebuilt in place, so
//! its failure stops the tree: the daemon exits non-zero and, restarted, resumes from the
//! last checkpoint.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::error;

use crate::config::EngineConfig;
use crate::ports::{Ledger, Transport};
use crate::router::{self, Router};

pub enum Msg {
    /// The router, for handles.
    Router(RpcReplyPort<ActorRef<router::Msg>>),
}

pub struct Supervisor {
    pub config: Arc<EngineConfig>,
    pub transport: Arc<dyn Transport>,
    pub ledger: Arc<dyn Ledger>,
    pub window: Arc<crate::window::Window>,
    pub lease: Arc<crate::partition::LeaseClock>,
}

pub struct State {
    router: ActorRef<router::Msg>,
}

impl Actor for Supervisor {
    type Msg = Msg;
    type State = State;
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
                lease: self.lease.clone(),
            },
            (),
            myself.get_cell(),
        )
        .await?;
        Ok(State { router })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Router(reply) => {
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
        let reason = match event {
            SupervisionEvent::ActorFailed(cell, reason)
                if cell.get_id() == state.router.get_id() =>
            {
                reason.to_string()
            }
            SupervisionEvent::ActorTerminated(cell, _, reason)
                if cell.get_id() == state.router.get_id() =>
            {
                reason.unwrap_or_else(|| "stopped".into())
            }
            _ => return Ok(()),
        };
        error!(%reason, "router stopped; stopping the engine");
        myself.stop(Some(format!("router stopped: {reason}")));
        Ok(())
    }
}
