//! How often a supervised child may be restarted before it is given up on.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The restarts of one child in the last minute: the cap on restarts per window that a
/// supervisor (the router, for its endpoint actors) applies.
#[derive(Debug, Default)]
pub struct RestartWindow {
    restarts: VecDeque<Instant>,
}

impl RestartWindow {
    /// Records a restart and returns true, unless `max` restarts already happened in the
    /// last minute (then nothing is recorded and the child should be given up on).
    pub fn allow(&mut self, max: usize) -> bool {
        let now = Instant::now();
        self.restarts
            .retain(|t| now.duration_since(*t) < Duration::from_secs(60));
        if self.restarts.len() >= max {
            return false;
        }
        self.restarts.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_max_restarts_a_minute_then_refuses_without_counting_the_refusal() {
        let mut window = RestartWindow::default();
        assert!((0..3).all(|_| window.allow(3)));
        assert!(!window.allow(3));
        assert_eq!(
            window.restarts.len(),
            3,
            "a refused restart is not recorded"
        );
        // Restarts older than a minute no longer count.
        let old = Instant::now() - Duration::from_secs(61);
        window.restarts.iter_mut().for_each(|t| *t = old);
        assert!(window.allow(3));
    }
}
