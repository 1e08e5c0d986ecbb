//! Partition checkpoints: which position each partition may store, written at most one
//! command per interval, never past an unsettled delivery or a hand-over's start; and the
//! positions kept for them.

use super::*;

/// Positions are pruned once more than this many are kept.
const PRUNE_ABOVE: usize = 1_024;

/// A checkpoint to write, and when its position was read from the feed.
pub struct Due {
    pub(super) checkpoint: PartitionCheckpoint,
    pub(super) read_at: std::time::Instant,
}

impl Router {
    /// Writes every partition's checkpoint in place (only at shutdown, when nothing else
    /// runs).
    pub(super) async fn final_checkpoints(&self, state: &mut State) -> Result<(), LedgerError> {
        let finals: Vec<PartitionCheckpoint> = state
            .parts
            .keys()
            .copied()
            .collect::<Vec<_>>()
            .into_iter()
            .filter_map(|p| due_checkpoint(state, p, true))
            .map(|due| due.checkpoint)
            .collect();
        if finals.is_empty() {
            return Ok(());
        }
        let fenced = self.ledger.checkpoint(finals).await?;
        if !fenced.is_empty() {
            warn!(
                ?fenced,
                "final checkpoints refused: those partitions have a new owner"
            );
        }
        Ok(())
    }

    /// Writes the checkpoints that moved, at most one write in flight and one per
    /// `checkpoint_interval`: under load the store sees a few writes a second (each one
    /// command for every partition that moved), not one per settled batch. A quiet
    /// partition (no delivery routed to it since its last write) is written at most every
    /// `quiet_checkpoint_interval`.
    pub(super) fn write_checkpoints(&self, myself: &ActorRef<Msg>, state: &mut State) {
        if state.checkpoint_writing || state.parts.is_empty() {
            return;
        }
        let since_last = state.last_checkpoint_check.map(|t| t.elapsed());
        // Exactly one interval after the last write (a timer that fired on time) is time.
        let wait = since_last
            .and_then(|e| self.config.checkpoint_interval.checked_sub(e))
            .filter(|wait| !wait.is_zero());
        if let Some(wait) = wait {
            arm_tick(myself, state, Instant::now() + wait);
            return;
        }
        let now = Instant::now();
        let quiet_every = self.config.quiet_checkpoint_interval;
        // A quiet partition (nothing routed to it since its last write) waits longer: until
        // `quiet_due`, the earliest such wait that ends.
        let mut due = Vec::new();
        let mut quiet_due: Option<Instant> = None;
        for (&partition, part) in &state.parts {
            let Some(checkpoint) = due_checkpoint(state, partition, false) else {
                continue;
            };
            match part.last_write.map(|at| at + quiet_every) {
                Some(until) if !part.routed_since_write && until > now => {
                    quiet_due = Some(quiet_due.map_or(until, |d| d.min(until)));
                }
                _ => due.push(checkpoint),
            }
        }
        state.last_checkpoint_check = Some(now);
        refresh_current(state);
        prune_positions(state);
        if let Some(until) = quiet_due {
            arm_tick(myself, state, until);
        }
        if due.is_empty() {
            return;
        }
        for d in &due {
            if let Some(part) = state.parts.get_mut(&d.checkpoint.partition) {
                part.last_write = Some(now);
                part.routed_since_write = false;
            }
        }
        state.checkpoint_writing = true;
        let write = self
            .ledger
            .checkpoint(due.iter().map(|d| d.checkpoint.clone()).collect());
        let myself = myself.clone();
        tokio::spawn(async move {
            let result = write.await;
            let _ = myself.cast(Msg::CheckpointsSaved(due, result));
        });
    }

    /// Stores, at most every `quiet_mark_interval` and only when it moved, the newest
    /// position read and the partitions with nothing unsettled there: one write that lets a
    /// taker resume all of them from there, while their own checkpoints are written at
    /// `quiet_checkpoint_interval`.
    pub(super) fn write_quiet_mark(&self, myself: &ActorRef<Msg>, state: &mut State) {
        let Some(every) = self.config.quiet_mark_interval else {
            return;
        };
        if state.mark_writing {
            return;
        }
        let now = Instant::now();
        if let Some(due) = state
            .mark_taken_at
            .map(|at| at + every)
            .filter(|due| *due > now)
        {
            arm_tick(myself, state, due);
            return;
        }
        // Looked at once per interval at most, written or not: with every partition busy
        // there is no mark to take, and looking again at every event would cost the hot
        // path a walk over the partitions.
        state.mark_taken_at = Some(now);
        let Some(mark) = quiet_mark(state) else {
            return;
        };
        if state.mark_stored.as_ref() == Some(&mark) {
            return;
        }
        state.mark_writing = true;
        let write = self.ledger.mark_quiet(mark.clone());
        let myself = myself.clone();
        tokio::spawn(async move {
            let result = write.await;
            let _ = myself.cast(Msg::QuietMarked(mark, result));
        });
    }

