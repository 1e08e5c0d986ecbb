//! The retry schedule, as a pure function.
//!
//! Delay of retry *n* = uniform(0, min(max, initial · 2^(n−1))) ("full jitter"), at most
//! `max_attempts` attempts in all; a `Retry-After` on 429/503 replaces the jittered delay,
//! clamped to `max`.

use std::time::Duration;

use rand::Rng;

use crate::delivery::AttemptResult;

/// The backoff schedule (`--retry-initial-ms`, `--retry-max-ms`, `--retry-max-attempts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(5_000),
            max: Duration::from_millis(3_600_000),
            max_attempts: 15,
        }
    }
}

/// When to try again after attempt number `attempt` (1-based) ended with `outcome`;
/// `None` when the delivery is over (it succeeded, can never succeed, or retries are spent).
pub fn next_delay(
    policy: &RetryPolicy,
    attempt: u32,
    outcome: &AttemptResult,
    rng: &mut impl Rng,
) -> Option<Duration> {
    let retry_after = match outcome {
        Ok(response) if response.is_success() => return None,
        Ok(response) if matches!(response.status, 429 | 503) => response.retry_after,
        // Every other non-2xx is retried too: the contract is "until 2xx".
        Ok(_) => None,
        Err(error) if !error.is_retriable() => return None,
        Err(_) => None,
    };
    if attempt >= policy.max_attempts {
        return None;
    }
    if let Some(wait) = retry_after {
        return Some(wait.min(policy.max));
    }
    let exponent = attempt.saturating_sub(1).min(63);
    let ceiling = policy
        .initial
        .checked_mul(1u32.checked_shl(exponent).unwrap_or(u32::MAX))
        .unwrap_or(policy.max)
        .min(policy.max);
    let ceiling_ms = ceiling.as_millis() as u64;
    Some(Duration::from_millis(rng.random_range(0..=ceiling_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{AttemptResponse, DeliveryError};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn status(code: u16, retry_after: Option<u64>) -> AttemptResult {
        Ok(AttemptResponse {
            status: code,
            retry_after: retry_after.map(Duration::from_secs),
        })
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1_000),
            max_attempts: 5,
        }
    }

    #[test]
    fn which_outcomes_retry() {
        let mut rng = StdRng::seed_from_u64(7);
        let cases: &[(AttemptResult, bool)] = &[
            (status(200, None), false),
            (status(204, None), false),
            (status(301, None), true),
            (status(400, None), true),
            (status(408, None), true),
            (status(429, None), true),
            (status(500, None), true),
            (status(503, None), true),
            (Err(DeliveryError::Timeout(10)), true),
            (Err(DeliveryError::Connect("refused".into())), true),
            (Err(DeliveryError::Tls("bad cert".into())), true),
            (Err(DeliveryError::Blocked("127.0.0.1".into())), true),
            (Err(DeliveryError::InvalidUrl("http://x".into())), false),
        ];
        for (outcome, retries) in cases {
            assert_eq!(
                next_delay(&policy(), 1, outcome, &mut rng).is_some(),
                *retries,
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn full_jitter_stays_under_the_doubling_ceiling() {
        let mut rng = StdRng::seed_from_u64(1);
        let p = RetryPolicy {
            max_attempts: 100,
            ..policy()
        };
        for (attempt, ceiling_ms) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1_000),
            (40, 1_000),
        ] {
            let mut seen_max = 0;
            for _ in 0..2_000 {
                let d = next_delay(&p, attempt, &status(500, None), &mut rng).unwrap();
                assert!(
                    d <= Duration::from_millis(ceiling_ms),
                    "attempt {attempt}: {d:?}"
                );
                seen_max = seen_max.max(d.as_millis() as u64);
            }
            // Jitter spreads over the whole range, not a sliver of it.
            assert!(
                seen_max > ceiling_ms * 9 / 10,
                "attempt {attempt}: max {seen_max}"
            );
        }
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let mut rng = StdRng::seed_from_u64(3);
        assert!(next_delay(&policy(), 4, &status(500, None), &mut rng).is_some());
        assert!(next_delay(&policy(), 5, &status(500, None), &mut rng).is_none());
        assert!(next_delay(&policy(), 9, &status(429, Some(1)), &mut rng).is_none());
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_and_clamped() {
        let mut rng = StdRng::seed_from_u64(5);
        let p = RetryPolicy {
            max: Duration::from_secs(30),
            ..policy()
        };
        assert_eq!(
            next_delay(&p, 1, &status(429, Some(7)), &mut rng),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            next_delay(&p, 1, &status(503, Some(3_600)), &mut rng),
            Some(Duration::from_secs(30))
        );
        // Only 429 and 503 carry a meaningful Retry-After.
        let d = next_delay(&p, 1, &status(500, Some(20)), &mut rng).unwrap();
        assert!(d <= Duration::from_millis(100));
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let mut rng = StdRng::seed_from_u64(9);
        let p = RetryPolicy {
            max_attempts: u32::MAX,
            ..policy()
        };
        let d = next_delay(&p, u32::MAX - 1, &status(500, None), &mut rng).unwrap();
        assert!(d <= p.max);
    }
}
