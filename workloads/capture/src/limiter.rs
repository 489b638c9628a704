//! Rate limiting: a GCRA bucket per API key, counted in events, not requests; and a bucket per
//! client address for keys that are not known to be valid, so that guessing keys costs the
//! guesser, not the auth service.
//!
//! A key's rate is the platform's, not each replica's: with N capture replicas behind one
//! Service, each charges every event N times, so together they let through the configured rate
//! (with traffic spread evenly; a client whose traffic all lands on one replica gets 1/N of it,
//! never more than the rate). N is [`Replicas`]: a fixed count (`CAIRN_CAPTURE_REPLICAS`) or the
//! addresses a headless Service's name resolves to (`CAIRN_CAPTURE_PEERS`, which the operator
//! sets), looked up again every 10 s.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::AtomicU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus_client::metrics::gauge::Gauge;

/// Why a request was refused by a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// Over the rate: retry after this long.
    Wait(Duration),
    /// More events in one request than the key's burst: no wait makes this request fit.
    LargerThanBurst { burst: u32 },
}

/// How many capture replicas share each key's rate (at least 1); also the gauge
/// `cairn_capture_rate_limit_replicas`. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Replicas(Gauge<u32, AtomicU32>);

impl Replicas {
    pub fn fixed(n: u32) -> Self {
        let r = Self::default();
        r.set(n);
        r
    }

    pub fn get(&self) -> u32 {
        self.0.get().max(1)
    }

    pub fn set(&self, n: u32) {
        self.0.set(n.max(1));
    }

    /// The gauge, to register.
    pub fn gauge(&self) -> Gauge<u32, AtomicU32> {
        self.0.clone()
    }

    /// Counts the addresses `name` resolves to (a headless Service: one per ready capture pod)
    /// now and every `every` until `stop`, keeping the last count when a lookup fails.
    pub fn follow_dns(&self, name: String, every: Duration, stop: tokio_util::sync::CancellationToken) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                match tokio::net::lookup_host((name.as_str(), 0)).await {
                    Ok(addrs) => {
                        let distinct: std::collections::HashSet<IpAddr> = addrs.map(|a| a.ip()).collect();
                        let n = u32::try_from(distinct.len()).unwrap_or(u32::MAX).max(1);
                        if n != this.get() {
                            tracing::info!(peers = %name, replicas = n, "capture replicas sharing each key's rate");
                        }
                        this.set(n);
                        failing = false;
                    }
                    Err(e) => {
                        if !std::mem::replace(&mut failing, true) {
                            tracing::warn!(peers = %name, error = %e, replicas = this.get(), "cannot count the capture replicas; keeping the last count");
                        }
                    }
                }
                tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(every) => {} }
            }
        });
    }
}

pub struct KeyRateLimiter {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    burst: NonZeroU32,
    replicas: Replicas,
}

impl KeyRateLimiter {
    /// `per_second` events per second per key, with bursts of `burst`, across `replicas`; 0
    /// disables the limit.
    pub fn new(per_second: u32, burst: u32, replicas: Replicas) -> Self {
        let burst = NonZeroU32::new(burst.max(per_second).max(1)).unwrap_or(NonZeroU32::MIN);
        let limiter =
            NonZeroU32::new(per_second).map(|rate| RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)));
        Self { limiter, burst, replicas }
    }

    /// The most events one request may carry here: the burst's share of this replica.
    pub fn burst(&self) -> u32 {
        self.burst.get() / self.replicas.get()
    }

    /// Takes `events` (times the replicas) from the key's bucket: `Ok` when allowed, `Err(Wait)`
    /// with how long until the request would be, `Err(LargerThanBurst)` for a request no wait
    /// would let through.
    pub fn check(&self, key: &str, events: usize) -> Result<(), Limited> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        let cost = u32::try_from(events).unwrap_or(u32::MAX).saturating_mul(self.replicas.get());
        if cost > self.burst.get() {
            return Err(Limited::LargerThanBurst { burst: self.burst() });
        }
        let n = NonZeroU32::new(cost).unwrap_or(NonZeroU32::MIN);
        match limiter.check_key_n(&key.to_string(), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Limited::Wait(not_until.wait_time_from(DefaultClock::default().now()))),
            Err(_) => Err(Limited::LargerThanBurst { burst: self.burst() }),
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

