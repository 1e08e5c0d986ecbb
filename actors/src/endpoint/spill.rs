//! Spilling: how an endpoint keeps its memory bounded whatever its backlog.
//!
//! An [endpoint](super) holds at most `max_held_per_endpoint` deliveries in memory
//! (and all endpoints together `max_held_total`). A delivery beyond that is *spilled*: the
//! ledger gets it as `pending` with its payload and due time (a first attempt that was never
//! recorded is recorded first, and only that record retires its feed sequence number), and
//! memory keeps nothing of it but the second in which it falls due ([`Spilled`]).
//!
//! When something spilled is due and the endpoint has room, it reads its pending
//! deliveries back with a [`Sweep`]: one pass over the ledger, oldest due first, through one
//! cursor that a task pulls from a page at a time as room frees. A sweep
//! - first waits on a barrier of the ledger writer, so that it sees every record the
//!   endpoint made before it began;
//! - covers what was due when it began, and leaves later due times to the next sweep;
//! - skips what the endpoint held when it began, or holds when a page arrives: the ledger's
//!   copy of those may be older than the one in memory;
//! - reads no page while the ledger writer is more than a few batches behind, so draining a
//!   backlog faster than the store takes the records cannot pile them up in memory.
//!
//! While deliveries spilled for lack of room (or shed beyond the endpoint's
//! [horizon](super::pace)) wait in the ledger, new ones follow them there, so an endpoint
//! that cannot keep up sends its oldest first instead of starving them; once a sweep ends
//! with only a few spilled meanwhile, new deliveries are held in memory again.
//!
//! So a delivery is never held twice and none is left behind. At start-up (and when a
//! webhook is enabled again, or its partition taken over) the endpoint does not know what
//! the ledger holds for it. The router asks the ledger once, for all endpoints starting,
//! which have pending deliveries ([`router`](crate::router)'s `pending`); those it names
//! sweep, then ask the ledger when their next pending delivery falls due, until the answer
//! is "never".

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use ractor::rpc::CallResult;
use ractor::ActorRef;
use tokio::sync::mpsc;

use crate::delivery::PendingDelivery;
use crate::ledger_writer;
use crate::ports::{Ledger, LedgerError};

/// One page of a sweep: the deliveries read, and whether the sweep has read everything it
/// covers.
pub type Page = Result<(Vec<PendingDelivery>, bool), LedgerError>;

/// How a sweep hands its pages to the endpoint (the sweep's id, the page); `false` once the
/// endpoint is gone.
pub type PageReport = Box<dyn Fn(u64, Page) -> bool + Send + Sync>;

/// How long a sweep waits for the ledger writer's barrier (the store may be down).
const BARRIER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one read of the ledger may take before the sweep gives up and starts over
/// later. Generous: a store that sorts in memory answers the first page of a large backlog
/// only once it has read all of it.
pub const LEDGER_READ_TIMEOUT: Duration = Duration::from_secs(300);

fn timed_out() -> LedgerError {
    LedgerError::TimedOut(LEDGER_READ_TIMEOUT)
}

/// What an endpoint knows about its deliveries that the ledger holds and memory does not.
#[derive(Debug, Default)]
pub struct Spilled {
    /// Seconds since the epoch in which spilled deliveries fall due. Bounded by the spread
    /// of due times (the retry cap), not by the number of deliveries.
    due_seconds: BTreeSet<u64>,
    /// The ledger may hold pending deliveries the engine did not spill itself (at start-up,
    /// or for a webhook enabled again): after each sweep, ask it when the next falls due.
    unknown: bool,
    /// A sweep began then and has not ended: a restarted actor must sweep again.
    sweeping_since: Option<SystemTime>,
    /// Deliveries due now were spilled for lack of room: new ones follow them into the
    /// ledger (keeping their order) until a sweep has caught up.
    behind: bool,
    /// Deliveries spilled for lack of room since the running (or last) sweep began.
    overflowed: usize,
}

