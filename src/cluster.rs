//! The lease coordinator: which partitions of the webhooks this daemon delivers for.
//!
//! Every daemon sharing a database is a *member*. Every third of `--lease-ttl` a member
//! 1. notes when its renewal starts, beats (its member document) and renews the leases it
//!    holds.
//!
//! Four times as often (a *look*: its reads are cheap, its writes are not), and in the
//! rounds that renew, it
//! 2. reads every member and every lease, and notes, on its own clock, when it last saw
//!    each one's `beat` change: a member or lease whose beat has stood still for a lease
//!    period is dead. No two clocks are ever compared, so skew between machines is harmless.
//!    Looking often is what makes a take-over prompt: a beat is seen to change within a
//!    look of being written, and when one falls silent the member looks again the moment
//!    its lease period has passed (not at its next round);
//! 3. drops the partitions it turns out to have lost (the store shows another owner or
//!    epoch — it was paused or cut off for longer than a lease);
//! 4. works out, by rendezvous hashing over the live members, which partitions should be
//!    its own: it hands over cleanly those that should move to another live member
//!    ([`EngineHandle::release`]: drain, record, final checkpoint, then `owner: null`), and
//!    takes those that are free or whose owner is dead (the lease's beat, or the owner's
//!    own, stood still for a lease period: `owner_is_dead`), with a conditional update on
//!    the lease exactly as observed (owner, epoch, beat), one epoch up, all in a few commands;
//! 5. hands what it took to the feed, which grants it to the engine in feed order (re-reading
//!    from the partition's checkpoint when the feed is past it).
//!
//! A clean stop ([`Coordinator::leave`], after the engine wrote its final checkpoints) frees
//! the member's leases and removes its document, so the others take over at their next
//! round without waiting for the lease to expire, and without duplicates. See
//! `docs/cluster.md`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use herald_actors::{EngineHandle, Grant, Position, QuietMark};
use mongodb::bson::Bson;
use mongodb::Database;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::store::events::decode_position;
use crate::store::leases::{self, Heartbeat, Lease, Member};
use crate::text::one_line;

/// How the coordinator runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub member_id: String,
    pub lease_ttl: Duration,
    /// The API's address, shown to operators.
    pub listen: SocketAddr,
    /// How long a hand-over may wait for in-flight attempts.
    pub grace: Duration,
}

/// A member id for a daemon that was not given one: host, process and 4 random hex digits.
pub fn default_member_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "herald".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// The rendezvous score of `member` for `partition`: the highest-scoring live member owns it.
/// Stable across versions (SHA-256), so members of different versions agree.
fn score(member: &str, partition: u16) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(member.as_bytes());
    hasher.update(partition.to_be_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The member `partition` belongs to among `live` (never empty: it holds this member).
fn desired(live: &[String], partition: u16) -> &str {
    live.iter()
        .max_by_key(|m| (score(m, partition), m.as_str()))
        .map(String::as_str)
        .unwrap_or_default()
}

/// A value last seen, and since when (on this member's clock) it has not changed.
#[derive(Debug, Clone)]
struct Observed {
    value: Vec<Bson>,
    since: Instant,
}

fn observe(seen: &mut Observed, value: Vec<Bson>, now: Instant) {
    if seen.value != value {
        seen.value = value;
        seen.since = now;
    }
}

/// When the quietest beat a member watches — another member's (`members`), or a lease held
/// by someone else — reaches a lease period unchanged, if that is still to come.
fn next_verdict<'a>(
    members: impl Iterator<Item = &'a Observed>,
    leases: &'a HashMap<u16, Observed>,
    owned: &BTreeMap<u16, u64>,
    ttl: Duration,
    now: Instant,
) -> Option<Instant> {
    let held_by_others = leases.iter().filter(|(partition, seen)| {
        !owned.contains_key(partition)
            && seen.value.first().is_some_and(|owner| *owner != Bson::Null)
    });
    members
        .chain(held_by_others.map(|(_, seen)| seen))
        .map(|seen| seen.since + ttl)
        .filter(|due| *due > now)
        .min()
}

