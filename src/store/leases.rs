//! The cluster's state in MongoDB: members (`herald_members`) and partition leases with
//! their checkpoints (`herald_partitions`). Every write that can race is conditional.
//!
//! A member document is the member's heartbeat: `beat` grows by one at every round. A
//! partition document is the partition's lease and its checkpoint: `owner`, `epoch`
//! (one more at every takeover), `beat` (one more at every renewal) and the feed position
//! below which the partition's deliveries are durable. Nobody compares clocks: a member
//! judges a lease expired when it has seen its `beat` stand still for a lease period on
//! its own clock (`crate::cluster`), and takes it over only if it is still exactly as
//! observed (owner, epoch and beat), so two members can never both take it.
//!
//! What a document holds is read leniently: a hand-edited document with fields of the wrong
//! type is reported and handled as well as can be (its owner as unknown, its checkpoint as
//! unreadable), never a crash.

use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use herald_actors::{PartitionCheckpoint, Position, QuietMark, PARTITIONS};
use mongodb::bson::{doc, Bson, Document};
use mongodb::Database;
use tracing::warn;

use super::{bson_date, STATE};

pub const MEMBERS: &str = "herald_members";
pub const PARTITION_LEASES: &str = "herald_partitions";

/// One partition document, as read.
#[derive(Debug, Clone)]
pub struct Lease {
    pub partition: u16,
    pub owner: Option<String>,
    /// The fields as stored, for conditional updates that must match them exactly (even
    /// when hand-edited into something that is not a number).
    pub raw_owner: Bson,
    pub raw_epoch: Bson,
    pub raw_beat: Bson,
    /// The epoch as a number (0 when unreadable).
    pub epoch: u64,
    pub checkpoint: Option<Vec<u8>>,
    pub checkpoint_time: u64,
    /// A checkpoint field is present but unreadable.
    pub checkpoint_unreadable: bool,
    pub nudge: i64,
    /// What is wrong with the document, when it was edited into something herald did not
    /// write (for one warning per edit).
    pub odd: Option<String>,
}

/// One member document, as read.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub raw_beat: Bson,
    /// It holds every lease from before its latest beat (`holds_before_beat: true`, written
    /// since this version): once its beat stands still for a lease period, all of its leases
    /// have expired. Members of earlier versions beat first, then start the hold.
    pub holds_before_beat: bool,
    /// Where its quiet partitions may resume (`quiet`, written since this version), if the
    /// field is there and readable; members of earlier versions write none.
    pub quiet: Option<QuietMark>,
}

/// What a member says about itself at every heartbeat.
#[derive(Debug, Clone)]
pub struct Heartbeat<'a> {
    pub member_id: &'a str,
    pub started_at: SystemTime,
    pub listen: String,
    pub lease_ttl: Duration,
    pub partitions: Vec<u16>,
    pub feed_lag_ms: Option<u64>,
    pub checkpoint_age_ms: Option<u64>,
}

fn as_u64(value: Option<&Bson>) -> Option<u64> {
    match value? {
        Bson::Int32(n) if *n >= 0 => Some(*n as u64),
        Bson::Int64(n) if *n >= 0 => Some(*n as u64),
        Bson::Double(f) if *f >= 0.0 && f.fract() == 0.0 => Some(*f as u64),
        _ => None,
    }
}

pub use super::position::{time_key, timestamp};

