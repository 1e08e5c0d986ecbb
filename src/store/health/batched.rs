//! The kept health of many endpoints read and written together: every endpoint reads its
//! kept health once when it starts (its attempts wait for that read) and writes it when it
//! changes, and a daemon starts thousands of endpoints at once. One round trip each would
//! queue them behind the dev server's thousand round trips a second; so concurrent reads
//! share one `find` over `_id` (at most [`MOST_READ`] ids), and concurrent writes one
//! unordered `update` command of many upserts (at most [`MOST_WRITTEN`]), through a
//! [batcher](crate::store::batcher) each. A lone read or write goes at once.
//!
//! Each caller gets the answer a round trip of its own would have given: its document (or
//! none); its write done, or kept back because a later copy is kept (the conditional
//! filter of [`save_many`]), or the server's error for that statement. A round trip that
//! fails as a whole answers every caller in it with that error. Two copies of one webhook's
//! health in one write: only the later is written, and both callers get its outcome. A
//! read whose caller has given up (its deadline passed while queued) is not asked.

use std::collections::HashMap;
use std::time::Duration;

use herald_actors::health::StoredHealth;
use mongodb::Database;
use tokio_util::sync::CancellationToken;

use super::{get_many, save_many, KeepError};
use crate::store::batcher::{self, Batcher, Reply, Request};

/// Most ids in one read. The dev server's cost of an `$in` grows faster than its ids
/// beyond a few dozen (measured: ~9k documents/s in reads of 25 ids, ~6k of 100, ~4k of
/// 200, ~600 of 1,000; single reads ~1k/s).
pub const MOST_READ: usize = 50;

/// Most copies in one write.
pub const MOST_WRITTEN: usize = 500;

/// One read's answer.
type Loaded = Result<Option<StoredHealth>, KeepError>;

/// One write's answer.
type Saved = Result<(), KeepError>;

/// Reads and writes of the kept health, batched: cheap to clone; its tasks end once every
/// clone is dropped, after answering what was queued.
#[derive(Clone)]
pub struct BatchedHealth {
    reads: Batcher<String, Loaded>,
    writes: Batcher<(String, StoredHealth), Saved>,
}

impl BatchedHealth {
    /// Starts the two batching tasks on `db` (within a Tokio runtime).
    pub fn start(db: &Database) -> Self {
        let reader = db.clone();
        let (reads, _) = Batcher::start(
            batcher::Options {
                max_batch: MOST_READ,
                // Attempts wait for these reads: a short wait for company at most.
                window: Duration::from_millis(2),
                in_flight: 2,
            },
            move |batch| read(reader.clone(), batch),
            CancellationToken::new(),
        );
        let writer = db.clone();
        let (writes, _) = Batcher::start(
            batcher::Options {
                max_batch: MOST_WRITTEN,
                window: Duration::from_millis(10),
                in_flight: 2,
            },
            move |batch| write(writer.clone(), batch),
            CancellationToken::new(),
        );
        Self { reads, writes }
    }

    /// The kept health of `webhook_id`, if any, read together with others.
    pub async fn load(&self, webhook_id: String) -> Loaded {
        self.reads
            .call(webhook_id)
            .await
            .unwrap_or(Err(KeepError::Stopped))
    }

    /// Keeps `health` as the health of `webhook_id` unless a later copy is kept, written
    /// together with others.
    pub async fn save(&self, webhook_id: String, health: StoredHealth) -> Saved {
        self.writes
            .call((webhook_id, health))
            .await
            .unwrap_or(Err(KeepError::Stopped))
    }
}

/// One `find` for every id of `batch` whose caller still waits.
async fn read(db: Database, batch: Vec<Request<String, Loaded>>) {
    let batch: Vec<Request<String, Loaded>> = batch
        .into_iter()
        .filter(|request| request.reply.is_awaited())
        .collect();
    if batch.is_empty() {
        return;
    }
    let mut ids: Vec<&str> = batch.iter().map(|r| r.query.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    match get_many(&db, &ids).await {
        Ok(found) => {
            for Request { query, reply } in batch {
                reply.send(Ok(found.get(&query).cloned()));
            }
        }
        Err(error) => {
            for request in batch {
                request.reply.send(Err(KeepError::Store(error.clone())));
            }
        }
    }
}

/// One `update` command for `batch`: the latest copy of each webhook's health, answered to
/// every caller that brought a copy of it.
async fn write(db: Database, batch: Vec<Request<(String, StoredHealth), Saved>>) {
    let mut copies: Vec<(String, StoredHealth)> = Vec::with_capacity(batch.len());
    let mut waiting: Vec<Vec<Reply<Saved>>> = Vec::with_capacity(batch.len());
    let mut index: HashMap<String, usize> = HashMap::with_capacity(batch.len());
    for Request {
        query: (webhook_id, health),
        reply,
    } in batch
    {
        match index.get(&webhook_id) {
            Some(&i) => {
                // The later copy is written; on a tie, the one asked last (as two writes
                // one after the other would leave it).
                if health.updated_at >= copies[i].1.updated_at {
                    copies[i].1 = health;
                }
                waiting[i].push(reply);
            }
            None => {
                index.insert(webhook_id.clone(), copies.len());
                copies.push((webhook_id, health));
                waiting.push(vec![reply]);
            }
        }
    }
    match save_many(&db, &copies).await {
        Ok(outcomes) => {
            for (replies, outcome) in waiting.into_iter().zip(outcomes) {
                for reply in replies {
                    reply.send(outcome.clone());
                }
            }
        }
        Err(error) => {
            for reply in waiting.into_iter().flatten() {
                reply.send(Err(error.clone()));
            }
        }
    }
}
