//! Cluster mode (issue 18): several `herald serve` processes on one database share the
//! webhooks. 64 partitions (a webhook's is the first 8 bytes of SHA-256 of its id, big-endian,
//! mod 64) are owned through leases in `herald_partitions`; only a partition's owner delivers
//! to its webhooks, so each event reaches each endpoint once cluster-wide, a killed daemon's
//! share moves to the survivors after `--lease-ttl`, and a stopped one hands its share over.
//!
//! Every story runs herald as child processes ([`Cluster`]) with a 3-second lease, so that
//! takeovers happen within seconds, and counts at real HTTPS receivers what arrived how
//! often ([`Tally`]). Each daemon of a story has one log file (its restarts append to it);
//! when a story fails, the end of each is printed and the files are kept.

use std::time::Duration;

pub use harness::Cluster;
pub use leases::*;
pub use load::*;

mod harness;
mod leases;
mod load;

mod dead_owner;
mod disable_mid_burst;
mod kill_loop;
mod kill_one;
mod quiet_mark;
mod rate_limit;
mod rolling_restart;
mod slices;
mod slow_neighbour;
mod steady_state;
mod stop_and_continue;

/// The `--lease-ttl` of every story: short, so a takeover is a matter of seconds.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// The number of partitions the design fixes.
pub const PARTITIONS: usize = 64;
/// The event type every story's webhooks subscribe to.
pub const EVENT_TYPE: &str = "batch.completed";
