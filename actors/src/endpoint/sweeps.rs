//! Reading spilled deliveries back: when a sweep starts, what a page brings, and when to
//! look at the ledger again.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use ractor::ActorRef;
use tracing::{debug, warn};

use super::spill::{Page, Sweep, SweepArgs, LEDGER_READ_TIMEOUT};
use super::{Endpoint, Job, Msg, State, LEDGER_RETRY};
use crate::ports::LedgerError;

/// A sweep stops skipping by name beyond this many deliveries per held one, and a new
/// sweep begins instead (a flood of manual retries during a long sweep).
const MAX_EXCLUDED_PER_HELD: usize = 2;

/// Spilled deliveries are not read back while the ledger writer holds more than this many
/// batches of records: the store is behind, and paging more in would only pile up records.
const MAX_UNWRITTEN_BATCHES: usize = 10;

/// How soon an endpoint held back by the ledger writer looks again.
const UNWRITTEN_RECHECK: Duration = Duration::from_millis(100);

impl Endpoint {
    /// Reads spilled deliveries back once some are due and a page fits: starts a sweep,
    /// or pulls the next page of the running one.
    pub(super) fn refill(&self, myself: &ActorRef<Msg>, state: &mut State) {
        if state.draining.is_some() || state.spec.paused || state.asking {
            return;
        }
        if state
            .sweep
            .as_ref()
            .is_some_and(|sweep| sweep.requested > 0)
        {
            return;
        }
        let now = SystemTime::now();
        let page = self.config.ledger_page_size.max(1);
        let low_water = self.low_water(state);
        if state.sweep.is_none() {
            let Some(at) = state.backlog.spilled(|spilled| spilled.next_sweep_at()) else {
                return;
            };
            if at > now {
                self.arm_ledger_wake(myself, state, at, now);
                return;
            }
        }
        if self.ledger_behind() {
            self.arm_ledger_wake(myself, state, now + UNWRITTEN_RECHECK, now);
            return;
        }
        // Due work first: retries waiting for a later timer make way.
        while self.room(state, state.backlog.len()) < low_water && state.backlog.evict_latest() {}
        let room = self.room(state, state.backlog.len());
        if room < low_water {
            return;
        }
        let sweep = match &mut state.sweep {
            Some(sweep) => sweep,
            None => {
                state.sweeps += 1;
                state.backlog.spilled(|spilled| spilled.begin(now));
                debug!(webhook_id = %state.spec.id, held = state.backlog.len(), "reading spilled deliveries back");
                let pages = myself.clone();
                let report = move |sweep, result| pages.cast(Msg::Paged { sweep, result }).is_ok();
                state.sweep.insert(Sweep::start(SweepArgs {
                    id: state.sweeps,
                    began: now,
                    exclude: state.backlog.held_events(),
                    webhook_id: state.spec.id.clone(),
                    batch_size: page,
                    ledger: self.store.clone(),
                    writer: self.ledger.clone(),
                    report: Box::new(report),
                }))
            }
        };
        sweep.pull(room.min(page));
    }

    /// Whether the ledger writer holds more than [`MAX_UNWRITTEN_BATCHES`] batches of
    /// records: anything more given to it now only waits behind them.
    pub(super) fn ledger_behind(&self) -> bool {
        let unwritten_max = MAX_UNWRITTEN_BATCHES * self.config.ledger_batch_max.max(1);
        self.unwritten.load(Ordering::Relaxed) > unwritten_max
    }

    /// A page is read once this much fits: half what the endpoint may hold, at most a page
    /// and never more than an endpoint may always hold (`room` guarantees it that much even
    /// when others have taken the shared budget).
    fn low_water(&self, state: &State) -> usize {
        (self.held_limit(state) / 2)
            .clamp(1, self.config.ledger_page_size.max(1))
            .min(self.config.max_in_flight_per_endpoint.max(1))
    }

    /// A page of a sweep arrived: what is not held already is queued (a sweep reads only
    /// what is due).
    pub(super) fn paged(&self, myself: &ActorRef<Msg>, state: &mut State, id: u64, result: Page) {
        let low_water = self.low_water(state);
        let Some(sweep) = state.sweep.as_mut().filter(|sweep| sweep.id == id) else {
            return;
        };
        sweep.requested = 0;
        let began = sweep.began;
        let backlog = &state.backlog;
        let read_all = matches!(result, Ok((_, true)));
        let mut done = match result {
            Ok((page, done)) => {
                self.metrics.read_back.increment(page.len() as u64);
                for pending in page {
                    if sweep.excludes(&pending.event_id) || backlog.holds(&pending.event_id) {
                        continue;
                    }
                    backlog.push_queue(Job::from_pending(pending));
                }
                done
            }
            Err(error) => {
                warn!(webhook_id = %state.spec.id, %error, "cannot read spilled deliveries back from the ledger; retrying");
                backlog.spilled(|spilled| spilled.note(SystemTime::now() + LEDGER_RETRY));
                true
            }
        };
        let max_excluded = MAX_EXCLUDED_PER_HELD * self.config.max_held_per_endpoint.max(1);
        if !done && sweep.excluded() > max_excluded {
            // Start over with a fresh (smaller) set; what this sweep had left is due.
            backlog.spilled(|spilled| spilled.note(began));
            done = true;
        }
        if !done {
            return;
        }
        let ask = backlog.spilled(|spilled| {
            spilled.end();
            if read_all {
                spilled.caught_up(low_water);
            }
            spilled.unknown()
        });
        state.sweep = None;
        if ask {
            state.asking = true;
            let query = self.store.next_due_for(&state.spec.id, began);
            let myself = myself.clone();
            tokio::spawn(async move {
                let answer = tokio::time::timeout(LEDGER_READ_TIMEOUT, query)
                    .await
                    .unwrap_or(Err(LedgerError::TimedOut(LEDGER_READ_TIMEOUT)));
                let _ = myself.cast(Msg::NextDue(answer));
            });
        }
    }

    /// Wakes the actor at `at` to read the ledger (an earlier wake-up replaces a later one).
    fn arm_ledger_wake(
        &self,
        myself: &ActorRef<Msg>,
        state: &mut State,
        at: SystemTime,
        now: SystemTime,
    ) {
        if state.ledger_wake_at.is_some_and(|armed| armed <= at) {
            return;
        }
        state.ledger_wake_at = Some(at);
        let wait = at.duration_since(now).unwrap_or_default();
        myself.send_after(wait, || Msg::LedgerWake);
    }
}
