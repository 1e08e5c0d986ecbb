//! `herald serve`: wires the engine to MongoDB and HTTPS, and runs until told to stop.
//!
//! Start-up order matters for "nothing lost": webhooks are loaded before the feed starts
//! (an event must find its subscribers); the lease coordinator joins the cluster and takes
//! the partitions that are free (the endpoints of each read their pending retries back, a
//! page at a time, as they have room: memory stays bounded however large the backlog); and
//! only then does the change stream open, from the oldest checkpoint of those partitions.
//!
//! One shutdown path: when the token fires, the listener stops accepting and lets open
//! requests finish, the feed, the watcher and the coordinator's rounds stop, the engine
//! drains its in-flight attempts and writes every partition's final checkpoint, and the
//! coordinator frees the leases, so the other members take over at once.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use herald_actors::Engine;
use ractor::Actor;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::catalog::Catalog;
use crate::api::AppState;
use crate::cluster::{self, Coordinator};
use crate::config::Config;
use crate::listener::Listener;
use crate::secrets::SecretBox;
use crate::store;
use crate::store::deliveries::MongoLedger;
use crate::store::events::group_commit::{self, GroupCommit};
use crate::store::events::{self, FeedHealth};
use crate::store::webhooks::{self, WatchHealth};
use crate::telemetry::Telemetry;
use crate::text::one_line;
use crate::transport::{HttpsTransport, TransportOptions};

/// Why `herald serve` could not start, or stopped other than by its shutdown token. The
/// Display is one line, fit for the exit message.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// MongoDB unreachable, or an unusable `--mongodb-uri`.
    #[error(transparent)]
    Connect(#[from] store::ConnectError),
    #[error("cannot create indexes: {0}")]
    Indexes(String),
    #[error("cannot create the retention (TTL) indexes: {0}")]
    Retention(String),
    /// The outbound HTTPS client (e.g. an unreadable `--ca-file`).
    #[error("{0}")]
    Transport(String),
    #[error("cannot join the cluster: {0}")]
    Cluster(String),
    #[error("cannot start the engine: {0}")]
    Engine(String),
    /// The OTLP exporter (`--otlp-endpoint`) could not be built.
    #[error("cannot start exporting traces: {0}")]
    Telemetry(String),
    #[error("cannot load webhooks: {0}")]
    LoadWebhooks(String),
    #[error("webhook watcher stopped during start-up")]
    WatcherStopped,
    /// The `--listen` address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the listener: {0}")]
    Listener(String),
    #[error("the delivery engine stopped unexpectedly")]
    EngineStopped,
    #[error("shutdown: {0}")]
    Shutdown(#[from] herald_actors::ShutdownError),
}

/// The first line of an error's text (driver errors can run to several).
fn line(e: impl Display) -> String {
    one_line(&e.to_string())
}

/// Runs the daemon until `shutdown` fires (then drains and returns `Ok`) or a fatal error.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), ServeError> {
    serve(config, shutdown, None).await
}

/// [`run`], sending the listener's address on `listening` once it accepts connections: with
/// `--listen 127.0.0.1:0`, the port the system chose. Dropped unsent if start-up fails.
pub async fn run_reporting(
    config: Config,
    shutdown: CancellationToken,
    listening: oneshot::Sender<SocketAddr>,
) -> Result<(), ServeError> {
    serve(config, shutdown, Some(listening)).await
}

