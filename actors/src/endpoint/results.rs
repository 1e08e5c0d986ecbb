//! What an ended attempt means: the endpoint's streak and health, the delivery's record,
//! its retry (or its end), and the alerts it raises.

use std::time::SystemTime;

use ractor::ActorRef;
use tracing::{debug, warn};

use super::admission::schedule;
use super::attempts::EndedAttempt;
use super::{Endpoint, Job, Msg, State, FAILING_STREAK};
use crate::delivery::{AttemptLogEntry, DeliveryRecord, DeliveryStatus};
use crate::health::{event_types, Alert};
use crate::retry::next_delay;

impl Endpoint {
    /// Decides what an ended attempt means, records it and schedules the retry. The job has
    /// left the backlog, and the endpoint's health has recorded the attempt, raising `alerts`.
    pub(super) fn conclude(
        &self,
        myself: &ActorRef<Msg>,
        state: &mut State,
        mut job: Job,
        alerts: Vec<Alert>,
        attempt: EndedAttempt,
    ) {
        let EndedAttempt {
            started_at,
            elapsed,
            result,
            ..
        } = attempt;
        job.attempts += 1;
        match &result {
            Ok(response) if response.is_success() => {
                state.failing_streak = 0;
                state.proven = true;
            }
            _ => {
                state.failing_streak = state.failing_streak.saturating_add(1);
                state.proven = false;
            }
        }
        if state.failing_streak == FAILING_STREAK {
            // First attempts queued behind a failing endpoint may wait long: record them.
            self.record_held(state);
        }
        // `alerts`: what the health record, moved as the job left the backlog, raised.
        // Kept at once when a line was crossed, else within a few seconds.
        self.health_changed(myself, state, !alerts.is_empty());
        for alert in alerts {
            self.raise(alert);
        }
        let delay = next_delay(&self.config.retry, job.attempts, &result, &mut rand::rng());
        let (status_code, error) = match &result {
            Ok(response) => (Some(response.status), None),
            Err(error) => (None, Some(error.to_string())),
        };
        let status = match (&result, delay) {
            (Ok(response), _) if response.is_success() => DeliveryStatus::Succeeded,
            (_, Some(_)) => DeliveryStatus::Pending,
            (_, None) => DeliveryStatus::Failed,
        };
        let now = SystemTime::now();
        let next_attempt_at = delay.map(|d| now + d);
        let event_id = &*job.event.id;
        let webhook_id = &*state.spec.id;
        state.deliveries.record(&job.event.event_type, status);
        match status {
            DeliveryStatus::Succeeded => {
                debug!(event_id, webhook_id, attempt = job.attempts, status = ?status_code, "delivered")
            }
            DeliveryStatus::Pending => warn!(
                event_id, webhook_id, attempt = job.attempts, status = ?status_code, error = ?error,
                retry_in_ms = delay.unwrap_or_default().as_millis() as u64,
                "delivery attempt failed, retrying"
            ),
            DeliveryStatus::Failed => warn!(
                event_id, webhook_id, attempt = job.attempts, status = ?status_code, error = ?error,
                "delivery failed for good"
            ),
        }
        let record = DeliveryRecord {
            next_attempt_at,
            last_status_code: status_code,
            last_error: error.clone(),
            new_attempts: vec![AttemptLogEntry {
                at: started_at,
                status_code,
                error,
                duration_ms: elapsed.as_millis() as u64,
            }],
            completed_at: (status != DeliveryStatus::Pending).then_some(now),
            // Kept while the delivery may be attempted again (a retry after a restart, a
            // replay of a failed one) so that the same bytes are sent.
            payload: (!job.persisted && status != DeliveryStatus::Succeeded)
                .then(|| job.event.body.clone()),
            ..job.record(webhook_id, status)
        };
        let retire = if job.persisted { None } else { job.seq };
        job.persisted = true;
        // An exhausted `delivery.exhausted` raises no other: a dead operator endpoint must
        // not feed itself an endless chain.
        let exhausted = (status == DeliveryStatus::Failed
            && &*job.event.event_type != event_types::DELIVERY_EXHAUSTED)
            .then(|| Alert::DeliveryExhausted {
                delivery_id: record.delivery_id.clone(),
                event_id: record.event_id.clone(),
                webhook_id: record.webhook_id.clone(),
                event_type: record.event_type.clone(),
                task_id: record.task_id.clone(),
                attempts: record.attempts,
                last_status_code: record.last_status_code,
                last_error: record.last_error.clone(),
            });
        state.outbox.push(record, retire);
        if let Some(alert) = exhausted {
            self.raise(alert);
        }
        if let Some(due) = next_attempt_at {
            let reserved = state.sweep.as_ref().map_or(0, |sweep| sweep.requested);
            if self.room(state, state.backlog.len() + reserved) > 0 {
                schedule(myself, state, job, due);
            } else {
                // Memory is full: the record just made says `pending`, due then.
                state.backlog.spilled(|spilled| spilled.note(due));
            }
        }
    }
}
