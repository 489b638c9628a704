//! Login rate limits (GCRA): per email, against guessing one account's password, and per client
//! address, against spraying many accounts (and mass signups).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct LoginLimiter {
    per_email: Option<DefaultKeyedRateLimiter<String>>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

fn per_minute<K: std::hash::Hash + Eq + Clone>(n: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(n).map(|n| RateLimiter::keyed(Quota::per_minute(n).allow_burst(n)))
}

fn check<K: std::hash::Hash + Eq + Clone>(l: &Option<DefaultKeyedRateLimiter<K>>, key: &K) -> Result<(), Duration> {
    match l {
        Some(l) => l.check_key(key).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
        None => Ok(()),
    }
}

impl LoginLimiter {
    /// Attempts per minute (with bursts of as many) per email and per address; 0 disables one.
    pub fn new(per_email_per_minute: u32, per_ip_per_minute: u32) -> Self {
        Self { per_email: per_minute(per_email_per_minute), per_ip: per_minute(per_ip_per_minute) }
    }

    /// Takes one attempt from the address's bucket; `Err(wait)` when it is empty.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Duration> {
        check(&self.per_ip, &ip)
    }

    /// Takes one attempt from the email's bucket (case-insensitive).
    pub fn check_email(&self, email: &str) -> Result<(), Duration> {
        check(&self.per_email, &email.to_lowercase())
    }

    /// Forgets keys whose buckets are full again (call periodically to bound memory).
    pub fn forget_idle(&self) {
        if let Some(l) = &self.per_email {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_email_and_address() {
        let l = LoginLimiter::new(5, 30);
        for _ in 0..5 {
            assert!(l.check_email("A@x.io").is_ok());
        }
        let wait = l.check_email("a@X.io").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(12), "{wait:?}");
        assert!(l.check_email("b@x.io").is_ok());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..30 {
            assert!(l.check_ip(ip).is_ok());
        }
        assert!(l.check_ip(ip).is_err());
        let off = LoginLimiter::new(0, 0);
        for _ in 0..100 {
            assert!(off.check_email("a@x.io").is_ok() && off.check_ip(ip).is_ok());
        }
    }
}