async fn serve(
    config: Config,
    shutdown: CancellationToken,
    listening: Option<oneshot::Sender<SocketAddr>>,
) -> Result<(), ServeError> {
    let config = Arc::new(config);
    // Before the engine registers its instruments, so that they are live.
    crate::metrics::install();
    if config.api_key.is_none() {
        warn!(listen = %config.listen, "no --api-key: the API is open to anyone who can reach this loopback address");
    }
    // Webhook secrets, header values and connection secrets are sealed with this on write
    // and opened on read; without a key they are stored as given.
    let secrets = SecretBox::new(config.secret_key);
    if secrets.encrypts() {
        info!("--secret-key set: webhook and connection secrets are encrypted at rest");
    }
    let db = store::connect(
        &config.mongodb_uri,
        &config.database,
        Duration::from_secs(10),
    )
    .await?;
    store::ensure_indexes(&db)
        .await
        .map_err(|e| ServeError::Indexes(line(e)))?;
    let _pending_gauge = crate::metrics::spawn_pending_gauge(db.name(), {
        let db = db.clone();
        move || store::deliveries::count_pending(db.clone())
    });
    // Removes the payloads no delivery needs any more (see `store::payloads`).
    let _payload_sweeper = store::payloads::spawn_sweeper(db.clone());
    store::ensure_retention(
        &db,
        store::Retention {
            succeeded_days: config.retention_succeeded_days,
            failed_days: config.retention_failed_days,
        },
    )
    .await
    .map_err(|e| ServeError::Retention(line(e)))?;

    let transport = HttpsTransport::new(TransportOptions {
        ca_file: config.ca_file.clone(),
        allow_private: config.allow_private_networks.clone(),
        ..TransportOptions::default()
    })
    .map_err(|e| ServeError::Transport(line(e)))?;
    // Bound now, so that a taken port fails start-up before the engine starts; accepting
    // begins with the listener below.
    let socket = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = socket.local_addr().map_err(|source| ServeError::Listen {
        addr: config.listen,
        source,
    })?;
    let member_id = config
        .member_id
        .clone()
        .unwrap_or_else(cluster::default_member_id);
    let ledger = MongoLedger::new(&db).for_member(&member_id);
    // Traces, if a collector is named: the engine reports to it through its tracer port.
    let telemetry = config
        .otlp
        .as_ref()
        .map(|target| Telemetry::start(target, config.ca_file.as_deref()))
        .transpose()
        .map_err(|e| ServeError::Telemetry(line(e)))?;
    let mut engine = Engine::start_member(
        herald_actors::EngineConfig {
            tracer: telemetry.as_ref().map(Telemetry::tracer),
            ..config.engine()
        },
        Arc::new(transport),
        Arc::new(ledger.clone()),
    )
    .await
    .map_err(|e| ServeError::Engine(line(e)))?;
    let handle = engine.handle();
    let tasks = CancellationToken::new();
    // The background tasks stop however this function returns.
    let _stop_tasks = tasks.clone().drop_guard();

    // 1. Webhooks, live.
    let watcher_health = Arc::new(WatchHealth::default());
    let (loaded_tx, loaded_rx) = oneshot::channel();
    let watcher = tokio::spawn(webhooks::run_watcher(
        db.clone(),
        handle.clone(),
        secrets.clone(),
        watcher_health.clone(),
        loaded_tx,
        tasks.clone(),
    ));
    match loaded_rx.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(ServeError::LoadWebhooks(line(e))),
        Err(_) => return Err(ServeError::WatcherStopped),
    }

    // 2. The cluster: take the free partitions (their endpoints read their pending
    // retries back), then keep the leases renewed.
    let (grants_tx, grants_rx) = mpsc::unbounded_channel();
    let coordinator = Coordinator::join(
        db.clone(),
        handle.clone(),
        grants_tx,
        cluster::Options {
            member_id,
            lease_ttl: Duration::from_millis(config.lease_ttl_ms),
            listen: addr,
            grace: Duration::from_millis(config.shutdown_grace_ms),
        },
    )
    .await
    .map_err(|e| ServeError::Cluster(line(e)))?;
    let coordinator = tokio::spawn(coordinator.run(tasks.clone()));

    // 3. The listener: an actor of its own, stopped below before the engine drains; its
    // publishes share writes through the group commit, which stops after it.
    let feed_health = Arc::new(FeedHealth::default());
    let (publisher, publisher_task) = GroupCommit::start(
        db.clone(),
        group_commit::Options {
            window: Duration::from_millis(config.publish_window_ms),
            writes_in_flight: config.publish_writes_in_flight,
        },
        tasks.clone(),
    );
    let app = Arc::new(AppState {
        db: db.clone(),
        config: config.clone(),
        engine: handle.clone(),
        catalog: Catalog::new(&config.event_types),
        feed: feed_health.clone(),
        watcher: watcher_health.clone(),
        secrets,
        publisher,
    });
    let (listener, listener_done) = Actor::spawn(None, Listener { app }, socket)
        .await
        .map_err(|e| ServeError::Listener(line(e)))?;
    if let Some(listening) = listening {
        let _ = listening.send(addr);
    }

    // 4. The feed, from the oldest checkpoint of the partitions taken.
    let feed = tokio::spawn(events::run_feed(
        db.clone(),
        handle.clone(),
        grants_rx,
        feed_health,
        tasks.clone(),
    ));

    let stopped_by_failure = tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = engine.stopped() => true,
    };
    // Stop accepting; open requests finish (they may still call the engine).
    listener.stop(Some("shutdown".into()));
    let _ = listener_done.await;
    tasks.cancel();
    let _ = publisher_task.await;
    let _ = feed.await;
    let _ = watcher.await;
    let coordinator = coordinator.await;
    if stopped_by_failure {
        return Err(ServeError::EngineStopped);
    }
    info!("shutting down: draining in-flight attempts");
    let stopped = engine
        .shutdown(Duration::from_millis(config.shutdown_grace_ms))
        .await;
    // Leases are freed only after the final checkpoints: the next owner starts there.
    if let (Ok(()), Ok(coordinator)) = (&stopped, coordinator) {
        coordinator.leave().await;
    }
    // Every attempt has ended: its span is queued, and goes out now.
    if let Some(telemetry) = telemetry {
        telemetry.shutdown().await;
    }
    stopped.map_err(ServeError::from)
}