    pub(super) fn checkpoints_saved(
        &self,
        state: &mut State,
        written: Vec<Due>,
        result: Result<Vec<u16>, LedgerError>,
    ) {
        match result {
            Ok(fenced) => {
                for Due {
                    checkpoint,
                    read_at,
                } in written
                {
                    if fenced.contains(&checkpoint.partition) {
                        continue;
                    }
                    if let Some(part) = state.parts.get_mut(&checkpoint.partition) {
                        if part.epoch == checkpoint.epoch {
                            part.written = Some(checkpoint.position.checkpoint);
                            part.written_read_at = Some(read_at);
                        }
                    }
                }
                for partition in fenced {
                    warn!(
                        partition,
                        "checkpoint refused: the partition has a new owner; dropping it"
                    );
                    self.drop_partition(state, partition, "fenced");
                }
                debug!(events_settled = state.events_settled, "checkpoints written");
            }
            // Written again at the next interval (nothing was marked written).
            Err(error) => {
                warn!(%error, "checkpoint write failed; retrying");
                for due in written {
                    if let Some(part) = state.parts.get_mut(&due.checkpoint.partition) {
                        part.routed_since_write = true;
                    }
                }
            }
        }
    }
}

/// Makes sure a `CheckpointTick` comes by `at`: a tick already armed for later does not
/// hold this one back (an extra tick only looks again).
fn arm_tick(myself: &ActorRef<Msg>, state: &mut State, at: Instant) {
    if state.checkpoint_tick_at.is_some_and(|armed| armed <= at) {
        return;
    }
    state.checkpoint_tick_at = Some(at);
    myself.send_after(at.saturating_duration_since(Instant::now()), || {
        Msg::CheckpointTick
    });
}

/// The checkpoint partition `partition` may store now, if it moved: the newest position
/// below its oldest unsettled event (and not before the partition became this engine's).
/// `final_write`: also for a partition being released.
pub(super) fn due_checkpoint(state: &State, partition: u16, final_write: bool) -> Option<Due> {
    let part = state.parts.get(&partition)?;
    if part.releasing && !final_write {
        return None;
    }
    let seen = candidate(state, part)?;
    if part.written.as_ref() == Some(&seen.position.checkpoint) {
        // Stored already; read again from the feed (a quiet feed's mark), it is current.
        return None;
    }
    Some(Due {
        checkpoint: PartitionCheckpoint {
            partition,
            epoch: part.epoch,
            position: seen.position.clone(),
        },
        read_at: seen.read_at,
    })
}

/// The newest position `part` may store: below its oldest unsettled event and below the
/// start of its hand-over, not before it became this engine's, and only once its gate is
/// passed.
fn candidate<'s>(state: &'s State, part: &Part) -> Option<&'s Seen> {
    candidate_entry(state, part).map(|(_, seen)| seen)
}

/// [`candidate`] with its sequence number.
fn candidate_entry<'s>(state: &'s State, part: &Part) -> Option<(&'s u64, &'s Seen)> {
    if part.gate.is_some() {
        return None;
    }
    let bound = part
        .unsettled
        .keys()
        .next()
        .copied()
        .unwrap_or(u64::MAX)
        .min(part.until_seq.unwrap_or(u64::MAX));
    if bound <= part.min_seq {
        return None;
    }
    state.positions.range(part.min_seq..bound).next_back()
}

/// The newest position read, with every partition (not being handed over) that may store
/// it as its checkpoint: nothing of theirs is unsettled up to there. `None` when there is
/// no such partition.
fn quiet_mark(state: &State) -> Option<QuietMark> {
    let (&newest, seen) = state.positions.iter().next_back()?;
    let partitions: Vec<(u16, u64)> = state
        .parts
        .iter()
        .filter(|(_, part)| !part.releasing)
        .filter(|(_, part)| candidate_entry(state, part).is_some_and(|(&seq, _)| seq == newest))
        .map(|(&partition, part)| (partition, part.epoch))
        .collect();
    (!partitions.is_empty()).then(|| QuietMark {
        position: seen.position.clone(),
        partitions,
    })
}

/// A partition whose stored checkpoint is the newest position it may store is as current
/// as the feed's last reading of that position (a quiet feed marks the same position again
/// and again): its checkpoint's age restarts from there.
pub(super) fn refresh_current(state: &mut State) {
    let current: Vec<(u16, std::time::Instant)> = state
        .parts
        .iter()
        .filter_map(|(&partition, part)| {
            let seen = candidate(state, part)?;
            (part.written.as_ref() == Some(&seen.position.checkpoint))
                .then_some((partition, seen.read_at))
        })
        .collect();
    for (partition, read_at) in current {
        if let Some(part) = state.parts.get_mut(&partition) {
            part.written_read_at = Some(read_at);
        }
    }
}

/// Forgets positions no partition can need any more: for each partition only the newest
/// position below each of its unsettled events (and the newest of all) can become its
/// checkpoint.
pub(super) fn prune_positions(state: &mut State) {
    if state.positions.len() < PRUNE_ABOVE {
        return;
    }
    let Some(&newest) = state.positions.keys().next_back() else {
        return;
    };
    let mut keep: HashSet<u64> = HashSet::from([newest]);
    for part in state.parts.values() {
        let lower = part.min_seq;
        let until = part.until_seq.unwrap_or(u64::MAX);
        for &seq in part.unsettled.keys().chain([until, u64::MAX].iter()) {
            if seq <= lower {
                continue;
            }
            if let Some((&found, _)) = state.positions.range(lower..seq).next_back() {
                keep.insert(found);
            }
        }
    }
    if keep.len() < state.positions.len() {
        state.positions.retain(|seq, _| keep.contains(seq));
    }
}
