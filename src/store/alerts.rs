//! Operational alerts become events in the outbox.
//!
//! The engine raises an [`Alert`] when an endpoint starts failing, recovers, is to be
//! disabled, or when a delivery exhausts its retries. Each is inserted into `events` like any
//! engine write, so it reaches the webhooks subscribed to its type through the same change
//! stream, signing and retries. Event ids are derived from the alert (the webhook and the
//! start of its failing streak; the delivery and its attempt count), so handing the same
//! alert over twice publishes it once.
//!
//! An alert carries the `namespace_id` of the webhook it is about, so it reaches that
//! namespace's webhooks and the operator's, never another tenant's.
//!
//! A disable request also sets `enabled: false` on the webhook, with `disabled_reason` and
//! `disabled_at`; the webhook watcher then stops its endpoint. Its pending deliveries stay in
//! `deliveries` and resume when the webhook is enabled again.

use std::time::SystemTime;

use herald_actors::health::Alert;
use herald_actors::ports::LedgerError;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Database;
use tracing::warn;

use super::bson_date;
use crate::text::one_line;

/// Publishes alerts into a database's outbox.
#[derive(Clone)]
pub struct AlertPublisher {
    db: Database,
}

impl AlertPublisher {
    pub fn new(db: &Database) -> Self {
        Self { db: db.clone() }
    }

    /// Inserts the alert's event (once); for a disable request, disables the webhook
    /// first.
    pub async fn publish(&self, alert: &Alert) -> Result<(), LedgerError> {
        let error = |e: mongodb::error::Error| LedgerError::Store(one_line(&e.to_string()));
        if let Alert::EndpointDisabled { webhook_id, .. } = alert {
            let disabled = super::webhooks::disable(&self.db, webhook_id, "endpoint failing")
                .await
                .map_err(error)?;
            if disabled {
                warn!(webhook_id, "webhook disabled: its endpoint kept failing");
            }
        }
        // An alert follows its webhook's namespace, so that only that tenant's webhooks
        // (and the operator's) receive it. Alerts are rare: one look-up each is cheap.
        let mut document = event_document(alert);
        if let Ok(Some(Some(namespace_id))) =
            super::webhooks::namespace_of(&self.db, alert_webhook_id(alert)).await
        {
            document.insert("namespace_id", namespace_id);
        }
        // Published once: a second hand-over meets the first insert.
        super::events::outbox::publish(&self.db, document)
            .await
            .map(|_| ())
            .map_err(error)
    }
}

/// The webhook an alert is about.
fn alert_webhook_id(alert: &Alert) -> &str {
    match alert {
        Alert::EndpointFailing { webhook_id, .. }
        | Alert::EndpointRecovered { webhook_id, .. }
        | Alert::EndpointDisabled { webhook_id, .. }
        | Alert::DeliveryExhausted { webhook_id, .. } => webhook_id,
    }
}

