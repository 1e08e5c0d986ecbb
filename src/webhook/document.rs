//! The webhook document as herald writes it into the `webhooks` collection (contract §2),
//! typed, and the ids it carries.
//!
//! Documents are read back more leniently than they are written: one written by hand may
//! lack fields or give them other types, so the store and the API's view read documents
//! field by field ([`crate::store::webhooks::spec_from_doc`]) rather than through this type.

use std::collections::BTreeMap;

use mongodb::bson::{self, DateTime, Document};
use serde::{Deserialize, Serialize};

use super::validate::WebhookFields;

/// One webhook of the `webhooks` collection, as the API creates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookDocument {
    /// `wh_` + 16 lowercase hex digits ([`new_id`]).
    #[serde(rename = "_id")]
    pub id: String,
    pub url: String,
    /// Event types, or `["*"]`.
    pub event_types: Vec<String>,
    /// `whsec_…`, sealed with `--secret-key` when one is set.
    pub secret: String,
    /// Sent verbatim with every delivery; values sealed like the secret.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub enabled: bool,
    /// Absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_second: Option<i32>,
    /// The identity `herald apply` matches on; unique.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub created_at: DateTime,
    pub updated_at: DateTime,
}

impl WebhookDocument {
    /// A new webhook from validated fields (see [`super::validate`]), with a fresh id, the
    /// given secret, enabled unless `enabled` says otherwise. Fields not given are absent.
    pub fn new(fields: WebhookFields, secret: String, enabled: Option<bool>) -> Self {
        let now = DateTime::now();
        Self {
            id: new_id(),
            url: fields.url.unwrap_or_default(),
            event_types: fields.event_types.unwrap_or_default(),
            secret,
            headers: fields.headers.unwrap_or_default().into_iter().collect(),
            enabled: enabled.unwrap_or(true),
            // Validated, so in range.
            rate_limit_per_second: fields.rate_limit_per_second.map(|n| n as i32),
            name: fields.name,
            created_at: now,
            updated_at: now,
        }
    }

    /// The BSON document to insert.
    pub fn to_document(&self) -> Document {
        bson::to_document(self).expect("a webhook document serializes to BSON")
    }
}

/// `wh_` + 16 lowercase hex digits.
pub fn new_id() -> String {
    format!("wh_{:016x}", rand::random::<u64>())
}
