//! Endpoint health: what an operator sees of an endpoint, and the alerts it raises.
//!
//! Every ended attempt is recorded in the endpoint's [`EndpointHealth`]: consecutive
//! failures, the last success and failure, and a success rate over the last hour in
//! one-minute buckets. The record lives beside the endpoint's backlog, so it survives a
//! restart of the endpoint actor. Its persistent part ([`StoredHealth`]) is kept in the
//! ledger too, so that it survives a restart of the daemon and a take-over by another one:
//! a new owner starts from it, and a streak that was failing does not alert again.
//!
//! Recording an attempt may cross a line, and each line is crossed once per failing streak:
//! `failing_after` failed attempts in a row make the endpoint *failing*
//! ([`Alert::EndpointFailing`]); its next 2xx makes it *recovered*
//! ([`Alert::EndpointRecovered`]); failing without a break for `disable_after` asks for the
//! webhook to be disabled ([`Alert::EndpointDisabled`]). A delivery that runs out of retries
//! raises [`Alert::DeliveryExhausted`]. The engine hands alerts to the ledger, which
//! publishes them as operational events that webhooks subscribe to like any other.

use std::time::{Duration, SystemTime};

use crate::delivery::AttemptResult;

/// When an endpoint counts as failing, and what follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Failed attempts in a row after which the endpoint is failing (and one
    /// `webhook.endpoint.failing` is published).
    pub failing_after: u32,
    /// Disable the webhook once it has been failing without a single 2xx for this long.
    /// `None`: never (the default).
    pub disable_after: Option<Duration>,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            failing_after: 10,
            disable_after: None,
        }
    }
}

/// Minutes in the success-rate window.
const WINDOW_MINUTES: usize = 60;

/// The health record of one endpoint.
#[derive(Debug, Clone)]
pub struct EndpointHealth {
    consecutive_failures: u32,
    /// When the current failing streak began (its first failed attempt).
    streak_since: Option<SystemTime>,
    /// The failing alert of the current streak was raised.
    failing: bool,
    /// The disable request of the current streak was raised.
    disable_requested: bool,
    last_success_at: Option<SystemTime>,
    last_failure_at: Option<SystemTime>,
    last_status_code: Option<u16>,
    last_error: Option<String>,
    /// `(minute since the epoch, 2xx answers, attempts)`, indexed by minute modulo the
    /// window.
    buckets: [(u64, u32, u32); WINDOW_MINUTES],
}

impl Default for EndpointHealth {
    fn default() -> Self {
        Self {
            consecutive_failures: 0,
            streak_since: None,
            failing: false,
            disable_requested: false,
            last_success_at: None,
            last_failure_at: None,
            last_status_code: None,
            last_error: None,
            buckets: [(0, 0, 0); WINDOW_MINUTES],
        }
    }
}

/// A point-in-time copy of an [`EndpointHealth`], for the API.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSnapshot {
    pub consecutive_failures: u32,
    /// The endpoint is failing: `failing_after` attempts in a row failed and none has
    /// succeeded since.
    pub failing: bool,
    pub failing_since: Option<SystemTime>,
    pub last_success_at: Option<SystemTime>,
    pub last_failure_at: Option<SystemTime>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    /// Attempts in the window and how many answered 2xx.
    pub window_attempts: u32,
    pub window_successes: u32,
    pub window: Duration,
}

impl HealthSnapshot {
    /// Share of the window's attempts that answered 2xx; `None` without attempts.
    pub fn success_rate(&self) -> Option<f64> {
        (self.window_attempts > 0)
            .then(|| f64::from(self.window_successes) / f64::from(self.window_attempts))
    }
}

/// What the ledger keeps of an [`EndpointHealth`]: everything but the empty minutes of
/// its window, and when it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredHealth {
    pub consecutive_failures: u32,
    /// When the current failing streak began.
    pub streak_since: Option<SystemTime>,
    /// The failing alert of the current streak was raised.
    pub failing: bool,
    /// The disable request of the current streak was raised.
    pub disable_requested: bool,
    pub last_success_at: Option<SystemTime>,
    pub last_failure_at: Option<SystemTime>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    /// `(minute since the epoch, 2xx answers, attempts)` of the minutes of the window that
    /// saw attempts (at most 60).
    pub buckets: Vec<(u64, u32, u32)>,
    /// When this copy was taken.
    pub updated_at: SystemTime,
}

impl StoredHealth {
    /// The health as of `now`, as the endpoint actor would show it.
    pub fn snapshot(&self, now: SystemTime) -> HealthSnapshot {
        EndpointHealth::from_stored(self).snapshot(now)
    }
}

