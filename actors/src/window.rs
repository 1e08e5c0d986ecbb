//! The feed window: how many events, and how many bytes of their bodies, the engine has
//! accepted whose deliveries are not all durable yet. When either bound is reached,
//! [`EngineHandle::submit`](crate::engine::EngineHandle::submit) waits: this is the
//! back-pressure on the change stream and the bound on memory.
//!
//! An event takes one event permit and as many byte permits as its body has bytes, but
//! never more than the whole byte bound: an event larger than the bound goes through alone
//! (once everything before it has settled) instead of waiting forever. The router gives
//! both back when the event settles; it knows an event's weight from its body
//! ([`Window::weight`]), so it keeps nothing per event but that number.

use tokio::sync::{AcquireError, Semaphore};

/// Both bounds of the feed window.
#[derive(Debug)]
pub struct Window {
    events: Semaphore,
    bytes: Semaphore,
    max_events: usize,
    max_bytes: u32,
}

/// Permits given back at once: events settled and the bytes they weighed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    pub events: usize,
    pub bytes: usize,
}

impl std::ops::AddAssign for Released {
    fn add_assign(&mut self, other: Self) {
        self.events += other.events;
        self.bytes += other.bytes;
    }
}

impl Window {
    /// A window of `max_events` events and `max_bytes` bytes (both at least 1; a byte bound
    /// beyond 4 GiB counts as 4 GiB, far above the largest event).
    pub fn new(max_events: usize, max_bytes: u64) -> Self {
        let max_bytes = max_bytes.clamp(1, u64::from(u32::MAX)) as u32;
        let max_events = max_events.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            events: Semaphore::new(max_events),
            bytes: Semaphore::new(max_bytes as usize),
            max_events,
            max_bytes,
        }
    }

    /// The byte permits an event whose body is `body_len` bytes takes: its size, capped at
    /// the whole bound so that it can always be admitted.
    pub fn weight(&self, body_len: usize) -> u32 {
        body_len.min(self.max_bytes as usize) as u32
    }

    /// Waits for one event permit and `weight` byte permits, and keeps them until
    /// [`Window::release`] gives them back. Events first: the feed submits one event at a
    /// time, so a large event waits for bytes while holding only its own event permit.
    pub async fn acquire(&self, weight: u32) -> Result<(), AcquireError> {
        self.events.acquire().await?.forget();
        if weight > 0 {
            match self.bytes.acquire_many(weight).await {
                Ok(permit) => permit.forget(),
                Err(e) => {
                    self.events.add_permits(1);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Gives back what settled events took.
    pub fn release(&self, released: Released) {
        if released.events > 0 {
            self.events.add_permits(released.events);
        }
        if released.bytes > 0 {
            self.bytes.add_permits(released.bytes);
        }
    }

    /// Whether the window is nearly full: less than a quarter of either bound is free, so the
    /// feed will soon wait for events to settle. Until then an endpoint that holds
    /// deliveries unrecorded holds no one back.
    pub fn pressed(&self) -> bool {
        self.events.available_permits() < self.max_events / 4
            || self.bytes.available_permits() < self.max_bytes as usize / 4
    }

    /// Byte permits free now (for tests and stats).
    pub fn bytes_available(&self) -> usize {
        self.bytes.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn bytes_bound_the_window_and_an_event_larger_than_it_goes_through_alone() {
        let window = std::sync::Arc::new(Window::new(100, 1_000));
        assert_eq!(window.weight(400), 400);
        assert_eq!(window.weight(5_000), 1_000);
        window.acquire(window.weight(400)).await.unwrap();
        window.acquire(window.weight(400)).await.unwrap();
        // A third 400-byte event would exceed the bound: it waits.
        let third = tokio::spawn({
            let window = window.clone();
            async move { window.acquire(400).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished());
        window.release(Released {
            events: 1,
            bytes: 400,
        });
        third.await.unwrap().unwrap();
        // Everything settles; an event larger than the whole bound is admitted alone.
        window.release(Released {
            events: 2,
            bytes: 800,
        });
        assert_eq!(window.bytes_available(), 1_000);
        window.acquire(window.weight(5_000)).await.unwrap();
        assert_eq!(window.bytes_available(), 0);
    }

    #[tokio::test]
    async fn an_event_without_a_body_takes_only_an_event_permit() {
        let window = Window::new(1, 10);
        window.acquire(0).await.unwrap();
        assert_eq!(window.bytes_available(), 10);
    }
}
