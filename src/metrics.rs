//! Prometheus metrics: the process-wide recorder behind `GET /metrics`.
//!
//! The engine records through the [`metrics`] facade (`herald_actors::metrics` names its
//! instruments); this module installs one `metrics-exporter-prometheus` recorder per
//! process, the first time [`install`] is called (before the engine starts, so every
//! handle the engine registers is live), and renders it in the text exposition format.
//! No exporter listener: the API's own listener serves the text.
//!
//! The daemon's own instruments live here too: the change-stream lag (set by the feed)
//! and inbound provider webhooks (counted by `inbound::receive`).
//!
//! Several daemons in one process (the integration tests) share the recorder, so values
//! are process-wide.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use herald_actors::metrics::{ATTEMPT_DURATION_SECONDS, LEDGER_BATCH_SIZE};
use metrics::{describe_counter, describe_gauge, Gauge, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::warn;

/// `herald_change_stream_lag_seconds`: now − the wall (or cluster) time of the last change
/// the event feed read.
pub const CHANGE_STREAM_LAG_SECONDS: &str = "herald_change_stream_lag_seconds";
/// `herald_inbound_webhooks_total{provider, outcome}`: inbound provider requests.
pub const INBOUND_WEBHOOKS_TOTAL: &str = "herald_inbound_webhooks_total";

/// `herald_cluster_members{member}`: live members of the cluster, as this member sees them.
pub const CLUSTER_MEMBERS: &str = "herald_cluster_members";
/// `herald_partitions_owned{member}`: partitions this member holds the lease of.
pub const PARTITIONS_OWNED: &str = "herald_partitions_owned";
/// `herald_feed_checkpoint_age_seconds{member}`: now − when the position of the oldest
/// owned partition's stored checkpoint was current in the feed.
pub const FEED_CHECKPOINT_AGE_SECONDS: &str = "herald_feed_checkpoint_age_seconds";
/// `herald_lease_renewal_failures_total{member}`: rounds whose renewal the store refused
/// or did not answer, or answered only after a lease period (attempts waited meanwhile).
pub const LEASE_RENEWAL_FAILURES_TOTAL: &str = "herald_lease_renewal_failures_total";

/// `herald_deliveries_pending{database}`: deliveries waiting for an attempt (status
/// `pending`, including those held by paused webhooks and those of disabled ones).
pub const DELIVERIES_PENDING: &str = "herald_deliveries_pending";

/// How often [`DELIVERIES_PENDING`] is counted, at most.
const PENDING_INTERVAL: Duration = Duration::from_secs(5);
/// A count may take at most this share of the time between counts: a store that cannot
/// count from its index (a scan) is asked less often, never kept busy counting.
const PENDING_MAX_DUTY: u32 = 100;

/// The `outcome` label of [`INBOUND_WEBHOOKS_TOTAL`].
pub mod inbound_outcome {
    /// Applied (or already applied: a provider retry).
    pub const HANDLED: &str = "handled";
    /// Verified, but a type herald does not act on.
    pub const IGNORED: &str = "ignored";
    /// No such connection (404).
    pub const UNKNOWN_CONNECTION: &str = "unknown_connection";
    /// Missing, invalid or stale signature (401).
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// Verified but unreadable body (400).
    pub const BAD_PAYLOAD: &str = "bad_payload";
    /// MongoDB failed (503; the provider retries).
    pub const ERROR: &str = "error";
}

/// Attempt latency buckets, in seconds: from a fast LAN receiver to the attempt timeout.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Ledger batch sizes, in records.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

/// How often histograms are drained and idle entries swept between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder, once; later calls return the same
/// handle. `None` when another recorder was installed first (metrics then go there, and
/// `/metrics` is empty).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(ATTEMPT_DURATION_SECONDS.into()),
                    DURATION_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(LEDGER_BATCH_SIZE.into()), BATCH_BUCKETS)
                });
            let handle = match builder.and_then(PrometheusBuilder::install_recorder) {
                Ok(handle) => handle,
                Err(error) => {
                    warn!(%error, "cannot install the Prometheus recorder; /metrics stays empty");
                    return None;
                }
            };
            herald_actors::metrics::describe();
            describe_gauge!(
                CHANGE_STREAM_LAG_SECONDS,
                Unit::Seconds,
                "Now minus the time of the last change the event feed read"
            );
            describe_gauge!(
                DELIVERIES_PENDING,
                "Deliveries waiting for an attempt (counted in MongoDB every 5 s)"
            );
            describe_gauge!(CLUSTER_MEMBERS, "Live members of the cluster, as this member sees them");
            describe_gauge!(PARTITIONS_OWNED, "Partitions whose lease this member holds");
            describe_gauge!(
                FEED_CHECKPOINT_AGE_SECONDS,
                Unit::Seconds,
                "Now minus when the oldest owned partition's stored checkpoint was current in the feed"
            );
            describe_counter!(
                LEASE_RENEWAL_FAILURES_TOTAL,
                "Lease rounds the store refused, did not answer, or answered only after a lease period"
            );
            describe_counter!(
                INBOUND_WEBHOOKS_TOTAL,
                "Inbound provider webhook requests, by provider and outcome"
            );
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("herald-metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                });
            if let Err(error) = spawned {
                warn!(%error, "cannot start the metrics upkeep thread; histograms drain at scrapes only");
            }
            Some(handle)
        })
        .as_ref()
}

