//! The `webhooks` collection: every query of it, the live watcher that hands it to the
//! engine, and the reading of a stored document as the engine's spec.
//!
//! - this module: the queries the API's webhook routes make (find, insert, update, delete,
//!   the secret's compare-and-swap, and the list, paged like every list by [`super::page`]);
//! - [`spec`]: a stored document as a [`herald_actors::WebhookSpec`], judged by the one
//!   webhook validation ([`crate::webhook`]);
//! - [`watcher`]: the change stream that applies every insert, change and delete to the
//!   engine.
//!
//! Lists page by `_id`, and names are looked up only when one is written (rarely, by a
//! person); `namespace_id` is indexed for the lists of namespaced API keys.

mod spec;
mod watcher;

pub use spec::{spec_from_doc, BadWebhook};
pub use watcher::{run_watcher, WatchHealth};

use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::error::Result;
use mongodb::options::ReturnDocument;
use mongodb::{Collection, Database};

use super::page::{find_page, Page, PageRequest};
use super::{is_duplicate_key, WEBHOOKS};

fn collection(db: &Database) -> Collection<Document> {
    db.collection(WEBHOOKS)
}

/// The index the lists of a namespace use (idempotent).
pub async fn ensure_indexes(db: &Database) -> Result<()> {
    let index = mongodb::IndexModel::builder()
        .keys(doc! {"namespace_id": 1, "_id": 1})
        .options(
            mongodb::options::IndexOptions::builder()
                .name("namespace_id_1__id_1".to_owned())
                .build(),
        )
        .build();
    collection(db).create_index(index).await.map(drop)
}

/// One webhook by `_id`.
pub async fn get(db: &Database, id: &str) -> Result<Option<Document>> {
    collection(db).find_one(doc! {"_id": id}).await
}

/// Whether a webhook of namespace `namespace` (`None`: the operator's, without one) other
/// than `except` is named `name`. Names are unique within a namespace, so that one tenant's
/// names neither collide with nor reveal another's.
pub async fn name_taken(
    db: &Database,
    name: &str,
    namespace: Option<&str>,
    except: Option<&str>,
) -> Result<bool> {
    let mut filter = doc! {"name": name, "namespace_id": namespace};
    if let Some(id) = except {
        filter.insert("_id", doc! {"$ne": id});
    }
    Ok(collection(db).find_one(filter).await?.is_some())
}

/// Inserts a new webhook. A random 64-bit id collides with an existing one practically
/// never; if it does, `document` gets a fresh `_id` from `new_id` and is inserted again.
pub async fn insert(
    db: &Database,
    document: &mut Document,
    new_id: impl Fn() -> String,
) -> Result<()> {
    let webhooks = collection(db);
    let mut attempts = 0;
    loop {
        match webhooks.insert_one(&*document).await {
            Ok(_) => return Ok(()),
            Err(e) if is_duplicate_key(&e) && attempts < 3 => {
                attempts += 1;
                document.insert("_id", new_id());
            }
            Err(e) => return Err(e),
        }
    }
}

/// Applies `update` to one webhook → the webhook as changed, `None` when there is none.
pub async fn update(db: &Database, id: &str, update: Document) -> Result<Option<Document>> {
    collection(db)
        .find_one_and_update(doc! {"_id": id}, update)
        .return_document(ReturnDocument::After)
        .await
}

/// Disables one webhook that is enabled, saying why → whether it was (a webhook already
/// disabled, or deleted, is left as it is: the first of several racing daemons wins).
pub async fn disable(db: &Database, id: &str, reason: &str) -> Result<bool> {
    let now = DateTime::now();
    let updated = collection(db)
        .update_one(
            doc! {"_id": id, "enabled": true},
            doc! {"$set": {
                "enabled": false,
                "disabled_reason": reason,
                "disabled_at": now,
                "updated_at": now,
            }},
        )
        .await?;
    Ok(updated.matched_count == 1)
}

/// Pauses or resumes one webhook → the webhook as changed, `None` when there is none.
pub async fn set_paused(db: &Database, id: &str, paused: bool) -> Result<Option<Document>> {
    let set = doc! {"$set": {"paused": paused, "updated_at": DateTime::now()}};
    update(db, id, set).await
}

/// Sets `fields` on the webhook only if its stored `secret` is still `old` (compare and
/// swap) → the webhook as changed, `None` when it is gone or its secret changed meanwhile.
pub async fn swap_secret(
    db: &Database,
    id: &str,
    old: Bson,
    fields: Document,
) -> Result<Option<Document>> {
    collection(db)
        .find_one_and_update(
            doc! {"_id": id, "secret": {"$eq": old}},
            doc! {"$set": fields},
        )
        .return_document(ReturnDocument::After)
        .await
}

/// Where one webhook belongs: `None` when there is no such webhook, `Some(None)` for one
/// without a namespace (the operator's).
pub async fn namespace_of(db: &Database, id: &str) -> Result<Option<Option<String>>> {
    let found = collection(db)
        .find_one(doc! {"_id": id})
        .projection(doc! {"namespace_id": 1})
        .await?;
    Ok(found.map(|d| d.get_str("namespace_id").ok().map(str::to_owned)))
}

/// The ids of the webhooks of one namespace (for scoping a namespaced key's deliveries).
pub async fn ids_in_namespace(db: &Database, namespace_id: &str) -> Result<Vec<String>> {
    use futures::TryStreamExt;
    let found: Vec<Document> = collection(db)
        .find(doc! {"namespace_id": namespace_id})
        .projection(doc! {"_id": 1})
        .await?
        .try_collect()
        .await?;
    Ok(found
        .iter()
        .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
        .collect())
}

/// Deletes one webhook; deleting none is no error.
pub async fn delete(db: &Database, id: &str) -> Result<()> {
    collection(db).delete_one(doc! {"_id": id}).await.map(drop)
}

/// Which webhooks a list returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Subscribed to this event type (`*` counts, except for herald's operational types,
    /// which only webhooks naming them receive).
    pub event_type: Option<String>,
    /// Enabled or disabled (a document without `enabled` is enabled).
    pub enabled: Option<bool>,
    /// Of this namespace only (a namespaced API key always lists with its own).
    pub namespace_id: Option<String>,
}

impl ListFilter {
    /// The MongoDB filter.
    pub fn to_document(&self) -> Document {
        let mut filter = Document::new();
        if let Some(event_type) = &self.event_type {
            if herald_actors::webhook::is_operational(event_type) {
                filter.insert("event_types", event_type.as_str());
            } else {
                filter.insert("event_types", doc! {"$in": [event_type.as_str(), "*"]});
            }
        }
        match self.enabled {
            None => {}
            Some(true) => {
                filter.insert("enabled", doc! {"$ne": false});
            }
            Some(false) => {
                filter.insert("enabled", false);
            }
        }
        if let Some(namespace_id) = &self.namespace_id {
            filter.insert("namespace_id", namespace_id.as_str());
        }
        filter
    }
}

/// One page of the webhooks matching `filter`, by `_id` ([`super::page`]).
pub async fn list(
    db: &Database,
    filter: &ListFilter,
    request: &PageRequest,
) -> Result<Page<Document>> {
    find_page(&collection(db), filter.to_document(), None, request).await
}
