//! The engine's instruments, through the [`metrics`] facade.
//!
//! The engine only records; whoever embeds it installs a recorder (the daemon installs a
//! Prometheus one and serves `GET /metrics`). Without a recorder every handle is a no-op,
//! as in the engine's own tests.
//!
//! Handles are registered once per engine ([`EngineMetrics::new`], when the router starts)
//! and cloned into the actors, so the hot path is an atomic add on a pre-built handle: no
//! key is built and nothing is allocated per increment. The only labels that vary at run
//! time are event types, cached per endpoint actor in [`DeliveryCounters`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use crate::delivery::{AttemptResult, DeliveryError, DeliveryStatus};

/// `herald_deliveries_total{outcome, event_type}`: deliveries concluded per attempt outcome.
pub const DELIVERIES_TOTAL: &str = "herald_deliveries_total";
/// `herald_attempts_total{result}`: attempts by how they ended.
pub const ATTEMPTS_TOTAL: &str = "herald_attempts_total";
/// `herald_attempt_duration_seconds`: attempt latency histogram.
pub const ATTEMPT_DURATION_SECONDS: &str = "herald_attempt_duration_seconds";
/// `herald_attempts_in_flight`: attempts under way right now.
pub const ATTEMPTS_IN_FLIGHT: &str = "herald_attempts_in_flight";
/// `herald_events_routed_total`: events the router matched against the subscriptions.
pub const EVENTS_ROUTED_TOTAL: &str = "herald_events_routed_total";
/// `herald_events_in_flight`: events read from the feed whose deliveries are not all
/// durable yet. The feed waits while they number `max_events_in_flight` (or weigh
/// `max_bytes_in_flight`): a gauge that stays at that bound says deliveries, or their
/// records, are what holds the feed back.
pub const EVENTS_IN_FLIGHT: &str = "herald_events_in_flight";
/// `herald_endpoint_actors`: endpoint actors alive.
pub const ENDPOINT_ACTORS: &str = "herald_endpoint_actors";
/// `herald_endpoint_restarts_total`: endpoint actors restarted after a failure.
pub const ENDPOINT_RESTARTS_TOTAL: &str = "herald_endpoint_restarts_total";
/// `herald_ledger_batch_size`: delivery records per ledger write.
pub const LEDGER_BATCH_SIZE: &str = "herald_ledger_batch_size";
/// `herald_ledger_records_written_total`: delivery records the ledger has made durable.
/// Beside the sum of [`LEDGER_BATCH_SIZE`] (records handed to the ledger) it shows how far
/// the ledger's writes trail.
pub const LEDGER_RECORDS_WRITTEN_TOTAL: &str = "herald_ledger_records_written_total";
/// `herald_ledger_write_errors_total`: failed ledger writes (each is retried).
pub const LEDGER_WRITE_ERRORS_TOTAL: &str = "herald_ledger_write_errors_total";
/// `herald_deliveries_paused`: deliveries held by paused endpoints.
pub const DELIVERIES_PAUSED: &str = "herald_deliveries_paused";
/// `herald_deliveries_recorded_ahead_total`: deliveries recorded `pending` before any
/// attempt ended them: spilled for lack of room, or held but likely to wait (beyond the
/// endpoint's horizon, paused, failing). Each costs the database a write, and a spilled one
/// a read back too.
pub const DELIVERIES_RECORDED_AHEAD_TOTAL: &str = "herald_deliveries_recorded_ahead_total";
/// `herald_deliveries_read_back_total`: pending deliveries read back from the ledger.
pub const DELIVERIES_READ_BACK_TOTAL: &str = "herald_deliveries_read_back_total";

/// The `result` label of [`ATTEMPTS_TOTAL`], in index order.
pub const ATTEMPT_RESULTS: [&str; 9] = [
    "2xx",
    "4xx",
    "5xx",
    "timeout",
    "connect",
    "tls",
    "blocked",
    "invalid_url",
    "other",
];

/// The `outcome` label of [`DELIVERIES_TOTAL`], in index order.
pub const DELIVERY_OUTCOMES: [&str; 3] = ["succeeded", "failed", "retrying"];

/// Describes every engine metric to the installed recorder (HELP lines); idempotent.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        DELIVERIES_TOTAL,
        "Delivery attempts concluded, by outcome (succeeded, failed for good, retrying) and event type"
    );
    describe_counter!(ATTEMPTS_TOTAL, "Delivery attempts, by result");
    describe_histogram!(
        ATTEMPT_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of delivery attempts (connect + TLS + response)"
    );
    describe_gauge!(ATTEMPTS_IN_FLIGHT, "Delivery attempts under way");
    describe_counter!(EVENTS_ROUTED_TOTAL, "Events routed to their subscribers");
    describe_gauge!(
        EVENTS_IN_FLIGHT,
        "Events read from the feed whose deliveries are not all durable yet"
    );
    describe_gauge!(
        ENDPOINT_ACTORS,
        "Endpoint actors alive (one per enabled webhook)"
    );
    describe_counter!(
        ENDPOINT_RESTARTS_TOTAL,
        "Endpoint actors restarted after a failure"
    );
    describe_histogram!(LEDGER_BATCH_SIZE, "Delivery records per ledger write");
    describe_counter!(
        LEDGER_RECORDS_WRITTEN_TOTAL,
        "Delivery records the ledger has made durable"
    );
    describe_counter!(
        LEDGER_WRITE_ERRORS_TOTAL,
        "Failed ledger writes (retried until they succeed)"
    );
    describe_gauge!(DELIVERIES_PAUSED, "Deliveries held by paused webhooks");
    describe_counter!(
        DELIVERIES_RECORDED_AHEAD_TOTAL,
        "Deliveries recorded pending before an attempt ended them (spilled, or likely to wait)"
    );
    describe_counter!(
        DELIVERIES_READ_BACK_TOTAL,
        "Pending deliveries read back from the ledger"
    );
}

