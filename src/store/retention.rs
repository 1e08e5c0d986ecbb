//! Retention: the TTL indexes that bound what herald keeps. Each collection's module says
//! which TTL indexes it has ([`super::deliveries::ttl_indexes`],
//! [`super::inbound_events::ttl_index`]); this module creates them, and re-creates them
//! when the operator changes a retention flag.

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};
use tracing::info;

/// How long finished records are kept (`--retention-succeeded-days`,
/// `--retention-failed-days`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub succeeded_days: u32,
    pub failed_days: u32,
}

/// One TTL index herald owns, by name.
pub struct TtlIndex {
    pub collection: &'static str,
    pub name: &'static str,
    pub field: &'static str,
    pub expire_after: Duration,
    pub partial: Option<Document>,
}

/// `n` days.
pub fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 86_400)
}

/// Creates the TTL index `ttl` (idempotent). An index of the same name with other options
/// (the operator changed a retention flag) is changed in place with `collMod` when only its
/// expiry differs and the server allows it, else dropped and re-created.
pub async fn ensure_ttl(db: &Database, ttl: &TtlIndex) -> mongodb::error::Result<()> {
    let collection = db.collection::<Document>(ttl.collection);
    let existing = match collection.list_indexes().await {
        Ok(cursor) => cursor.try_collect::<Vec<IndexModel>>().await?,
        // The collection does not exist yet: creating the index creates it.
        Err(e) if is_namespace_not_found(&e) => Vec::new(),
        Err(e) => return Err(e),
    };
    let found = existing
        .iter()
        .find(|m| m.options.as_ref().and_then(|o| o.name.as_deref()) == Some(ttl.name));
    let wanted_keys = doc! {ttl.field: 1};
    if let Some(model) = found {
        let options = model.options.clone().unwrap_or_default();
        let same_shape = same_keys(&model.keys, &wanted_keys)
            && options.partial_filter_expression == ttl.partial;
        if same_shape && options.expire_after == Some(ttl.expire_after) {
            return Ok(());
        }
        let expire = ttl.expire_after.as_secs() as i64;
        if same_shape {
            let changed = db
                .run_command(doc! {
                    "collMod": ttl.collection,
                    "index": {"name": ttl.name, "expireAfterSeconds": expire},
                })
                .await;
            if changed.is_ok() {
                info!(
                    collection = ttl.collection,
                    index = ttl.name,
                    expire_after_seconds = expire,
                    "retention changed; TTL index updated in place"
                );
                return Ok(());
            }
        }
        info!(
            collection = ttl.collection,
            index = ttl.name,
            expire_after_seconds = expire,
            "retention changed; re-creating the TTL index"
        );
        collection.drop_index(ttl.name).await?;
    }
    let options = IndexOptions::builder()
        .name(ttl.name.to_owned())
        .expire_after(ttl.expire_after)
        .partial_filter_expression(ttl.partial.clone())
        .build();
    collection
        .create_index(
            IndexModel::builder()
                .keys(wanted_keys)
                .options(options)
                .build(),
        )
        .await?;
    Ok(())
}

/// Key patterns compared by field and direction, whatever numeric type the server used.
fn same_keys(a: &Document, b: &Document) -> bool {
    let direction = |v: &Bson| match v {
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Int64(n) => Some(*n as f64),
        Bson::Double(n) => Some(*n),
        _ => None,
    };
    a.len() == b.len()
        && a.iter()
            .zip(b.iter())
            .all(|((ka, va), (kb, vb))| ka == kb && direction(va) == direction(vb))
}

fn is_namespace_not_found(error: &mongodb::error::Error) -> bool {
    const NAMESPACE_NOT_FOUND: i32 = 26;
    matches!(&*error.kind, mongodb::error::ErrorKind::Command(c) if c.code == NAMESPACE_NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_patterns_compare_by_direction_whatever_the_number_type() {
        assert!(same_keys(
            &doc! {"completed_at": 1},
            &doc! {"completed_at": 1.0}
        ));
        assert!(same_keys(
            &doc! {"completed_at": 1i64},
            &doc! {"completed_at": 1}
        ));
        assert!(!same_keys(
            &doc! {"completed_at": -1},
            &doc! {"completed_at": 1}
        ));
        assert!(!same_keys(
            &doc! {"received_at": 1},
            &doc! {"completed_at": 1}
        ));
    }
}
