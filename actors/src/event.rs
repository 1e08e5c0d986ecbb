//! Events and their payloads.
//!
//! The payload is serialised once per event, when the event enters the engine; every
//! attempt to every endpoint sends those same bytes (`Bytes` clones share them).

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::trace::TraceParent;

/// The body herald POSTs (contract §3). Field order is the wire order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    pub event_id: String,
    pub event_type: String,
    /// RFC 3339.
    pub occurred_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<serde_json::Value>,
    pub data: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_scope: Option<serde_json::Value>,
}

/// An event inside the engine: identity, routing key and the pre-built body.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Arc<str>,
    pub event_type: Arc<str>,
    pub task_id: Option<Arc<str>>,
    /// The tenant the event belongs to (contract §2 `namespace_id`): namespaced webhooks
    /// receive only the events of their namespace.
    pub namespace_id: Option<Arc<str>>,
    /// The serialised [`Payload`].
    pub body: Bytes,
    /// The W3C trace context the event's attempts descend from: the producer's, or (with
    /// tracing on) the routing span's. Not part of the body.
    pub trace: Option<TraceParent>,
}

impl Event {
    /// Serialises `payload` into the body every attempt will send.
    pub fn from_payload(payload: &Payload) -> Self {
        let body = serde_json::to_vec(payload).expect("a Payload always serialises");
        Self {
            id: payload.event_id.as_str().into(),
            event_type: payload.event_type.as_str().into(),
            task_id: payload.task_id.as_deref().map(Into::into),
            namespace_id: payload.namespace_id.as_deref().map(Into::into),
            body: Bytes::from(body),
            trace: None,
        }
    }

    /// The same event, its attempts descending from `trace`.
    pub fn with_trace(self, trace: Option<TraceParent>) -> Self {
        Self { trace, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_contract_fields_and_omits_absent_options() {
        let payload = Payload {
            event_id: "evt_1".into(),
            event_type: "object.created".into(),
            occurred_at: "2026-01-01T00:00:00Z".into(),
            namespace_id: None,
            task_id: None,
            subject: None,
            data: serde_json::json!({"bucket_id": "b1"}),
            cache_scope: Some(serde_json::json!({"scope": "collection", "collection_id": "c1"})),
        };
        let event = Event::from_payload(&payload);
        let parsed: serde_json::Value = serde_json::from_slice(&event.body).unwrap();
        assert_eq!(parsed["event_id"], "evt_1");
        assert_eq!(parsed["data"]["bucket_id"], "b1");
        assert_eq!(parsed["cache_scope"]["scope"], "collection");
        assert!(parsed.get("namespace_id").is_none());
        assert_eq!(&*event.id, "evt_1");
    }
}
