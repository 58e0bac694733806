//! Pauses between attempts that double up to a cap: the one rule every
//! retry loop of the mesh follows (an upstream call within its window, a
//! journal write, a saga start, a service `up` restarts).

use std::time::{Duration, Instant};

/// Delays that start at `first` and double, at most `cap`.
#[derive(Debug, Clone)]
pub struct Doubling {
    first: Duration,
    next: Duration,
    cap: Duration,
}

impl Doubling {
    /// Starts at `first`, never more than `cap`.
    pub fn new(first: Duration, cap: Duration) -> Doubling {
        Doubling {
            first,
            next: first.min(cap),
            cap,
        }
    }

    /// The pause to take now; the next one is twice as long.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.cap);
        delay
    }

    /// The pause the next call to [`Doubling::next_delay`] returns.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Back to the first pause (the thing recovered).
    pub fn reset(&mut self) {
        self.next = self.first.min(self.cap);
    }
}

/// Waits between attempts within a window: 10 ms, doubling, at most 250 ms.
#[derive(Debug)]
pub struct Backoff {
    delays: Doubling,
    until: Instant,
}

impl Backoff {
    /// Attempts may go on for `window`.
    pub fn new(window: Duration) -> Backoff {
        Backoff {
            delays: Doubling::new(Duration::from_millis(10), Duration::from_millis(250)),
            until: Instant::now() + window,
        }
    }

    /// Waits before the next attempt; `false` when the window is over.
    pub async fn wait(&mut self) -> bool {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        tokio::time::sleep(self.delays.next_delay().min(left)).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut d = Doubling::new(Duration::from_millis(50), Duration::from_millis(300));
        let ms: Vec<u128> = (0..5).map(|_| d.next_delay().as_millis()).collect();
        assert_eq!(ms, [50, 100, 200, 300, 300]);
        d.reset();
        assert_eq!(d.next_delay(), Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_backoff_stops_at_its_window() {
        let started = Instant::now();
        let mut b = Backoff::new(Duration::from_millis(100));
        let mut waits = 0;
        while b.wait().await {
            waits += 1;
        }
        // 10 + 20 + 40, then the rest of the window: never past it by a pause.
        assert!((3..=4).contains(&waits), "{waits} waits");
        assert!(started.elapsed() >= Duration::from_millis(100));
    }
}
