//! How much an endpoint can send soon (its horizon), and what it does with the rest.
//!
//! A delivery held in memory that the ledger has not seen holds its event's permit of the
//! feed window, and the feed checkpoint cannot pass it. That is right for a delivery that
//! goes out within moments, and wrong for one that waits behind a rate limit, a slow
//! receiver, a slow start or retries: the endpoint would hold everyone's feed at its own
//! pace. So an endpoint's *horizon* is what it can send within [`HORIZON`]:
//! - failing: nothing (it probes, and whatever it holds is recorded already);
//! - rate-limited: its rate × [`HORIZON`], or what it sent in the last [`HORIZON`] if less;
//! - otherwise: what it sent in the last [`HORIZON`], once work has waited for an attempt
//!   (queued, or due in the ledger) all that time. Until then it has shown no pace to judge
//!   it by, and has no horizon. And only once holding costs someone: while the feed window
//!   has room, the feed reads on and no neighbour waits, so a burst the endpoint works
//!   through at its own pace (a receiver slower than the feed, a CPU shared with the
//!   database) stays in memory rather than taking a write and a read back per delivery
//!   through the ledger. The measured pace counts when the window is [nearly
//!   full](crate::window::Window::pressed) while another endpoint could take more work
//!   (nothing queued, room for attempts, and fed by the feed within [`HOLD_FEED_FOR`]:
//!   `Endpoint::idle`), or when work has waited here for [`HOLD_FEED_FOR`], which bounds
//!   how long the checkpoint trails it. While every endpoint is busy, a full window costs
//!   no one: the feed would read on only to have them all record what they cannot send yet,
//!   a write and a read back per delivery, and the burst is sent no sooner. An endpoint the
//!   feed has brought nothing for longer (rare events, or none it subscribes to) does not
//!   count: it waits for a burst at most as long as the window may be held,
//!   [`HOLD_FEED_FOR`]. Nor does a full window count while the ledger writer trails by more
//!   than a few batches: the window then waits for records to become durable, and records
//!   made ahead would only add to them.
//! - Work held back by the daemon (its leases lapsed: no attempt may start) shows no pace of
//!   the endpoint's: it is not measured.
//!
//! A queued delivery beyond the horizon is recorded `pending` (so it no longer holds the
//! feed) and memory keeps the horizon — never less than `max_in_flight_per_endpoint`, so that
//! a short horizon still fills the endpoint's attempts, never more than
//! `max_held_per_endpoint`. The rest is [spilled](super::spill): the retries due last first,
//! then the deliveries queued last; later arrivals follow them into the ledger until the
//! endpoint has read them back, so it keeps their order.
//!
//! Two seconds: long enough to measure a pace across a burst's first answers (the TLS
//! handshake, the slow start) and for an endpoint that sends tens of thousands a second to
//! hold a whole feed window; short enough that no endpoint holds the feed for longer. A
//! healthy endpoint working through a burst is never judged slow: at 25,000 deliveries/s (the
//! `engine` bench on a busy 2-core machine) its horizon is 50,000, beyond the 20,000 events
//! of the default window.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use ractor::ActorRef;
use tokio::time::Instant;
use tracing::debug;

use super::{Endpoint, Msg, State, FAILING_STREAK};

/// How far ahead an endpoint keeps deliveries in memory unrecorded, and the span its pace is
/// measured over.
pub const HORIZON: Duration = Duration::from_secs(2);

/// How long an endpoint keeping its own pace (neither failing nor rate-limited) may hold
/// work unrecorded while the feed window has room: the feed's checkpoint trails it that long
/// at most, far inside any oplog's retention. Meanwhile a burst waits in memory rather than
/// going through the ledger (a write and a read back per delivery, on a database that the
/// burst's own records already keep busy).
pub const HOLD_FEED_FOR: Duration = Duration::from_secs(60);

