//! `payloads`: each event's body, stored once, however many deliveries need it.
//!
//! A delivery that may be attempted again (spilled, paused, failing, failed) needs the exact
//! bytes its first attempt signed. Those bytes are the same for every endpoint of an event,
//! so they are stored once per event — `{_id: <event_id>, body, size, created_at,
//! touched_at}` — and the delivery documents name them (`payload_id`). One 1 MiB event to
//! a thousand failing endpoints is one 1 MiB document, not a thousand. An event id names
//! one body (the outbox's `_id` is unique, publishing is idempotent on `event_id`, and the
//! body is built from the event document alone), so the first body stored for an id is
//! kept (`$setOnInsert`).
//!
//! Read back, a body is shared in memory: every delivery re-loaded for an event holds the
//! same `Bytes` while any of them is alive (a weak map, [`shared`]).
//!
//! Databases written by earlier versions keep the body inline in each delivery
//! (`payload`); those are read, retried and replayed as they are ([`PayloadRef`]).
//!
//! ## When a payload goes
//!
//! A payload is needed while a delivery that may be attempted again names it: `pending`
//! ones (which can wait indefinitely, e.g. while their webhook is disabled) and `failed`
//! ones (replayable until retention removes them). A TTL on the payload alone cannot know
//! that, so [`sweep`] removes a payload only when both hold:
//! - no `pending` or `failed` delivery of its event exists (one query on the `_id` range
//!   `<event_id>:…`), and
//! - it has not been touched for [`SWEEP_GRACE`]: every ledger batch that writes a delivery
//!   naming it first stores it again, which sets `touched_at` to now — unless the same
//!   process stored it less than [`STORED_FRESH_FOR`] (ten minutes) before, so that its
//!   `touched_at` is that recent already ([`StoredRecently`]).
//!
//! The removal is conditional on `touched_at` being still old, so it cannot race with a
//! daemon that is writing a new reference: that daemon touched the payload before writing
//! its delivery (and touches it again when it re-sends the batch), so either the check saw
//! the delivery or the delete finds the payload touched and leaves it. Several daemons may
//! sweep at once; removals are idempotent. The clocks of the daemons need only agree
//! within the grace (an hour). Deliveries themselves go with the TTL indexes of
//! `deliveries` ([`super::retention`]); their payloads follow within a sweep.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::TryStreamExt;
use mongodb::bson::{doc, Binary, Bson, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};
use tracing::{debug, info, warn};

use super::{bson_date, DELIVERIES};
use crate::text::one_line;

/// The collection.
pub const PAYLOADS: &str = "payloads";

/// How long a payload stays after it was last stored again, whatever references it (see
/// the module docs).
pub const SWEEP_GRACE: Duration = Duration::from_secs(3_600);

/// How often each daemon sweeps.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(600);

/// Payloads examined per sweep query.
const SWEEP_PAGE: i64 = 500;

/// Where a delivery document keeps its body.
#[derive(Debug, Clone, PartialEq)]
pub enum PayloadRef {
    /// In `payloads`, under this id (this version).
    Stored(String),
    /// In the delivery itself (`payload`, written by earlier versions).
    Inline(Bytes),
}

impl PayloadRef {
    /// The body a delivery document names, if any.
    pub fn of(delivery: &Document) -> Option<Self> {
        if let Ok(id) = delivery.get_str("payload_id") {
            return Some(Self::Stored(id.to_owned()));
        }
        match delivery.get("payload")? {
            Bson::String(s) => Some(Self::Inline(Bytes::from(s.clone().into_bytes()))),
            Bson::Binary(b) => Some(Self::Inline(Bytes::from(b.bytes.clone()))),
            _ => None,
        }
    }
}

/// The filter matching delivery documents that name a body, either way.
pub fn has_payload() -> Document {
    doc! {"$or": [
        {"payload_id": {"$type": "string"}},
        {"payload": {"$type": ["string", "binData"]}},
    ]}
}

/// The index the sweep's scan uses.
pub async fn ensure_indexes(db: &Database) -> mongodb::error::Result<()> {
    db.collection::<Document>(PAYLOADS)
        .create_index(
            IndexModel::builder()
                .keys(doc! {"touched_at": 1})
                .options(IndexOptions::builder().build())
                .build(),
        )
        .await?;
    Ok(())
}