fn lease_from(d: &Document) -> Option<Lease> {
    let partition = match d.get("_id") {
        Some(Bson::Int32(n)) if (0..i32::from(PARTITIONS)).contains(n) => *n as u16,
        Some(Bson::Int64(n)) if (0..i64::from(PARTITIONS)).contains(n) => *n as u16,
        _ => return None,
    };
    let owner = match d.get("owner") {
        Some(Bson::String(s)) if !s.is_empty() => Some(s.clone()),
        None | Some(Bson::Null) => None,
        // Not a member this version could have written: an unknown one, which never beats.
        Some(other) => Some(format!("?{other}")),
    };
    let epoch = as_u64(d.get("epoch"));
    let (checkpoint, unreadable) = match d.get("checkpoint") {
        None | Some(Bson::Null) => (None, false),
        Some(Bson::Binary(b)) => (Some(b.bytes.clone()), false),
        Some(_) => (None, true),
    };
    let mut odd = Vec::new();
    if matches!(d.get("owner"), Some(v) if !matches!(v, Bson::String(_) | Bson::Null)) {
        odd.push(format!(
            "owner {} is not a member id",
            d.get("owner").cloned().unwrap_or(Bson::Null)
        ));
    }
    if epoch.is_none() {
        odd.push(format!(
            "epoch {:?} is not a count (taken as 0)",
            d.get("epoch")
        ));
    }
    if unreadable {
        odd.push("checkpoint is not a stored position".into());
    }
    Some(Lease {
        partition,
        owner,
        raw_owner: d.get("owner").cloned().unwrap_or(Bson::Null),
        raw_epoch: d.get("epoch").cloned().unwrap_or(Bson::Null),
        raw_beat: d.get("beat").cloned().unwrap_or(Bson::Null),
        epoch: epoch.unwrap_or(0),
        checkpoint,
        checkpoint_time: match d.get("checkpoint_time") {
            Some(Bson::Timestamp(t)) => time_key(*t),
            _ => 0,
        },
        checkpoint_unreadable: unreadable,
        nudge: match d.get("nudge") {
            Some(Bson::Int32(n)) => i64::from(*n),
            Some(Bson::Int64(n)) => *n,
            _ => 0,
        },
        odd: (!odd.is_empty()).then(|| odd.join("; ")),
    })
}