/// An operational event the engine raises about an endpoint or a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Alert {
    /// `failing_after` attempts in a row failed.
    EndpointFailing {
        webhook_id: String,
        url: String,
        consecutive_failures: u32,
        failing_since: SystemTime,
        last_status_code: Option<u16>,
        last_error: Option<String>,
    },
    /// A failing endpoint answered 2xx.
    EndpointRecovered {
        webhook_id: String,
        url: String,
        failing_since: SystemTime,
        failed_attempts: u32,
        recovered_at: SystemTime,
    },
    /// The endpoint has been failing for the configured period: disable its webhook.
    EndpointDisabled {
        webhook_id: String,
        url: String,
        failing_since: SystemTime,
        consecutive_failures: u32,
        last_status_code: Option<u16>,
        last_error: Option<String>,
    },
    /// A delivery used up its retries and stays failed.
    DeliveryExhausted {
        delivery_id: String,
        event_id: String,
        webhook_id: String,
        event_type: String,
        task_id: Option<String>,
        attempts: u32,
        last_status_code: Option<u16>,
        last_error: Option<String>,
    },
}

/// Event types of the alerts, as published and listed in the catalog.
pub mod event_types {
    pub const ENDPOINT_FAILING: &str = "webhook.endpoint.failing";
    pub const ENDPOINT_RECOVERED: &str = "webhook.endpoint.recovered";
    pub const ENDPOINT_DISABLED: &str = "webhook.endpoint.disabled";
    pub const DELIVERY_EXHAUSTED: &str = "delivery.exhausted";
}

impl Alert {
    pub fn event_type(&self) -> &'static str {
        match self {
            Alert::EndpointFailing { .. } => event_types::ENDPOINT_FAILING,
            Alert::EndpointRecovered { .. } => event_types::ENDPOINT_RECOVERED,
            Alert::EndpointDisabled { .. } => event_types::ENDPOINT_DISABLED,
            Alert::DeliveryExhausted { .. } => event_types::DELIVERY_EXHAUSTED,
        }
    }
}

fn minute(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / 60
}

impl EndpointHealth {
    /// Records one ended attempt; returns the lines it crossed (at most two: failing and
    /// disabled can be crossed by the same attempt).
    pub fn record(
        &mut self,
        policy: &HealthPolicy,
        at: SystemTime,
        result: &AttemptResult,
        webhook: (&str, &str),
    ) -> Vec<Alert> {
        let (webhook_id, url) = webhook;
        let success = matches!(result, Ok(response) if response.is_success());
        let now_minute = minute(at);
        let bucket = &mut self.buckets[now_minute as usize % WINDOW_MINUTES];
        if bucket.0 != now_minute {
            *bucket = (now_minute, 0, 0);
        }
        bucket.2 += 1;
        let mut alerts = Vec::new();
        if success {
            bucket.1 += 1;
            self.last_success_at = Some(at);
            if self.failing {
                alerts.push(Alert::EndpointRecovered {
                    webhook_id: webhook_id.to_owned(),
                    url: url.to_owned(),
                    failing_since: self.streak_since.unwrap_or(at),
                    failed_attempts: self.consecutive_failures,
                    recovered_at: at,
                });
            }
            self.consecutive_failures = 0;
            self.streak_since = None;
            self.failing = false;
            self.disable_requested = false;
            return alerts;
        }
        let (status_code, error) = match result {
            Ok(response) => (Some(response.status), None),
            Err(error) => (None, Some(error.to_string())),
        };
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let since = *self.streak_since.get_or_insert(at);
        self.last_failure_at = Some(at);
        self.last_status_code = status_code;
        self.last_error = error;
        if !self.failing && self.consecutive_failures >= policy.failing_after.max(1) {
            self.failing = true;
            alerts.push(Alert::EndpointFailing {
                webhook_id: webhook_id.to_owned(),
                url: url.to_owned(),
                consecutive_failures: self.consecutive_failures,
                failing_since: since,
                last_status_code: self.last_status_code,
                last_error: self.last_error.clone(),
            });
        }
        if let Some(period) = policy.disable_after {
            let long_enough = at.duration_since(since).unwrap_or_default() >= period;
            if self.failing && long_enough && !self.disable_requested {
                self.disable_requested = true;
                alerts.push(Alert::EndpointDisabled {
                    webhook_id: webhook_id.to_owned(),
                    url: url.to_owned(),
                    failing_since: since,
                    consecutive_failures: self.consecutive_failures,
                    last_status_code: self.last_status_code,
                    last_error: self.last_error.clone(),
                });
            }
        }
        alerts
    }