/// The body is UTF-8 JSON, stored as a string so operators can read it.
fn body_bson(body: &Bytes) -> Bson {
    match std::str::from_utf8(body) {
        Ok(s) => Bson::String(s.to_owned()),
        Err(_) => Bson::Binary(Binary {
            subtype: mongodb::bson::spec::BinarySubtype::Generic,
            bytes: body.to_vec(),
        }),
    }
}

/// The document storing `body` under `id`, touched `now`.
fn payload_doc(id: &str, body: &Bytes, now: DateTime) -> Document {
    doc! {
        "_id": id,
        "body": body_bson(body),
        "size": body.len() as i64,
        "created_at": now,
        "touched_at": now,
    }
}

/// Stores each body once and touches it; before any delivery names it. The first body
/// stored under an id is kept: each is inserted (unordered), and those already stored —
/// an insert refused as a duplicate — are only touched, in one more command. Inserts cost
/// the dev server a fifth of what upserts do, and a body is new far more often than not
/// (it is stored again only when a batch is written again or an event spilled again).
pub async fn store(db: &Database, bodies: &[(&str, &Bytes)]) -> mongodb::error::Result<()> {
    if bodies.is_empty() {
        return Ok(());
    }
    let now = bson_date(SystemTime::now());
    let documents: Vec<Document> = bodies
        .iter()
        .map(|(id, body)| payload_doc(id, body, now))
        .collect();
    let collection = db.collection::<Document>(PAYLOADS);
    let taken = super::insert_unless_present(&collection, documents).await?;
    if taken.is_empty() {
        return Ok(());
    }
    let stored: Vec<&str> = taken.into_iter().map(|i| bodies[i].0).collect();
    collection
        .update_many(
            doc! {"_id": {"$in": stored}},
            doc! {"$max": {"touched_at": now}},
        )
        .await?;
    Ok(())
}

/// A body stored by this process this long ago is not stored again: its `touched_at` is
/// that recent, far inside [`SWEEP_GRACE`], so no sweep can remove it before a delivery
/// written now names it.
pub const STORED_FRESH_FOR: Duration = Duration::from_secs(600);

/// Most event ids [`StoredRecently`] remembers; past it, the stale ones are forgotten (and
/// if none is stale, all: forgetting only costs storing a body again).
const REMEMBERED: usize = 100_000;

/// The bodies this process stored lately, so that a ledger batch does not store again a
/// body an earlier batch stored (an event's deliveries to many endpoints span batches):
/// on the dev server, storing a body again costs several times what storing it did.
#[derive(Debug, Default, Clone)]
pub struct StoredRecently {
    at: Arc<Mutex<HashMap<String, std::time::Instant>>>,
}

impl StoredRecently {
    /// Those of `bodies` not stored by this process within [`STORED_FRESH_FOR`].
    pub fn stale<'b>(&self, bodies: Vec<(&'b str, &'b Bytes)>) -> Vec<(&'b str, &'b Bytes)> {
        let at = self.at.lock().unwrap_or_else(|e| e.into_inner());
        bodies
            .into_iter()
            .filter(|(id, _)| at.get(*id).is_none_or(|t| t.elapsed() >= STORED_FRESH_FOR))
            .collect()
    }

    /// `ids` were stored (and touched) at `when`, which was before their command was sent.
    pub fn stored(&self, ids: &[(&str, &Bytes)], when: std::time::Instant) {
        let mut at = self.at.lock().unwrap_or_else(|e| e.into_inner());
        if at.len() + ids.len() > REMEMBERED {
            at.retain(|_, t| t.elapsed() < STORED_FRESH_FOR);
            if at.len() + ids.len() > REMEMBERED {
                at.clear();
            }
        }
        for (id, _) in ids {
            at.insert((*id).to_owned(), when);
        }
    }
}

/// Bodies read by one command, at most. The dev server checks every document it finds
/// against the whole `$in` list, so a read of n bodies costs it n² comparisons: a page of
/// 1,000 spilled deliveries took it ~1.4 s to serve in one command, ~0.5 s in ten (while
/// the lease rounds waited behind it). On MongoDB each is a point lookup either way, and
/// ten round trips for a page of 1,000 are a few milliseconds.
const LOAD_CHUNK: usize = 100;

