//! Keeping the endpoint's health in the ledger, so that it is per endpoint, not per
//! process: a restarted daemon, or another daemon taking the endpoint over, starts from the
//! same failing streak (no second `webhook.endpoint.failing`, the disable clock keeps
//! running), and every daemon's API shows the same health.
//!
//! - **Load:** an actor that starts for a webhook reads the kept health once, before its
//!   first attempt (attempts wait for that one read, at most [`HEALTH_IO_TIMEOUT`]); if the
//!   read fails it starts from scratch and says so. An actor restarted after a crash keeps
//!   the record its predecessor had in the [backlog](super::Backlog) and reads nothing.
//! - **Save:** never on an attempt's way. A change that crosses a line (failing, recovered,
//!   disable requested) is written at once; any other change at most every
//!   [`HEALTH_SAVE_EVERY`]. One write at a time, so they land in order; a drain (shutdown,
//!   a partition handed over) writes what changed before it is answered, and a webhook
//!   disabled writes it as its actor stops. An actor stopped otherwise (its webhook
//!   deleted, its partition lost to another daemon) writes nothing more: the webhook's
//!   health is forgotten, or another daemon keeps it now.

use std::time::{Duration, SystemTime};

use ractor::ActorRef;
use tracing::warn;

use super::{Endpoint, Msg, State, FAILING_STREAK};
use crate::health::StoredHealth;
use crate::ports::LedgerError;

/// Changes that cross no line are written at most this often.
pub const HEALTH_SAVE_EVERY: Duration = Duration::from_secs(2);

/// How long a read or a write of the kept health may take.
pub const HEALTH_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the endpoint is with the kept copy of its health.
#[derive(Debug, Default)]
pub(super) struct Keeping {
    /// Reading the kept health: no attempt starts until it is in.
    pub(super) loading: bool,
    /// The record changed since the last write began.
    dirty: bool,
    /// What changed crossed a line: write as soon as the write under way ends.
    urgent: bool,
    /// A write is under way.
    pub(super) saving: bool,
    /// A `SaveHealth` timer is armed.
    armed: bool,
}

impl Endpoint {
    /// At start: reads the kept health, unless this actor's predecessor already did.
    pub(super) fn load_health(&self, myself: &ActorRef<Msg>, state: &mut State) {
        if !state.backlog.health_to_load() {
            return;
        }
        state.keeping.loading = true;
        let load = self.store.load_health(&state.spec.id);
        let myself = myself.clone();
        tokio::spawn(async move {
            let result = match tokio::time::timeout(HEALTH_IO_TIMEOUT, load).await {
                Ok(result) => result,
                Err(_) => Err(LedgerError::TimedOut(HEALTH_IO_TIMEOUT)),
            };
            let _ = myself.cast(Msg::HealthLoaded(result));
        });
    }

    /// The kept health is in (or could not be read): the record starts from it, and the
    /// endpoint may start attempting.
    pub(super) fn health_loaded(
        &self,
        state: &mut State,
        result: Result<Option<StoredHealth>, LedgerError>,
    ) {
        state.keeping.loading = false;
        let stored = match result {
            Ok(stored) => stored,
            Err(error) => {
                warn!(webhook_id = %state.spec.id, %error, "cannot read the endpoint's kept health; starting from scratch");
                None
            }
        };
        state.backlog.restore_health(stored.as_ref());
        if let Some(stored) = stored {
            if stored.consecutive_failures > 0 {
                // Failing before the restart: probe as a failing endpoint does, and record
                // what it holds, rather than learn it again over three attempts.
                state.failing_streak = stored.consecutive_failures;
                if state.failing_streak >= FAILING_STREAK {
                    self.record_held(state);
                }
            }
        }
    }

    /// The health record changed; `urgent` when the change crossed a line.
    pub(super) fn health_changed(&self, myself: &ActorRef<Msg>, state: &mut State, urgent: bool) {
        let keeping = &mut state.keeping;
        keeping.dirty = true;
        // While draining, the drain's answer waits for this write (`settle_in_flight`).
        keeping.urgent |= urgent || state.draining.is_some();
        if keeping.saving {
            return;
        }
        if keeping.urgent {
            self.save_health(myself, state);
        } else if !keeping.armed {
            keeping.armed = true;
            myself.send_after(HEALTH_SAVE_EVERY, || Msg::SaveHealth);
        }
    }

    /// The `SaveHealth` timer fired.
    pub(super) fn save_tick(&self, myself: &ActorRef<Msg>, state: &mut State) {
        state.keeping.armed = false;
        if state.keeping.dirty && !state.keeping.saving {
            self.save_health(myself, state);
        }
    }

    /// Before a drain is answered: write what changed.
    pub(super) fn save_health_before_drain(&self, myself: &ActorRef<Msg>, state: &mut State) {
        if state.keeping.dirty && !state.keeping.saving {
            self.save_health(myself, state);
        }
    }

    /// The webhook was disabled and the actor stops: write what changed, even beside a
    /// write under way (the later copy wins), without waiting for the answer.
    pub(super) fn save_health_on_retire(&self, myself: &ActorRef<Msg>, state: &mut State) {
        if state.keeping.dirty {
            self.save_health(myself, state);
        }
    }

    /// Writes the record as it is now, in a task of its own.
    fn save_health(&self, myself: &ActorRef<Msg>, state: &mut State) {
        let keeping = &mut state.keeping;
        keeping.dirty = false;
        keeping.urgent = false;
        keeping.saving = true;
        let save = self.store.save_health(
            &state.spec.id,
            state.backlog.stored_health(SystemTime::now()),
        );
        let myself = myself.clone();
        tokio::spawn(async move {
            let result = match tokio::time::timeout(HEALTH_IO_TIMEOUT, save).await {
                Ok(result) => result,
                Err(_) => Err(LedgerError::TimedOut(HEALTH_IO_TIMEOUT)),
            };
            let _ = myself.cast(Msg::HealthSaved(result));
        });
    }

    /// A write ended: on failure the record is written again later (not while draining:
    /// the daemon is handing the endpoint over and must not wait on a failing store).
    pub(super) fn health_saved(
        &self,
        myself: &ActorRef<Msg>,
        state: &mut State,
        result: Result<(), LedgerError>,
    ) {
        state.keeping.saving = false;
        if let Err(error) = result {
            warn!(webhook_id = %state.spec.id, %error, "cannot keep the endpoint's health; trying again later");
            state.keeping.dirty = state.draining.is_none();
        }
        if state.draining.is_some() {
            self.save_health_before_drain(myself, state);
        } else if state.keeping.dirty {
            let urgent = state.keeping.urgent;
            self.health_changed(myself, state, urgent);
        }
    }
}