fn second_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl Spilled {
    /// A delivery falling due at `due` is in the ledger and not in memory.
    pub fn note(&mut self, due: SystemTime) {
        self.due_seconds.insert(second_of(due));
    }

    /// `n` deliveries due at `due` (now) were spilled for lack of room.
    pub fn overflow(&mut self, due: SystemTime, n: usize) {
        self.note(due);
        self.behind = true;
        self.overflowed += n;
    }

    /// Whether deliveries spilled for lack of room wait in the ledger: a new one goes there
    /// too, behind them.
    pub fn behind(&self) -> bool {
        self.behind
    }

    /// A sweep read everything it covered. If fewer than `few` deliveries were spilled for
    /// lack of room meanwhile, memory has caught up: new deliveries are held again (those
    /// few are read back by the next sweep).
    pub fn caught_up(&mut self, few: usize) {
        if self.overflowed < few {
            self.behind = false;
        }
    }

    /// The ledger may hold pending deliveries nobody told us about: look now.
    pub fn note_unknown(&mut self, now: SystemTime) {
        self.unknown = true;
        self.note(now);
    }

    /// Whether the ledger holds (or may hold) deliveries memory does not.
    #[cfg(test)]
    pub fn any(&self) -> bool {
        self.unknown || !self.due_seconds.is_empty()
    }

    /// Whether to ask the ledger for its next due time after a sweep.
    pub fn unknown(&self) -> bool {
        self.unknown
    }

    /// The ledger answered: nothing more is pending that we did not spill ourselves.
    pub fn known(&mut self) {
        self.unknown = false;
    }

    /// When the next sweep should begin: once the earliest due second has passed.
    pub fn next_sweep_at(&self) -> Option<SystemTime> {
        self.due_seconds
            .first()
            .map(|s| UNIX_EPOCH + Duration::from_secs(s + 1))
    }

    /// A sweep begins at `now`: it covers every second that has passed.
    pub fn begin(&mut self, now: SystemTime) {
        let current = second_of(now);
        self.due_seconds = self.due_seconds.split_off(&current);
        self.sweeping_since = Some(now);
        self.overflowed = 0;
    }

    /// The sweep ended (read to its end, or failed).
    pub fn end(&mut self) {
        self.sweeping_since = None;
    }

    /// A new actor takes over: a sweep or a question to the ledger the old one left
    /// unfinished must be made again.
    pub fn restart(&mut self, now: SystemTime) {
        if self.sweeping_since.take().is_some() || self.unknown {
            self.note(now);
        }
    }
}

/// A pass over the ledger's pending deliveries of one endpoint, owned by the endpoint
/// actor. Dropping it ends the reading task (and closes its cursor).
pub struct Sweep {
    /// Tells the messages of this sweep from those of an abandoned one.
    pub id: u64,
    /// When it began: it covers what was due before then.
    pub began: SystemTime,
    /// Deliveries asked for and not yet received: room the endpoint keeps for them.
    pub requested: usize,
    /// Held when the sweep began, and re-loaded (manual retries) since: the ledger's copy
    /// may be older than what the endpoint knows.
    exclude: HashSet<Arc<str>>,
    pull: mpsc::UnboundedSender<usize>,
}

/// What the endpoint needs to start a sweep.
pub struct SweepArgs {
    pub id: u64,
    pub began: SystemTime,
    pub exclude: HashSet<Arc<str>>,
    pub webhook_id: Arc<str>,
    pub batch_size: usize,
    pub ledger: Arc<dyn Ledger>,
    pub writer: ActorRef<ledger_writer::Msg>,
    /// Where the pages go.
    pub report: PageReport,
}

impl Sweep {
    /// Spawns the task that reads the ledger; it answers every [`Sweep::pull`] with one
    /// page through [`SweepArgs::report`].
    pub fn start(args: SweepArgs) -> Self {
        let (pull, pulls) = mpsc::unbounded_channel();
        tokio::spawn(read(
            args.ledger,
            args.writer,
            args.report,
            args.webhook_id,
            args.began,
            args.batch_size,
            args.id,
            pulls,
        ));
        Self {
            id: args.id,
            began: args.began,
            requested: 0,
            exclude: args.exclude,
            pull,
        }
    }

    /// Asks for up to `n` more deliveries.
    pub fn pull(&mut self, n: usize) {
        if self.pull.send(n).is_ok() {
            self.requested = n;
        }
    }

    /// Whether a delivery read back must be skipped.
    pub fn excludes(&self, event_id: &str) -> bool {
        self.exclude.contains(event_id)
    }

    /// A delivery that reached the endpoint by another way while this sweep runs.
    pub fn exclude(&mut self, event_id: Arc<str>) {
        self.exclude.insert(event_id);
    }

    /// Deliveries excluded so far (the endpoint abandons a sweep whose set grows too big).
    pub fn excluded(&self) -> usize {
        self.exclude.len()
    }
}

