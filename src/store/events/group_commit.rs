//! Group commit for `POST /v1/events`: publishes that arrive together share one write.
//!
//! The dev server takes about a thousand single-document writes a second, however many
//! are in flight, but one `insert_many` of many documents costs little more than one of
//! them (DEVSERVER.md). So requests hand their document to one task, the [`GroupCommit`],
//! which writes what has gathered in one unordered `insert_many` and answers each request
//! once its own document is durable — as a database's log writer commits transactions.
//!
//! When to write: at once when no write is in flight, so a single quiet publish waits for
//! nothing but its own write (and no timer runs while idle); otherwise when [`MAX_BATCH`]
//! documents have gathered, or the window (`--publish-window-ms`) after the first of them,
//! with at most `--publish-writes-in-flight` writes outstanding. Under load the batches grow
//! by themselves: what arrives during a write goes in the next.
//!
//! Each document's answer is what `insert_one` gave it before: inserted, a duplicate `_id`
//! (the first insert stands), or the server's error; a write that fails as a whole answers
//! every document of it with that error. When the daemon stops, what is queued is still
//! written and answered before the task ends.

use std::time::Duration;

use mongodb::bson::Document;
use mongodb::Database;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::outbox::{self, Published};

/// Most documents in one write.
pub const MAX_BATCH: usize = 1_000;

/// When to write what has gathered.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long a document waits for others while a write is already in flight.
    pub window: Duration,
    /// Writes outstanding at once (at least 1): with 2, one batch gathers while the other
    /// is written.
    pub writes_in_flight: usize,
}

/// Requests waiting for the task, at most (then a request waits to queue).
const QUEUE: usize = 4 * MAX_BATCH;

/// Why a publish has no answer from the database.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// The write failed as a whole (the server unreachable, a write-concern error).
    #[error(transparent)]
    Store(#[from] mongodb::error::Error),
    /// The server refused this document (not as a duplicate).
    #[error("the server refused the event: {0}")]
    Refused(String),
    /// The group-commit task has stopped (the daemon is shutting down).
    #[error("the publisher has stopped")]
    Stopped,
}

/// One request's document and where its answer goes.
struct Pending {
    document: Document,
    reply: oneshot::Sender<Result<bool, PublishError>>,
}

/// A handle on the group-commit task: cheap to clone, one per daemon.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the task on `db`; it stops once `stop` fires and what was queued is written.
    pub fn start(
        db: Database,
        options: Options,
        stop: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, requests) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(db, requests, options, stop));
        (Self { queue }, task)
    }

    /// Publishes one event, together with whatever else is being published: `true` when
    /// inserted, `false` when its `_id` was published already (as
    /// [`outbox::publish`](super::outbox::publish)).
    pub async fn publish(&self, document: Document) -> Result<bool, PublishError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { document, reply })
            .await
            .map_err(|_| PublishError::Stopped)?;
        answer.await.unwrap_or(Err(PublishError::Stopped))
    }
}

/// The task: gathers requests and writes them, until stopped and drained.
async fn run(
    db: Database,
    mut requests: mpsc::Receiver<Pending>,
    options: Options,
    stop: CancellationToken,
) {
    let most = options.writes_in_flight.max(1);
    let mut queued: Vec<Pending> = Vec::new();
    let mut writes: JoinSet<()> = JoinSet::new();
    // When the oldest queued document stops waiting for company; `None` when none waits.
    let mut due: Option<Instant> = None;
    let mut open = true;
    let mut closing = false;
    loop {
        // Write what is ready to go, while there is room for another write.
        while !queued.is_empty() && writes.len() < most {
            let ready = writes.is_empty()
                || queued.len() >= MAX_BATCH
                || due.is_some_and(|due| due <= Instant::now())
                || !open;
            if !ready {
                break;
            }
            let take = queued.len().min(MAX_BATCH);
            let batch: Vec<Pending> = queued.drain(..take).collect();
            writes.spawn(commit(db.clone(), batch));
            due = None;
        }
        if !queued.is_empty() && due.is_none() {
            due = Some(Instant::now() + options.window);
        }
        if !open && queued.is_empty() && writes.is_empty() {
            return;
        }
        let room = MAX_BATCH.saturating_sub(queued.len());
        tokio::select! {
            received = requests.recv_many(&mut queued, room), if open && room > 0 => {
                if received == 0 {
                    open = false;
                }
            }
            Some(_) = writes.join_next(), if !writes.is_empty() => {}
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)),
                if due.is_some() && writes.len() < most => {}
            () = stop.cancelled(), if !closing => {
                // No new requests; those already queued are written and answered.
                requests.close();
                closing = true;
            }
        }
    }
}

/// One write of `batch`, each request answered with its own document's outcome.
async fn commit(db: Database, batch: Vec<Pending>) {
    let (documents, replies): (Vec<Document>, Vec<_>) =
        batch.into_iter().map(|p| (p.document, p.reply)).unzip();
    match outbox::publish_many(&db, documents).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let answer = match outcome {
                    Published::New => Ok(true),
                    Published::Duplicate => Ok(false),
                    Published::Refused(message) => Err(PublishError::Refused(message)),
                };
                // The request may have gone (its client hung up); its event is published.
                let _ = reply.send(answer);
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(PublishError::Store(e.clone())));
            }
        }
    }
}
