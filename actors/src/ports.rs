//! The engine's seams: how it reaches receivers and where it records deliveries.
//!
//! The daemon implements these with hyper (HTTPS) and MongoDB; unit tests and benchmarks
//! implement them in memory. The [`Tracer`] is optional: the daemon implements it with
//! OpenTelemetry when traces are exported, and without one the engine builds no span.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::delivery::{AttemptResult, DeliveryRecord, PendingDelivery};
use crate::event::Event;
use crate::health::{Alert, StoredHealth};
use crate::partition::{PartitionCheckpoint, QuietMark};
use crate::trace::TraceParent;

/// One signed POST, ready to send. Everything is pre-built: the transport only dials.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    /// The webhook's URL, as configured.
    pub url: Arc<str>,
    /// `webhook-id` (the event id).
    pub msg_id: Arc<str>,
    /// `webhook-timestamp`: unix seconds of this attempt.
    pub timestamp: i64,
    /// `webhook-signature`: one or more space-separated `v1,<base64>`.
    pub signature: String,
    /// The webhook's own headers, sent verbatim (e.g. `X-Mixpeek-Secret`).
    pub headers: Arc<[(String, String)]>,
    /// The JSON body, byte-identical across attempts and endpoints.
    pub body: Bytes,
    /// Sent as the `traceparent` header: the attempt's span, or the producer's context
    /// when tracing is off. Not signed: the signature covers the id, timestamp and body.
    pub trace: Option<TraceParent>,
}

/// Sends one attempt. The engine applies the whole-attempt timeout around this future.
pub trait Transport: Send + Sync + 'static {
    fn send(&self, request: OutboundRequest) -> BoxFuture<'static, AttemptResult>;

    /// A transport for one endpoint's exclusive use (its own connections), so that an
    /// endpoint that does not answer cannot hold resources its neighbours need. Endpoints
    /// use it only while their attempts fail; answering ones share `self`. `None`: share
    /// this one always.
    fn isolated(&self) -> Option<std::sync::Arc<dyn Transport>> {
        None
    }
}

/// Pending deliveries read back from the ledger, in order.
pub type PendingStream = BoxStream<'static, Result<PendingDelivery, LedgerError>>;

/// Why the ledger could not do what was asked. Every kind is transient to the engine: it
/// retries (with backoff) and never drops what it was writing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// The store failed or refused the operation (connection lost, write refused); its
    /// message, on one line.
    #[error("ledger: {0}")]
    Store(String),
    /// No answer within the engine's deadline for this operation.
    #[error("ledger: no answer within {} s", .0.as_secs())]
    TimedOut(std::time::Duration),
    /// The ledger writer did not confirm in time that earlier records are durable, so what
    /// the ledger holds cannot be read back yet.
    #[error("ledger: the ledger writer did not confirm earlier records in time")]
    Unconfirmed,
}

