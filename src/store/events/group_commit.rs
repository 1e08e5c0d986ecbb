//! Group commit for `POST /v1/events`: publishes that arrive together share one write.
//!
//! The dev server takes about a thousand single-document writes a second, however many
//! are in flight, but one `insert_many` of many documents costs little more than one of
//! them (DEVSERVER.md). So requests hand their document to one task, the [`GroupCommit`],
//! which writes what has gathered in one unordered `insert_many` and answers each request
//! once its own document is durable — as a database's log writer commits transactions.
//!
//! When to write is the [batcher](crate::store::batcher)'s: at once when no write is in
//! flight, so a single quiet publish waits for nothing but its own write (and no timer runs
//! while idle); otherwise when [`MAX_BATCH`] documents have gathered, or the window
//! (`--publish-window-ms`) after the first of them, with at most
//! `--publish-writes-in-flight` writes outstanding. Under load the batches grow by
//! themselves: what arrives during a write goes in the next.
//!
//! Each document's answer is what `insert_one` gave it before: inserted, a duplicate `_id`
//! (the first insert stands), or the server's error; a write that fails as a whole answers
//! every document of it with that error. When the daemon stops, what is queued is still
//! written and answered before the task ends.

use std::time::Duration;

use mongodb::bson::Document;
use mongodb::Database;
use tokio_util::sync::CancellationToken;

use super::outbox::{self, Published};
use crate::store::batcher::{self, Batcher, Request};

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

/// A request's answer: `true` when inserted, `false` when its `_id` was published already.
type Answer = Result<bool, PublishError>;

/// A handle on the group-commit task: cheap to clone, one per daemon.
#[derive(Clone)]
pub struct GroupCommit {
    batcher: Batcher<Document, Answer>,
}

impl GroupCommit {
    /// Starts the task on `db`; it stops once `stop` fires and what was queued is written.
    pub fn start(
        db: Database,
        options: Options,
        stop: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (batcher, task) = Batcher::start(
            batcher::Options {
                max_batch: MAX_BATCH,
                window: options.window,
                in_flight: options.writes_in_flight,
            },
            move |batch| commit(db.clone(), batch),
            stop,
        );
        (Self { batcher }, task)
    }

    /// Publishes one event, together with whatever else is being published: `true` when
    /// inserted, `false` when its `_id` was published already (as
    /// [`outbox::publish`](super::outbox::publish)).
    pub async fn publish(&self, document: Document) -> Result<bool, PublishError> {
        self.batcher
            .call(document)
            .await
            .unwrap_or(Err(PublishError::Stopped))
    }
}

/// One write of `batch`, each request answered with its own document's outcome.
async fn commit(db: Database, batch: Vec<Request<Document, Answer>>) {
    let (documents, replies): (Vec<Document>, Vec<_>) = batch
        .into_iter()
        .map(|Request { query, reply }| (query, reply))
        .unzip();
    match outbox::publish_many(&db, documents).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let answer = match outcome {
                    Published::New => Ok(true),
                    Published::Duplicate => Ok(false),
                    Published::Refused(message) => Err(PublishError::Refused(message)),
                };
                // The request may have gone (its client hung up); its event is published.
                reply.send(answer);
            }
        }
        Err(e) => {
            for reply in replies {
                reply.send(Err(PublishError::Store(e.clone())));
            }
        }
    }
}
