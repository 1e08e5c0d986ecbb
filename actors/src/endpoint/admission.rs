//! Taking deliveries in: queued if due, scheduled if due later, spilled to the ledger when
//! memory is full or spilled ones wait; and recording what may wait long so it never holds
//! the feed back.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use ractor::ActorRef;

use super::{Endpoint, Job, Msg, State, FAILING_STREAK};

impl Endpoint {
    /// Takes in every delivery offered so far, in the order offered.
    pub(super) fn take_offered(&self, myself: &ActorRef<Msg>, state: &mut State) {
        for job in state.backlog.take_offered() {
            self.admit(myself, state, job);
        }
    }

    /// Takes a delivery in: queued (due now) or scheduled (due later) if it fits and no
    /// spilled delivery waits before it, else spilled to the ledger (recorded first if the
    /// ledger has not seen it).
    pub(super) fn admit(&self, myself: &ActorRef<Msg>, state: &mut State, mut job: Job) {
        let now = SystemTime::now();
        if job.seq.is_some() {
            state.last_fed = Some(tokio::time::Instant::now());
        }
        let reserved = state.sweep.as_ref().map_or(0, |sweep| sweep.requested);
        // A re-loaded delivery (a manual retry) that is here already.
        if job.persisted && state.backlog.holds(&job.event.id) {
            return;
        }
        let later = job.due_at.filter(|due| *due > now);
        // Behind deliveries spilled for lack of room, a new one waits its turn in the ledger.
        let behind = state.backlog.spilled(|spilled| spilled.behind());
        let fits = !behind
            && (self.room(state, state.backlog.len() + reserved) > 0
                || (later.is_none() && state.backlog.evict_latest()));
        if !fits {
            let due = job.due_at.unwrap_or(now);
            if !job.persisted {
                let record = job.record_pending(&state.spec.id, due);
                state.outbox.push_ahead(record, job.seq);
            }
            state.backlog.spilled(|spilled| match later {
                Some(due) => spilled.note(due),
                None => spilled.overflow(due, 1),
            });
            return;
        }
        if job.persisted {
            // The running sweep may have read its older copy.
            if let Some(sweep) = state.sweep.as_mut() {
                sweep.exclude(job.event.id.clone());
            }
        } else if state.spec.paused || state.failing_streak >= FAILING_STREAK {
            // It may wait long: recorded now, it no longer holds the checkpoint back.
            let record = job.record_pending(&state.spec.id, now);
            state.outbox.push_ahead(record, job.seq);
        }
        match later {
            Some(due) => schedule(myself, state, job, due),
            None => state.backlog.push_queue(job),
        }
    }

    /// How many more deliveries fit in memory, for this endpoint holding `held`: up to its
    /// [limit](Endpoint::held_limit). Every endpoint may hold `max_in_flight_per_endpoint`
    /// whatever the others hold, so that a healthy one keeps its attempts flowing when dead
    /// ones have taken the shared budget.
    pub(super) fn room(&self, state: &State, held: usize) -> usize {
        let own = self.held_limit(state).saturating_sub(held);
        let shared = self
            .config
            .max_held_total
            .saturating_sub(self.held_total.load(Ordering::Relaxed));
        let floor = self.config.max_in_flight_per_endpoint.saturating_sub(held);
        own.min(shared.max(floor))
    }

    /// While paused or failing: records every queued delivery the ledger has not seen yet
    /// as `pending`, due now, with its payload — visible through the API, re-loaded after a
    /// restart, and no longer holding the feed checkpoint back.
    pub(super) fn record_held(&self, state: &mut State) {
        record_unrecorded(state, false);
    }

    /// The webhook was disabled: records every delivery held that the ledger has not seen,
    /// queued or under way, as `pending`, due now, with its payload — inspectable through
    /// the API, and delivered if the webhook is enabled again. An attempt under way runs to
    /// its end unheard, so its delivery may go out twice (at least once).
    pub(super) fn record_all_held(&self, state: &mut State) {
        record_unrecorded(state, true);
    }
}

/// Records the deliveries the ledger has not seen — queued, and under way too if asked —
/// as `pending`, due now, with their payload.
fn record_unrecorded(state: &mut State, under_way: bool) {
    let now = SystemTime::now();
    let (outbox, webhook_id) = (&mut state.outbox, &state.spec.id);
    state.backlog.for_each_unrecorded(under_way, |job| {
        let record = job.record_pending(webhook_id, now);
        outbox.push_ahead(record, job.seq);
    });
}

/// Keeps a delivery for its retry at `due` and arms the timer that brings it back.
pub(super) fn schedule(myself: &ActorRef<Msg>, state: &State, job: Job, due: SystemTime) {
    let wait = due.duration_since(SystemTime::now()).unwrap_or_default();
    let key = state.backlog.schedule(job, due);
    myself.send_after(wait, move || Msg::Due(key));
}