/// Whether the lease `owner` holds has expired, as this member (`me`) sees it:
/// - its beat (`lease`) has stood still for a lease period;
/// - or the owner's own beat (`member`, given only for a member whose leases are all held
///   from before its latest beat) has: it holds every lease until a lease period after a
///   moment that precedes that beat, so none outlives it. That judges all the leases of a
///   dead member at once, instead of slice by slice as its last renewal's slices were seen;
/// - or the owner is this member's own id but not held here: an earlier process with the
///   same `--member-id`, gone.
///
/// The take stays conditional on the lease exactly as observed: a renewal that lands first
/// wins, and one that lands after finds the lease gone and drops it before holding it longer.
fn owner_is_dead(
    owner: &str,
    me: &str,
    lease: Option<&Observed>,
    member: Option<&Observed>,
    ttl: Duration,
    now: Instant,
) -> bool {
    let silent = |seen: &Observed| now.duration_since(seen.since) >= ttl;
    owner == me || lease.is_some_and(silent) || member.is_some_and(silent)
}

/// Another member, as watched: its beat, and whether every lease it holds is held from before
/// its latest beat (it says so in its member document), so that its beat's verdict is its
/// leases'.
#[derive(Debug, Clone)]
struct Watched {
    beat: Observed,
    holds_before_beat: bool,
}

/// A finished hand-over: the partitions and whether their leases were freed.
type Released = Vec<(u16, u64)>;

pub struct Coordinator {
    db: Database,
    engine: EngineHandle,
    feed: mpsc::UnboundedSender<Vec<Grant>>,
    options: Options,
    started_at: SystemTime,
    /// Held leases: partition → epoch.
    owned: BTreeMap<u16, u64>,
    /// Being handed over (still held, still renewed, no longer delivered for).
    releasing: HashSet<u16>,
    released_tx: mpsc::UnboundedSender<Released>,
    released_rx: mpsc::UnboundedReceiver<Released>,
    /// The `nudge` counter of each held lease, as last seen.
    nudges: HashMap<u16, i64>,
    members: HashMap<String, Watched>,
    leases: HashMap<u16, Observed>,
    /// Since when each partition has been free (no owner, or a dead one).
    free_since: HashMap<u16, Instant>,
    /// Where a partition whose checkpoint is unreadable resumes: the oldest readable
    /// checkpoint when this member joined (or the old single checkpoint), which nothing
    /// after it can have passed.
    floor: Option<Position>,
    /// Lease documents found edited into nonsense, and what was wrong (warned once).
    odd: HashMap<u16, String>,
    live: usize,
    last_age_warning: Option<Instant>,
}

/// Looks at the members and leases per renewal (a renewal is a third of the lease period).
const LOOKS_PER_RENEWAL: u32 = 4;

/// How stale a checkpoint may grow before a warning (then once per this period).
const CHECKPOINT_AGE_WARNING: Duration = Duration::from_secs(300);

impl Coordinator {
    /// Creates the partition documents if needed (from the old single checkpoint, when the
    /// database has one) and runs a first round, so that the partitions free at start are
    /// granted before the feed opens.
    pub async fn join(
        db: Database,
        engine: EngineHandle,
        feed: mpsc::UnboundedSender<Vec<Grant>>,
        options: Options,
    ) -> mongodb::error::Result<Self> {
        // Partitions created now start from the database's old single checkpoint, if it has
        // one (an upgrade in place), else from the present.
        let legacy = leases::legacy_checkpoint(&db).await?;
        let start = match &legacy {
            Some(legacy) => Some(legacy.to_vec()),
            None => crate::store::events::present_position(&db)
                .await?
                .map(|b| b.to_vec()),
        };
        leases::ensure_partitions(&db, start.as_deref()).await?;
        let (released_tx, released_rx) = mpsc::unbounded_channel();
        let mut coordinator = Self {
            db,
            engine,
            feed,
            options,
            started_at: SystemTime::now(),
            owned: BTreeMap::new(),
            releasing: HashSet::new(),
            released_tx,
            released_rx,
            nudges: HashMap::new(),
            members: HashMap::new(),
            leases: HashMap::new(),
            free_since: HashMap::new(),
            floor: None,
            odd: HashMap::new(),
            live: 1,
            last_age_warning: None,
        };
        coordinator.floor = leases::leases(&coordinator.db)
            .await?
            .iter()
            .filter_map(readable)
            .chain(legacy.as_deref().and_then(readable_bytes))
            .min_by_key(|p| p.time);
        info!(member_id = %coordinator.options.member_id, lease_ttl_ms = coordinator.options.lease_ttl.as_millis() as u64, "joining the cluster");
        coordinator.round(true).await?;
        Ok(coordinator)
    }

