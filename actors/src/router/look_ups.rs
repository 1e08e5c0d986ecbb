//! Look-ups: deliveries of events a partition's previous owner may have made are checked
//! against the ledger in batches before they are sent; those already recorded are not.

use super::*;

/// Deliveries waiting for a ledger look-up are sent to the store in batches of this many.
pub(super) const LOOK_UP_BATCH: usize = 500;
/// How long a look-up waits for companions before its batch goes.
pub(super) const LOOK_UP_LINGER: Duration = Duration::from_millis(2);
/// How long the store may take to answer a look-up before the deliveries go out anyway
/// (a duplicate is better than a delay without end).
const LOOK_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// A delivery waiting for the ledger to say whether the previous owner already made it.
pub struct LookUp {
    pub(super) webhook_id: Arc<str>,
    pub(super) job: Job,
}

impl Router {
    /// Sends the waiting look-ups to the ledger as one batch.
    pub(super) fn flush_look_ups(&self, myself: &ActorRef<Msg>, state: &mut State) {
        if state.look_ups.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut state.look_ups);
        let ids: Vec<String> = batch
            .iter()
            .map(|l| l.job.delivery_id(&l.webhook_id))
            .collect();
        let look_up = self.ledger.recorded(ids);
        let myself = myself.clone();
        tokio::spawn(async move {
            let found = match tokio::time::timeout(LOOK_UP_TIMEOUT, look_up).await {
                Ok(found) => found,
                Err(_) => Err(LedgerError::TimedOut(LOOK_UP_TIMEOUT)),
            };
            let _ = myself.cast(Msg::LookedUp(batch, found));
        });
    }
}

pub(super) fn looked_up(
    window: &Window,
    state: &mut State,
    batch: Vec<LookUp>,
    found: Result<HashSet<String>, LedgerError>,
) {
    let recorded = match found {
        Ok(recorded) => recorded,
        Err(error) => {
            warn!(%error, deliveries = batch.len(), "cannot look up deliveries of a taken-over partition; sending them (some may be duplicates)");
            HashSet::new()
        }
    };
    let mut done = Vec::new();
    let mut skipped = 0;
    for LookUp { webhook_id, job } in batch {
        let ticket = job.seq;
        if recorded.contains(&job.delivery_id(&webhook_id)) {
            skipped += 1;
            done.extend(ticket);
            continue;
        }
        match state.endpoints.get(&webhook_id) {
            Some(entry) => entry.offer(job),
            None => done.extend(ticket),
        }
    }
    if skipped > 0 {
        debug!(skipped, "deliveries already recorded by the previous owner");
    }
    settle(window, state, done);
}