/// The bodies of `ids` (those found), each shared with every other reader of it in this
/// process.
pub async fn load(db: &Database, ids: &[String]) -> mongodb::error::Result<HashMap<String, Bytes>> {
    let mut found = HashMap::new();
    let mut missing = Vec::new();
    // Each id once: a page names an event as often as it has deliveries of it.
    let mut seen: HashSet<&str> = HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            continue;
        }
        match cached(db.name(), id) {
            Some(body) => {
                found.insert(id.clone(), body);
            }
            None => missing.push(id.clone()),
        }
    }
    for ids in missing.chunks(LOAD_CHUNK) {
        let mut cursor = db
            .collection::<Document>(PAYLOADS)
            .find(doc! {"_id": {"$in": ids}})
            .projection(doc! {"body": 1})
            .await?;
        while let Some(d) = cursor.try_next().await? {
            let (Ok(id), Some(body)) = (d.get_str("_id"), d.get("body")) else {
                continue;
            };
            let bytes: Arc<[u8]> = match body {
                Bson::String(s) => Arc::from(s.as_bytes()),
                Bson::Binary(b) => Arc::from(b.bytes.as_slice()),
                _ => continue,
            };
            found.insert(id.to_owned(), shared(db.name(), id, bytes));
        }
    }
    Ok(found)
}

/// The body a delivery document names, read from `payloads` when stored there; `None` when
/// it names none or its payload is gone.
pub async fn resolve(db: &Database, delivery: &Document) -> mongodb::error::Result<Option<Bytes>> {
    match PayloadRef::of(delivery) {
        None => Ok(None),
        Some(PayloadRef::Inline(body)) => Ok(Some(body)),
        Some(PayloadRef::Stored(id)) => Ok(load(db, std::slice::from_ref(&id)).await?.remove(&id)),
    }
}

/// Bodies read back, by database and id, while anyone holds them.
type Shared = Mutex<(HashMap<(String, String), Weak<[u8]>>, usize)>;

fn registry() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| Mutex::new((HashMap::new(), 0)))
}

fn cached(database: &str, id: &str) -> Option<Bytes> {
    let map = registry().lock().ok()?;
    let body = map
        .0
        .get(&(database.to_owned(), id.to_owned()))?
        .upgrade()?;
    Some(Bytes::from_owner(body))
}

/// `body` as a `Bytes`, or the copy another reader already holds. Dead entries are dropped
/// whenever the map has doubled since the last clean-up, so it stays proportional to what
/// is alive.
fn shared(database: &str, id: &str, body: Arc<[u8]>) -> Bytes {
    let Ok(mut guard) = registry().lock() else {
        return Bytes::from_owner(body);
    };
    let (map, live_at_cleanup) = &mut *guard;
    let key = (database.to_owned(), id.to_owned());
    if let Some(alive) = map.get(&key).and_then(Weak::upgrade) {
        return Bytes::from_owner(alive);
    }
    map.insert(key, Arc::downgrade(&body));
    if map.len() > 2 * (*live_at_cleanup).max(512) {
        map.retain(|_, weak| weak.strong_count() > 0);
        *live_at_cleanup = map.len();
    }
    Bytes::from_owner(body)
}

