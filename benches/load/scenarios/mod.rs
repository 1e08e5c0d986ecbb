//! The scenarios. Each measures herald and, in the same run, the ceiling it is compared with.
//!
//! One file a scenario, each with its entry function; what several share — the payloads,
//! webhooks and engine they start, the delivery records they write — is in `shared`, and
//! herald run in this process in `daemon` (the `cluster` scenario runs `herald serve` child
//! processes of its own).

mod backlog;
mod cluster;
mod daemon;
mod e2e;
mod engine;
mod fanout;
mod isolation;
mod latency;
mod payload;
mod publish;
mod scale;
mod shared;
mod transport;

pub use backlog::backlog;
pub use cluster::cluster;
pub use e2e::e2e;
pub use engine::engine;
pub use fanout::fanout;
pub use isolation::isolation;
pub use latency::latency;
pub use payload::payload;
pub use publish::publish;
pub use scale::scale;
pub use transport::transport_alone;

use crate::harness::ReceiverProcess;

pub struct Ctx {
    pub quick: bool,
    pub receiver: ReceiverProcess,
}

impl Ctx {
    fn n(&self, quick: usize, full: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }
}
