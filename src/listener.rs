//! The HTTP listener actor: a hyper server (HTTP/1.1 and HTTP/2) on `--listen`, owned by an
//! actor under the root supervisor.
//!
//! `pre_start` binds the socket (so a taken port is a startup error), then an accept loop
//! runs as a task; `post_stop` stops accepting and lets open connections finish their
//! requests. Requests are answered by [`crate::api::handle`].

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

pub struct Listener {
    pub addr: SocketAddr,
    pub app: Arc<AppState>,
}

pub enum ListenerMsg {}

pub struct ListenerState {
    stop: CancellationToken,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl Actor for Listener {
    type Msg = ListenerMsg;
    type State = ListenerState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        let listener = TcpListener::bind(self.addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", self.addr))?;
        info!(addr = %listener.local_addr()?, "listening");
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
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut state.accept_loop).await;
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
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}
