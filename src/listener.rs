//! The HTTP listener actor: a hyper server (HTTP/1.1 and HTTP/2) on `--listen`, answering
//! with [`crate::api::handle`].
//!
//! `serve::run` binds the socket itself (so a taken port is a one-line startup error and
//! `--listen 127.0.0.1:0` reports the port it got), then spawns this actor on its own, not
//! under the engine's supervisor: its accept loop has nothing a restart could cure.
//! `pre_start` starts the accept loop as a task; stopping the actor (`serve::run`'s one
//! shutdown path) stops accepting and lets open connections finish their requests, before
//! the engine drains.
//!
//! It cannot be starved by clients that hold connections without using them: connections
//! are capped (`--max-connections`; at the cap the longest-idle one makes room, see
//! [`connections`]), a request head must arrive within `--header-read-timeout`, a body
//! within `--request-timeout` (408, in `api::guard`), and a connection with no request in
//! flight for `--idle-timeout` is closed, HTTP/1 and HTTP/2 alike. Refusals are logged at
//! warn, at most a line a second ([`crate::refusals`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::api::AppState;

mod connections;

use crate::refusals::{self, Refusal};
use connections::{Admitted, Connections};

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
    let limits = Limits::from_config(&app.config);
    let connections = Connections::new(limits.max_connections);
    let builder = builder(&limits);
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(ok) => ok,
                Err(e) => {
                    // Out of descriptors, typically: give closing connections a moment.
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Admission may wait briefly for an evicted connection to close: off the accept
        // loop, so that one newcomer never delays the next.
        let connections = connections.clone();
        let builder = builder.clone();
        let app = app.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let Some(admitted) = connections.admit().await else {
                refusals::note(Refusal::AtCapacity);
                // Dropping the stream closes it at once: no descriptor held, no answer.
                return;
            };
            let _ = stream.set_nodelay(true);
            serve_connection(stream, peer, admitted, &builder, app, &stop, &limits).await;
        });
    }
    drop(listener);
    connections.closed(CLOSE_GRACE).await;
}

/// The listener's limits, from the configuration.
#[derive(Clone, Copy)]
struct Limits {
    max_connections: usize,
    header_read_timeout: Duration,
    idle_timeout: Duration,
}

impl Limits {
    fn from_config(config: &crate::config::Config) -> Self {
        Self {
            max_connections: config.max_connections,
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
        }
    }
}

/// HTTP/1.1 and HTTP/2 with their timers: the HTTP/1 head must arrive within
/// `--header-read-timeout`; HTTP/2 pings a quiet peer and closes the connection when the
/// ping goes unanswered (a peer that vanished). Idle connections of either are closed by
/// [`serve_connection`].
fn builder(limits: &Limits) -> Arc<auto::Builder<TokioExecutor>> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .max_concurrent_streams(H2_MAX_STREAMS);
    Arc::new(builder)
}

/// How often a quiet HTTP/2 peer is pinged, and how long it has to answer.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests one HTTP/2 connection may have in flight at once.
const H2_MAX_STREAMS: u32 = 100;
/// How long an idle or evicted connection may take to close after being asked to (a
/// response still being written finishes).
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Serves one admitted connection until it ends, the listener stops, it has been idle
/// for `--idle-timeout`, or it is evicted to make room.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    admitted: Admitted,
    builder: &auto::Builder<TokioExecutor>,
    app: Arc<AppState>,
    stop: &CancellationToken,
    limits: &Limits,
) {
    let tracker = admitted.tracker();
    let service = service_fn(move |request| {
        let app = app.clone();
        let in_flight = tracker.begin();
        async move {
            let response = crate::api::handle(app, request).await;
            drop(in_flight);
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    // Once asked to close: the time it has left to do so.
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        let idle_deadline = admitted
            .idle_deadline(limits.idle_timeout)
            // A request in flight: look again within the idle timeout.
            .unwrap_or_else(|| tokio::time::Instant::now() + limits.idle_timeout);
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    let header_timeout = e
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout);
                    if header_timeout {
                        refusals::note(Refusal::HeaderTimeout);
                    }
                    debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.cancelled(), if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
            }
            _ = admitted.evicted(), if closing.is_none() => {
                refusals::note(Refusal::Evicted);
                connection.as_mut().graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + IDLE_CLOSE_GRACE);
            }
            _ = tokio::time::sleep_until(idle_deadline), if closing.is_none() => {
                if admitted.idle_deadline(limits.idle_timeout).is_some_and(|d| d <= tokio::time::Instant::now()) {
                    debug!(%peer, "closing an idle connection");
                    connection.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + IDLE_CLOSE_GRACE);
                }
            }
            _ = sleep_until_or_never(closing) => {
                debug!(%peer, "connection did not close in time; dropped");
                return;
            }
        }
    }
}

async fn sleep_until_or_never(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