/// Creates the partition documents that do not exist yet, each starting from `start` (the
/// single checkpoint of a database written before partitions, or the present). Racing
/// members create each once (the `_id` is unique).
pub async fn ensure_partitions(db: &Database, start: Option<&[u8]>) -> mongodb::error::Result<()> {
    let leases = db.collection::<Document>(PARTITION_LEASES);
    let existing: Vec<Bson> = leases.distinct("_id", doc! {}).await?;
    let missing: Vec<Document> = (0..PARTITIONS)
        .filter(|p| !existing.contains(&Bson::Int32(i32::from(*p))))
        .map(|p| {
            let mut d = doc! {
                "_id": i32::from(p), "owner": Bson::Null, "epoch": 0i64, "beat": 0i64,
                "nudge": 0i64, "checkpoint": Bson::Null,
            };
            if let Some(start) = start {
                d.insert("checkpoint", binary(start));
                d.insert("checkpoint_at", bson_date(SystemTime::now()));
            }
            d
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    match leases.insert_many(missing).ordered(false).await {
        Ok(_) => Ok(()),
        Err(e) if super::is_duplicate_key(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

fn binary(bytes: &[u8]) -> Bson {
    Bson::Binary(mongodb::bson::Binary {
        subtype: mongodb::bson::spec::BinarySubtype::Generic,
        bytes: bytes.to_vec(),
    })
}

/// The checkpoint a database written before partitions kept (`herald_state`, `_id:
/// "feed"`), if any.
pub async fn legacy_checkpoint(db: &Database) -> mongodb::error::Result<Option<Vec<u8>>> {
    let found = db
        .collection::<Document>(STATE)
        .find_one(doc! {"_id": "feed"})
        .await?;
    Ok(found.and_then(|d| match d.get("token") {
        Some(Bson::Binary(b)) => Some(b.bytes.clone()),
        _ => None,
    }))
}

/// Every partition document (at most [`PARTITIONS`]); unreadable ones are reported and
/// left out.
pub async fn leases(db: &Database) -> mongodb::error::Result<Vec<Lease>> {
    let docs: Vec<Document> = db
        .collection::<Document>(PARTITION_LEASES)
        .find(doc! {})
        .await?
        .try_collect()
        .await?;
    Ok(docs
        .iter()
        .filter_map(|d| {
            let lease = lease_from(d);
            if lease.is_none() {
                warn!(id = ?d.get("_id"), "ignoring a herald_partitions document whose _id is not a partition number");
            }
            lease
        })
        .collect())
}

/// Every member document.
pub async fn members(db: &Database) -> mongodb::error::Result<Vec<Member>> {
    let docs: Vec<Document> = db
        .collection::<Document>(MEMBERS)
        .find(doc! {})
        .projection(doc! {"beat": 1, "holds_before_beat": 1, "quiet": 1})
        .await?
        .try_collect()
        .await?;
    Ok(docs
        .into_iter()
        .filter_map(|d| match d.get("_id") {
            Some(Bson::String(id)) => Some(Member {
                id: id.clone(),
                raw_beat: d.get("beat").cloned().unwrap_or(Bson::Null),
                holds_before_beat: d.get_bool("holds_before_beat").unwrap_or(false),
                quiet: d.get_document("quiet").ok().and_then(quiet_from),
            }),
            _ => None,
        })
        .collect())
}

/// A member's `quiet` field as written by [`mark_quiet`]; `None` when anything in it is not
/// what herald writes (then takers resume from the partitions' own checkpoints).
fn quiet_from(d: &Document) -> Option<QuietMark> {
    let Some(Bson::Binary(checkpoint)) = d.get("checkpoint") else {
        return None;
    };
    // The time comes from the position itself, as a partition checkpoint's does.
    let time = super::position::decode_position(&checkpoint.bytes)?.time;
    let mut partitions = Vec::new();
    for entry in d.get_array("partitions").ok()? {
        let Bson::Array(pair) = entry else {
            return None;
        };
        let [partition, epoch] = &pair[..] else {
            return None;
        };
        let partition = as_u64(Some(partition)).filter(|p| *p < u64::from(PARTITIONS))?;
        partitions.push((partition as u16, as_u64(Some(epoch))?));
    }
    partitions.sort_unstable();
    Some(QuietMark {
        position: Position::new(checkpoint.bytes.clone(), time),
        partitions,
    })
}

/// Stores where this member's quiet partitions may resume, in its member document (field
/// `quiet`), replacing the mark stored before: one small write, whatever the number of
/// partitions. Not created if the document is gone (the member left, or was forgotten).
pub async fn mark_quiet(
    db: &Database,
    member_id: &str,
    mark: &QuietMark,
) -> mongodb::error::Result<()> {
    db.collection::<Document>(MEMBERS)
        .update_one(
            doc! {"_id": member_id},
            doc! {"$set": {"quiet": quiet_doc(mark, SystemTime::now())}},
        )
        .await
        .map(|_| ())
}

/// The `quiet` field of a member document: the position as a partition document holds its
/// checkpoint (`checkpoint`, `checkpoint_at`, `checkpoint_time`), and `partitions`, pairs of
/// `[partition, epoch]`.
fn quiet_doc(mark: &QuietMark, now: SystemTime) -> Document {
    let partitions: Vec<Bson> = mark
        .partitions
        .iter()
        .map(|&(p, epoch)| Bson::Array(vec![Bson::Int32(i32::from(p)), Bson::Int64(epoch as i64)]))
        .collect();
    let mut quiet = checkpoint_fields(&mark.position, now);
    quiet.insert("partitions", partitions);
    quiet
}

/// Writes this member's heartbeat (one more `beat`).
pub async fn heartbeat(db: &Database, beat: &Heartbeat<'_>) -> mongodb::error::Result<()> {
    let now = SystemTime::now();
    let optional = |v: Option<u64>| v.map_or(Bson::Null, |v| Bson::Int64(v as i64));
    db.collection::<Document>(MEMBERS)
        .update_one(
            doc! {"_id": beat.member_id},
            doc! {
                "$inc": {"beat": 1i64},
                "$set": {
                    "started_at": bson_date(beat.started_at),
                    "heartbeat_at": bson_date(now),
                    "lease_ttl_ms": beat.lease_ttl.as_millis() as i64,
                    "listen": &beat.listen,
                    "version": env!("CARGO_PKG_VERSION"),
                    "partitions": beat.partitions.iter().map(|p| i32::from(*p)).collect::<Vec<_>>(),
                    "feed_lag_ms": optional(beat.feed_lag_ms),
                    "checkpoint_age_ms": optional(beat.checkpoint_age_ms),
                    "holds_before_beat": true,
                },
            },
        )
        .upsert(true)
        .await
        .map(|_| ())
}

/// Renews this member's leases: one more `beat` on each partition it still holds under the
/// given epoch (a command per [`DOCUMENTS_PER_COMMAND`] partitions). Which ones it still
/// holds is read back by the caller.
pub async fn renew(
    db: &Database,
    member_id: &str,
    owned: &[(u16, u64)],
    ttl: Duration,
) -> mongodb::error::Result<()> {
    if owned.is_empty() {
        return Ok(());
    }
    let now = SystemTime::now();
    let update = doc! {
        "$inc": {"beat": 1i64},
        "$set": {"renewed_at": bson_date(now), "expires_at": bson_date(now + ttl)},
    };
    let statements: Vec<(usize, Document)> = grouped(owned.iter().map(|&(p, epoch)| (p, epoch)))
        .flat_map(|(epoch, partitions)| {
            statements(
                partitions,
                doc! {"owner": member_id, "epoch": epoch as i64},
                update.clone(),
            )
        })
        .collect();
    // At the shortest lease accepted (1 s), seven pauses of 10 ms: a renewal still ends
    // far inside the third of the lease it has.
    update_in_slices(db, statements, SLICE_PAUSE.min(ttl / 100))
        .await
        .map(|_| ())
}

/// The fields of a partition document that hold its checkpoint.
fn checkpoint_fields(position: &Position, now: SystemTime) -> Document {
    doc! {
        "checkpoint": binary(&position.checkpoint),
        "checkpoint_at": bson_date(now),
        "checkpoint_time": if position.time > 0 {
            Bson::Timestamp(timestamp(position.time))
        } else {
            Bson::Null
        },
    }
}

/// Most partition documents one `update` command writes. The dev server runs one command
/// at a time, ~1 ms per document written: one command for all 64 partitions held the
/// change stream (and every publish) for ~60 ms at every renewal. In slices, other
/// commands go between them; a real MongoDB takes the few extra round trips in stride.
const DOCUMENTS_PER_COMMAND: usize = 8;

/// The pause between two slices of one write. Back to back, the eight slices of a renewal
/// of 64 leases made a train of 20–70 ms on the dev server, each slice 2–11 ms while the
/// others queued, and the events that came meanwhile waited behind all of it; with the
/// slices 20 ms apart, an event waits for one slice at most (a bare change stream beside
/// herald read p99 at 100 events/s 3.8–6.1 ms instead of 9.0–16.5 in one set of pairs,
/// 3.9–5.9 instead of 4.7–9.9 in another). The pause once cost the take-over (members
/// reading the leases only as they renewed often read a renewal half done and judged its
/// later slices a round late); since members look four times a round it does not
/// (BENCHMARKS.md, "d4c38fe → 4863b7f").
const SLICE_PAUSE: Duration = Duration::from_millis(20);

/// Runs `statements` (each with the number of documents it writes) as unordered `update`
/// commands of at most [`DOCUMENTS_PER_COMMAND`] documents, one after the other, `pause`
/// apart; the documents matched in all (`n`). Stops at the first command that fails.
async fn update_in_slices(
    db: &Database,
    statements: Vec<(usize, Document)>,
    pause: Duration,
) -> mongodb::error::Result<usize> {
    let mut matched = 0;
    let mut slice: Vec<Document> = Vec::new();
    let mut documents = 0;
    let mut statements = statements.into_iter().peekable();
    while let Some((count, statement)) = statements.next() {
        slice.push(statement);
        documents += count;
        let full = statements
            .peek()
            .is_none_or(|(next, _)| documents + next > DOCUMENTS_PER_COMMAND);
        if full {
            let updates = std::mem::take(&mut slice);
            documents = 0;
            let reply = db
                .run_command(
                    doc! {"update": PARTITION_LEASES, "updates": updates, "ordered": false},
                )
                .await?;
            matched += match reply.get("n") {
                Some(Bson::Int32(n)) => *n as usize,
                Some(Bson::Int64(n)) => *n as usize,
                _ => 0,
            };
            if statements.peek().is_some() {
                tokio::time::sleep(pause).await;
            }
        }
    }
    Ok(matched)
}

/// Partitions grouped by a key they share, in order of first appearance.
fn grouped<K: PartialEq>(
    items: impl Iterator<Item = (u16, K)>,
) -> impl Iterator<Item = (K, Vec<u16>)> {
    let mut groups: Vec<(K, Vec<u16>)> = Vec::new();
    for (partition, key) in items {
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, partitions)) => partitions.push(partition),
            None => groups.push((key, vec![partition])),
        }
    }
    groups.into_iter()
}

/// Statements of an `update` command that apply `update` to each of `partitions` that also
/// matches `filter` (their `n` counts them), at most [`DOCUMENTS_PER_COMMAND`] partitions
/// each; with the number of partitions each names.
fn statements(partitions: Vec<u16>, filter: Document, update: Document) -> Vec<(usize, Document)> {
    partitions
        .chunks(DOCUMENTS_PER_COMMAND)
        .map(|slice| {
            let mut filter = filter.clone();
            let ids: Vec<i32> = slice.iter().copied().map(i32::from).collect();
            if let [id] = ids[..] {
                filter.insert("_id", id);
                return (1, doc! {"q": filter, "u": update.clone()});
            }
            filter.insert("_id", doc! {"$in": &ids});
            (
                ids.len(),
                doc! {"q": filter, "u": update.clone(), "multi": true},
            )
        })
        .collect()
}

/// Takes over a partition if it is still exactly as observed (same owner, epoch and beat):
/// the new lease, or `None` when someone else moved first.
pub async fn acquire(
    db: &Database,
    member_id: &str,
    observed: &Lease,
    ttl: Duration,
) -> mongodb::error::Result<Option<Lease>> {
    Ok(acquire_all(db, member_id, &[observed], ttl).await?.pop())
}

/// Takes over each of `observed` that is still exactly as observed (same owner, epoch and
/// beat), one epoch up: the leases taken. One conditional statement per partition, in
/// [`DOCUMENTS_PER_COMMAND`] per command, then one read of what they became. A busy dev
/// server answered a dozen takes one by one in 160–200 ms (each waiting its turn behind the
/// delivery records); a dead member's share is taken in a few commands instead.
pub async fn acquire_all(
    db: &Database,
    member_id: &str,
    observed: &[&Lease],
    ttl: Duration,
) -> mongodb::error::Result<Vec<Lease>> {
    if observed.is_empty() {
        return Ok(Vec::new());
    }
    let now = SystemTime::now();
    let statements: Vec<(usize, Document)> = observed
        .iter()
        .map(|lease| {
            let filter = doc! {
                "_id": i32::from(lease.partition),
                "owner": lease.raw_owner.clone(),
                "epoch": lease.raw_epoch.clone(),
                "beat": lease.raw_beat.clone(),
            };
            let update = doc! {"$set": {
                "owner": member_id,
                "epoch": (lease.epoch + 1) as i64,
                "beat": 0i64,
                "renewed_at": bson_date(now),
                "expires_at": bson_date(now + ttl),
                "taken_at": bson_date(now),
                "previous_owner": lease.raw_owner.clone(),
            }};
            (1, doc! {"q": filter, "u": update})
        })
        .collect();
    // Read back even when a command failed: the slices before it may have taken some.
    let written = update_in_slices(db, statements, Duration::ZERO).await;
    let now_stored = leases_among(
        db,
        observed.iter().map(|l| l.partition),
        doc! {"owner": member_id},
    )
    .await?;
    let taken: Vec<Lease> = now_stored
        .into_iter()
        .filter(|stored| {
            observed
                .iter()
                .any(|o| o.partition == stored.partition && o.epoch + 1 == stored.epoch)
        })
        .collect();
    match written {
        Err(e) if taken.is_empty() => Err(e),
        Err(e) => {
            warn!(error = %crate::text::one_line(&e.to_string()), taken = taken.len(), "some leases could not be taken");
            Ok(taken)
        }
        Ok(_) => Ok(taken),
    }
}

/// The partition documents of `partitions` that also match `filter`, as read back after a
/// write (unreadable ones are left out).
async fn leases_among(
    db: &Database,
    partitions: impl Iterator<Item = u16>,
    mut filter: Document,
) -> mongodb::error::Result<Vec<Lease>> {
    let ids: Vec<i32> = partitions.map(i32::from).collect();
    filter.insert("_id", doc! {"$in": ids});
    let docs: Vec<Document> = db
        .collection::<Document>(PARTITION_LEASES)
        .find(filter)
        .await?
        .try_collect()
        .await?;
    Ok(docs.iter().filter_map(lease_from).collect())
}

/// Gives a partition up (after its final checkpoint): anyone may take it at once.
pub async fn release(
    db: &Database,
    member_id: &str,
    partition: u16,
    epoch: u64,
) -> mongodb::error::Result<()> {
    db.collection::<Document>(PARTITION_LEASES)
        .update_one(
            doc! {"_id": i32::from(partition), "owner": member_id, "epoch": epoch as i64},
            doc! {"$set": {"owner": Bson::Null, "expires_at": Bson::Null, "released_at": bson_date(SystemTime::now())}},
        )
        .await
        .map(|_| ())
}

/// Removes this member's document (it is leaving).
pub async fn leave(db: &Database, member_id: &str) -> mongodb::error::Result<()> {
    db.collection::<Document>(MEMBERS)
        .delete_one(doc! {"_id": member_id})
        .await
        .map(|_| ())
}

/// Removes a member that has stopped beating, if it still has not beaten since.
pub async fn forget(db: &Database, member: &Member) -> mongodb::error::Result<()> {
    db.collection::<Document>(MEMBERS)
        .delete_one(doc! {"_id": &member.id, "beat": member.raw_beat.clone()})
        .await
        .map(|_| ())
}

/// Tells the owner of `partition`, wherever it runs, that deliveries of its webhooks were
/// re-queued in the ledger.
pub async fn nudge(db: &Database, partition: u16) -> mongodb::error::Result<()> {
    db.collection::<Document>(PARTITION_LEASES)
        .update_one(
            doc! {"_id": i32::from(partition)},
            doc! {"$inc": {"nudge": 1i64}},
        )
        .await
        .map(|_| ())
}

/// The server's cluster time now (`operationTime` of a `ping`); `None` when the server does
/// not report one.
pub async fn server_time(db: &Database) -> Option<u64> {
    let reply = db.run_command(doc! {"ping": 1}).await.ok()?;
    match reply.get("operationTime") {
        Some(Bson::Timestamp(t)) => Some(time_key(*t)),
        _ => None,
    }
}

/// Stores partition checkpoints, each only under its epoch; answers the partitions whose
/// epoch has moved on (a command per [`DOCUMENTS_PER_COMMAND`] partitions, plus one read
/// when some were refused).
pub async fn store_checkpoints(
    db: &Database,
    checkpoints: &[PartitionCheckpoint],
) -> mongodb::error::Result<Vec<u16>> {
    let now = SystemTime::now();
    // Partitions of one epoch moving to one position (most of them, when few are busy)
    // share one statement: a statement costs the server more than the documents it writes.
    let statements: Vec<(usize, Document)> = grouped(
        checkpoints
            .iter()
            .map(|c| (c.partition, (c.epoch, &c.position))),
    )
    .flat_map(|((epoch, position), partitions)| {
        statements(
            partitions,
            doc! {"epoch": epoch as i64},
            doc! {"$set": checkpoint_fields(position, now)},
        )
    })
    .collect();
    let matched = update_in_slices(db, statements, SLICE_PAUSE).await?;
    if matched >= checkpoints.len() {
        return Ok(Vec::new());
    }
    // Some were refused: find out which (their epoch is not ours any more).
    let now_held = leases_among(db, checkpoints.iter().map(|c| c.partition), doc! {}).await?;
    Ok(checkpoints
        .iter()
        .filter(|c| {
            !now_held
                .iter()
                .any(|l| l.partition == c.partition && l.raw_epoch == Bson::Int64(c.epoch as i64))
        })
        .map(|c| c.partition)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::Timestamp;

    fn position(time: u32) -> Position {
        let stored = doc! {
            "token": {"_data": "8200000001"},
            "at": Bson::Null,
            "time": Timestamp { time, increment: 1 },
        };
        let bytes = mongodb::bson::to_vec(&stored).unwrap();
        Position::new(bytes, time_key(Timestamp { time, increment: 1 }))
    }

    #[test]
    fn a_quiet_mark_reads_back_as_written() {
        let mark = QuietMark {
            position: position(1_700_000_000),
            partitions: vec![(0, 3), (17, 1), (63, 12)],
        };
        let written = quiet_doc(&mark, SystemTime::now());
        assert_eq!(quiet_from(&written), Some(mark));
    }

    #[test]
    fn a_quiet_mark_edited_into_something_else_is_not_used() {
        let mark = QuietMark {
            position: position(1_700_000_000),
            partitions: vec![(5, 2)],
        };
        let written = quiet_doc(&mark, SystemTime::now());
        let edited = |field: &str, value: Bson| {
            let mut d = written.clone();
            d.insert(field, value);
            quiet_from(&d)
        };
        assert_eq!(edited("checkpoint", Bson::String("x".into())), None);
        assert_eq!(edited("partitions", Bson::Int32(5)), None);
        assert_eq!(
            edited("partitions", Bson::Array(vec![Bson::Int32(5)])),
            None
        );
        let out_of_range = Bson::Array(vec![Bson::Array(vec![Bson::Int32(64), Bson::Int64(2)])]);
        assert_eq!(edited("partitions", out_of_range), None);
        let negative = Bson::Array(vec![Bson::Array(vec![Bson::Int32(5), Bson::Int64(-1)])]);
        assert_eq!(edited("partitions", negative), None);
        let not_a_position = Bson::Binary(mongodb::bson::Binary {
            subtype: mongodb::bson::spec::BinarySubtype::Generic,
            bytes: b"not bson".to_vec(),
        });
        assert_eq!(edited("checkpoint", not_a_position), None);
    }
}