/// Where deliveries and the feed checkpoint are made durable.
pub trait Ledger: Send + Sync + 'static {
    /// Durably records a batch of delivery states, in order (shared so that a failed write
    /// can be retried without copying). A delivery's first record
    /// creates it; later ones update it. Must be idempotent under replay: after a crash the
    /// same first record may be written again.
    fn write(&self, batch: Arc<Vec<DeliveryRecord>>)
        -> BoxFuture<'static, Result<(), LedgerError>>;

    /// Stores partition checkpoints (each the feed position below which every delivery of
    /// that partition is durable), each only if its epoch is still the partition lease's.
    /// Answers the partitions whose write was refused because the lease has moved on (the
    /// engine is fenced: another daemon owns them now).
    fn checkpoint(
        &self,
        checkpoints: Vec<PartitionCheckpoint>,
    ) -> BoxFuture<'static, Result<Vec<u16>, LedgerError>>;

    /// Stores where this member's quiet partitions may resume (one small write, in place
    /// of a checkpoint per quiet partition), replacing the mark stored before. Only for
    /// take-overs: a taker may resume a partition from it if the partition is still held
    /// under the epoch the mark names. Without it (the default, which stores nothing),
    /// takers resume from the partitions' own checkpoints.
    fn mark_quiet(&self, mark: QuietMark) -> BoxFuture<'static, Result<(), LedgerError>> {
        let _ = mark;
        Box::pin(std::future::ready(Ok(())))
    }

    /// Which of these deliveries the ledger has a record of, in any state (one query per
    /// batch): those need not be sent again when a partition is taken over.
    fn recorded(
        &self,
        delivery_ids: Vec<String>,
    ) -> BoxFuture<'static, Result<HashSet<String>, LedgerError>>;

    /// The pending deliveries of one webhook whose next attempt is due at or before
    /// `due_before`, oldest `next_attempt_at` first (ties by delivery id), read through one
    /// cursor in batches of `batch_size`. The endpoint pulls from it as it has room, so
    /// however large the backlog, at most a batch of it is in memory here.
    fn pending_for(
        &self,
        webhook_id: &str,
        due_before: SystemTime,
        batch_size: usize,
    ) -> BoxFuture<'static, Result<PendingStream, LedgerError>>;

    /// The earliest `next_attempt_at` after `after` among the webhook's pending deliveries:
    /// when the endpoint should look again.
    fn next_due_for(
        &self,
        webhook_id: &str,
        after: SystemTime,
    ) -> BoxFuture<'static, Result<Option<SystemTime>, LedgerError>>;

    /// Which of these webhooks have pending deliveries (a query per few thousand webhooks,
    /// not per webhook): endpoints that start without knowing what the ledger holds for
    /// them read it back only if named.
    fn with_pending(
        &self,
        webhook_ids: Vec<Arc<str>>,
    ) -> BoxFuture<'static, Result<HashSet<String>, LedgerError>>;

    /// Publishes an operational alert (an endpoint failing or recovered, a delivery
    /// exhausted) as an event, and acts on a disable request. Must be idempotent: the same
    /// alert may be handed over again after a failed attempt.
    fn alert(&self, alert: Alert) -> BoxFuture<'static, Result<(), LedgerError>> {
        let _ = alert;
        Box::pin(std::future::ready(Ok(())))
    }

    /// Keeps the persistent part of an endpoint's health, replacing what was kept, unless
    /// what is kept was taken later (`updated_at`): a late write of an older copy (say, of
    /// a daemon that has just lost the endpoint) never overwrites a newer one. The endpoint
    /// writes it when its health changes, at most every few seconds, and at once when a
    /// line is crossed; never on an attempt's way.
    fn save_health(
        &self,
        webhook_id: &str,
        health: StoredHealth,
    ) -> BoxFuture<'static, Result<(), LedgerError>> {
        let _ = (webhook_id, health);
        Box::pin(std::future::ready(Ok(())))
    }

    /// The endpoint's health as last kept (`None`: never kept, or forgotten with its
    /// webhook). Read once when an endpoint actor starts for a webhook, before its first
    /// attempt.
    fn load_health(
        &self,
        webhook_id: &str,
    ) -> BoxFuture<'static, Result<Option<StoredHealth>, LedgerError>> {
        let _ = webhook_id;
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// Where the engine reports its work as trace spans: the routing of each event, and each
/// attempt under it. Called only when tracing is on ([`EngineConfig::tracer`]); spans end
/// on the engine's side, so an implementation only builds and exports them.
///
/// [`EngineConfig::tracer`]: crate::config::EngineConfig::tracer
pub trait Tracer: Send + Sync + std::fmt::Debug + 'static {
    /// The routing of `event` begins; its span's parent is the event's own trace context
    /// (the producer's), if any.
    fn routing(&self, event: &Event) -> Box<dyn RoutingSpan>;

    /// An attempt begins; its span's parent is `attempt.parent`.
    fn attempt(&self, attempt: AttemptTrace<'_>) -> Box<dyn AttemptSpan>;
}

/// The span of one event's routing.
pub trait RoutingSpan: Send {
    /// The span's context: what the event's attempts descend from (`None`: the span has
    /// no valid context, and the attempts keep the event's).
    fn context(&self) -> Option<TraceParent>;

    /// The routing is done: the event went to `endpoints` endpoints.
    fn end(self: Box<Self>, endpoints: usize);
}

/// What an attempt span tells about its attempt.
#[derive(Debug, Clone, Copy)]
pub struct AttemptTrace<'a> {
    pub event: &'a Event,
    pub webhook_id: &'a str,
    /// 1 for the first attempt of the delivery.
    pub attempt: u32,
    /// The parent context: the routing span's, or the producer's.
    pub parent: Option<TraceParent>,
}

/// The span of one attempt.
pub trait AttemptSpan: Send {
    /// The span's context, sent on as the attempt's `traceparent` header.
    fn context(&self) -> Option<TraceParent>;

    /// The attempt ended with `result` after `elapsed`.
    fn end(self: Box<Self>, result: &AttemptResult, elapsed: Duration);
}
