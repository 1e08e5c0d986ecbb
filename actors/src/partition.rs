//! Partitions: how the webhooks are shared out among the daemons of a cluster, and where
//! the feed stands for each share.
//!
//! Every webhook falls in one of [`PARTITIONS`] partitions, by a hash of its id that never
//! changes. A daemon delivers only for the partitions it has been [granted](Grant) (the
//! daemon's lease coordinator decides which; a standalone engine owns them all), and keeps
//! one checkpoint per partition: the feed [`Position`] below which every delivery of that
//! partition is durable. So a slow endpoint holds back only its own partition's checkpoint,
//! and a partition can move to another daemon, which resumes it from its own checkpoint.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// How many partitions the webhooks are spread over. Fixed: every daemon of a cluster must
/// agree, and a webhook's partition must not change while it has pending deliveries.
pub const PARTITIONS: u16 = 64;

/// The partition of a webhook: the first 8 bytes of SHA-256 of its id, big-endian, modulo
/// [`PARTITIONS`]. Stable across versions and platforms (the coordinator and the API rely on
/// it, and so may operators' tools).
pub fn partition_of(webhook_id: &str) -> u16 {
    let digest = Sha256::digest(webhook_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(PARTITIONS)) as u16
}

/// A point in the feed: the bytes to resume from (opaque to the engine; the daemon stores
/// them as the checkpoint) and the time of the change there, which orders positions read by
/// different daemons. `time` is MongoDB's cluster time as `seconds << 32 | increment`; 0
/// when unknown (a checkpoint written before positions carried one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub checkpoint: Bytes,
    pub time: u64,
}

impl Position {
    pub fn new(checkpoint: impl Into<Bytes>, time: u64) -> Self {
        Self {
            checkpoint: checkpoint.into(),
            time,
        }
    }

    /// Whether the feed is surely past `self` once it reads `other`: a later cluster time,
    /// or this very position read again. Two different positions at one cluster time
    /// (changes of one transaction) cannot be ordered: not past.
    pub fn passed_by(&self, other: &Position) -> bool {
        other.time > self.time || other.checkpoint == self.checkpoint
    }
}

/// Until when this daemon's leases are surely its own: the start of its last successful
/// renewal plus the lease period (no other member can have judged them expired before).
/// Endpoints start no attempt past it — a daemon frozen past its leases (a long pause, a
/// suspended VM) sends nothing more when it wakes until a renewal shows which leases it
/// still holds. An engine without a coordinator is never fenced.
#[derive(Debug)]
pub struct LeaseClock {
    origin: Instant,
    /// Milliseconds after `origin`; `u64::MAX`: always.
    valid_until_ms: AtomicU64,
}

impl Default for LeaseClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            valid_until_ms: AtomicU64::new(u64::MAX),
        }
    }
}

impl LeaseClock {
    /// The leases hold until `until` (a renewal that began at `until - ttl` succeeded).
    pub fn hold_until(&self, until: Instant) {
        let ms = until.saturating_duration_since(self.origin).as_millis() as u64;
        self.valid_until_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether attempts may start now.
    pub fn valid(&self) -> bool {
        let until = self.valid_until_ms.load(Ordering::Relaxed);
        until == u64::MAX || self.origin.elapsed() < Duration::from_millis(until)
    }
}

/// A partition handed to this engine by the lease coordinator.
#[derive(Debug, Clone)]
pub struct Grant {
    pub partition: u16,
    /// The lease's epoch: every checkpoint write of the partition carries it, and the store
    /// refuses one whose epoch is no longer the lease's (a stale owner is fenced).
    pub epoch: u64,
    /// The partition's checkpoint: events up to it are settled. `None` for a partition that
    /// never had one: it starts where the feed is now.
    pub from: Option<Position>,
    /// Deliveries of events up to this cluster time may have been made by the previous
    /// owner: look each up in the ledger before sending, and skip those already recorded.
    /// 0: nothing to look up.
    pub look_up_until: u64,
}

/// A partition checkpoint to store, under the lease epoch that allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionCheckpoint {
    pub partition: u16,
    pub epoch: u64,
    pub position: Position,
}

/// Where a member's quiet partitions may resume: the newest feed position it has read, and
/// the partitions it holds with nothing unsettled there (each under the epoch it holds it
/// by). Every delivery of those partitions for events up to `position` is durable, so a
/// member that takes one of them over *from that very epoch* may resume from `position`
/// instead of the partition's own checkpoint, which a quiet partition writes seldom.
///
/// Each entry is a fact about records already made, true whoever reads it later: a taker
/// needs no fence, only the epoch (a partition taken in between has another).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuietMark {
    pub position: Position,
    /// `(partition, epoch)`, in partition order.
    pub partitions: Vec<(u16, u64)>,
}

impl QuietMark {
    /// Whether the mark speaks for `partition` as held under `epoch`.
    pub fn covers(&self, partition: u16, epoch: u64) -> bool {
        self.partitions
            .binary_search_by_key(&partition, |&(p, _)| p)
            .is_ok_and(|i| self.partitions[i].1 == epoch)
    }
}

/// One owned partition, as the coordinator and `/v1/cluster` show it.
#[derive(Debug, Clone)]
pub struct PartitionReport {
    pub partition: u16,
    pub epoch: u64,
    /// Endpoint actors running for it.
    pub endpoints: usize,
    /// Deliveries of routed events not yet durable.
    pub unsettled_events: usize,
    /// When the position of its last written checkpoint was read from the feed (how stale
    /// the checkpoint is); `None` before the first write.
    pub checkpoint_read_at: Option<Instant>,
    /// Still re-reading the feed up to where it was taken over from.
    pub catching_up: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        // Fixed values: the hash must never change between versions.
        assert_eq!(
            partition_of("wh_0000000000000001"),
            partition_of("wh_0000000000000001")
        );
        let mut seen = [0usize; PARTITIONS as usize];
        for i in 0..6_400 {
            seen[partition_of(&format!("wh_{i:016x}")) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (50..=150).contains(&n)), "{seen:?}");
    }

    #[test]
    fn a_position_is_passed_by_a_later_time_or_itself() {
        let p = Position::new(&b"a"[..], 10);
        assert!(p.passed_by(&Position::new(&b"b"[..], 11)));
        assert!(p.passed_by(&Position::new(&b"a"[..], 10)));
        assert!(!p.passed_by(&Position::new(&b"b"[..], 10)));
        assert!(!p.passed_by(&Position::new(&b"c"[..], 9)));
    }
}
