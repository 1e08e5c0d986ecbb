//! A dead member's quiet partitions resume from its quiet mark (`quiet` in its member
//! document: a position, and the partitions it held with nothing unsettled there, each under
//! its epoch), not from their own older checkpoints; but only a partition the mark names
//! under the epoch it is taken from, and only the mark of the member that held it. A member
//! of an earlier version writes no mark: its partitions resume from their checkpoints.
//!
//! The database is written as dead members would have left it. One event lies between the
//! partitions' checkpoints and the mark: a partition resumed from its checkpoint sends it
//! (no record of it exists), one resumed from the mark does not.

use std::time::Duration;

use mongodb::bson::{doc, Binary, Bson, Document};
use mongodb::Database;

use super::*;
use crate::daemon::test_config;
use crate::fixtures::{database, insert_event, insert_member};

/// Held every partition, wrote a quiet mark, then stopped beating.
const GONE: &str = "gone-member";
/// Of an earlier version: no quiet mark. Held one partition.
const EARLIER: &str = "earlier-version-member";

/// Where the feed is now, after every write so far (one write to a collection the feed does
/// not watch comes first, so the position is past the last write that matters).
async fn position_now(db: &Database) -> Vec<u8> {
    db.collection::<Document>("quiet_mark_padding")
        .insert_one(doc! {})
        .await
        .unwrap();
    herald::store::events::present_position(db)
        .await
        .unwrap()
        .expect("the server reports a position")
        .to_vec()
}

/// Inserts an event of [`EVENT_TYPE`]; the cluster time of its change.
async fn inserted_at(db: &Database, id: &str) -> u64 {
    let mut changes = db.collection::<Document>("events").watch().await.unwrap();
    insert_event(db, id, EVENT_TYPE).await;
    let change = futures::StreamExt::next(&mut changes)
        .await
        .expect("the change of the insert")
        .unwrap();
    let t = change.cluster_time.expect("a change has a cluster time");
    u64::from(t.time) << 32 | u64::from(t.increment)
}

fn time_of(position: &[u8]) -> u64 {
    herald::store::events::decode_position(position)
        .expect("a stored position")
        .time
}

/// `n` webhook ids, each in a partition of its own.
fn ids_in_distinct_partitions(n: usize) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for i in 0.. {
        let id = format!("wh_quiet_{i:02}");
        if ids.iter().all(|o| partition_of(o) != partition_of(&id)) {
            ids.push(id);
        }
        if ids.len() == n {
            break;
        }
    }
    ids
}

async fn quiet_of(db: &Database, member: &str) -> Option<Document> {
    db.collection::<Document>("herald_members")
        .find_one(doc! {"_id": member})
        .await
        .unwrap()?
        .get_document("quiet")
        .ok()
        .cloned()
}

