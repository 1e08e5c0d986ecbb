//! The event catalog (`GET /v1/webhooks/events`): every event type a webhook may subscribe
//! to, with a description and the fields of its `data` payload.
//!
//! The catalog is the built-in domain types (what the engine and Mux inbound publish), the
//! operational types herald raises about its own endpoints, and the operator's own types
//! from the config file (`[[event-types]]`). An operator type named like a built-in one
//! replaces its description and payload fields. Built once at start; the response body is
//! rendered once too, since it never changes while the daemon runs.

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::json;

use super::Body;
use crate::config::EventTypeDef;

/// The built-in types, as `(event_type, description, payload_fields)`.
const BUILT_IN: &[(&str, &str, &[&str])] = &[
    (
        "collection.documents.written",
        "Documents were written to a collection; caches scoped to the collection are stale.",
        &["collection_id", "document_ids", "index_signature"],
    ),
    (
        "object.created",
        "An object was added to a bucket.",
        &["bucket_id", "object_id", "metadata"],
    ),
    (
        "object.updated",
        "An object's metadata changed.",
        &["bucket_id", "object_id", "metadata"],
    ),
    (
        "object.deleted",
        "An object was removed from its bucket.",
        &["bucket_id", "object_id"],
    ),
    (
        "batch.completed",
        "A batch finished processing.",
        &["batch_id", "collection_ids", "counts"],
    ),
    (
        "cluster.completed",
        "A clustering run finished and its artifacts are available.",
        &["cluster_id", "run_id", "artifact_uris"],
    ),
    (
        "taxonomy.materialized",
        "A taxonomy was applied to a collection's documents.",
        &["taxonomy_id", "collection_id", "updated_document_count"],
    ),
    (
        "webhook.endpoint.failing",
        "A webhook endpoint failed --endpoint-failing-after attempts in a row (once per failing streak).",
        &[
            "webhook_id",
            "url",
            "consecutive_failures",
            "failing_since",
            "last_status_code",
            "last_error",
        ],
    ),
    (
        "webhook.endpoint.recovered",
        "A webhook endpoint that was failing answers 2xx again.",
        &[
            "webhook_id",
            "url",
            "failing_since",
            "failed_attempts",
            "recovered_at",
        ],
    ),
    (
        "webhook.endpoint.disabled",
        "herald disabled a webhook whose endpoint kept failing for --endpoint-disable-after-secs.",
        &[
            "webhook_id",
            "url",
            "failing_since",
            "consecutive_failures",
            "last_status_code",
            "last_error",
        ],
    ),
    (
        "delivery.exhausted",
        "A delivery used up its retries and stays failed for inspection.",
        &[
            "delivery_id",
            "event_id",
            "webhook_id",
            "event_type",
            "attempts",
            "last_status_code",
            "last_error",
        ],
    ),
];

/// One catalog entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventType {
    pub event_type: String,
    pub description: String,
    pub payload_fields: Vec<String>,
}

/// The event catalog, sorted by event type.
#[derive(Debug, Clone)]
pub struct Catalog {
    types: BTreeMap<String, EventType>,
    /// The rendered `{"results": [...]}` body.
    body: Bytes,
}

impl Catalog {
    /// The built-in types plus `custom` (which wins on a name clash). Entries with an empty
    /// name are ignored: nothing could match them.
    pub fn new(custom: &[EventTypeDef]) -> Self {
        let mut types = BTreeMap::new();
        for (name, description, fields) in BUILT_IN {
            types.insert(
                (*name).to_owned(),
                EventType {
                    event_type: (*name).to_owned(),
                    description: (*description).to_owned(),
                    payload_fields: fields.iter().map(|f| (*f).to_owned()).collect(),
                },
            );
        }
        for def in custom.iter().filter(|d| !d.event_type.is_empty()) {
            types.insert(
                def.event_type.clone(),
                EventType {
                    event_type: def.event_type.clone(),
                    description: def.description.clone(),
                    payload_fields: def.payload_fields.clone(),
                },
            );
        }
        let results: Vec<serde_json::Value> = types
            .values()
            .map(|t| {
                json!({
                    "event_type": t.event_type,
                    "description": t.description,
                    "payload_fields": t.payload_fields,
                })
            })
            .collect();
        let body = Bytes::from(json!({ "results": results }).to_string());
        Self { types, body }
    }

    /// Whether `event_type` is in the catalog (webhooks may subscribe only to these, or
    /// to `*`).
    pub fn contains(&self, event_type: &str) -> bool {
        self.types.contains_key(event_type)
    }

    /// One entry.
    pub fn get(&self, event_type: &str) -> Option<&EventType> {
        self.types.get(event_type)
    }

    /// Every entry, sorted by event type.
    pub fn types(&self) -> impl Iterator<Item = &EventType> {
        self.types.values()
    }

    /// `200 {"results": [{event_type, description, payload_fields}]}`.
    pub fn response(&self) -> Response<Body> {
        let mut response = Response::new(Full::new(self.body.clone()));
        *response.status_mut() = StatusCode::OK;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom(name: &str, description: &str) -> EventTypeDef {
        EventTypeDef {
            event_type: name.into(),
            description: description.into(),
            payload_fields: vec!["report_id".into()],
        }
    }

    #[test]
    fn holds_the_built_in_types_with_their_payload_fields() {
        let catalog = Catalog::new(&[]);
        for (name, _, fields) in BUILT_IN {
            let entry = catalog.get(name).unwrap();
            assert!(!entry.description.is_empty(), "{name}");
            assert_eq!(entry.payload_fields, *fields);
        }
        assert!(catalog.contains("taxonomy.materialized"));
        assert!(!catalog.contains("object.exploded"));
        assert!(!catalog.contains("*"));
    }

    #[test]
    fn operator_types_are_added_and_override_built_ins() {
        let catalog = Catalog::new(&[
            custom("report.generated", "A report is ready"),
            custom("object.created", "Overridden"),
            custom("", "ignored"),
        ]);
        assert!(catalog.contains("report.generated"));
        assert!(!catalog.contains(""));
        assert_eq!(
            catalog.get("object.created").unwrap().description,
            "Overridden"
        );
        assert_eq!(catalog.types().count(), BUILT_IN.len() + 1);
    }

    #[test]
    fn the_response_is_sorted_by_event_type() {
        let catalog = Catalog::new(&[custom("a.first", "first")]);
        let body: serde_json::Value = serde_json::from_slice(&catalog.body).unwrap();
        let names: Vec<&str> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_type"].as_str().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(names[0], "a.first");
        assert_eq!(body["results"][0]["payload_fields"][0], "report_id");
    }
}
