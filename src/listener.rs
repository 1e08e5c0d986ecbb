//! The HTTP listener actor: a hyper server (HTTP/1.1 and HTTP/2) on `--listen`, answering
//! with [`crate::api::handle`].
//!
//! `serve::run` binds the socket itself (so a taken port is a one-line startup error and
//! `--listen 127.0.0.1:0` reports the port it got), then spawns this actor on its own, not
//! under the engine's supervisor: its accept loop has nothing a restart could cure.
//! `pre_start` starts the accept loop as a task; stopping the actor (`serve::run`'s one
//! shutdown path) stops accepting and lets open connections finish their requests, before
//! the engine drains.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::api::AppState;

/// How long open connections may take to finish their requests once accepting stops.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

pub struct Listener {
    pub app: Arc<AppState>,
}

/// The listener takes no messages: it is started and stopped.
pub enum ListenerMsg {}

pub struct ListenerState {
    /// Cancelled in `post_stop`: the accept loop stops and closes open connections
    /// gracefully.
    stop: CancellationToken,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl Actor for Listener {
    type Msg = ListenerMsg;
    type State = ListenerState;
    /// The socket, already bound by `serve::run`.
    type Arguments = TcpListener;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        listener: TcpListener,
    ) -> Result<Self::State, ActorProcessingErr> {
        let addr: SocketAddr = listener.local_addr()?;
        info!(%addr, "listening");
        let stop = CancellationToken::new();
        let accept_loop = tokio::spawn(serve(listener, self.app.clone(), stop.clone()));
        Ok(ListenerState { stop, accept_loop })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.stop.cancel();
        // The loop itself gives connections `CLOSE_GRACE`; a little more for it to return.
        let _ = tokio::time::timeout(CLOSE_GRACE + Duration::from_secs(1), &mut state.accept_loop)
            .await;
        Ok(())
    }
}

async fn serve(listener: TcpListener, app: Arc<AppState>, stop: CancellationToken) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(ok) => ok,
                Err(e) => {
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, std::convert::Infallible>(crate::api::handle(app, request).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(CLOSE_GRACE, graceful.shutdown()).await;
}
