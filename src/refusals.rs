//! Refusals by the listener and the request guard, counted and logged at warn — at most
//! one line a second, however fast they come, so that a flood of bad clients cannot turn
//! into a flood of log lines.
//!
//! Each refusal increments `herald_listener_refusals_total{reason}` at once; the warn line
//! carries the counts since the previous line. Several daemons in one process (the
//! integration tests) share the counts, like the metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::warn;

/// `herald_listener_refusals_total{reason}`: connections and requests the listener
/// refused or cut off.
pub const LISTENER_REFUSALS_TOTAL: &str = "herald_listener_refusals_total";

/// At most one warn line per this.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Why a connection or request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` reached and no idle connection to close: closed at once.
    AtCapacity,
    /// An idle connection closed to make room for a new one.
    Evicted,
    /// The request head did not arrive within `--header-read-timeout`.
    HeaderTimeout,
    /// The body did not arrive within `--request-timeout` (408).
    BodyTimeout,
    /// The body exceeded the route's limit (413).
    BodyTooLarge,
    /// A keyless API request a browser could have made on another site's behalf (403/415).
    CrossSite,
}

const KINDS: [Refusal; 6] = [
    Refusal::AtCapacity,
    Refusal::Evicted,
    Refusal::HeaderTimeout,
    Refusal::BodyTimeout,
    Refusal::BodyTooLarge,
    Refusal::CrossSite,
];

impl Refusal {
    /// The metric label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::AtCapacity => "at_capacity",
            Refusal::Evicted => "idle_evicted",
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::CrossSite => "cross_site",
        }
    }

    fn index(self) -> usize {
        KINDS.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// Counts since the last line, and when it was written.
struct Tally {
    counts: [AtomicU64; KINDS.len()],
    last_line: Mutex<Option<Instant>>,
}

static TALLY: Tally = Tally {
    counts: [
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ],
    last_line: Mutex::new(None),
};

/// Records one refusal; writes the warn line if none was written in the last second.
pub fn note(refusal: Refusal) {
    metrics::counter!(LISTENER_REFUSALS_TOTAL, "reason" => refusal.as_str()).increment(1);
    TALLY.counts[refusal.index()].fetch_add(1, Ordering::Relaxed);
    let now = Instant::now();
    {
        let Ok(mut last) = TALLY.last_line.try_lock() else {
            // Another thread is writing the line; this refusal is in its counts or the next.
            return;
        };
        if last.is_some_and(|at| now.duration_since(at) < LOG_EVERY) {
            return;
        }
        *last = Some(now);
    }
    let counts = KINDS.map(|k| TALLY.counts[k.index()].swap(0, Ordering::Relaxed));
    let [at_capacity, idle_evicted, header_timeout, body_timeout, body_too_large, cross_site] =
        counts;
    warn!(
        at_capacity,
        idle_evicted,
        header_timeout,
        body_timeout,
        body_too_large,
        cross_site,
        "listener refused connections or requests (counts since the last such line)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_slot() {
        for (i, kind) in KINDS.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
        // Many refusals in a burst are counted without panicking or blocking.
        for _ in 0..10_000 {
            note(Refusal::AtCapacity);
        }
    }
}