    /// The persistent part of the record, taken at `now`.
    pub fn stored(&self, now: SystemTime) -> StoredHealth {
        let now_minute = minute(now);
        let mut buckets: Vec<(u64, u32, u32)> = self
            .buckets
            .iter()
            .filter(|(m, _, all)| *all > 0 && *m + (WINDOW_MINUTES as u64) > now_minute)
            .copied()
            .collect();
        buckets.sort_unstable();
        StoredHealth {
            consecutive_failures: self.consecutive_failures,
            streak_since: self.streak_since,
            failing: self.failing,
            disable_requested: self.disable_requested,
            last_success_at: self.last_success_at,
            last_failure_at: self.last_failure_at,
            last_status_code: self.last_status_code,
            last_error: self.last_error.clone(),
            buckets,
            updated_at: now,
        }
    }

    /// The record a stored copy describes (a streak that was failing stays failing, and
    /// its alert is not raised again).
    pub fn from_stored(stored: &StoredHealth) -> Self {
        let mut health = Self {
            consecutive_failures: stored.consecutive_failures,
            streak_since: stored.streak_since,
            failing: stored.failing,
            disable_requested: stored.disable_requested,
            last_success_at: stored.last_success_at,
            last_failure_at: stored.last_failure_at,
            last_status_code: stored.last_status_code,
            last_error: stored.last_error.clone(),
            ..Self::default()
        };
        for &(m, ok, all) in &stored.buckets {
            let slot = &mut health.buckets[m as usize % WINDOW_MINUTES];
            // Two stored minutes an hour apart cannot both be in the window: keep the newer.
            if slot.0 <= m {
                *slot = (m, ok.min(all), all);
            }
        }
        health
    }

