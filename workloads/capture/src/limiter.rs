//! Per-key rate limiting: a GCRA bucket per API key, counted in events, not requests.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct KeyRateLimiter {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    burst: NonZeroU32,
}

impl KeyRateLimiter {
    /// `per_second` events per second per key, with bursts of `burst`; 0 disables the limit.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let burst = NonZeroU32::new(burst.max(per_second).max(1)).unwrap_or(NonZeroU32::MIN);
        let limiter =
            NonZeroU32::new(per_second).map(|rate| RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)));
        Self { limiter, burst }
    }

    /// Takes `events` from the key's bucket: `Ok` when allowed, `Err(wait)` with how long until
    /// the request would be. A request larger than the burst is charged the whole burst.
    pub fn check(&self, key: &str, events: usize) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        let n = u32::try_from(events).unwrap_or(u32::MAX).clamp(1, self.burst.get());
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        match limiter.check_key_n(&key.to_string(), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(DefaultClock::default().now())),
            // Unreachable after the clamp; allow rather than refuse forever.
            Err(_) => Ok(()),
        }
    }

    /// Forgets keys whose buckets are full again (call periodically to bound memory).
    pub fn forget_idle(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key_and_reports_the_wait() {
        let l = KeyRateLimiter::new(10, 10);
        assert!(l.check("a", 10).is_ok());
        let wait = l.check("a", 5).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(l.check("b", 10).is_ok(), "another key has its own bucket");
    }

    #[test]
    fn zero_disables() {
        let l = KeyRateLimiter::new(0, 0);
        for _ in 0..100 {
            assert!(l.check("a", 1_000_000).is_ok());
        }
    }
}
