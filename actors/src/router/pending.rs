//! Endpoints that start without knowing what the ledger holds for them (at start-up, on a
//! partition taken over, for a webhook enabled again) may find pending deliveries left by a
//! previous run or owner. Each reading its own would cost a query or two per endpoint —
//! thousands at start-up, on the database the first events need — so the router asks the
//! ledger once which of them have any, for every endpoint that started while the last
//! question was out, and only those read theirs back. Like a sweep, the question waits for
//! the ledger writer's barrier and is asked after the endpoints started, so it sees every
//! record a sweep of theirs would have; if it fails, each endpoint reads its own, as it
//! would have.

use super::*;

/// How long the store may take to answer before every endpoint asked about reads its own.
const ASK_TIMEOUT: Duration = Duration::from_secs(60);

impl Router {
    /// Asks the ledger which endpoints started since the last question have pending
    /// deliveries, unless a question is out (its answer asks again).
    pub(super) fn ask_pending(&self, myself: &ActorRef<Msg>, state: &mut State) {
        if state.asking_pending || state.unasked.is_empty() {
            return;
        }
        state.asking_pending = true;
        let webhook_ids = std::mem::take(&mut state.unasked);
        let (ledger, writer) = (self.ledger.clone(), state.ledger_writer.clone());
        let myself = myself.clone();
        tokio::spawn(async move {
            // Every record this engine handed the writer before now is durable first.
            let barrier = writer
                .call(ledger_writer::Msg::Barrier, Some(ASK_TIMEOUT))
                .await;
            let found = if matches!(barrier, Ok(ractor::rpc::CallResult::Success(()))) {
                let question = ledger.with_pending(webhook_ids.clone());
                match tokio::time::timeout(ASK_TIMEOUT, question).await {
                    Ok(found) => found,
                    Err(_) => Err(LedgerError::TimedOut(ASK_TIMEOUT)),
                }
            } else {
                Err(LedgerError::Unconfirmed)
            };
            let _ = myself.cast(Msg::PendingKnown(webhook_ids, found));
        });
    }
}

/// The ledger answered: the endpoints it names (all of them, if it failed) read their
/// pending deliveries back.
pub(super) fn pending_known(
    state: &mut State,
    webhook_ids: Vec<Arc<str>>,
    found: Result<HashSet<String>, LedgerError>,
) {
    state.asking_pending = false;
    let found = found
        .inspect_err(|error| {
            warn!(%error, endpoints = webhook_ids.len(),
                "cannot ask the ledger which endpoints have pending deliveries; each reads its own");
        })
        .ok();
    let mut reading = 0;
    for id in &webhook_ids {
        if found.as_ref().is_some_and(|found| !found.contains(&**id)) {
            continue;
        }
        if let Some(entry) = state.endpoints.get(id) {
            let _ = entry.actor.cast(endpoint::Msg::Spilled);
            reading += 1;
        }
    }
    debug!(
        asked = webhook_ids.len(),
        reading, "endpoints with pending deliveries read them back"
    );
}