/// The current metrics in the Prometheus text exposition format.
pub fn render() -> String {
    install().map(PrometheusHandle::render).unwrap_or_default()
}

/// The last change-stream lag set, in ms (for the member's heartbeat).
static LAG_MS: AtomicU64 = AtomicU64::new(0);

/// The change-stream lag last set (`None` before the feed read anything).
pub fn change_stream_lag() -> Duration {
    Duration::from_millis(LAG_MS.load(Ordering::Relaxed))
}

/// Sets the cluster gauges of member `member`.
pub fn set_cluster(
    member: &str,
    live_members: usize,
    owned: usize,
    checkpoint_age: Option<Duration>,
) {
    install();
    let member = member.to_owned();
    metrics::gauge!(CLUSTER_MEMBERS, "member" => member.clone()).set(live_members as f64);
    metrics::gauge!(PARTITIONS_OWNED, "member" => member.clone()).set(owned as f64);
    metrics::gauge!(FEED_CHECKPOINT_AGE_SECONDS, "member" => member)
        .set(checkpoint_age.map_or(0.0, |a| a.as_secs_f64()));
}

/// Counts one failed lease round of `member`.
pub fn count_renewal_failure(member: &str) {
    install();
    metrics::counter!(LEASE_RENEWAL_FAILURES_TOTAL, "member" => member.to_owned()).increment(1);
}

/// Sets the change-stream lag gauge (a pre-built handle: the feed calls this per change).
pub fn set_change_stream_lag(lag: Duration) {
    LAG_MS.store(lag.as_millis() as u64, Ordering::Relaxed);
    static LAG: OnceLock<Gauge> = OnceLock::new();
    LAG.get_or_init(|| {
        install();
        metrics::gauge!(CHANGE_STREAM_LAG_SECONDS)
    })
    .set(lag.as_secs_f64());
}

/// Counts one inbound provider request by its outcome (an [`inbound_outcome`] constant).
pub fn count_inbound(provider: &'static str, outcome: &'static str) {
    install();
    metrics::counter!(INBOUND_WEBHOOKS_TOTAL, "provider" => provider, "outcome" => outcome)
        .increment(1);
}

/// Keeps [`DELIVERIES_PENDING`] of `database` current with `count` (the store's count of
/// pending deliveries, an index count on MongoDB): every 5 s, or a hundred times as long as
/// the last count took if that is longer, in a task of its own so that a scrape never waits
/// on MongoDB. A failed count leaves the last value. The task stops when the returned guard
/// is dropped.
pub fn spawn_pending_gauge<C, F, E>(database: &str, count: C) -> PendingGauge
where
    C: Fn() -> F + Send + 'static,
    F: std::future::Future<Output = Result<u64, E>> + Send,
    E: std::fmt::Display,
{
    install();
    let gauge = metrics::gauge!(DELIVERIES_PENDING, "database" => database.to_owned());
    PendingGauge(tokio::spawn(async move {
        loop {
            let started = std::time::Instant::now();
            match count().await {
                Ok(n) => gauge.set(n as f64),
                Err(error) => tracing::debug!(%error, "cannot count pending deliveries"),
            }
            let took = started.elapsed();
            tokio::time::sleep(PENDING_INTERVAL.max(took * PENDING_MAX_DUTY)).await;
        }
    }))
}

/// Stops the [`DELIVERIES_PENDING`] task when dropped.
pub struct PendingGauge(tokio::task::JoinHandle<()>);

impl Drop for PendingGauge {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format_with_the_configured_buckets() {
        install();
        let metrics = herald_actors::metrics::EngineMetrics::new();
        metrics.attempt(
            &Ok(herald_actors::AttemptResponse {
                status: 204,
                retry_after: None,
            }),
            Duration::from_millis(30),
        );
        count_inbound("mux", inbound_outcome::IGNORED);
        set_change_stream_lag(Duration::from_millis(1500));
        let text = render();
        assert!(
            text.contains("# TYPE herald_attempt_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("herald_attempt_duration_seconds_bucket{le=\"0.05\"}"),
            "{text}"
        );
        assert!(
            text.contains("herald_attempts_total{result=\"2xx\"}"),
            "{text}"
        );
        assert!(
            text.contains("herald_inbound_webhooks_total{provider=\"mux\",outcome=\"ignored\"}"),
            "{text}"
        );
        assert!(
            text.contains("herald_change_stream_lag_seconds 1.5"),
            "{text}"
        );
    }
}
