//! `herald_members` and `herald_partitions`: who is in the cluster and who holds which
//! partition's lease (docs/cluster.md), as `GET /v1/cluster` reads them.
//!
//! The lease coordinator writes both collections; this module is what the API reads of
//! them. Both are herald's own, but an operator can edit a document by hand, so reading is
//! lenient: a field of the wrong type reads as absent and is named in a warning, and a
//! lease document whose `_id` is not a partition number is skipped with a warning. Nothing
//! here fails because of what a document contains; only an unreachable server is an error.

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::{Collection, Database};
use tracing::warn;

use super::id_string;

/// The collections, written by the lease coordinator ([`leases`](super::leases)).
use super::leases::{MEMBERS, PARTITION_LEASES as PARTITIONS};

/// Most member documents read for one answer. A cluster has a handful of members; the
/// bound only keeps a collection flooded by mistake from making the answer unbounded.
pub const MAX_MEMBERS: i64 = 1_000;

/// A member document, as read. Absent fields, and fields of the wrong type, are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// `_id`: the member id (`--member-id`); a non-string `_id` as text.
    pub member_id: String,
    /// Incremented at every heartbeat.
    pub beat: Option<i64>,
    pub started_at: Option<DateTime>,
    /// When the member last wrote its heartbeat, on its own clock.
    pub heartbeat_at: Option<DateTime>,
    /// The member's `--lease-ttl`, in milliseconds (positive).
    pub lease_ttl_ms: Option<i64>,
    /// The address its API listens on.
    pub listen: Option<String>,
    /// The herald version it runs.
    pub version: Option<String>,
    /// How far the member's change stream is behind the newest event, in milliseconds.
    pub feed_lag_ms: Option<i64>,
    /// Age of the oldest checkpoint among the partitions it owns, in milliseconds.
    pub checkpoint_age_ms: Option<i64>,
}

/// A partition's lease document, as read (its opaque `checkpoint` is left in the database).
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// `_id`: the partition number.
    pub partition: u16,
    /// The member holding the lease; `None` when released (or not a string).
    pub owner: Option<String>,
    /// Incremented at every takeover; fences the writes of an earlier owner.
    pub epoch: Option<i64>,
    /// Incremented at every renewal.
    pub beat: Option<i64>,
    pub renewed_at: Option<DateTime>,
    /// `renewed_at` + the owner's lease TTL, on the owner's clock (informative only).
    pub expires_at: Option<DateTime>,
    /// When the partition's checkpoint was last written.
    pub checkpoint_at: Option<DateTime>,
}

/// A field of a document whose value has the wrong type (or an impossible value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OddField {
    pub field: &'static str,
    /// What the field should hold.
    pub expected: &'static str,
    /// What it holds: a BSON type, or the value when it is out of range.
    pub found: String,
}

/// Reads a document's fields, collecting the ones that are there but unusable.
struct Reader<'a> {
    document: &'a Document,
    odd: Vec<OddField>,
}

impl<'a> Reader<'a> {
    fn new(document: &'a Document) -> Self {
        Self {
            document,
            odd: Vec::new(),
        }
    }

    /// The field's value unless absent or null.
    fn present(&self, field: &str) -> Option<&'a Bson> {
        match self.document.get(field) {
            None | Some(Bson::Null) => None,
            Some(value) => Some(value),
        }
    }

    fn wrong(&mut self, field: &'static str, expected: &'static str, value: &Bson) {
        self.odd.push(OddField {
            field,
            expected,
            found: format!("{:?}", value.element_type()),
        });
    }

    fn string(&mut self, field: &'static str) -> Option<String> {
        match self.present(field)? {
            Bson::String(s) => Some(s.clone()),
            other => {
                self.wrong(field, "a string", other);
                None
            }
        }
    }

    fn date(&mut self, field: &'static str) -> Option<DateTime> {
        match self.present(field)? {
            Bson::DateTime(t) => Some(*t),
            other => {
                self.wrong(field, "a date", other);
                None
            }
        }
    }

    /// A whole number ≥ 0 (Int32, Int64, or a Double without a fraction).
    fn count(&mut self, field: &'static str) -> Option<i64> {
        let value = self.present(field)?;
        match whole_number(value) {
            Some(n) if n >= 0 => Some(n),
            Some(n) => {
                self.odd.push(OddField {
                    field,
                    expected: "a whole number ≥ 0",
                    found: n.to_string(),
                });
                None
            }
            None => {
                self.wrong(field, "a whole number ≥ 0", value);
                None
            }
        }
    }
}

