//! # herald-actors — the delivery engine
//!
//! Events come in through an [`EngineHandle`](engine::EngineHandle); the
//! [router](router) matches each against the [subscription index](webhook::SubscriptionIndex)
//! and hands it to one [endpoint actor](endpoint) per subscribed webhook. An endpoint actor
//! owns its queue, its rate limiter, its cap on in-flight attempts and its backoff timers;
//! it runs its attempts in one task through the [`Transport`](ports::Transport)
//! and reports every ended attempt to the [ledger writer](ledger_writer), which batches them
//! into the [`Ledger`](ports::Ledger) and tells the router, through a callback the router
//! handed it, which events those records settle. Once every delivery of an event is
//! durable, the router advances the feed checkpoint past it.
//!
//! ```text
//!   feed ──► Router ──► Endpoint(wh_1) ──► Transport (HTTPS)
//!     ▲        │   └──► Endpoint(wh_2) ──┐
//!     │        ▼                         ▼
//!  checkpoint ◄──── durable ◄──── LedgerWriter ──► Ledger (MongoDB)
//! ```
//!
//! The engine talks to the world only through [`ports`], so it runs unchanged against
//! MongoDB + hyper in the daemon and against in-memory fakes (the `fakes` module, built for
//! this crate's tests and with the `fakes` feature) in tests and benchmarks.
//!
//! The [supervisor] is the root of the tree; the [router] supervises the endpoint actors
//! and restarts a failed one (at most so often: [restart]). Every actor module reads the
//! same way: its `Msg` enum, its `State`, then `impl Actor` for the type named after it
//! (`Supervisor`, `Router`, `LedgerWriter`, `Endpoint`). Children never name their parent's
//! message type: the parent hands them a callback, so the imports form a tree.

pub mod config;
pub mod delivery;
pub mod endpoint;
pub mod engine;
pub mod event;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod health;
pub mod ledger_writer;
pub mod metrics;
pub mod partition;
pub mod ports;
pub mod restart;
pub mod retry;
pub mod router;
pub mod signing;
pub mod supervisor;
pub mod trace;
pub mod webhook;
pub mod window;

#[cfg(test)]
mod tests;

pub use config::EngineConfig;
pub use engine::{Engine, EngineHandle, EngineStopped, ReleaseError, ShutdownError};
pub use router::Rewind;

pub use delivery::{AttemptResponse, AttemptResult, DeliveryError, DeliveryRecord, DeliveryStatus};
pub use event::{Event, Payload};
pub use health::{Alert, EndpointHealth, HealthPolicy, HealthSnapshot, StoredHealth};
pub use partition::{
    partition_of, Grant, PartitionCheckpoint, PartitionReport, Position, QuietMark, PARTITIONS,
};
pub use ports::{
    AttemptSpan, AttemptTrace, Ledger, LedgerError, OutboundRequest, RoutingSpan, Tracer, Transport,
};
pub use retry::{next_delay, RetryPolicy};
pub use signing::{Signer, SigningKey};
pub use trace::{BadTraceParent, TraceParent};
pub use webhook::{EventFilter, SubscriptionIndex, WebhookSpec};
