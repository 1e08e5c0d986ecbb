//! Who owns what: the leases in `herald_partitions` and the members' own records in
//! `herald_members`, read straight from MongoDB.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Database;
use sha2::Digest;

use super::PARTITIONS;

/// The partition of a webhook, computed here independently of herald's code.
pub fn partition_of(webhook_id: &str) -> i32 {
    let digest = sha2::Sha256::digest(webhook_id.as_bytes());
    let first = u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 has 32 bytes"));
    (first % PARTITIONS as u64) as i32
}

/// One partition's lease as `herald_partitions` holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub partition: i32,
    pub owner: Option<String>,
    pub epoch: i64,
    /// The feed position its checkpoint stands for, as (seconds, increment).
    pub checkpoint_time: Option<(u32, u32)>,
}

fn integer(value: Option<&Bson>) -> Option<i64> {
    match value? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        _ => None,
    }
}

/// Every partition document as stored, in partition order.
pub async fn partition_documents(db: &Database) -> Vec<Document> {
    db.collection::<Document>("herald_partitions")
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// Every lease, by partition.
pub async fn leases(db: &Database) -> Vec<Lease> {
    partition_documents(db)
        .await
        .iter()
        .filter_map(|d| {
            Some(Lease {
                partition: i32::try_from(integer(d.get("_id"))?).ok()?,
                owner: d.get_str("owner").ok().map(str::to_owned),
                epoch: integer(d.get("epoch")).unwrap_or_default(),
                checkpoint_time: d
                    .get_timestamp("checkpoint_time")
                    .ok()
                    .map(|t| (t.time, t.increment)),
            })
        })
        .collect()
}

/// The member holding the lease of `webhook_id`'s partition.
pub async fn owner_of(db: &Database, webhook_id: &str) -> Option<String> {
    let partition = partition_of(webhook_id);
    leases(db)
        .await
        .into_iter()
        .find(|l| l.partition == partition)
        .and_then(|l| l.owner)
}

/// The members' own view: `partitions` of every `herald_members` document, by member id.
pub async fn members_partitions(db: &Database) -> BTreeMap<String, Vec<i64>> {
    let docs: Vec<Document> = db
        .collection::<Document>("herald_members")
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    docs.iter()
        .map(|d| {
            let id = d.get_str("_id").unwrap_or_default().to_owned();
            let partitions = d
                .get_array("partitions")
                .map(|a| a.iter().filter_map(|p| integer(Some(p))).collect())
                .unwrap_or_default();
            (id, partitions)
        })
        .collect()
}

/// Whether `lists` claim every partition exactly once: no partition owned by two members,
/// none by nobody.
pub fn each_partition_once<'a>(lists: impl IntoIterator<Item = &'a Vec<i64>>) -> bool {
    let mut claims = vec![0usize; PARTITIONS];
    for partition in lists.into_iter().flatten() {
        match usize::try_from(*partition)
            .ok()
            .and_then(|p| claims.get_mut(p))
        {
            Some(n) => *n += 1,
            None => return false,
        }
    }
    claims.iter().all(|n| *n == 1)
}
