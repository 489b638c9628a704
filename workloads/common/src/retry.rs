//! Retrying with exponential backoff and full jitter: the one way every Cairn service waits
//! before trying again (inserts, migrations, topic creation).
//!
//! Full jitter (each pause uniform between zero and a ceiling that doubles up to a maximum, as in
//! AWS's "Exponential Backoff and Jitter") keeps many replicas that failed together — every
//! consumer when ClickHouse restarts, every pod when Kafka comes back — from retrying together.

use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

/// Exponential backoff with full jitter between `initial` and `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    ceiling: Duration,
    initial: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let max = max.max(initial);
        Self { ceiling: initial, initial, max }
    }

    /// The pause before the next attempt: uniform in [0, ceiling]; each call doubles the ceiling,
    /// up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(self.max);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::thread_rng().gen_range(0..=nanos))
    }

    /// After a success: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.ceiling = self.initial;
    }

    /// Sleeps for the next delay; false if `stop` was cancelled first (or already).
    pub async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = stop.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        for ceiling in [100, 200, 350, 350] {
            let d = b.next_delay();
            assert!(d <= Duration::from_millis(ceiling), "{d:?} > {ceiling} ms");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn the_delays_are_spread_not_synchronised() {
        let delays: Vec<Duration> =
            (0..200).map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_delay()).collect();
        let below_half = delays.iter().filter(|d| **d < Duration::from_millis(500)).count();
        // Uniform: about half below the middle (200 draws; the bounds are > 6 standard deviations).
        assert!((55..=145).contains(&below_half), "{below_half} of 200 below half");
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 190, "replicas failing together must not retry together");
    }

    #[tokio::test]
    async fn wait_returns_at_once_when_stopped() {
        let stop = CancellationToken::new();
        stop.cancel();
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let started = std::time::Instant::now();
        assert!(!b.wait(&stop).await);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