/// Logs each unusable field of document `id` of `collection`.
fn warn_odd(collection: &'static str, id: &str, odd: &[OddField]) {
    for odd in odd {
        warn!(
            collection,
            id,
            field = odd.field,
            expected = odd.expected,
            found = %odd.found,
            "cluster document has a field of the wrong type (edited by hand?); it is shown as null"
        );
    }
}

/// An integral number, whatever its BSON type.
fn whole_number(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 9.0e15 => Some(*x as i64),
        _ => None,
    }
}

impl Member {
    /// Reads a member document; the fields it could not use come back beside it.
    pub fn from_doc(document: &Document) -> (Self, Vec<OddField>) {
        let mut r = Reader::new(document);
        let mut member = Member {
            member_id: id_string(document.get("_id")),
            beat: r.count("beat"),
            started_at: r.date("started_at"),
            heartbeat_at: r.date("heartbeat_at"),
            lease_ttl_ms: r.count("lease_ttl_ms"),
            listen: r.string("listen"),
            version: r.string("version"),
            feed_lag_ms: r.count("feed_lag_ms"),
            checkpoint_age_ms: r.count("checkpoint_age_ms"),
        };
        // A TTL of zero would make every member look dead.
        if member.lease_ttl_ms == Some(0) {
            member.lease_ttl_ms = None;
            r.odd.push(OddField {
                field: "lease_ttl_ms",
                expected: "a whole number > 0",
                found: "0".into(),
            });
        }
        (member, r.odd)
    }
}

/// Why a lease document cannot be shown at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkippedLease {
    #[error("its _id {0} is not a partition number in 0..{1}")]
    NotAPartition(String, u16),
}

impl Lease {
    /// Reads a lease document of a cluster of `partitions` partitions; the fields it could
    /// not use come back beside it. A document whose `_id` is not a partition number in
    /// `0..partitions` cannot be placed, and is refused.
    pub fn from_doc(
        document: &Document,
        partitions: u16,
    ) -> Result<(Self, Vec<OddField>), SkippedLease> {
        let id = document.get("_id").unwrap_or(&Bson::Null);
        let partition = whole_number(id)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n < partitions)
            .ok_or_else(|| SkippedLease::NotAPartition(id_string(Some(id)), partitions))?;
        let mut r = Reader::new(document);
        let lease = Lease {
            partition,
            owner: r.string("owner"),
            epoch: r.count("epoch"),
            beat: r.count("beat"),
            renewed_at: r.date("renewed_at"),
            expires_at: r.date("expires_at"),
            checkpoint_at: r.date("checkpoint_at"),
        };
        Ok((lease, r.odd))
    }
}

fn members_collection(db: &Database) -> Collection<Document> {
    db.collection(MEMBERS)
}

fn partitions_collection(db: &Database) -> Collection<Document> {
    db.collection(PARTITIONS)
}

/// Every member document (at most [`MAX_MEMBERS`]), sorted by member id. Unusable fields
/// are logged at warn and read as `None`.
pub async fn members(db: &Database) -> mongodb::error::Result<Vec<Member>> {
    let documents: Vec<Document> = members_collection(db)
        .find(doc! {})
        // Where its quiet partitions may resume is for takers, not shown.
        .projection(doc! {"quiet": 0})
        .sort(doc! {"_id": 1})
        .limit(MAX_MEMBERS)
        .await?
        .try_collect()
        .await?;
    let mut members: Vec<Member> = documents
        .iter()
        .map(|document| {
            let (member, odd) = Member::from_doc(document);
            warn_odd(MEMBERS, &member.member_id, &odd);
            member
        })
        .collect();
    // `_id` order puts numbers before strings; the answer is sorted by the text shown.
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    Ok(members)
}

