//! Starting attempts: as many as the in-flight cap and the rate limiter allow, each a
//! signed POST under the whole-attempt timeout, run by the endpoint's attempts task.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use governor::clock::{Clock, DefaultClock};
use ractor::ActorRef;

use super::attempts::{Attempt, EndedAttempt};
use super::{Endpoint, Msg, State, FAILING_STREAK, PROBE_IN_FLIGHT, UNPROVEN_IN_FLIGHT};
use crate::delivery::{AttemptResult, DeliveryError};
use crate::event::Event;
use crate::metrics::EngineMetrics;
use crate::ports::{AttemptTrace, OutboundRequest, Transport};
use crate::trace::TraceParent;
use crate::webhook::WebhookSpec;

/// How often an endpoint whose daemon's leases lapsed looks whether they were renewed.
const LEASE_RECHECK: Duration = Duration::from_millis(50);

impl Endpoint {
    /// Starts as many attempts as the in-flight cap and the rate limiter allow.
    pub(super) fn pump(&self, myself: &ActorRef<Msg>, state: &mut State) {
        // Fenced: the partition was revoked and the actor is about to stop.
        if state.draining.is_some()
            || state.spec.paused
            || state.keeping.loading
            || state.backlog.fenced()
        {
            return;
        }
        if !self.lease.valid() {
            // Frozen past the leases, perhaps: look again once a renewal may have answered.
            if !state.wake_armed {
                state.wake_armed = true;
                myself.send_after(LEASE_RECHECK, || Msg::Pump);
            }
            return;
        }
        let cap = if state.failing_streak >= FAILING_STREAK {
            PROBE_IN_FLIGHT
        } else if !state.proven && state.failing_streak == 0 {
            UNPROVEN_IN_FLIGHT
        } else {
            self.config.max_in_flight_per_endpoint
        }
        .min(self.config.max_in_flight_per_endpoint);
        // A healthy endpoint's attempts task gets as many again to start as others end.
        let handed = if cap == self.config.max_in_flight_per_endpoint
            && state.failing_streak == 0
            && state.limiter.is_none()
        {
            cap * 2
        } else {
            cap
        };
        let mut batch = Vec::new();
        while state.in_flight < handed {
            if state.backlog.queue_is_empty() {
                break;
            }
            if let Some(limiter) = &state.limiter {
                if let Err(not_until) = limiter.check() {
                    if !state.wake_armed {
                        state.wake_armed = true;
                        let wait = not_until.wait_time_from(DefaultClock::default().now());
                        myself.send_after(wait, || Msg::Pump);
                    }
                    break;
                }
            }
            let Some((key, event, number)) = state.backlog.start_next() else {
                break;
            };
            state.in_flight += 1;
            batch.push(self.attempt(
                state.pools.pick(state.failing_streak),
                state.attempt_metrics.clone(),
                state.spec.clone(),
                event,
                key,
                number,
            ));
        }
        state.attempts.start(batch, cap);
    }

    /// Once nothing is handed over to the attempts task: it may end, and a drain is done.
    pub(super) fn settle_in_flight(&self, state: &mut State) {
        if state.in_flight > 0 {
            return;
        }
        state.attempts.idle();
        if state.draining.is_some() && state.keeping.saving {
            // Answered once the endpoint's health is kept (`health_saved`).
            return;
        }
        if let Some(waiters) = state.draining.as_mut() {
            // The records of the attempts that just ended reach the ledger writer before
            // the drain is answered: whoever waits on the drain syncs the writer next, and
            // must find them there.
            state.outbox.flush();
            waiters.drain(..).for_each(|reply| {
                let _ = reply.send(());
            });
        }
    }

    /// One attempt (the delivery's `number`-th), to run in the attempts task.
    fn attempt(
        &self,
        transport: Arc<dyn Transport>,
        metrics: Arc<EngineMetrics>,
        spec: Arc<WebhookSpec>,
        event: Arc<Event>,
        key: u64,
        number: u32,
    ) -> Attempt {
        let timeout = self.config.attempt_timeout;
        let tracer = self.config.tracer.clone();
        let run = Box::pin(async move {
            // Counted here rather than in the actor, so that an attempt whose actor died
            // meanwhile still leaves the gauge.
            metrics.in_flight.increment(1.0);
            let span = tracer.map(|tracer| {
                tracer.attempt(AttemptTrace {
                    event: &event,
                    webhook_id: &spec.id,
                    attempt: number,
                    parent: event.trace,
                })
            });
            // The receiver joins the attempt's span, or the producer's trace without one.
            let trace = span.as_ref().map_or(event.trace, |span| span.context());
            let started_at = SystemTime::now();
            let started = Instant::now();
            let result = send(&*transport, &spec, &event, trace, started_at, timeout).await;
            let elapsed = started.elapsed();
            if let Some(span) = span {
                span.end(&result, elapsed);
            }
            metrics.in_flight.decrement(1.0);
            metrics.attempt(&result, elapsed);
            EndedAttempt {
                key,
                started_at,
                elapsed,
                result,
            }
        });
        Attempt { key, run }
    }
}

/// One signed POST with the whole-attempt timeout around it.
async fn send(
    transport: &dyn Transport,
    spec: &WebhookSpec,
    event: &Event,
    trace: Option<TraceParent>,
    now: SystemTime,
    timeout: Duration,
) -> AttemptResult {
    if !spec
        .url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        return Err(DeliveryError::InvalidUrl(
            "plaintext URL refused: HTTPS is required".into(),
        ));
    }
    let timestamp = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let request = OutboundRequest {
        url: spec.url.clone(),
        msg_id: event.id.clone(),
        timestamp,
        signature: spec
            .signer
            .header_value(&event.id, timestamp, &event.body, now),
        headers: spec.headers.clone(),
        body: event.body.clone(),
        trace,
    };
    match tokio::time::timeout(timeout, transport.send(request)).await {
        Ok(result) => result,
        Err(_) => Err(DeliveryError::Timeout(timeout.as_millis() as u64)),
    }
}