/// Lookups of keys not known to be valid, per client address. A key that resolved to a project
/// recently is let through without a charge (a whole office behind one NAT address sends with
/// one key); any other key costs its sender a token before it costs an auth lookup.
pub struct UnknownKeyGate {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    valid: Mutex<HashMap<String, Instant>>,
    remember: Duration,
    capacity: usize,
}

impl UnknownKeyGate {
    /// `per_minute` lookups of unproven keys per address, bursts of `burst`; 0 disables.
    pub fn new(per_minute: u32, burst: u32, remember: Duration, capacity: usize) -> Self {
        let limiter = NonZeroU32::new(per_minute).map(|rate| {
            let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
            RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        Self { limiter, valid: Mutex::new(HashMap::new()), remember, capacity: capacity.max(1) }
    }

    fn known(&self, key: &str) -> bool {
        match self.valid.lock() {
            Ok(v) => v.get(key).is_some_and(|seen| seen.elapsed() < self.remember),
            Err(_) => false,
        }
    }

    /// Whether `client` may have `key` looked up now.
    pub fn admit(&self, key: &str, client: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        if self.known(key) {
            return Ok(());
        }
        limiter.check_key(&client).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// `key` resolved to a project: let it through without a charge for a while.
    pub fn valid(&self, key: &str) {
        if self.limiter.is_none() {
            return;
        }
        if let Ok(mut v) = self.valid.lock() {
            if v.len() >= self.capacity && !v.contains_key(key) {
                let remember = self.remember;
                v.retain(|_, seen| seen.elapsed() < remember);
                if v.len() >= self.capacity {
                    v.clear();
                }
            }
            v.insert(key.to_string(), Instant::now());
        }
    }

    /// Bounds memory: forgets idle addresses and expired keys (call periodically).
    pub fn forget_idle(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Ok(mut v) = self.valid.lock() {
            let remember = self.remember;
            v.retain(|_, seen| seen.elapsed() < remember);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_share_the_rate() {
        let replicas = Replicas::fixed(4);
        let l = KeyRateLimiter::new(100, 100, replicas.clone());
        assert!(l.check("a", 25).is_ok(), "a quarter of the burst");
        assert!(matches!(l.check("a", 1), Err(Limited::Wait(_))), "this replica's share is spent");
        assert_eq!(l.check("b", 26), Err(Limited::LargerThanBurst { burst: 25 }));
        replicas.set(1);
        assert!(l.check("c", 100).is_ok(), "one replica: the whole burst");
        replicas.set(0);
        assert_eq!(replicas.get(), 1, "never fewer than one");
    }

    #[test]
    fn limits_per_key_and_reports_the_wait() {
        let l = KeyRateLimiter::new(10, 10, Replicas::fixed(1));
        assert!(l.check("a", 10).is_ok());
        let Err(Limited::Wait(wait)) = l.check("a", 5) else { panic!("not limited") };
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(l.check("b", 10).is_ok(), "another key has its own bucket");
        assert_eq!(l.check("c", 11), Err(Limited::LargerThanBurst { burst: 10 }), "refused, not charged the burst");
        assert!(l.check("c", 10).is_ok(), "nothing was taken from c's bucket");
    }

    #[test]
    fn unknown_keys_cost_their_sender() {
        let gate = UnknownKeyGate::new(60, 3, Duration::from_secs(60), 10);
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        for i in 0..3 {
            assert!(gate.admit(&format!("guess-{i}"), a).is_ok());
        }
        assert!(gate.admit("guess-4", a).is_err(), "a's guesses are used up");
        assert!(gate.admit("guess-4", b).is_ok(), "b has its own bucket");
        gate.valid("phc_real");
        for _ in 0..10 {
            assert!(gate.admit("phc_real", a).is_ok(), "a proven key goes through uncharged");
        }
        for i in 0..20 {
            gate.valid(&format!("k{i}"));
        }
        assert!(gate.valid.lock().unwrap().len() <= 10, "bounded");
        assert!(UnknownKeyGate::new(0, 0, Duration::from_secs(1), 1).admit("x", a).is_ok(), "0 disables");
    }

    #[test]
    fn zero_disables() {
        let l = KeyRateLimiter::new(0, 0, Replicas::fixed(1));
        for _ in 0..100 {
            assert!(l.check("a", 1_000_000).is_ok());
        }
    }
}
