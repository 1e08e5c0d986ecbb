//! The engine's tunables, fixed at start.

use std::sync::Arc;
use std::time::Duration;

use crate::health::HealthPolicy;
use crate::ports::Tracer;
use crate::retry::RetryPolicy;

/// How the engine delivers. Built by the daemon from its validated configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The backoff schedule.
    pub retry: RetryPolicy,
    /// Whole-attempt timeout (connect + TLS + response headers).
    pub attempt_timeout: Duration,
    /// At most this many attempts in flight per endpoint, so one endpoint cannot take
    /// every connection and a slow one holds only its own work.
    pub max_in_flight_per_endpoint: usize,
    /// Events accepted but not yet durable (every delivery recorded). When the window is
    /// full, [`EngineHandle::submit`](crate::engine::EngineHandle::submit) waits: this is
    /// the back-pressure on the change stream and the bound on memory.
    pub max_events_in_flight: usize,
    /// Bytes of event bodies accepted but not yet durable, at most: the window's second
    /// bound, so that a run of large events cannot fill memory while the count is low. An
    /// event larger than the whole bound is admitted alone (see [`crate::window`]).
    pub max_bytes_in_flight: u64,
    /// Delivery records written to the ledger in one batch, at most.
    pub ledger_batch_max: usize,
    /// How long a record that reaches an idle ledger writer waits for companions before
    /// its batch is written. Under load batches form anyway, while the previous write is
    /// under way; so this only decides how soon a lone record is durable, and it is short:
    /// at 5 ms, with events 10 ms apart, each delivery's write reached the store just as the
    /// next event did and delayed it (p99 insert→receipt at 100 events/s 5.2–5.4 ms; at
    /// 1 ms 3.4–3.5 ms, with the same e2e throughput).
    pub ledger_flush_interval: Duration,
    /// Endpoint actor restarts allowed per minute before the endpoint is given up on.
    pub max_restarts_per_minute: usize,
    /// A partition's checkpoint is written at most this often while events route deliveries
    /// to it (a crash re-reads the feed from there; deliveries already recorded are not
    /// sent again).
    pub checkpoint_interval: Duration,
    /// A partition no event routed a delivery to since its last checkpoint (a quiet one) is
    /// written at most this often: its checkpoint protects nothing of its own, it only keeps
    /// the feed's resume point near. Every checkpoint is a document written, and a server
    /// serving the change stream pays for each; with 64 partitions and a handful of busy
    /// webhooks, most partitions are quiet.
    pub quiet_checkpoint_interval: Duration,
    /// How often the newest position below which the quiet partitions have nothing
    /// unsettled is stored as one [`QuietMark`](crate::partition::QuietMark) (through
    /// [`Ledger::mark_quiet`](crate::ports::Ledger::mark_quiet)), at most; only when it
    /// moved. One write for all quiet partitions keeps a take-over's re-read short while
    /// their own checkpoints are written at `quiet_checkpoint_interval`. `None` (the
    /// default): no marks.
    pub quiet_mark_interval: Option<Duration>,
    /// When an endpoint counts as failing, and whether it is disabled after a while.
    pub health: HealthPolicy,
    /// Deliveries one endpoint holds in memory (queued, in flight and waiting for a retry
    /// timer), at most. Beyond it they are spilled: recorded as `pending` in the ledger and
    /// paged back in, oldest due first, when the endpoint has room. Large enough that a
    /// healthy endpoint rides out a burst without touching the ledger (half the feed
    /// window), small enough that a dead endpoint with any backlog costs a few MiB. An
    /// endpoint that cannot send that many soon (rate-limited, slow, failing) holds less:
    /// what it sends in two seconds, and at least `max_in_flight_per_endpoint` (see
    /// [`endpoint`](crate::endpoint)'s `pace`).
    pub max_held_per_endpoint: usize,
    /// Deliveries all endpoints together hold in memory, at most (beyond it, an endpoint
    /// holding more than `max_in_flight_per_endpoint` spills), so many dead endpoints cannot
    /// add up to unbounded memory either.
    pub max_held_total: usize,
    /// Pending deliveries read from the ledger per page (and per server round trip).
    pub ledger_page_size: usize,
    /// Where spans of routings and attempts go; `None` (the default): tracing is off and
    /// no span is built.
    pub tracer: Option<Arc<dyn Tracer>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            attempt_timeout: Duration::from_secs(10),
            max_in_flight_per_endpoint: 64,
            max_events_in_flight: 20_000,
            max_bytes_in_flight: 64 << 20,
            ledger_batch_max: 1_000,
            ledger_flush_interval: Duration::from_millis(1),
            max_restarts_per_minute: 10,
            checkpoint_interval: Duration::from_millis(100),
            quiet_checkpoint_interval: Duration::from_secs(1),
            quiet_mark_interval: None,
            health: HealthPolicy::default(),
            max_held_per_endpoint: 10_000,
            max_held_total: 100_000,
            ledger_page_size: 1_000,
            tracer: None,
        }
    }
}