/// Removes payloads untouched since `cutoff` that no `pending` or `failed` delivery of
/// their event needs (see the module docs); how many went.
pub async fn sweep(db: &Database, cutoff: SystemTime) -> mongodb::error::Result<u64> {
    let payloads = db.collection::<Document>(PAYLOADS);
    let deliveries = db.collection::<Document>(DELIVERIES);
    let cutoff = bson_date(cutoff);
    let mut removed = 0;
    let mut after: Option<Bson> = None;
    loop {
        let mut filter = doc! {"touched_at": {"$lt": cutoff}};
        if let Some(last) = &after {
            filter.insert("_id", doc! {"$gt": last.clone()});
        }
        let page: Vec<Document> = payloads
            .find(filter)
            .sort(doc! {"_id": 1})
            .limit(SWEEP_PAGE)
            .projection(doc! {"_id": 1})
            .await?
            .try_collect()
            .await?;
        let Some(last) = page.last().and_then(|d| d.get("_id")).cloned() else {
            break;
        };
        for d in &page {
            let Ok(id) = d.get_str("_id") else { continue };
            let needed = deliveries
                .find_one(doc! {
                    "_id": {"$gte": format!("{id}:"), "$lt": format!("{id};")},
                    "event_id": id,
                    "status": {"$in": ["pending", "failed"]},
                })
                .projection(doc! {"_id": 1})
                .await?;
            if needed.is_some() {
                continue;
            }
            let gone = payloads
                .delete_one(doc! {"_id": id, "touched_at": {"$lt": cutoff}})
                .await?;
            removed += gone.deleted_count;
        }
        if page.len() < SWEEP_PAGE as usize {
            break;
        }
        after = Some(last);
    }
    Ok(removed)
}

/// Sweeps every [`SWEEP_INTERVAL`] until dropped.
pub fn spawn_sweeper(db: Database) -> Sweeper {
    Sweeper(tokio::spawn(async move {
        loop {
            tokio::time::sleep(SWEEP_INTERVAL).await;
            let cutoff = SystemTime::now() - SWEEP_GRACE;
            match sweep(&db, cutoff).await {
                Ok(0) => debug!("no payload to remove"),
                Ok(removed) => info!(removed, "payloads no delivery needs removed"),
                Err(e) => {
                    warn!(error = %one_line(&e.to_string()), "cannot sweep payloads; trying again later")
                }
            }
        }
    }))
}

/// Stops the sweeper when dropped.
pub struct Sweeper(tokio::task::JoinHandle<()>);

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_names_its_body_stored_or_inline() {
        assert_eq!(
            PayloadRef::of(&doc! {"payload_id": "evt_1"}),
            Some(PayloadRef::Stored("evt_1".into()))
        );
        assert_eq!(
            PayloadRef::of(&doc! {"payload": "{}"}),
            Some(PayloadRef::Inline(Bytes::from_static(b"{}")))
        );
        assert_eq!(PayloadRef::of(&doc! {"payload": 1}), None);
        assert_eq!(PayloadRef::of(&doc! {}), None);
    }

    #[test]
    fn bodies_read_back_are_shared_while_held() {
        let first = shared("db_shared_test", "evt_1", Arc::from(&b"body"[..]));
        let second = shared("db_shared_test", "evt_1", Arc::from(&b"body"[..]));
        assert_eq!(first.as_ptr(), second.as_ptr());
        assert_eq!(
            cached("db_shared_test", "evt_1").map(|b| b.as_ptr()),
            Some(first.as_ptr())
        );
        drop((first, second));
        assert!(cached("db_shared_test", "evt_1").is_none());
    }

    #[test]
    fn a_body_stored_lately_is_not_stored_again_and_one_stored_long_ago_is() {
        let recently = StoredRecently::default();
        let (a, b) = (Bytes::from_static(b"a"), Bytes::from_static(b"b"));
        let asked = vec![("evt_a", &a), ("evt_b", &b)];
        assert_eq!(recently.stale(asked.clone()).len(), 2);
        recently.stored(&[("evt_a", &a)], std::time::Instant::now());
        let stale: Vec<&str> = recently
            .stale(asked.clone())
            .iter()
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(stale, ["evt_b"]);
        let long_ago = std::time::Instant::now() - STORED_FRESH_FOR;
        recently.stored(&[("evt_a", &a)], long_ago);
        assert_eq!(recently.stale(asked).len(), 2);
    }

    #[test]
    fn it_remembers_a_bounded_number_of_bodies() {
        let recently = StoredRecently::default();
        let body = Bytes::from_static(b"x");
        let ids: Vec<String> = (0..REMEMBERED + 10).map(|i| format!("evt_{i}")).collect();
        for chunk in ids.chunks(1_000) {
            let batch: Vec<(&str, &Bytes)> = chunk.iter().map(|id| (id.as_str(), &body)).collect();
            recently.stored(&batch, std::time::Instant::now());
        }
        assert!(recently.at.lock().unwrap().len() <= REMEMBERED);
    }
}
