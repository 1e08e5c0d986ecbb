//! Webhooks from the `webhooks` collection, live.
//!
//! The watcher opens a change stream on `webhooks` first and loads every document second,
//! so no change between the two is missed; then it applies each insert, update, replace and
//! delete to the engine. Each document goes through [`spec_from_doc`]: a bad one disables
//! only that webhook, with a log line naming the field, never its value.
//!
//! A deleted webhook's pending deliveries are retired ([`retire_deliveries`]): failed, with
//! `last_error: "webhook deleted"`, so that they expire with the failed ones instead of
//! waiting forever for a webhook that will not come back.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use herald_actors::EngineHandle;
use mongodb::bson::Document;
use mongodb::change_stream::event::OperationType;
use mongodb::options::FullDocumentType;
use mongodb::{Collection, Database};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::spec::spec_from_doc;
use crate::secrets::SecretBox;
use crate::store::deliveries::retire_webhook;
use crate::store::{one_line, reopen_backoff, WEBHOOKS};

/// How often the watcher asks for webhook changes once it has seen none, and how long each
/// ask may wait on the server. Webhooks change rarely, and a change made through the API
/// reaches the engine at once anyway; what this bounds is how late a change written straight
/// into MongoDB takes effect. A change stream kept waiting on the server instead (the
/// default: a getMore that waits up to a second, then the next) is woken by every write to
/// the database — each event, each delivery record — to look for webhook changes among
/// them, next to the feed's own stream doing the same: on a busy server, work and latency
/// the event feed pays for.
const WATCH_POLL: Duration = Duration::from_millis(200);
const WATCH_AWAIT: Duration = Duration::from_millis(1);

/// Readiness of the watcher, for `/readyz`.
#[derive(Debug, Default)]
pub struct WatchHealth {
    pub live: AtomicBool,
}

/// Applies one webhook document to the engine; `known` tracks the ids the engine has.
fn apply(engine: &EngineHandle, secrets: &SecretBox, doc: &Document, known: &mut HashSet<String>) {
    match spec_from_doc(doc, secrets, SystemTime::now()) {
        Ok(spec) => {
            known.insert(spec.id.to_string());
            let _ = engine.upsert_webhook(spec);
        }
        Err(reason) => {
            let id = doc.get("_id").map(|b| b.to_string()).unwrap_or_default();
            error!(webhook_id = %id, %reason, "invalid webhook document; webhook disabled");
            if let Ok(id) = doc.get_str("_id") {
                known.remove(id);
                let _ = engine.remove_webhook(id);
            }
        }
    }
}

/// Loads every webhook into the engine, then follows changes until `cancel` fires.
/// The first load completes before this returns `ready` through `loaded`. Sealed values are
/// opened with `secrets`.
pub async fn run_watcher(
    db: Database,
    engine: EngineHandle,
    secrets: SecretBox,
    health: Arc<WatchHealth>,
    loaded: tokio::sync::oneshot::Sender<Result<usize, String>>,
    cancel: CancellationToken,
) {
    let collection: Collection<Document> = db.collection(WEBHOOKS);
    let mut known: HashSet<String> = HashSet::new();
    let mut loaded = Some(loaded);
    let mut failures: u32 = 0;
    loop {
        let result = async {
            let stream = collection
                .watch()
                .full_document(FullDocumentType::UpdateLookup)
                .max_await_time(WATCH_AWAIT)
                .await?;
            let docs: Vec<Document> = collection
                .find(Default::default())
                .await?
                .try_collect()
                .await?;
            Ok::<_, mongodb::error::Error>((stream, docs))
        };
        let (mut stream, docs) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = result => match r {
                Ok(ok) => ok,
                Err(e) => {
                    let message = one_line(&e.to_string());
                    if let Some(tx) = loaded.take() {
                        let _ = tx.send(Err(message));
                        return;
                    }
                    health.live.store(false, Ordering::Relaxed);
                    failures += 1;
                    warn!(error = %message, "cannot watch webhooks; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(reopen_backoff(failures)) => continue,
                    }
                }
            },
        };
        // Full reload: drop what vanished while we were not watching.
        let present: HashSet<String> = docs
            .iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect();
        for gone in known.difference(&present).cloned().collect::<Vec<_>>() {
            let _ = engine.remove_webhook(&gone);
            retire_deliveries(&db, &gone);
            known.remove(&gone);
        }
        for doc in &docs {
            apply(&engine, &secrets, doc, &mut known);
        }
        health.live.store(true, Ordering::Relaxed);
        if let Some(tx) = loaded.take() {
            info!(webhooks = docs.len(), "webhooks loaded");
            let _ = tx.send(Ok(docs.len()));
        }
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                next = stream.next_if_any() => next,
            };
            let next = match next {
                Ok(Some(change)) => Some(Ok(change)),
                Ok(None) if stream.is_alive() => {
                    // Nothing new: look again in a moment, holding no getMore open meanwhile.
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(WATCH_POLL) => continue,
                    }
                }
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            };
            if matches!(next, Some(Ok(_))) {
                failures = 0;
            }
            match next {
                Some(Ok(change)) => match change.operation_type {
                    OperationType::Insert | OperationType::Update | OperationType::Replace => {
                        match change.full_document {
                            Some(doc) => apply(&engine, &secrets, &doc, &mut known),
                            None => {
                                // Deleted again before the lookup.
                                if let Some(Ok(id)) =
                                    change.document_key.as_ref().map(|k| k.get_str("_id"))
                                {
                                    known.remove(id);
                                    let _ = engine.remove_webhook(id);
                                }
                            }
                        }
                    }
                    OperationType::Delete => {
                        if let Some(Ok(id)) = change.document_key.as_ref().map(|k| k.get_str("_id"))
                        {
                            info!(webhook_id = %id, "webhook deleted");
                            known.remove(id);
                            let _ = engine.remove_webhook(id);
                            retire_deliveries(&db, id);
                        }
                    }
                    _ => {}
                },
                Some(Err(e)) => {
                    health.live.store(false, Ordering::Relaxed);
                    warn!(error = %one_line(&e.to_string()), "webhook change stream failed; reloading");
                    break;
                }
                None => break,
            }
        }
        // A stream that fails again straight after opening must not spin: wait before the
        // reload, longer each time until a change gets through.
        failures += 1;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(reopen_backoff(failures)) => {}
        }
    }
}

/// When a deleted webhook's deliveries are retired again: records its endpoint was writing
/// as it stopped (a retry scheduled, a batch in flight) land after the first pass.
const RETIRE_AGAIN: Duration = Duration::from_secs(5);

/// Retires the pending deliveries of deleted webhook `id`, now and once more after
/// [`RETIRE_AGAIN`] — each time only while no webhook of that id exists again. Every
/// member's watcher does it; the update is idempotent.
fn retire_deliveries(db: &Database, id: &str) {
    let db = db.clone();
    let id = id.to_owned();
    tokio::spawn(async move {
        for delay in [Duration::ZERO, RETIRE_AGAIN] {
            tokio::time::sleep(delay).await;
            match super::get(&db, &id).await {
                Ok(None) => {}
                // Re-created under the same id, or the store cannot say: leave them be.
                Ok(Some(_)) | Err(_) => return,
            }
            match retire_webhook(&db, &id, mongodb::bson::DateTime::now()).await {
                Ok(0) => {}
                Ok(retired) => {
                    info!(webhook_id = %id, retired, "pending deliveries of a deleted webhook retired");
                }
                Err(e) => {
                    warn!(webhook_id = %id, error = %one_line(&e.to_string()), "cannot retire the deliveries of a deleted webhook");
                }
            }
        }
    });
}