/// While work waits for an attempt, the endpoint looks at its pace this often (one that
/// does not answer hears nothing else until its attempt times out).
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// Ended attempts are counted in slots of this length, [`SLOTS`] of them over [`HORIZON`].
const SLOT: Duration = Duration::from_millis(100);
const SLOTS: u64 = (HORIZON.as_millis() / SLOT.as_millis()) as u64;

/// An endpoint's recent pace: attempts ended, and since when work has waited.
#[derive(Debug)]
pub struct Pace {
    origin: Instant,
    /// Attempts ended per slot (slot number, count), oldest first, over the last [`HORIZON`].
    ended: VecDeque<(u64, usize)>,
    /// Since when work has waited for an attempt, without a break.
    waiting_since: Option<Instant>,
    /// A look at the pace is scheduled.
    look_armed: bool,
}

impl Pace {
    pub fn new(now: Instant) -> Self {
        Self {
            origin: now,
            ended: VecDeque::new(),
            waiting_since: None,
            look_armed: false,
        }
    }

    fn slot(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.origin).as_millis() / SLOT.as_millis()) as u64
    }

    /// `n` attempts ended.
    pub fn ended(&mut self, now: Instant, n: usize) {
        let slot = self.slot(now);
        match self.ended.back_mut() {
            Some((last, count)) if *last == slot => *count += n,
            _ => self.ended.push_back((slot, n)),
        }
        while self
            .ended
            .front()
            .is_some_and(|(first, _)| first + SLOTS <= slot)
        {
            self.ended.pop_front();
        }
    }

    /// Whether work waits for an attempt now.
    pub fn waiting(&mut self, now: Instant, waiting: bool) {
        if waiting {
            self.waiting_since.get_or_insert(now);
        } else {
            self.waiting_since = None;
        }
    }

    /// How long work has waited for an attempt, without a break.
    pub fn waited(&self, now: Instant) -> Duration {
        self.waiting_since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    /// What the endpoint sent in the last [`HORIZON`], if work waited for an attempt all
    /// that time (so that is what it can send); `None` while it has not shown a pace.
    pub fn sent_in_horizon(&self, now: Instant) -> Option<usize> {
        let since = self.waiting_since?;
        if now.saturating_duration_since(since) < HORIZON {
            return None;
        }
        let slot = self.slot(now);
        Some(
            self.ended
                .iter()
                .filter(|(s, _)| s + SLOTS > slot)
                .map(|(_, n)| n)
                .sum(),
        )
    }

    /// The scheduled look happened.
    pub fn looked(&mut self) {
        self.look_armed = false;
    }
}

impl Endpoint {
    /// Deliveries this endpoint can send within [`HORIZON`]; `None`: no bound is known (it
    /// keeps pace, has not shown one yet, or is paused).
    pub(super) fn horizon(&self, state: &State) -> Option<usize> {
        if state.spec.paused {
            return None;
        }
        if state.failing_streak >= FAILING_STREAK {
            return Some(0);
        }
        let limited = state
            .spec
            .rate_limit_per_second
            .filter(|r| *r > 0)
            .map(|r| (f64::from(r) * HORIZON.as_secs_f64()) as usize);
        let now = Instant::now();
        // A measured pace bounds what the endpoint holds only once holding costs someone:
        // the feed window is nearly full while another endpoint could take more work, or the
        // checkpoint has trailed this endpoint's work for `HOLD_FEED_FOR`. Recording ahead
        // frees the window only as fast as the ledger makes records durable: while its
        // writer is far behind, a record ahead would only wait behind the others.
        let starving =
            self.window.pressed() && self.idle.load(Ordering::Relaxed) > 0 && !self.ledger_behind();
        let measured = (starving || state.pace.waited(now) >= HOLD_FEED_FOR)
            .then(|| state.pace.sent_in_horizon(now))
            .flatten();
        match (limited, measured) {
            (Some(limited), Some(measured)) => Some(limited.min(measured)),
            (limited, measured) => limited.or(measured),
        }
    }