/// The index of an attempt's result in [`ATTEMPT_RESULTS`].
pub fn attempt_result_index(result: &AttemptResult) -> usize {
    match result {
        Ok(response) => match response.status {
            200..=299 => 0,
            400..=499 => 1,
            500..=599 => 2,
            _ => 8,
        },
        Err(DeliveryError::Timeout(_)) => 3,
        Err(DeliveryError::Connect(_)) => 4,
        Err(DeliveryError::Tls(_)) => 5,
        Err(DeliveryError::Blocked(_)) => 6,
        Err(DeliveryError::InvalidUrl(_)) => 7,
        Err(DeliveryError::Io(_)) => 8,
    }
}

/// The engine's handles, shared by its actors.
#[derive(Debug, Clone)]
pub struct EngineMetrics {
    attempts: [Counter; 9],
    pub attempt_duration: Histogram,
    pub in_flight: Gauge,
    pub events_routed: Counter,
    pub events_in_flight: Gauge,
    pub endpoint_actors: Gauge,
    pub endpoint_restarts: Counter,
    pub ledger_batch_size: Histogram,
    pub ledger_records_written: Counter,
    pub ledger_write_errors: Counter,
    pub paused: Gauge,
    pub recorded_ahead: Counter,
    pub read_back: Counter,
}

impl EngineMetrics {
    /// Registers the handles with the recorder installed now (no-ops without one).
    pub fn new() -> Self {
        describe();
        Self {
            attempts: ATTEMPT_RESULTS
                .map(|result| metrics::counter!(ATTEMPTS_TOTAL, "result" => result)),
            attempt_duration: metrics::histogram!(ATTEMPT_DURATION_SECONDS),
            in_flight: metrics::gauge!(ATTEMPTS_IN_FLIGHT),
            events_routed: metrics::counter!(EVENTS_ROUTED_TOTAL),
            events_in_flight: metrics::gauge!(EVENTS_IN_FLIGHT),
            endpoint_actors: metrics::gauge!(ENDPOINT_ACTORS),
            endpoint_restarts: metrics::counter!(ENDPOINT_RESTARTS_TOTAL),
            ledger_batch_size: metrics::histogram!(LEDGER_BATCH_SIZE),
            ledger_records_written: metrics::counter!(LEDGER_RECORDS_WRITTEN_TOTAL),
            ledger_write_errors: metrics::counter!(LEDGER_WRITE_ERRORS_TOTAL),
            paused: metrics::gauge!(DELIVERIES_PAUSED),
            recorded_ahead: metrics::counter!(DELIVERIES_RECORDED_AHEAD_TOTAL),
            read_back: metrics::counter!(DELIVERIES_READ_BACK_TOTAL),
        }
    }

    /// Counts one ended attempt and its duration.
    pub fn attempt(&self, result: &AttemptResult, elapsed: Duration) {
        self.attempts[attempt_result_index(result)].increment(1);
        self.attempt_duration.record(elapsed.as_secs_f64());
    }
}

impl Default for EngineMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `herald_deliveries_total` handles per event type, cached by one endpoint actor: event
/// types are few, so after the first delivery of a type a lookup is one hash probe.
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    by_type: HashMap<Arc<str>, [Counter; 3]>,
}

impl DeliveryCounters {
    /// Counts one concluded attempt: `Succeeded`, `Failed` (for good) or `Pending`
    /// (retrying).
    pub fn record(&mut self, event_type: &Arc<str>, status: DeliveryStatus) {
        let index = match status {
            DeliveryStatus::Succeeded => 0,
            DeliveryStatus::Failed => 1,
            DeliveryStatus::Pending => 2,
        };
        if let Some(counters) = self.by_type.get(&**event_type) {
            counters[index].increment(1);
            return;
        }
        let counters = DELIVERY_OUTCOMES.map(|outcome| {
            metrics::counter!(DELIVERIES_TOTAL, "outcome" => outcome, "event_type" => event_type.to_string())
        });
        counters[index].increment(1);
        self.by_type.insert(event_type.clone(), counters);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::AttemptResponse;

    #[test]
    fn attempt_results_are_classified() {
        let status = |status| {
            Ok(AttemptResponse {
                status,
                retry_after: None,
            })
        };
        let cases: Vec<(AttemptResult, &str)> = vec![
            (status(204), "2xx"),
            (status(404), "4xx"),
            (status(503), "5xx"),
            (status(302), "other"),
            (Err(DeliveryError::Timeout(5)), "timeout"),
            (Err(DeliveryError::Connect("x".into())), "connect"),
            (Err(DeliveryError::Tls("x".into())), "tls"),
            (Err(DeliveryError::Blocked("x".into())), "blocked"),
            (Err(DeliveryError::InvalidUrl("x".into())), "invalid_url"),
            (Err(DeliveryError::Io("x".into())), "other"),
        ];
        for (result, expected) in cases {
            assert_eq!(ATTEMPT_RESULTS[attempt_result_index(&result)], expected);
        }
    }
}