    /// The record as of `now` (the window counts the last hour before `now`).
    pub fn snapshot(&self, now: SystemTime) -> HealthSnapshot {
        let now_minute = minute(now);
        let (window_successes, window_attempts) = self
            .buckets
            .iter()
            .filter(|(m, _, _)| *m + (WINDOW_MINUTES as u64) > now_minute && *m <= now_minute)
            .fold((0, 0), |(ok, all), (_, o, a)| (ok + o, all + a));
        HealthSnapshot {
            consecutive_failures: self.consecutive_failures,
            failing: self.failing,
            failing_since: self.failing.then_some(self.streak_since).flatten(),
            last_success_at: self.last_success_at,
            last_failure_at: self.last_failure_at,
            last_status_code: self.last_status_code,
            last_error: self.last_error.clone(),
            window_attempts,
            window_successes,
            window: Duration::from_secs(60 * WINDOW_MINUTES as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{AttemptResponse, DeliveryError};

    const WH: (&str, &str) = ("wh_1", "https://example.test/hook");

    fn answer(status: u16) -> AttemptResult {
        Ok(AttemptResponse {
            status,
            retry_after: None,
        })
    }

    fn ok() -> AttemptResult {
        answer(200)
    }

    fn fail() -> AttemptResult {
        answer(503)
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn types(alerts: &[Alert]) -> Vec<&'static str> {
        alerts.iter().map(Alert::event_type).collect()
    }

    #[test]
    fn one_failing_alert_per_streak_and_one_recovered_at_the_next_2xx() {
        let policy = HealthPolicy {
            failing_after: 3,
            disable_after: None,
        };
        let mut health = EndpointHealth::default();
        let mut raised = Vec::new();
        for i in 0..10 {
            raised.extend(health.record(&policy, at(i), &fail(), WH));
        }
        assert_eq!(types(&raised), ["webhook.endpoint.failing"]);
        match &raised[0] {
            Alert::EndpointFailing {
                consecutive_failures,
                failing_since,
                last_status_code,
                ..
            } => {
                assert_eq!(*consecutive_failures, 3);
                assert_eq!(*failing_since, at(0));
                assert_eq!(*last_status_code, Some(503));
            }
            other => panic!("{other:?}"),
        }
        let recovered = health.record(&policy, at(11), &ok(), WH);
        assert_eq!(types(&recovered), ["webhook.endpoint.recovered"]);
        assert!(matches!(
            recovered[0],
            Alert::EndpointRecovered {
                failed_attempts: 10,
                ..
            }
        ));
        // Healthy again: further successes raise nothing; a new streak alerts again.
        assert!(health.record(&policy, at(12), &ok(), WH).is_empty());
        let mut again = Vec::new();
        for i in 13..16 {
            again.extend(health.record(&policy, at(i), &fail(), WH));
        }
        assert_eq!(types(&again), ["webhook.endpoint.failing"]);
    }

    #[test]
    fn a_success_before_the_threshold_raises_nothing() {
        let policy = HealthPolicy::default();
        let mut health = EndpointHealth::default();
        for i in 0..9 {
            assert!(health.record(&policy, at(i), &fail(), WH).is_empty());
        }
        assert!(health.record(&policy, at(9), &ok(), WH).is_empty());
        assert_eq!(health.snapshot(at(9)).consecutive_failures, 0);
    }

    #[test]
    fn disable_is_requested_once_after_failing_for_the_period() {
        let policy = HealthPolicy {
            failing_after: 2,
            disable_after: Some(Duration::from_secs(60)),
        };
        let mut health = EndpointHealth::default();
        let mut raised = Vec::new();
        for i in 0..100 {
            raised.extend(health.record(
                &policy,
                at(i),
                &Err(DeliveryError::Connect("refused".into())),
                WH,
            ));
        }
        assert_eq!(
            types(&raised),
            ["webhook.endpoint.failing", "webhook.endpoint.disabled"]
        );
        match &raised[1] {
            Alert::EndpointDisabled {
                consecutive_failures,
                last_error,
                ..
            } => {
                assert_eq!(*consecutive_failures, 61);
                assert!(last_error.as_deref().unwrap().contains("refused"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stored_copy_resumes_the_streak_without_alerting_again() {
        let policy = HealthPolicy {
            failing_after: 3,
            disable_after: Some(Duration::from_secs(60)),
        };
        let mut health = EndpointHealth::default();
        health.record(&policy, at(0), &ok(), WH);
        let mut raised = Vec::new();
        for i in 1..5 {
            raised.extend(health.record(&policy, at(i), &fail(), WH));
        }
        assert_eq!(types(&raised), ["webhook.endpoint.failing"]);
        let stored = health.stored(at(5));
        assert_eq!(stored.snapshot(at(5)), health.snapshot(at(5)));

        let mut resumed = EndpointHealth::from_stored(&stored);
        assert_eq!(resumed.snapshot(at(5)), health.snapshot(at(5)));
        // Still failing: no second failing alert; the disable clock runs from the streak's
        // first failure, not from the restart.
        assert!(resumed.record(&policy, at(30), &fail(), WH).is_empty());
        assert_eq!(
            types(&resumed.record(&policy, at(61), &fail(), WH)),
            ["webhook.endpoint.disabled"]
        );
        let recovered = resumed.record(&policy, at(62), &ok(), WH);
        assert_eq!(types(&recovered), ["webhook.endpoint.recovered"]);
        assert!(matches!(
            recovered[0],
            Alert::EndpointRecovered {
                failed_attempts: 6,
                failing_since,
                ..
            } if failing_since == at(1)
        ));
    }

    #[test]
    fn the_stored_window_keeps_only_the_minutes_with_attempts_in_the_last_hour() {
        let policy = HealthPolicy::default();
        let mut health = EndpointHealth::default();
        health.record(&policy, at(0), &fail(), WH);
        health.record(&policy, at(3_000), &ok(), WH);
        let stored = health.stored(at(3_660));
        assert_eq!(stored.buckets.len(), 1, "{:?}", stored.buckets);
        assert_eq!(stored.snapshot(at(3_660)).window_attempts, 1);
    }

    #[test]
    fn the_snapshot_counts_the_last_hour_only() {
        let policy = HealthPolicy::default();
        let mut health = EndpointHealth::default();
        health.record(&policy, at(0), &fail(), WH);
        health.record(&policy, at(30), &ok(), WH);
        health.record(&policy, at(3_000), &ok(), WH);
        let snapshot = health.snapshot(at(3_000));
        assert_eq!(
            (snapshot.window_successes, snapshot.window_attempts),
            (2, 3)
        );
        assert_eq!(snapshot.success_rate(), Some(2.0 / 3.0));
        assert_eq!(snapshot.last_failure_at, Some(at(0)));
        assert_eq!(snapshot.last_success_at, Some(at(3_000)));
        assert_eq!(snapshot.last_status_code, Some(503));
        // An hour and a bit later the first minute has left the window.
        let later = health.snapshot(at(3_660));
        assert_eq!((later.window_successes, later.window_attempts), (1, 1));
        assert_eq!(health.snapshot(at(10_000)).success_rate(), None);
    }
}
