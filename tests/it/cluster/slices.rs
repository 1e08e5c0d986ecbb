//! The lease store writes all 64 partitions in slices of a few documents per command (so
//! the dev server serves other commands between them): every renewal and checkpoint still
//! reaches each partition it names, and a checkpoint refused for a partition whose epoch
//! moved on is reported for that partition alone, wherever it falls among the slices.

use std::time::Duration;

use herald::store::leases as store;
use herald_actors::{PartitionCheckpoint, Position};
use mongodb::bson::{doc, Document};

use super::*;
use crate::fixtures::database;

const MEMBER: &str = "herald-slices";

#[tokio::test]
async fn renewals_and_checkpoints_of_every_partition_land_and_refusals_name_their_partition() {
    let (_uri, _name, db) = database("cluster_slices").await;
    store::ensure_partitions(&db, None).await.unwrap();
    let ttl = Duration::from_secs(10);
    let mut owned: Vec<(u16, u64)> = Vec::new();
    for lease in store::leases(&db).await.unwrap() {
        let taken = store::acquire(&db, MEMBER, &lease, ttl)
            .await
            .unwrap()
            .expect("a free partition is taken");
        owned.push((taken.partition, taken.epoch));
    }
    assert_eq!(owned.len(), PARTITIONS);
    let beats = |docs: Vec<Document>| -> Vec<i64> {
        docs.iter()
            .map(|d| d.get_i64("beat").unwrap_or_default())
            .collect()
    };
    let before = beats(partition_documents(&db).await);

    store::renew(&db, MEMBER, &owned, ttl).await.unwrap();
    let after = beats(partition_documents(&db).await);
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!(*a, b + 1, "partition {i} renewed once");
    }

    // Three partitions move on to a new epoch (taken over), one in each of three slices.
    let moved = [3i32, 20, 61];
    db.collection::<Document>("herald_partitions")
        .update_many(
            doc! {"_id": {"$in": moved.to_vec()}},
            doc! {"$inc": {"epoch": 1i64}},
        )
        .await
        .unwrap();
    // Two positions: the even partitions at one, the odd at another.
    let checkpoints: Vec<PartitionCheckpoint> = owned
        .iter()
        .map(|&(partition, epoch)| PartitionCheckpoint {
            partition,
            epoch,
            position: Position::new(
                vec![partition as u8 % 2; 8],
                (7u64 << 32) | u64::from(partition % 2),
            ),
        })
        .collect();
    let mut refused = store::store_checkpoints(&db, &checkpoints).await.unwrap();
    refused.sort_unstable();
    assert_eq!(refused, vec![3, 20, 61]);
    for lease in leases(&db).await {
        if moved.contains(&lease.partition) {
            assert_eq!(lease.checkpoint_time, None, "{lease:?}");
        } else {
            assert_eq!(
                lease.checkpoint_time,
                Some((7, (lease.partition % 2) as u32)),
                "{lease:?}"
            );
        }
    }
}
