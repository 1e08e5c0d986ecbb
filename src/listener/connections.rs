//! The listener's open connections: a cap (`--max-connections`, a semaphore), and what each
//! connection is doing, so that idle ones can be closed.
//!
//! A connection is *idle* while no request of it is in flight: between keep-alive requests,
//! before its first request head is complete (a client trickling a head is idle), an
//! HTTP/2 connection with no open stream. Idle time is what a client can hold a descriptor
//! with at no cost to itself, so it is what is bounded: after `--idle-timeout` an idle
//! connection is closed, and at the cap the longest-idle one is closed at once to make
//! room for a newcomer (as nginx reuses keep-alive connections when it runs out). Only when
//! every connection has a request in flight — each bounded by `--request-timeout` while
//! its body arrives — is a newcomer refused, after a short wait for a free slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a newcomer at the cap waits for a slot (an evicted connection takes a moment
/// to close) before it is closed.
const ADMIT_WAIT: Duration = Duration::from_secs(1);

/// The open connections.
pub struct Connections {
    slots: Arc<Semaphore>,
    max: usize,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
    /// Idle times are milliseconds since this.
    epoch: Instant,
}

/// What one connection is doing.
pub struct Activity {
    /// Requests of this connection whose handler runs.
    in_flight: AtomicUsize,
    /// When it last became idle (accepted, or its last request ended), in ms since the
    /// registry's epoch.
    idle_since_ms: AtomicU64,
    /// Fired to close it to make room.
    evict: CancellationToken,
}

impl Connections {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A slot for a new connection: at once if one is free; at the cap, by closing the
    /// longest-idle connection and waiting briefly for its slot. `None`: every connection
    /// is busy; the newcomer is to be closed.
    pub async fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if !self.evict_longest_idle() {
                    return None;
                }
                tokio::time::timeout(ADMIT_WAIT, self.slots.clone().acquire_owned())
                    .await
                    .ok()?
                    .ok()?
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            evict: CancellationToken::new(),
        });
        self.lock().insert(id, activity.clone());
        Some(Admitted {
            registry: self.clone(),
            id,
            activity,
            _permit: permit,
        })
    }

    /// Asks the idle connection that has been idle longest to close; false if none is.
    fn evict_longest_idle(&self) -> bool {
        let open = self.lock();
        let victim = open
            .values()
            .filter(|a| a.in_flight.load(Ordering::Acquire) == 0 && !a.evict.is_cancelled())
            .min_by_key(|a| a.idle_since_ms.load(Ordering::Relaxed));
        match victim {
            Some(victim) => {
                victim.evict.cancel();
                true
            }
            None => false,
        }
    }

    /// Waits until every connection has closed (their slots are back), at most `within`.
    pub async fn closed(&self, within: Duration) {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(within, self.slots.acquire_many(all)).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        // The map holds no invariant a panicking holder could break half-way.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One admitted connection; dropping it frees its slot.
pub struct Admitted {
    registry: Arc<Connections>,
    id: u64,
    activity: Arc<Activity>,
    _permit: OwnedSemaphorePermit,
}

impl Admitted {
    /// A handle for the connection's service to mark requests with.
    pub fn tracker(&self) -> Tracker {
        Tracker {
            registry: self.registry.clone(),
            activity: self.activity.clone(),
        }
    }

    /// Fires when this connection is to close to make room for another.
    pub fn evicted(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.activity.evict.cancelled()
    }

    /// When this connection will have been idle for `timeout`; `None` while a request is
    /// in flight.
    pub fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.activity.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.activity.idle_since_ms.load(Ordering::Relaxed);
        Some(self.registry.epoch + Duration::from_millis(since) + timeout)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

/// Marks requests of one connection in flight (cloned into its service).
#[derive(Clone)]
pub struct Tracker {
    registry: Arc<Connections>,
    activity: Arc<Activity>,
}

impl Tracker {
    pub fn begin(&self) -> InFlight {
        self.activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            registry: self.registry.clone(),
            activity: self.activity.clone(),
        }
    }
}

/// A request in flight; dropping it (the handler returned, or the connection went away)
/// makes the connection idle again if it was the last.
pub struct InFlight {
    registry: Arc<Connections>,
    activity: Arc<Activity>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity
            .idle_since_ms
            .store(self.registry.now_ms(), Ordering::Relaxed);
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_connection_makes_room() {
        let connections = Connections::new(2);
        let first = connections.admit().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = connections.admit().await.unwrap();
        let busy = second.tracker().begin();
        // The newcomer asks the idle `first` to close; it does (drops) and the slot frees.
        let third = tokio::spawn({
            let connections = connections.clone();
            async move { connections.admit().await.is_some() }
        });
        first.evicted().await;
        drop(first);
        assert!(third.await.unwrap());
        drop(busy);
    }

    #[tokio::test]
    async fn when_every_connection_is_busy_a_newcomer_is_refused() {
        let connections = Connections::new(1);
        let only = connections.admit().await.unwrap();
        let _busy = only.tracker().begin();
        assert!(connections.admit().await.is_none());
        assert!(only.idle_deadline(Duration::from_secs(1)).is_none());
    }
}
