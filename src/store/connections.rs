//! `connections`: provider connections (contract §5), stored in the shape of
//! [`crate::inbound::Connection::to_doc`]. Every read the API serves leaves the
//! `webhook_secret` out; only the inbound path, which verifies signatures with it, reads it.

use mongodb::bson::{doc, Document};
use mongodb::{Collection, Database};

use super::page::{find_page, Page, PageRequest};

/// The collection's name (contract §2).
pub const CONNECTIONS: &str = "connections";

fn collection(db: &Database) -> Collection<Document> {
    db.collection(CONNECTIONS)
}

/// The projection that keeps the secret in the database.
fn without_secret() -> Document {
    doc! {"webhook_secret": 0}
}

/// Inserts a new connection; a taken `_id` is a duplicate-key error
/// ([`super::is_duplicate_key`]).
pub async fn insert(db: &Database, connection: Document) -> mongodb::error::Result<()> {
    collection(db).insert_one(connection).await?;
    Ok(())
}

/// What `GET /v1/connections` filters on; every field given must match exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionFilter {
    pub provider: Option<String>,
    pub bucket_id: Option<String>,
    pub namespace_id: Option<String>,
}

/// One page of connections matching `filter`, in `_id` order, without secrets.
pub async fn list(
    db: &Database,
    filter: &ConnectionFilter,
    page: &PageRequest,
) -> mongodb::error::Result<Page<Document>> {
    let mut query = Document::new();
    for (field, value) in [
        ("provider", &filter.provider),
        ("bucket_id", &filter.bucket_id),
        ("namespace_id", &filter.namespace_id),
    ] {
        if let Some(value) = value {
            query.insert(field, value.as_str());
        }
    }
    find_page(&collection(db), query, Some(without_secret()), page).await
}

/// One connection, without its secret.
pub async fn get(db: &Database, id: &str) -> mongodb::error::Result<Option<Document>> {
    collection(db)
        .find_one(doc! {"_id": id})
        .projection(without_secret())
        .await
}

/// One connection with its (possibly sealed) secret: for verifying its inbound webhooks.
pub async fn get_with_secret(db: &Database, id: &str) -> mongodb::error::Result<Option<Document>> {
    collection(db).find_one(doc! {"_id": id}).await
}

/// Where one connection belongs: `None` when there is none, `Some(None)` for one without
/// a namespace.
pub async fn namespace_of(
    db: &Database,
    id: &str,
) -> mongodb::error::Result<Option<Option<String>>> {
    let found = collection(db)
        .find_one(doc! {"_id": id})
        .projection(doc! {"namespace_id": 1})
        .await?;
    Ok(found.map(|d| d.get_str("namespace_id").ok().map(str::to_owned)))
}

/// Deletes a connection; whether it existed.
pub async fn delete(db: &Database, id: &str) -> mongodb::error::Result<bool> {
    let deleted = collection(db).delete_one(doc! {"_id": id}).await?;
    Ok(deleted.deleted_count > 0)
}