    /// Deliveries this endpoint may hold in memory: its horizon, never less than its
    /// attempts in flight, never more than `max_held_per_endpoint`.
    pub(super) fn held_limit(&self, state: &State) -> usize {
        let max = self.config.max_held_per_endpoint;
        self.horizon(state).map_or(max, |horizon| {
            horizon.max(self.config.max_in_flight_per_endpoint).min(max)
        })
    }

    /// Spills what the endpoint holds beyond its memory limit, and records what it keeps
    /// beyond its horizon.
    pub(super) fn keep_to_horizon(&self, state: &mut State) {
        if state.draining.is_some() {
            return;
        }
        let Some(horizon) = self.horizon(state) else {
            return;
        };
        let limit = self.held_limit(state);
        let now = SystemTime::now();
        let mut excess = state.backlog.len().saturating_sub(limit);
        while excess > 0 && state.backlog.evict_latest() {
            excess -= 1;
        }
        let (outbox, webhook_id) = (&mut state.outbox, &state.spec.id);
        let mut recorded = 0;
        let mut record = |job: &mut super::Job| {
            if !job.persisted {
                let record = job.record_pending(webhook_id, now);
                outbox.push_ahead(record, job.seq);
                recorded += 1;
            }
        };
        let mut shed = 0;
        if excess > 0 {
            shed = state.backlog.shed_queued(excess, &mut record);
            if shed > 0 {
                state.backlog.spilled(|spilled| spilled.overflow(now, shed));
            }
        }
        // Attempts under way go out first; the queue's first deliveries take the rest.
        let soon = horizon.saturating_sub(state.in_flight);
        state
            .backlog
            .for_each_unrecorded_queued_from(soon, &mut record);
        if shed > 0 || recorded > 0 {
            debug!(webhook_id = %state.spec.id, horizon, limit, shed, recorded,
                "backlog beyond the horizon recorded as pending");
        }
    }

    /// After the turn's attempts started: notes whether work still waits, and while it does,
    /// looks at the pace again in a while.
    pub(super) fn watch_pace(&self, myself: &ActorRef<Msg>, state: &mut State) {
        // Work held back by a lapsed lease waits for the daemon, not for the receiver: that
        // is no pace of the endpoint's (a store too busy to renew would have every endpoint
        // judged to send nothing and record its whole backlog through that same store).
        // Work recorded ahead and spilled waits too, in the ledger: with the queue drained
        // between two reads back, the pace still holds, and memory keeps the horizon.
        let waiting = !state.spec.paused
            && state.draining.is_none()
            && state.failing_streak < FAILING_STREAK
            && self.lease.valid()
            && !state.backlog.nothing_waits(SystemTime::now());
        state.pace.waiting(Instant::now(), waiting);
        if waiting && !state.pace.look_armed {
            state.pace.look_armed = true;
            myself.send_after(LOOK_EVERY, || Msg::Pace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pace_is_what_ended_in_the_last_horizon_while_work_waited() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut pace = Pace::new(start);
        pace.waiting(at(0), true);
        pace.ended(at(150), 3);
        pace.ended(at(1_000), 4);
        // Not waited for a whole horizon: no pace yet.
        assert_eq!(pace.sent_in_horizon(at(1_999)), None);
        assert_eq!(pace.sent_in_horizon(at(2_000)), Some(7));
        // The first slot has left the horizon.
        pace.ended(at(2_150), 1);
        assert_eq!(pace.sent_in_horizon(at(2_150)), Some(5));
        // Nothing ended for a horizon: a pace of nothing.
        assert_eq!(pace.sent_in_horizon(at(4_200)), Some(0));
        // A break in the waiting starts the measure over.
        pace.waiting(at(4_300), false);
        pace.waiting(at(4_400), true);
        assert_eq!(pace.sent_in_horizon(at(6_000)), None);
        assert_eq!(pace.sent_in_horizon(at(6_400)), Some(0));
    }
}