fn millis(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

fn opt_code(code: Option<u16>) -> Bson {
    code.map_or(Bson::Null, |c| Bson::Int32(i32::from(c)))
}

fn opt_str(s: &Option<String>) -> Bson {
    s.as_ref().map_or(Bson::Null, |s| Bson::String(s.clone()))
}

/// The outbox document of an alert (CONTRACT §2 `events`).
pub fn event_document(alert: &Alert) -> Document {
    let now = SystemTime::now();
    let (id, occurred_at, subject, data, task_id) = match alert {
        Alert::EndpointFailing {
            webhook_id,
            url,
            consecutive_failures,
            failing_since,
            last_status_code,
            last_error,
        } => (
            format!("evt_whfailing_{webhook_id}_{}", millis(*failing_since)),
            now,
            doc! {"type": "webhook", "id": webhook_id},
            doc! {
                "webhook_id": webhook_id,
                "url": url,
                "consecutive_failures": i64::from(*consecutive_failures),
                "failing_since": bson_date(*failing_since),
                "last_status_code": opt_code(*last_status_code),
                "last_error": opt_str(last_error),
            },
            None,
        ),
        Alert::EndpointRecovered {
            webhook_id,
            url,
            failing_since,
            failed_attempts,
            recovered_at,
        } => (
            format!("evt_whrecovered_{webhook_id}_{}", millis(*failing_since)),
            *recovered_at,
            doc! {"type": "webhook", "id": webhook_id},
            doc! {
                "webhook_id": webhook_id,
                "url": url,
                "failing_since": bson_date(*failing_since),
                "failed_attempts": i64::from(*failed_attempts),
                "recovered_at": bson_date(*recovered_at),
            },
            None,
        ),
        Alert::EndpointDisabled {
            webhook_id,
            url,
            failing_since,
            consecutive_failures,
            last_status_code,
            last_error,
        } => (
            format!("evt_whdisabled_{webhook_id}_{}", millis(*failing_since)),
            now,
            doc! {"type": "webhook", "id": webhook_id},
            doc! {
                "webhook_id": webhook_id,
                "url": url,
                "failing_since": bson_date(*failing_since),
                "consecutive_failures": i64::from(*consecutive_failures),
                "last_status_code": opt_code(*last_status_code),
                "last_error": opt_str(last_error),
            },
            None,
        ),
        Alert::DeliveryExhausted {
            delivery_id,
            event_id,
            webhook_id,
            event_type,
            task_id,
            attempts,
            last_status_code,
            last_error,
        } => (
            format!("evt_exhausted_{event_id}_{webhook_id}_{attempts}"),
            now,
            doc! {"type": "delivery", "id": delivery_id},
            doc! {
                "delivery_id": delivery_id,
                "event_id": event_id,
                "webhook_id": webhook_id,
                "event_type": event_type,
                "attempts": i64::from(*attempts),
                "last_status_code": opt_code(*last_status_code),
                "last_error": opt_str(last_error),
            },
            task_id.clone(),
        ),
    };
    let mut document = doc! {
        "_id": id,
        "event_type": alert.event_type(),
        "occurred_at": bson_date(occurred_at),
        "subject": subject,
        "data": data,
    };
    if let Some(task_id) = task_id {
        document.insert("task_id", task_id);
    }
    document
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn one_streak_gives_one_event_id_per_kind() {
        let since = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let failing = |n| Alert::EndpointFailing {
            webhook_id: "wh_1".into(),
            url: "https://a.test/".into(),
            consecutive_failures: n,
            failing_since: since,
            last_status_code: Some(503),
            last_error: None,
        };
        let a = event_document(&failing(10));
        let b = event_document(&failing(11));
        assert_eq!(a.get_str("_id").unwrap(), b.get_str("_id").unwrap());
        assert_eq!(a.get_str("event_type").unwrap(), "webhook.endpoint.failing");
        let data = a.get_document("data").unwrap();
        assert_eq!(data.get_i32("last_status_code").unwrap(), 503);
        assert_eq!(data.get("last_error"), Some(&Bson::Null));

        let recovered = event_document(&Alert::EndpointRecovered {
            webhook_id: "wh_1".into(),
            url: "https://a.test/".into(),
            failing_since: since,
            failed_attempts: 12,
            recovered_at: since + Duration::from_secs(60),
        });
        assert_ne!(recovered.get_str("_id").unwrap(), a.get_str("_id").unwrap());
    }

    #[test]
    fn an_exhausted_delivery_carries_its_task() {
        let document = event_document(&Alert::DeliveryExhausted {
            delivery_id: "evt_1:wh_1".into(),
            event_id: "evt_1".into(),
            webhook_id: "wh_1".into(),
            event_type: "object.created".into(),
            task_id: Some("task_9".into()),
            attempts: 15,
            last_status_code: None,
            last_error: Some("timed out after 10000 ms".into()),
        });
        assert_eq!(document.get_str("task_id").unwrap(), "task_9");
        assert_eq!(
            document.get_document("subject").unwrap(),
            &doc! {"type": "delivery", "id": "evt_1:wh_1"}
        );
        assert_eq!(
            document
                .get_document("data")
                .unwrap()
                .get_i64("attempts")
                .unwrap(),
            15
        );
    }
}
