//! The endpoint's work, owned jointly with the router so that it survives a restart of the
//! actor: if the actor crashes, its successor starts from the same queue, re-queues what was
//! in flight and re-arms the retry timers.
//!
//! Only the actor changes it while it runs (the router reads counts for the API), so the
//! lock is never contended; each method takes it for itself, and an ended attempt takes it
//! once (its job leaves and the health record moves in one step).
//!
//! Jobs are keyed by the actor's own counter, so their maps hash with a fast unkeyed
//! hasher ([`FastHash`]); what the outside world names (event ids) keeps the keyed default.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use super::job::Job;
use super::spill::Spilled;
use crate::delivery::AttemptResult;
use crate::event::Event;
use crate::health::{Alert, EndpointHealth, HealthPolicy, HealthSnapshot, StoredHealth};

/// Hashes the actor's own job keys: a counter nobody outside chooses, so no flooding to
/// fear, and hashed on every attempt.
type FastHash = foldhash::fast::RandomState;

/// What an endpoint holds right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub queued: usize,
    pub in_flight: usize,
    pub scheduled: usize,
}

/// A shared handle on one endpoint's work; clones see the same work.
#[derive(Debug, Clone, Default)]
pub struct Backlog(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    work: Mutex<Work>,
    /// The endpoint's partition was taken away (its lease passed to another member): no
    /// attempt of it starts any more, whatever the lease clock says. Outside the lock: the
    /// attempts task reads it before every attempt it starts.
    fenced: AtomicBool,
    /// Deliveries the router handed over that the actor has not taken in yet
    /// ([`offer`](Backlog::offer)). Kept here, not in the actor's mailbox, so that a
    /// successor after a crash takes them in; behind a lock of its own, so that the router
    /// never waits for the actor's turn.
    offered: Mutex<Vec<Job>>,
    /// A wake (`Msg::Fed`) is on its way to the actor: what is offered meanwhile rides on
    /// it.
    woken: AtomicBool,
}

#[derive(Debug, Default)]
struct Work {
    /// Waiting for an attempt (first attempts and due retries), in order.
    queue: VecDeque<Job>,
    /// Attempts under way, by job key.
    in_flight: HashMap<u64, Job, FastHash>,
    /// Retries waiting for their timer, by job key.
    scheduled: HashMap<u64, (Job, SystemTime), FastHash>,
    /// The same retries by due time, latest last: the first to make way for due work.
    by_due: BTreeSet<(SystemTime, u64)>,
    /// Event ids of the deliveries held in any state, with how many times (a replayed event
    /// can meet its re-loaded copy). A delivery read back from the ledger is skipped if held.
    held: HashMap<Arc<str>, u32>,
    /// What the ledger holds of this endpoint that memory does not.
    spilled: Spilled,
    next_key: u64,
    /// The endpoint's health record, kept across restarts of the actor like the work.
    health: EndpointHealth,
    /// The health the ledger kept has been read (or could not be): a restarted actor does
    /// not read it again.
    health_loaded: bool,
}

impl Backlog {
    fn work(&self) -> MutexGuard<'_, Work> {
        // A panic while the lock was held left the work as it was between two steps of one
        // method: every step keeps it consistent, so the successor may go on with it.
        self.0.work.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From now on no attempt of this endpoint starts: its partition was revoked. The
    /// router sets it before it stops the actor, so that neither the actor's last turns nor
    /// the attempts it had lined up start anything once the revocation is answered.
    pub fn fence(&self) {
        self.0.fenced.store(true, Ordering::Release);
    }

    /// Whether [`fence`](Self::fence) was called.
    pub fn fenced(&self) -> bool {
        self.0.fenced.load(Ordering::Acquire)
    }

    /// Hands a delivery to the endpoint; `true` when its actor must be woken for it (no
    /// wake is on its way). Under load an actor takes many deliveries in one turn, not one
    /// turn each.
    pub fn offer(&self, job: Job) -> bool {
        self.offered().push(job);
        !self.0.woken.swap(true, Ordering::SeqCst)
    }

