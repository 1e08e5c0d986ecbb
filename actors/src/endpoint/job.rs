//! One delivery on its way to an endpoint, and the records it makes.

use std::sync::Arc;
use std::time::SystemTime;

use crate::delivery::{DeliveryRecord, DeliveryStatus, PendingDelivery};
use crate::event::Event;

/// One delivery: an event on its way to this endpoint.
#[derive(Debug, Clone)]
pub struct Job {
    pub event: Arc<Event>,
    /// The feed sequence number to retire once this delivery's first record is durable;
    /// `None` for deliveries re-loaded from the ledger.
    pub seq: Option<u64>,
    /// Attempts made so far.
    pub attempts: u32,
    pub created_at: SystemTime,
    /// Whether the ledger already has a document for this delivery.
    pub persisted: bool,
    /// When a re-loaded delivery is next due.
    pub due_at: Option<SystemTime>,
}

impl Job {
    /// The id of this delivery's record in the ledger.
    pub fn delivery_id(&self, webhook_id: &str) -> String {
        delivery_id(&self.event.id, webhook_id)
    }

    /// A delivery fresh from the feed.
    pub fn new(event: Arc<Event>, seq: Option<u64>) -> Self {
        Self {
            event,
            seq,
            attempts: 0,
            created_at: SystemTime::now(),
            persisted: false,
            due_at: None,
        }
    }

    /// A pending delivery read back from the ledger (its document exists).
    pub fn from_pending(pending: PendingDelivery) -> Self {
        let event = Arc::new(Event {
            id: pending.event_id.into(),
            event_type: pending.event_type.into(),
            task_id: pending.task_id.map(Into::into),
            // Routed already: the namespace mattered only for choosing the webhook.
            namespace_id: None,
            body: pending.payload,
            // The ledger keeps no trace context: a re-loaded delivery's attempts start
            // traces of their own.
            trace: None,
        });
        Self {
            event,
            seq: None,
            attempts: pending.attempts,
            created_at: pending.created_at,
            persisted: true,
            due_at: Some(pending.next_attempt_at),
        }
    }

    /// A record of this delivery to `webhook_id` as it stands: who it is, its attempts so
    /// far, and whether its document exists; the state for the caller to fill in.
    pub(super) fn record(&self, webhook_id: &str, status: DeliveryStatus) -> DeliveryRecord {
        let event = &self.event;
        DeliveryRecord {
            delivery_id: self.delivery_id(webhook_id),
            event_id: event.id.to_string(),
            webhook_id: webhook_id.to_owned(),
            event_type: event.event_type.to_string(),
            task_id: event.task_id.as_deref().map(str::to_owned),
            status,
            attempts: self.attempts,
            next_attempt_at: None,
            last_status_code: None,
            last_error: None,
            new_attempts: Vec::new(),
            first_write: !self.persisted,
            created_at: self.created_at,
            completed_at: None,
            payload: None,
        }
    }

    /// Records this delivery, whose first attempt has not been made, as `pending`, due at
    /// `due`, with its payload. Its feed sequence number retires once the record is durable.
    pub(super) fn record_pending(&mut self, webhook_id: &str, due: SystemTime) -> DeliveryRecord {
        let record = DeliveryRecord {
            next_attempt_at: Some(due),
            payload: Some(self.event.body.clone()),
            ..self.record(webhook_id, DeliveryStatus::Pending)
        };
        self.persisted = true;
        record
    }
}

/// The id of the delivery of event `event_id` to webhook `webhook_id`.
pub fn delivery_id(event_id: &str, webhook_id: &str) -> String {
    // Made for every record: pushed into a string of the right size, not `format!`ted.
    let mut id = String::with_capacity(event_id.len() + 1 + webhook_id.len());
    id.push_str(event_id);
    id.push(':');
    id.push_str(webhook_id);
    id
}