    /// Renews every third of the lease period and looks [`LOOKS_PER_RENEWAL`] times as often
    /// until `stop` fires; answers itself, for [`leave`](Self::leave).
    pub async fn run(mut self, stop: CancellationToken) -> Self {
        let ttl = self.options.lease_ttl;
        let renew_every = ttl / 3;
        let look_every = renew_every / LOOKS_PER_RENEWAL;
        // Pauses after each round, not a fixed schedule. A beat is judged dead once it has
        // stood still for a lease period, from the look that saw it change to a later
        // look's reading. A look comes within a quarter round of any beat, and the member
        // looks again the moment the quietest beat it watches reaches a lease period, so a
        // kill is judged a lease period after the dead member's last beat, give or take a
        // look. When members looked only as they renewed, the verdict came three rounds
        // after the round that saw the last beat, itself up to a round late: two to four
        // rounds after the kill, by how the members' rounds happened to fall
        // (BENCHMARKS.md, "d4c38fe → 4863b7f").
        let mut renew_due = Instant::now() + renew_every;
        loop {
            let now = Instant::now();
            let wake = [
                Some(renew_due),
                Some(now + look_every),
                next_verdict(
                    self.members.values().map(|m| &m.beat),
                    &self.leases,
                    &self.owned,
                    ttl,
                    now,
                ),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(renew_due);
            tokio::select! {
                _ = stop.cancelled() => return self,
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let renew = Instant::now() >= renew_due;
            let result = self.round(renew).await;
            if renew {
                renew_due = Instant::now() + renew_every;
            }
            match result {
                Err(e) if renew => {
                    crate::metrics::count_renewal_failure(&self.options.member_id);
                    warn!(error = %one_line(&e.to_string()), "lease round failed; the next one tries again");
                }
                // The next renewing round warns if the store stays unreachable.
                Err(e) => debug!(error = %one_line(&e.to_string()), "a look at the leases failed"),
                Ok(()) => {}
            }
        }
    }

    /// Leaves the cluster after the engine's shutdown wrote the final checkpoints: frees
    /// every held lease and removes the member document.
    pub async fn leave(self) {
        // A database that cannot be reached answers every release after its server
        // selection timeout: leaving stops at the first failure and within the lease TTL,
        // since by then the leases have expired by themselves anyway.
        let ttl = self.options.lease_ttl;
        if tokio::time::timeout(ttl, self.free_leases()).await.is_err() {
            warn!(
                timeout_ms = ttl.as_millis() as u64,
                "cannot free the leases within the lease TTL; they expire by themselves"
            );
        }
    }

    async fn free_leases(&self) {
        for (&partition, &epoch) in &self.owned {
            if let Err(e) =
                leases::release(&self.db, &self.options.member_id, partition, epoch).await
            {
                warn!(partition, error = %one_line(&e.to_string()), "cannot free the leases; they expire by themselves");
                return;
            }
        }
        if let Err(e) = leases::leave(&self.db, &self.options.member_id).await {
            warn!(error = %one_line(&e.to_string()), "cannot remove the member document; the others forget it");
        }
        info!(member_id = %self.options.member_id, partitions = self.owned.len(), "left the cluster");
    }

    /// One round: with `renew`, the heartbeat and the renewal of the held leases first; then
    /// the look (reads, verdicts, hand-overs, take-overs).
    async fn round(&mut self, renew: bool) -> mongodb::error::Result<()> {
        let me = self.options.member_id.clone();
        let ttl = self.options.lease_ttl;
        while let Ok(released) = self.released_rx.try_recv() {
            for (partition, _) in released {
                self.releasing.remove(&partition);
                self.owned.remove(&partition);
                self.nudges.remove(&partition);
            }
        }
        let mut renewing_since = None;
        let mut checkpoint_age = None;
        if renew {
            // Asked of the engine's router once a round, not at every look: only the heartbeat
            // and the checkpoint-age gauge and warning (below) use it.
            checkpoint_age = self
                .engine
                .partitions()
                .await
                .unwrap_or_default()
                .iter()
                .filter_map(|r| r.checkpoint_read_at)
                .min()
                .map(|at| at.elapsed());
            // Before the beat: every lease this member holds is held until a lease period
            // after a moment that precedes its latest beat. So once the beat stands still for
            // a lease period, all of its leases have expired, whichever slice of its renewal
            // they were in (see `owner_is_dead`).
            renewing_since = Some(Instant::now());
            leases::heartbeat(
                &self.db,
                &Heartbeat {
                    member_id: &me,
                    started_at: self.started_at,
                    listen: self.options.listen.to_string(),
                    lease_ttl: ttl,
                    partitions: self.owned.keys().copied().collect(),
                    feed_lag_ms: Some(crate::metrics::change_stream_lag().as_millis() as u64),
                    checkpoint_age_ms: checkpoint_age.map(|a| a.as_millis() as u64),
                },
            )
            .await?;
            let held: Vec<(u16, u64)> = self.owned.iter().map(|(p, e)| (*p, *e)).collect();
            leases::renew(&self.db, &me, &held, ttl).await?;
        }
        let all_leases = leases::leases(&self.db).await?;
        let all_members = leases::members(&self.db).await?;
        let now = Instant::now();

        let live = self.live_members(&all_members, now).await;
        self.live = live.len();
        let by_partition: HashMap<u16, &Lease> =
            all_leases.iter().map(|l| (l.partition, l)).collect();
        for lease in &all_leases {
            match &lease.odd {
                Some(odd) if self.odd.get(&lease.partition) != Some(odd) => {
                    warn!(partition = lease.partition, problem = %odd, "a partition lease was edited into something herald does not write; handling it as well as it can");
                    self.odd.insert(lease.partition, odd.clone());
                }
                Some(_) => {}
                None => {
                    self.odd.remove(&lease.partition);
                }
            }
        }
        for lease in &all_leases {
            let value = vec![
                lease.raw_owner.clone(),
                lease.raw_epoch.clone(),
                lease.raw_beat.clone(),
            ];
            match self.leases.get_mut(&lease.partition) {
                Some(seen) => observe(seen, value, now),
                None => {
                    self.leases
                        .insert(lease.partition, Observed { value, since: now });
                }
            }
        }

        // Leases lost while this member could not renew them (paused, cut off).
        let lost: Vec<u16> = self
            .owned
            .iter()
            .filter(|(p, epoch)| {
                by_partition
                    .get(p)
                    .is_none_or(|l| l.owner.as_deref() != Some(me.as_str()) || l.epoch != **epoch)
            })
            .map(|(p, _)| *p)
            .collect();
        if !lost.is_empty() {
            warn!(partitions = ?lost, "leases lost to another member (this one could not renew them in time); dropping their work");
            // Awaited: once it answers, no attempt of these partitions can start, so the
            // lease clock set below cannot let one through.
            let _ = self.engine.revoke(lost.clone()).await;
            for partition in &lost {
                self.owned.remove(partition);
                self.releasing.remove(partition);
                self.nudges.remove(partition);
            }
        }

        // The leases still held (the lost ones were revoked above, first): nobody can have
        // judged them expired before a lease period after this renewal began, so attempts
        // may go on until then.
        if let Some(renewing_since) = renewing_since {
            self.engine.lease_clock().hold_until(renewing_since + ttl);
            let took = renewing_since.elapsed();
            if took >= ttl {
                // Held until a moment already past: attempts wait for a round that answers
                // in time. Counted like a round that failed, for the same reason.
                crate::metrics::count_renewal_failure(&me);
                warn!(
                    took_ms = took.as_millis() as u64,
                    lease_ttl_ms = ttl.as_millis() as u64,
                    "the lease round took longer than the lease period (the store is slow); \
                     no attempt starts until a round answers in time"
                );
            }
        }

        // Deliveries re-queued through any member's API.
        let mut nudged = Vec::new();
        for (partition, seen) in self.nudges.iter_mut() {
            if let Some(lease) = by_partition.get(partition) {
                if lease.nudge != *seen {
                    *seen = lease.nudge;
                    nudged.push(*partition);
                }
            }
        }
        if !nudged.is_empty() {
            let _ = self.engine.nudge(nudged);
        }

        self.hand_over(&live);
        let grants = self.take(&live, &all_leases, &all_members, now).await;
        if !grants.is_empty() {
            info!(
                partitions = ?grants.iter().map(|g| g.partition).collect::<Vec<_>>(),
                "partitions taken"
            );
            if self.feed.send(grants).is_err() {
                warn!("the feed has stopped; partitions taken are not delivered for");
            }
        }

        if renew {
            self.report(checkpoint_age);
        }
        Ok(())
    }

    /// Sets the cluster gauges, and warns (at most once per [`CHECKPOINT_AGE_WARNING`]) of a
    /// checkpoint that has not moved for that long; once a round.
    fn report(&mut self, checkpoint_age: Option<Duration>) {
        let me = &self.options.member_id;
        crate::metrics::set_cluster(me, self.live, self.owned.len(), checkpoint_age);
        if let Some(age) = checkpoint_age.filter(|a| *a > CHECKPOINT_AGE_WARNING) {
            if self
                .last_age_warning
                .is_none_or(|t| t.elapsed() > CHECKPOINT_AGE_WARNING)
            {
                self.last_age_warning = Some(Instant::now());
                warn!(age_s = age.as_secs(), "a partition checkpoint has not moved for minutes: an endpoint holds deliveries that are not recorded, or the feed is stuck");
            }
        }
    }

    /// The members whose beat this member has seen change within a lease period, itself
    /// included, sorted; forgets those silent for ten lease periods.
    async fn live_members(&mut self, all: &[Member], now: Instant) -> Vec<String> {
        let ttl = self.options.lease_ttl;
        let mut live = vec![self.options.member_id.clone()];
        for member in all {
            if member.id == self.options.member_id {
                continue;
            }
            let watched = self
                .members
                .entry(member.id.clone())
                .or_insert_with(|| Watched {
                    beat: Observed {
                        value: vec![member.raw_beat.clone()],
                        since: now,
                    },
                    holds_before_beat: member.holds_before_beat,
                });
            observe(&mut watched.beat, vec![member.raw_beat.clone()], now);
            watched.holds_before_beat = member.holds_before_beat;
            let silent = now.duration_since(watched.beat.since);
            if silent < ttl {
                live.push(member.id.clone());
            } else if silent > ttl * 10 {
                info!(member_id = %member.id, "forgetting a member silent for ten lease periods");
                if let Err(e) = leases::forget(&self.db, member).await {
                    warn!(error = %one_line(&e.to_string()), "cannot remove a silent member");
                }
            }
        }
        self.members.retain(|id, _| all.iter().any(|m| &m.id == id));
        live.sort();
        live
    }

    /// Starts handing over the held partitions that belong to another live member now.
    fn hand_over(&mut self, live: &[String]) {
        let me = self.options.member_id.as_str();
        let moving: Vec<(u16, u64)> = self
            .owned
            .iter()
            .filter(|(p, _)| !self.releasing.contains(p) && desired(live, **p) != me)
            .map(|(p, e)| (*p, *e))
            .collect();
        if moving.is_empty() {
            return;
        }
        info!(partitions = ?moving.iter().map(|(p, _)| p).collect::<Vec<_>>(), "handing partitions over to other members");
        self.releasing.extend(moving.iter().map(|(p, _)| *p));
        let (db, engine, done) = (
            self.db.clone(),
            self.engine.clone(),
            self.released_tx.clone(),
        );
        let (member, grace) = (self.options.member_id.clone(), self.options.grace);
        tokio::spawn(async move {
            let partitions: Vec<u16> = moving.iter().map(|(p, _)| *p).collect();
            let fenced = match engine.release(partitions, grace).await {
                Ok(fenced) => fenced,
                Err(e) => {
                    // The leases are freed anyway: the next owner resumes from the last
                    // stored checkpoints, looking deliveries up before sending.
                    warn!(error = %e, "hand-over incomplete; the next owner resumes from the last stored checkpoints");
                    Vec::new()
                }
            };
            for (partition, epoch) in &moving {
                if fenced.contains(partition) {
                    continue;
                }
                if let Err(e) = leases::release(&db, &member, *partition, *epoch).await {
                    warn!(partition, error = %one_line(&e.to_string()), "cannot free a lease; it expires by itself");
                }
            }
            let _ = done.send(moving);
        });
    }

    /// Takes the free partitions that belong to this member (or that nobody has taken for
    /// two lease periods); answers their grants.
    async fn take(
        &mut self,
        live: &[String],
        all: &[Lease],
        members: &[Member],
        now: Instant,
    ) -> Vec<Grant> {
        let me = self.options.member_id.clone();
        let ttl = self.options.lease_ttl;
        // The leases to take, and whether their owner is dead.
        let mut wanted: Vec<(&Lease, bool)> = Vec::new();
        for lease in all {
            let partition = lease.partition;
            if self.owned.contains_key(&partition) {
                continue;
            }
            let dead_owner = lease.owner.as_deref().is_some_and(|owner| {
                owner_is_dead(
                    owner,
                    &me,
                    self.leases.get(&partition),
                    self.members
                        .get(owner)
                        .filter(|m| m.holds_before_beat)
                        .map(|m| &m.beat),
                    ttl,
                    now,
                )
            });
            if lease.owner.is_some() && !dead_owner {
                self.free_since.remove(&partition);
                continue;
            }
            let free_for = now.duration_since(*self.free_since.entry(partition).or_insert(now));
            if desired(live, partition) != me && free_for < ttl * 2 {
                continue;
            }
            wanted.push((lease, dead_owner));
        }
        let observed: Vec<&Lease> = wanted.iter().map(|(lease, _)| *lease).collect();
        let mut taken: HashMap<u16, Lease> = match leases::acquire_all(
            &self.db, &me, &observed, ttl,
        )
        .await
        {
            Ok(taken) => taken.into_iter().map(|l| (l.partition, l)).collect(),
            Err(e) => {
                warn!(partitions = ?observed.iter().map(|l| l.partition).collect::<Vec<_>>(), error = %one_line(&e.to_string()), "cannot take leases");
                return Vec::new();
            }
        };
        let mut grants = Vec::new();
        let mut server_time = None;
        let mut taken_over: HashSet<String> = HashSet::new();
        let mut from_marks = 0;
        for (lease, dead_owner) in wanted {
            let partition = lease.partition;
            let Some(taken) = taken.remove(&partition) else {
                continue;
            };
            self.free_since.remove(&partition);
            // Owned before (its owner died, or handed it over): what it sent after the
            // checkpoint may be recorded. (A hand-over's final checkpoint stands before the
            // oldest delivery not yet recorded, but other endpoints of the partition may
            // have sent later events already.)
            let look_up_until = if lease.epoch > 0 || dead_owner {
                if server_time.is_none() {
                    server_time = Some(leases::server_time(&self.db).await.unwrap_or(u64::MAX));
                }
                server_time.unwrap_or(u64::MAX)
            } else {
                0
            };
            if dead_owner {
                debug!(partition, previous_owner = ?lease.owner, epoch = taken.epoch, "taking over a partition whose owner stopped renewing");
                taken_over.insert(lease.owner.clone().unwrap_or_default());
            }
            let mark = lease
                .owner
                .as_deref()
                .and_then(|owner| members.iter().find(|m| m.id == owner))
                .and_then(|m| m.quiet.as_ref());
            let (from, marked) =
                resume_point(self.checkpoint_of(&taken), partition, lease.epoch, mark);
            from_marks += usize::from(marked);
            self.owned.insert(partition, taken.epoch);
            self.nudges.insert(partition, taken.nudge);
            grants.push(Grant {
                partition,
                epoch: taken.epoch,
                from,
                look_up_until,
            });
        }
        if !taken_over.is_empty() {
            info!(previous_owners = ?taken_over, from_quiet_marks = from_marks, "taking over partitions whose owner stopped renewing its leases");
        }
        grants
    }

    /// Where a taken partition resumes: its checkpoint, or — when that is unreadable (edited
    /// by hand) — the floor: the oldest checkpoint this member saw when it joined, so
    /// nothing is skipped.
    fn checkpoint_of(&self, lease: &Lease) -> Option<Position> {
        if let Some(position) = readable(lease) {
            return Some(position);
        }
        // Every partition document is created with a checkpoint: one without has been
        // edited, as one whose checkpoint is not a position.
        error!(
            partition = lease.partition,
            fallback = self.floor.is_some(),
            "the partition's checkpoint is missing or unreadable; resuming from the oldest checkpoint seen at start (deliveries already recorded are not sent again)"
        );
        self.floor.clone()
    }
}

/// Where `partition`, taken from a lease of epoch `taken_from`, resumes: its stored
/// checkpoint, or its owner's quiet mark when that names it under that very epoch and is
/// strictly later (by cluster time; two positions at one time cannot be ordered, so the
/// stored one is kept). Whether the mark was used.
///
/// Safe whoever wrote the mark and whenever: it states that every delivery of the partition
/// up to its position was durable while the partition was held under that epoch, which stays
/// true; a take in between would have moved the epoch on. The partition's stored checkpoint
/// is not written back: the new owner's first checkpoint moves it forward.
fn resume_point(
    stored: Option<Position>,
    partition: u16,
    taken_from: u64,
    mark: Option<&QuietMark>,
) -> (Option<Position>, bool) {
    match mark {
        Some(mark)
            if mark.covers(partition, taken_from)
                && stored.as_ref().is_none_or(|s| mark.position.time > s.time) =>
        {
            (Some(mark.position.clone()), true)
        }
        _ => (stored, false),
    }
}

/// A stored checkpoint as the engine takes it, if it is one.
fn readable_bytes(bytes: &[u8]) -> Option<Position> {
    decode_position(bytes).map(|p| Position::new(bytes.to_vec(), p.time))
}

fn readable(lease: &Lease) -> Option<Position> {
    lease.checkpoint.as_deref().and_then(readable_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_actors::PARTITIONS;

    #[test]
    fn rendezvous_spreads_partitions_and_moves_few_when_a_member_joins() {
        let two = vec!["a".to_string(), "b".to_string()];
        let three = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let owners_two: Vec<&str> = (0..PARTITIONS).map(|p| desired(&two, p)).collect();
        let owners_three: Vec<&str> = (0..PARTITIONS).map(|p| desired(&three, p)).collect();
        for member in ["a", "b"] {
            let n = owners_two.iter().filter(|o| **o == member).count();
            assert!((20..=44).contains(&n), "{member} owns {n} of 64");
        }
        // Only partitions moving to the newcomer change hands.
        for p in 0..PARTITIONS as usize {
            if owners_three[p] != "c" {
                assert_eq!(owners_two[p], owners_three[p]);
            }
        }
        assert!(owners_three.contains(&"c"));
    }

    #[test]
    fn the_next_verdict_is_when_the_quietest_beat_of_another_reaches_a_lease_period() {
        let ttl = Duration::from_secs(3);
        let t0 = Instant::now();
        let seen = |owner: Bson, since: Instant| Observed {
            value: vec![owner, Bson::Int64(1), Bson::Int64(7)],
            since,
        };
        let members = HashMap::from([(
            "b".to_owned(),
            Observed {
                value: vec![Bson::Int64(4)],
                since: t0 + Duration::from_secs(1),
            },
        )]);
        let leases = HashMap::from([
            // Held by another member: watched.
            (1, seen(Bson::String("c".into()), t0)),
            // Free, and held by this member: nothing to judge.
            (2, seen(Bson::Null, t0 - Duration::from_secs(2))),
            (
                3,
                seen(Bson::String("a".into()), t0 - Duration::from_secs(1)),
            ),
        ]);
        let owned = BTreeMap::from([(3, 1)]);
        let at = |offset_ms: u64| t0 + Duration::from_millis(offset_ms);
        let verdict = |now| next_verdict(members.values(), &leases, &owned, ttl, now);
        assert_eq!(
            verdict(at(500)),
            Some(at(3_000)),
            "lease 1 falls silent first"
        );
        assert_eq!(verdict(at(3_000)), Some(at(4_000)), "then member b");
        assert_eq!(
            verdict(at(4_000)),
            None,
            "verdicts already due are not waited for"
        );
    }

    #[test]
    fn a_lease_expires_with_its_own_beat_or_with_the_beat_of_an_owner_that_holds_from_before_it() {
        let ttl = Duration::from_secs(3);
        let t0 = Instant::now();
        let since = |secs: u64| Observed {
            value: vec![Bson::Int64(1)],
            since: t0 + Duration::from_secs(secs),
        };
        let now = t0 + Duration::from_secs(4);
        let dead = |lease: Option<&Observed>, member: Option<&Observed>| {
            owner_is_dead("b", "a", lease, member, ttl, now)
        };
        // The lease's beat was seen changing 3 s ago or more: expired.
        assert!(dead(Some(&since(1)), None));
        assert!(!dead(Some(&since(2)), None));
        // Its later renewal slice was seen a look after the owner's beat: the owner's beat
        // decides (for an owner that holds from before its beat).
        assert!(dead(Some(&since(2)), Some(&since(1))));
        assert!(!dead(Some(&since(2)), Some(&since(2))));
        // Never seen: not judged.
        assert!(!dead(None, None));
        // This member's own id, not held here: an earlier process, gone.
        assert!(owner_is_dead("a", "a", Some(&since(4)), None, ttl, now));
    }

    #[test]
    fn a_default_member_id_names_the_process() {
        let id = default_member_id();
        assert!(id.contains(&std::process::id().to_string()), "{id}");
    }

    #[test]
    fn a_quiet_mark_is_taken_only_under_the_epoch_it_names_and_only_when_later() {
        let stored = Some(Position::new(&b"stored"[..], 100));
        let mark = QuietMark {
            position: Position::new(&b"mark"[..], 200),
            partitions: vec![(3, 7), (9, 2)],
        };
        let from = |stored: Option<Position>, partition, epoch, mark| {
            let (position, marked) = resume_point(stored, partition, epoch, mark);
            (position.map(|p| p.checkpoint), marked)
        };
        let at = |bytes: &'static [u8]| Some(bytes::Bytes::from_static(bytes));
        assert_eq!(from(stored.clone(), 3, 7, Some(&mark)), (at(b"mark"), true));
        assert_eq!(
            from(stored.clone(), 3, 6, Some(&mark)),
            (at(b"stored"), false),
            "a mark of another epoch says nothing of this one"
        );
        assert_eq!(
            from(stored.clone(), 4, 7, Some(&mark)),
            (at(b"stored"), false),
            "nor of a partition it does not name"
        );
        assert_eq!(from(stored.clone(), 3, 7, None), (at(b"stored"), false));
        let later = Some(Position::new(&b"later"[..], 300));
        assert_eq!(
            from(later, 3, 7, Some(&mark)),
            (at(b"later"), false),
            "a checkpoint written after the mark wins"
        );
        let same_time = Some(Position::new(&b"same"[..], 200));
        assert_eq!(
            from(same_time, 3, 7, Some(&mark)),
            (at(b"same"), false),
            "positions of one cluster time cannot be ordered: the stored one stays"
        );
        assert_eq!(from(None, 9, 2, Some(&mark)), (at(b"mark"), true));
    }
}
