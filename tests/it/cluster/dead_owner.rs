//! A member that stopped beating, as a starting daemon finds it in the database. A member
//! that holds every lease from before its latest beat (`holds_before_beat: true`, as this
//! version writes) has all of its leases expire with its beat: they are taken together,
//! even one whose own beat still moves. A member of an earlier version (no such field) is
//! judged lease by lease, as before: its leases are taken once each one's beat stands
//! still, and not before.

use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::Database;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::daemon::test_config;
use crate::fixtures::{database, insert_member};

const GONE: &str = "gone-member";
const EARLIER: &str = "earlier-version-member";

/// Partitions 0..32 held by `GONE` (which says it holds from before its beat), 32..64 by
/// `EARLIER` (which does not say so); neither beats any more.
async fn two_silent_members(db: &Database) {
    let start = herald::store::events::present_position(db)
        .await
        .unwrap()
        .map(|b| b.to_vec());
    herald::store::leases::ensure_partitions(db, start.as_deref())
        .await
        .unwrap();
    let partitions = db.collection::<Document>("herald_partitions");
    for (owner, range) in [(GONE, 0..32), (EARLIER, 32..64)] {
        partitions
            .update_many(
                doc! {"_id": {"$gte": range.start, "$lt": range.end}},
                doc! {"$set": {"owner": owner, "epoch": 1i64, "beat": 5i64}},
            )
            .await
            .unwrap();
    }
    insert_member(
        db,
        doc! {"_id": GONE, "beat": 9i64, "holds_before_beat": true},
    )
    .await;
    insert_member(db, doc! {"_id": EARLIER, "beat": 9i64}).await;
}

/// Bumps the `beat` of `partition`'s lease every 150 ms, as long as `owner` holds it, until
/// `stop`.
fn keep_beating(db: &Database, partition: i32, owner: &str, stop: CancellationToken) {
    let (partitions, owner) = (
        db.collection::<Document>("herald_partitions"),
        owner.to_owned(),
    );
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            let _ = partitions
                .update_one(
                    doc! {"_id": partition, "owner": &owner},
                    doc! {"$inc": {"beat": 1i64}},
                )
                .await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });
}

async fn owner(db: &Database, partition: i32) -> Option<String> {
    leases(db)
        .await
        .into_iter()
        .find(|l| l.partition == partition)
        .and_then(|l| l.owner)
}

#[tokio::test]
async fn a_silent_member_loses_all_its_leases_with_its_beat_and_one_of_an_earlier_version_lease_by_lease(
) {
    let (uri, name, db) = database("cluster_dead_owner").await;
    two_silent_members(&db).await;
    // One lease of each still beats.
    let beating = CancellationToken::new();
    keep_beating(&db, 0, GONE, beating.clone());
    keep_beating(&db, 32, EARLIER, beating.clone());

    let config = test_config(&uri, &name, crate::support::test_ca_pem_path());
    let mut cluster = Cluster::start(&config, 1, &[]).await;
    let me = cluster.member_id(0);

    // Every lease whose beat stands still is taken, and so is partition 0, whose beat moves
    // but whose owner's does not.
    crate::support::eventually(
        Duration::from_secs(60),
        "every lease but partition 32's taken",
        || {
            let (db, me) = (db.clone(), me.clone());
            async move {
                leases(&db)
                    .await
                    .iter()
                    .all(|l| l.partition == 32 || l.owner.as_deref() == Some(me.as_str()))
            }
        },
    )
    .await;
    // Partition 32's owner is of an earlier version: its moving beat keeps it held.
    tokio::time::sleep(LEASE_TTL * 2).await;
    assert_eq!(owner(&db, 32).await.as_deref(), Some(EARLIER));

    // Once that beat stands still too, it expires like any other.
    beating.cancel();
    crate::support::eventually(
        Duration::from_secs(60),
        "partition 32 taken once its beat stands still",
        || {
            let (db, me) = (db.clone(), me.clone());
            async move { owner(&db, 32).await.as_deref() == Some(me.as_str()) }
        },
    )
    .await;
    let member = db
        .collection::<Document>("herald_members")
        .find_one(doc! {"_id": &me})
        .await
        .unwrap()
        .expect("the daemon's member document");
    assert_eq!(
        member.get_bool("holds_before_beat"),
        Ok(true),
        "this version says it holds from before its beat"
    );
    cluster.stop_all().await;
}