#[tokio::test]
async fn a_dead_members_quiet_partitions_resume_from_its_mark_under_the_epoch_it_names() {
    let (uri, name, db) = database("cluster_quiet_mark").await;
    let ids = ids_in_distinct_partitions(3);
    let mut endpoints = Vec::new();
    for id in &ids {
        endpoints.push(Endpoint::start(&db, id, |_| {}).await);
    }
    // Named by what the dead members' marks say of their partitions.
    let (marked, stale, earlier) = (&endpoints[0], &endpoints[1], &endpoints[2]);
    let partition = |e: &Endpoint| partition_of(&e.webhook_id);

    let checkpoint = position_now(&db).await;
    herald::store::leases::ensure_partitions(&db, Some(&checkpoint))
        .await
        .unwrap();
    let partitions = db.collection::<Document>("herald_partitions");
    partitions
        .update_many(
            doc! {},
            doc! {"$set": {"owner": GONE, "epoch": 1i64, "beat": 5i64}},
        )
        .await
        .unwrap();
    partitions
        .update_one(
            doc! {"_id": partition(earlier)},
            doc! {"$set": {"owner": EARLIER}},
        )
        .await
        .unwrap();
    // Settled by the dead members, as their marks say: but with no record of it.
    insert_event(&db, "evt_quiet_before", EVENT_TYPE).await;
    let mark = position_now(&db).await;
    assert!(
        time_of(&mark) > time_of(&checkpoint),
        "the mark must stand after the checkpoints"
    );
    // GONE's mark names `marked` under the epoch it holds, `stale` under an older one, and
    // `earlier` (which EARLIER holds: not GONE's to speak for).
    let named =
        |e: &Endpoint, epoch: i64| Bson::Array(vec![Bson::Int32(partition(e)), Bson::Int64(epoch)]);
    insert_member(
        &db,
        doc! {
            "_id": GONE, "beat": 9i64, "holds_before_beat": true,
            "quiet": {
                "checkpoint": Binary { subtype: mongodb::bson::spec::BinarySubtype::Generic, bytes: mark },
                "partitions": [named(marked, 1), named(stale, 0), named(earlier, 1)],
            },
        },
    )
    .await;
    insert_member(&db, doc! {"_id": EARLIER, "beat": 9i64}).await;

    let config = test_config(&uri, &name, crate::support::test_ca_pem_path());
    let mut cluster = Cluster::start(&config, 1, &[]).await;
    let me = cluster.member_id(0);
    cluster.wait_settled(&db).await;
    let after = inserted_at(&db, "evt_quiet_after").await;

    for endpoint in [marked, stale, earlier] {
        endpoint.receiver.wait_for(1, Duration::from_secs(60)).await;
    }
    for endpoint in [stale, earlier] {
        endpoint.receiver.wait_for(2, Duration::from_secs(60)).await;
    }
    // Everything up to the last event is settled in `marked`'s partition once its
    // checkpoint, written by the new owner, reaches it: a re-read of the first event would
    // have recorded it by then.
    crate::support::eventually(
        Duration::from_secs(60),
        "the marked partition's checkpoint at the last event",
        || {
            let db = db.clone();
            let p = partition(marked);
            async move {
                leases(&db).await.iter().any(|l| {
                    l.partition == p
                        && l.checkpoint_time
                            .is_some_and(|(s, i)| (u64::from(s) << 32 | u64::from(i)) >= after)
                })
            }
        },
    )
    .await;
    let got = |e: &Endpoint| {
        let mut ids: Vec<String> = e
            .receiver
            .requests()
            .iter()
            .filter_map(|r| r.header("webhook-id").map(str::to_owned))
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(
        got(marked),
        ["evt_quiet_after"],
        "the partition named in its owner's mark resumed from the mark"
    );
    assert_eq!(
        got(stale),
        ["evt_quiet_after", "evt_quiet_before"],
        "a partition named under another epoch resumed from its checkpoint"
    );
    assert_eq!(
        got(earlier),
        ["evt_quiet_after", "evt_quiet_before"],
        "a partition of an earlier-version member resumed from its checkpoint"
    );

    // This daemon marks its own quiet partitions, under the epochs it holds them by.
    crate::support::eventually(
        Duration::from_secs(30),
        "the daemon's quiet mark names its partitions under their epochs",
        || {
            let (db, me) = (db.clone(), me.clone());
            async move {
                let Some(quiet) = quiet_of(&db, &me).await else {
                    return false;
                };
                let named: Vec<(i64, i64)> = quiet
                    .get_array("partitions")
                    .map(|a| {
                        a.iter()
                            .filter_map(|pair| match pair {
                                Bson::Array(pair) => match pair[..] {
                                    [Bson::Int32(p), Bson::Int64(e)] => Some((i64::from(p), e)),
                                    _ => None,
                                },
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let held = leases(&db).await;
                held.len() == PARTITIONS
                    && held.iter().all(|l| {
                        l.owner.as_deref() == Some(me.as_str())
                            && named.contains(&(i64::from(l.partition), l.epoch))
                    })
            }
        },
    )
    .await;
    cluster.stop_all().await;
}
