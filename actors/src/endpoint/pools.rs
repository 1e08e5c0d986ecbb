//! Which connections an endpoint's attempts go through, and how fast they may start.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::ports::Transport;
use crate::webhook::WebhookSpec;

/// Endpoints share the engine's transport (one pool, so one HTTP/2 connection per origin:
/// fan-out to many webhooks on one host costs one TLS handshake, not one per webhook) for
/// as long as their attempts answer 2xx. From its first attempt that does not, an endpoint
/// moves to connections of its own ([`Transport::isolated`], built on first use) until it
/// answers 2xx again, so an endpoint that hangs cannot hold the streams its origin's other
/// endpoints need.
pub(super) struct Pools {
    shared: Arc<dyn Transport>,
    own: Option<Arc<dyn Transport>>,
}

impl Pools {
    pub(super) fn new(shared: Arc<dyn Transport>) -> Self {
        Self { shared, own: None }
    }

    pub(super) fn pick(&mut self, failing_streak: u32) -> Arc<dyn Transport> {
        if failing_streak == 0 {
            return self.shared.clone();
        }
        let shared = &self.shared;
        self.own
            .get_or_insert_with(|| shared.isolated().unwrap_or_else(|| shared.clone()))
            .clone()
    }
}

/// Evenly spaced attempts (no burst): a receiver that asked for 50/s never sees more than
/// 50 requests in any one-second window, even right after a backlog builds up.
pub(super) fn limiter_for(spec: &WebhookSpec) -> Option<DefaultDirectRateLimiter> {
    let per_second = NonZeroU32::new(spec.rate_limit_per_second?)?;
    Some(RateLimiter::direct(
        Quota::per_second(per_second).allow_burst(NonZeroU32::MIN),
    ))
}