/// The reading task: barrier, cursor, then one page per pull until the cursor ends, the
/// endpoint drops the sweep or the ledger fails.
#[allow(clippy::too_many_arguments)]
async fn read(
    ledger: Arc<dyn Ledger>,
    writer: ActorRef<ledger_writer::Msg>,
    report: PageReport,
    webhook_id: Arc<str>,
    due_before: SystemTime,
    batch_size: usize,
    sweep: u64,
    mut pulls: mpsc::UnboundedReceiver<usize>,
) {
    let report = |page| report(sweep, page);
    // Every record the endpoint made before the sweep began is durable before we read.
    match writer
        .call(ledger_writer::Msg::Barrier, Some(BARRIER_TIMEOUT))
        .await
    {
        Ok(CallResult::Success(())) => {}
        _ => {
            report(Err(LedgerError::Unconfirmed));
            return;
        }
    }
    let open = ledger.pending_for(&webhook_id, due_before, batch_size);
    let mut cursor = match tokio::time::timeout(LEDGER_READ_TIMEOUT, open).await {
        Ok(Ok(cursor)) => cursor,
        Ok(Err(error)) => {
            report(Err(error));
            return;
        }
        Err(_) => {
            report(Err(timed_out()));
            return;
        }
    };
    while let Some(n) = pulls.recv().await {
        let mut page: Vec<PendingDelivery> = Vec::with_capacity(n.min(batch_size));
        let mut done = false;
        while page.len() < n {
            match tokio::time::timeout(LEDGER_READ_TIMEOUT, cursor.next()).await {
                Ok(Some(Ok(delivery))) => page.push(delivery),
                Ok(Some(Err(error))) => {
                    report(Err(error));
                    return;
                }
                Ok(None) => {
                    done = true;
                    break;
                }
                Err(_) => {
                    report(Err(timed_out()));
                    return;
                }
            }
        }
        if !report(Ok((page, done))) || done {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn a_sweep_covers_the_seconds_that_have_passed_and_keeps_later_ones() {
        let mut spilled = Spilled::default();
        assert!(!spilled.any());
        spilled.note(at(100, 200));
        spilled.note(at(100, 900));
        spilled.note(at(105, 0));
        // Due within second 100: sweep once it is over.
        assert_eq!(spilled.next_sweep_at(), Some(at(101, 0)));
        spilled.begin(at(100, 950));
        // Second 100 is not over: a delivery due at 100.990 is not covered yet.
        assert_eq!(spilled.next_sweep_at(), Some(at(101, 0)));
        spilled.end();
        spilled.begin(at(101, 10));
        assert_eq!(spilled.next_sweep_at(), Some(at(106, 0)));
        spilled.end();
        spilled.begin(at(106, 0));
        assert!(!spilled.any());
    }

    #[test]
    fn new_deliveries_follow_spilled_ones_until_a_sweep_has_caught_up() {
        let mut spilled = Spilled::default();
        assert!(!spilled.behind());
        spilled.overflow(at(10, 0), 500);
        assert!(spilled.behind());
        // A sweep covers those; 40 more overflow while it reads.
        spilled.begin(at(11, 0));
        spilled.overflow(at(11, 500), 40);
        spilled.end();
        spilled.caught_up(32);
        assert!(spilled.behind(), "40 spilled meanwhile: still behind");
        // The next sweep: only 3 meanwhile, which the one after reads back.
        spilled.begin(at(12, 0));
        spilled.overflow(at(12, 100), 3);
        spilled.end();
        spilled.caught_up(32);
        assert!(!spilled.behind());
        assert_eq!(spilled.next_sweep_at(), Some(at(13, 0)));
    }

    #[test]
    fn unknown_ledger_contents_are_looked_at_now_and_after_a_restart() {
        let mut spilled = Spilled::default();
        spilled.note_unknown(at(50, 500));
        assert_eq!(spilled.next_sweep_at(), Some(at(51, 0)));
        spilled.begin(at(51, 0));
        assert!(spilled.any() && spilled.unknown());
        // The actor died while asking the ledger: its successor looks again.
        spilled.end();
        spilled.restart(at(60, 0));
        assert_eq!(spilled.next_sweep_at(), Some(at(61, 0)));
        spilled.begin(at(61, 0));
        spilled.end();
        spilled.known();
        assert!(!spilled.any());
        // Interrupted in the middle of a sweep: sweep again.
        spilled.begin(at(70, 0));
        spilled.restart(at(70, 500));
        assert_eq!(spilled.next_sweep_at(), Some(at(71, 0)));
    }
}