    /// Takes in everything offered; what is offered from now on wakes the actor again.
    pub(super) fn take_offered(&self) -> Vec<Job> {
        self.0.woken.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.offered())
    }

    /// Whether a wake is on its way to the actor. A successor after a crash wakes itself
    /// if so: the wake went to its predecessor and died with it.
    pub(super) fn woken(&self) -> bool {
        self.0.woken.load(Ordering::SeqCst)
    }

    fn offered(&self) -> MutexGuard<'_, Vec<Job>> {
        self.0
            .offered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Feed sequence numbers of deliveries whose first record is not yet written, offered
    /// ones included: the router retires them itself when the endpoint goes away.
    pub fn unrecorded_seqs(&self) -> Vec<u64> {
        let offered = self.offered();
        let work = self.work();
        work.queue
            .iter()
            .chain(work.in_flight.values())
            .chain(offered.iter())
            .filter(|job| !job.persisted)
            .filter_map(|job| job.seq)
            .collect()
    }

    /// Counts by state (deliveries offered and not yet taken in are on their way, as
    /// messages in a mailbox would be, and not counted).
    pub fn stats(&self) -> Stats {
        let work = self.work();
        Stats {
            queued: work.queue.len(),
            in_flight: work.in_flight.len(),
            scheduled: work.scheduled.len(),
        }
    }

    /// Deliveries held in memory in any state.
    pub fn len(&self) -> usize {
        let work = self.work();
        work.queue.len() + work.in_flight.len() + work.scheduled.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The endpoint's health as of `now`.
    pub fn health(&self, now: SystemTime) -> HealthSnapshot {
        self.work().health.snapshot(now)
    }

    /// Whether the health the ledger kept is still to be read.
    pub(super) fn health_to_load(&self) -> bool {
        !self.work().health_loaded
    }

    /// The health the ledger kept was read: the record starts from it (`None`: from
    /// scratch).
    pub(super) fn restore_health(&self, stored: Option<&StoredHealth>) {
        let mut work = self.work();
        if let Some(stored) = stored {
            work.health = EndpointHealth::from_stored(stored);
        }
        work.health_loaded = true;
    }

    /// The persistent part of the health record, taken at `now`.
    pub(super) fn stored_health(&self, now: SystemTime) -> StoredHealth {
        self.work().health.stored(now)
    }

    /// Whether a delivery of this event is held.
    pub fn holds(&self, event_id: &str) -> bool {
        self.work().held.contains_key(event_id)
    }

    /// The events of every delivery held.
    pub(super) fn held_events(&self) -> HashSet<Arc<str>> {
        self.work().held.keys().cloned().collect()
    }

    /// Works on the bookkeeping of what the ledger holds that memory does not.
    pub(super) fn spilled<R>(&self, f: impl FnOnce(&mut Spilled) -> R) -> R {
        f(&mut self.work().spilled)
    }

    /// A new actor takes the work over: what its predecessor had in flight goes back to the
    /// head of the queue (attempted again: at least once), its sweep died with it, and the
    /// retries waiting for a timer are returned (key, due) for their timers to be armed anew.
    pub(super) fn take_over(&self, now: SystemTime) -> Vec<(u64, SystemTime)> {
        let mut work = self.work();
        let mut orphans: Vec<u64> = work.in_flight.keys().copied().collect();
        orphans.sort_unstable();
        work.unstart(&orphans);
        work.spilled.restart(now);
        work.scheduled
            .iter()
            .map(|(key, (_, due))| (*key, *due))
            .collect()
    }

    /// Queues a delivery that is due now.
    pub(super) fn push_queue(&self, job: Job) {
        self.work().push_queue(job);
    }

    /// Keeps a delivery for a retry due at `due`; returns the key its timer brings back.
    pub(super) fn schedule(&self, job: Job, due: SystemTime) -> u64 {
        let mut work = self.work();
        let key = work.key();
        work.hold(&job.event.id);
        work.scheduled.insert(key, (job, due));
        work.by_due.insert((due, key));
        key
    }

    /// Whether no delivery waits for an attempt.
    pub(super) fn queue_is_empty(&self) -> bool {
        self.work().queue.is_empty()
    }

    /// Whether no work waits: nothing queued, and nothing of this endpoint's in the ledger
    /// that is due at `now` or waits there behind deliveries spilled for lack of room.
    pub(super) fn nothing_waits(&self, now: SystemTime) -> bool {
        let work = self.work();
        work.queue.is_empty()
            && !work.spilled.behind()
            && work.spilled.next_sweep_at().is_none_or(|at| at > now)
    }

    /// Takes the next queued delivery in flight: its key and event.
    pub(super) fn start_next(&self) -> Option<(u64, Arc<Event>, u32)> {
        let mut work = self.work();
        let job = work.queue.pop_front()?;
        let key = work.key();
        let event = job.event.clone();
        let attempt = job.attempts + 1;
        work.in_flight.insert(key, job);
        Some((key, event, attempt))
    }

    /// Calls `f` on every queued delivery the ledger has not seen yet, and on those under
    /// way too if `under_way`.
    pub(super) fn for_each_unrecorded(&self, under_way: bool, mut f: impl FnMut(&mut Job)) {
        let mut work = self.work();
        let Work {
            queue, in_flight, ..
        } = &mut *work;
        let in_flight = in_flight.values_mut().filter(|_| under_way);
        queue
            .iter_mut()
            .chain(in_flight)
            .filter(|job| !job.persisted)
            .for_each(&mut f);
    }

    /// Calls `f` on every queued delivery the ledger has not seen yet, from the `skip`-th in
    /// the queue on (those before it go out first).
    pub(super) fn for_each_unrecorded_queued_from(&self, skip: usize, f: impl FnMut(&mut Job)) {
        let mut work = self.work();
        if skip >= work.queue.len() {
            return;
        }
        work.queue
            .range_mut(skip..)
            .filter(|job| !job.persisted)
            .for_each(f);
    }

    /// Takes up to `n` deliveries out of the queue, the last queued first, handing each to
    /// `f` (which records it if the ledger has not seen it); returns how many it took.
    pub(super) fn shed_queued(&self, n: usize, mut f: impl FnMut(&mut Job)) -> usize {
        let mut work = self.work();
        let mut shed = 0;
        while shed < n {
            let Some(mut job) = work.queue.pop_back() else {
                break;
            };
            f(&mut job);
            work.release(&job.event.id);
            shed += 1;
        }
        shed
    }

    /// An attempt ended at `at` with `result`: its job leaves memory (a retry comes back
    /// through `schedule`) and the health record moves, saying which alerts that raises.
    /// `None` (and no health recorded) for a job no longer held.
    pub(super) fn finish(
        &self,
        key: u64,
        policy: &HealthPolicy,
        at: SystemTime,
        result: &AttemptResult,
        endpoint: (&str, &str),
    ) -> Option<(Job, Vec<Alert>)> {
        let mut work = self.work();
        let job = work.in_flight.remove(&key)?;
        work.release(&job.event.id);
        let alerts = work.health.record(policy, at, result, endpoint);
        Some((job, alerts))
    }

    /// Jobs handed over whose attempts will not report (never started): back to the head
    /// of the queue, in the order of `keys` (oldest first).
    pub(super) fn unstart(&self, keys: &[u64]) {
        self.work().unstart(keys);
    }

    /// A retry timer fired: the job moves to the queue.
    pub(super) fn due(&self, key: u64) {
        let mut work = self.work();
        if let Some((job, due)) = work.scheduled.remove(&key) {
            work.by_due.remove(&(due, key));
            work.queue.push_back(job);
        }
    }

    /// Drops the retry due last from memory to make room for due work (its record in the
    /// ledger is `pending` with that due time). `false` when no retry waits.
    pub(super) fn evict_latest(&self) -> bool {
        let mut work = self.work();
        let Some((due, key)) = work.by_due.pop_last() else {
            return false;
        };
        if let Some((job, _)) = work.scheduled.remove(&key) {
            debug_assert!(job.persisted, "only recorded retries wait for a timer");
            work.release(&job.event.id);
            work.spilled.note(due);
        }
        true
    }
}

impl Work {
    fn key(&mut self) -> u64 {
        self.next_key += 1;
        self.next_key
    }

    fn hold(&mut self, event_id: &Arc<str>) {
        *self.held.entry(event_id.clone()).or_default() += 1;
    }

    fn release(&mut self, event_id: &str) {
        if let Some(n) = self.held.get_mut(event_id) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(event_id);
            }
        }
    }

    fn push_queue(&mut self, job: Job) {
        self.hold(&job.event.id);
        self.queue.push_back(job);
    }

    fn unstart(&mut self, keys: &[u64]) {
        for key in keys.iter().rev() {
            if let Some(job) = self.in_flight.remove(key) {
                self.queue.push_front(job);
            }
        }
    }
}