/// Every lease document of a cluster of `partitions` partitions, sorted by partition, one
/// per partition. A document that is not a partition's is skipped; unusable fields read as
/// `None`; both are logged at warn. Partitions without a document are not listed.
pub async fn leases(db: &Database, partitions: u16) -> mongodb::error::Result<Vec<Lease>> {
    let documents: Vec<Document> = partitions_collection(db)
        .find(doc! {})
        // The checkpoint is an opaque resume token: not shown, so not fetched.
        .projection(doc! {"checkpoint": 0})
        .sort(doc! {"_id": 1})
        .await?
        .try_collect()
        .await?;
    let mut leases = Vec::with_capacity(usize::from(partitions));
    for document in &documents {
        match Lease::from_doc(document, partitions) {
            Ok((lease, odd)) => {
                warn_odd(PARTITIONS, &lease.partition.to_string(), &odd);
                leases.push(lease);
            }
            Err(skipped) => warn!(
                collection = PARTITIONS,
                "lease document skipped (edited by hand?): {skipped}"
            ),
        }
    }
    leases.sort_by_key(|lease| lease.partition);
    // `_id` 7 and 7.0 are the same key to MongoDB, so this only guards the answer's shape.
    leases.dedup_by_key(|lease| lease.partition);
    Ok(leases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_document_reads_field_by_field() {
        let now = DateTime::now();
        let document = doc! {
            "_id": "m1", "beat": 7_i64, "started_at": now, "heartbeat_at": now,
            "lease_ttl_ms": 10_000_i64, "listen": "127.0.0.1:8080", "version": "1.2.3",
            "partitions": [1, 2], "feed_lag_ms": Bson::Null, "checkpoint_age_ms": 250_i32,
        };
        let (member, odd) = Member::from_doc(&document);
        assert!(odd.is_empty(), "{odd:?}");
        assert_eq!(
            member,
            Member {
                member_id: "m1".into(),
                beat: Some(7),
                started_at: Some(now),
                heartbeat_at: Some(now),
                lease_ttl_ms: Some(10_000),
                listen: Some("127.0.0.1:8080".into()),
                version: Some("1.2.3".into()),
                feed_lag_ms: None,
                checkpoint_age_ms: Some(250),
            }
        );
    }

    #[test]
    fn fields_of_the_wrong_type_read_as_absent_and_are_named() {
        let document = doc! {
            "_id": 42, "beat": "many", "heartbeat_at": "yesterday", "lease_ttl_ms": 0,
            "listen": 8080, "version": ["x"], "feed_lag_ms": -5, "checkpoint_age_ms": 1.5,
        };
        let (member, odd) = Member::from_doc(&document);
        assert_eq!(member.member_id, "42");
        assert_eq!(member.beat, None);
        assert_eq!(member.heartbeat_at, None);
        assert_eq!(member.lease_ttl_ms, None);
        assert_eq!(member.listen, None);
        assert_eq!(member.version, None);
        assert_eq!(member.feed_lag_ms, None);
        assert_eq!(member.checkpoint_age_ms, None);
        let named: Vec<&str> = odd.iter().map(|o| o.field).collect();
        for field in [
            "beat",
            "heartbeat_at",
            "lease_ttl_ms",
            "listen",
            "version",
            "feed_lag_ms",
            "checkpoint_age_ms",
        ] {
            assert!(named.contains(&field), "{field} not named in {odd:?}");
        }
        assert!(!named.contains(&"started_at"), "absent is not odd: {odd:?}");
    }

    #[test]
    fn a_lease_is_placed_by_its_partition_number() {
        let now = DateTime::now();
        let document = doc! {"_id": 7, "owner": "m1", "epoch": 3_i64, "beat": 9_i64,
        "renewed_at": now, "expires_at": now, "checkpoint_at": Bson::Null, "nudge": 0_i64};
        let (lease, odd) = Lease::from_doc(&document, 64).unwrap();
        assert!(odd.is_empty(), "{odd:?}");
        assert_eq!(lease.partition, 7);
        assert_eq!(lease.owner.as_deref(), Some("m1"));
        assert_eq!(lease.epoch, Some(3));
        assert_eq!(lease.expires_at, Some(now));
        assert_eq!(lease.checkpoint_at, None);

        // 7.0 is the partition 7, as MongoDB itself compares them.
        assert_eq!(
            Lease::from_doc(&doc! {"_id": 7.0}, 64).unwrap().0.partition,
            7
        );
        for id in [
            Bson::String("seven".into()),
            Bson::Int32(64),
            Bson::Int32(-1),
            Bson::Double(7.5),
        ] {
            assert!(
                Lease::from_doc(&doc! {"_id": id.clone()}, 64).is_err(),
                "{id:?} placed"
            );
        }
    }

    #[test]
    fn a_lease_with_nonsense_fields_shows_what_it_can() {
        let document = doc! {"_id": 9, "owner": 42, "epoch": "one", "expires_at": "soon",
        "checkpoint_at": true};
        let (lease, odd) = Lease::from_doc(&document, 64).unwrap();
        assert_eq!(lease.partition, 9);
        assert_eq!(lease.owner, None);
        assert_eq!(lease.epoch, None);
        assert_eq!(lease.expires_at, None);
        assert_eq!(lease.checkpoint_at, None);
        assert_eq!(odd.len(), 4, "{odd:?}");
    }
}
