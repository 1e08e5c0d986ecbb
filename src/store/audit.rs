//! `audit_log`: one record per write made through the API (contract §7, `GET /v1/audit`).
//!
//! ```text
//! { _id: "aud_<24 hex>", at: Date, key_id: "key_…" | "operator" | null, action,
//!   object_type, object_id, changed_fields: {…}, namespace_id? }
//! ```
//!
//! `_id` is an ObjectId's hex, so the `_id` order every list pages by is the order of
//! writing (to the second across daemons). `changed_fields` arrive redacted (see
//! [`crate::api::audit`]); nothing here ever sees a key or a secret. Records expire after
//! the failed-delivery retention (`--retention-failed-days`), by a TTL index on `at`.

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};

use super::page::{find_page, Page, PageRequest};
use super::retention::{days, Retention, TtlIndex};

/// The collection's name.
pub const AUDIT_LOG: &str = "audit_log";

/// Its TTL index's name.
pub const TTL_AUDIT: &str = "herald_ttl_audit";

fn collection(db: &Database) -> Collection<Document> {
    db.collection(AUDIT_LOG)
}

/// A fresh, time-ordered record id.
pub fn new_id() -> String {
    format!("aud_{}", ObjectId::new().to_hex())
}

/// The indexes the list's filters use (idempotent); the time filters use the TTL index.
pub async fn ensure_indexes(db: &Database) -> mongodb::error::Result<()> {
    let models = ["namespace_id", "key_id", "object_id"].map(|field| {
        IndexModel::builder()
            .keys(doc! {field: 1, "_id": 1})
            .options(IndexOptions::builder().build())
            .build()
    });
    collection(db).create_indexes(models).await.map(drop)
}

/// The TTL index of `audit_log` under `retention`.
pub fn ttl_index(retention: Retention) -> TtlIndex {
    TtlIndex {
        collection: AUDIT_LOG,
        name: TTL_AUDIT,
        field: "at",
        expire_after: days(retention.failed_days),
        partial: None,
    }
}

/// Appends one record.
pub async fn insert(db: &Database, record: Document) -> mongodb::error::Result<()> {
    collection(db).insert_one(record).await.map(drop)
}

/// What `GET /v1/audit` filters on; every field given must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub key_id: Option<String>,
    pub namespace_id: Option<String>,
    /// `at` at or after.
    pub since: Option<DateTime>,
    /// `at` before.
    pub until: Option<DateTime>,
}

impl AuditFilter {
    fn to_doc(&self) -> Document {
        let mut filter = Document::new();
        for (field, value) in [
            ("action", &self.action),
            ("object_type", &self.object_type),
            ("object_id", &self.object_id),
            ("key_id", &self.key_id),
            ("namespace_id", &self.namespace_id),
        ] {
            if let Some(value) = value {
                filter.insert(field, value.as_str());
            }
        }
        let mut at = Document::new();
        if let Some(since) = self.since {
            at.insert("$gte", since);
        }
        if let Some(until) = self.until {
            at.insert("$lt", until);
        }
        if !at.is_empty() {
            filter.insert("at", at);
        }
        filter
    }
}

/// One page of records matching `filter`, oldest first.
pub async fn list(
    db: &Database,
    filter: &AuditFilter,
    page: &PageRequest,
) -> mongodb::error::Result<Page<Document>> {
    find_page(&collection(db), filter.to_doc(), None, page).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_fields_exactly_and_times_as_a_range() {
        let since = DateTime::from_millis(1_000);
        let filter = AuditFilter {
            action: Some("webhook.create".into()),
            key_id: Some("key_1".into()),
            since: Some(since),
            ..AuditFilter::default()
        };
        assert_eq!(
            filter.to_doc(),
            doc! {"action": "webhook.create", "key_id": "key_1", "at": {"$gte": since}}
        );
        assert_eq!(AuditFilter::default().to_doc(), Document::new());
    }

    #[test]
    fn ids_are_time_ordered_strings() {
        let a = new_id();
        assert!(a.starts_with("aud_") && a.len() == 28, "{a}");
    }
}
