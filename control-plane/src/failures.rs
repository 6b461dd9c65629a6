//! Failed credential attempts (stream keys, API keys) per source address within a fixed
//! window. An address that used up its failures is throttled, never locked out: its
//! keys are still checked, a valid one is accepted at once (a venue's encoder behind the
//! same NAT as a misconfigured one still goes live), and each further failure is answered
//! only after a delay, so a guesser gets about one answer per delay per connection.
//! Keys carry about 256 bits of randomness; the throttle bounds the load and noise of
//! guessing, not its odds.
//!
//! IPv6 sources count per /64, the block one subscriber usually holds, so rotating
//! addresses within it does not reset the count. Sans-IO: the caller passes the time
//! and does the waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use floodlight_media::sync::lock;

pub(crate) struct FailureLimiter {
    max: u32,
    window: Duration,
    capacity: usize,
    /// The config key of `capacity`, for the warning when it is reached.
    capacity_key: &'static str,
    table: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailureLimiter {
    pub(crate) fn new(
        max: u32,
        window: Duration,
        capacity: usize,
        capacity_key: &'static str,
    ) -> FailureLimiter {
        FailureLimiter {
            max,
            window,
            capacity,
            capacity_key,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mut segments = v6.segments();
                    segments[4..].fill(0);
                    IpAddr::V6(segments.into())
                }
            },
        }
    }

    /// Whether `ip` has used up its failures in the current window.
    pub(crate) fn over_limit(&self, ip: IpAddr, now: Instant) -> bool {
        lock(&self.table)
            .get(&Self::key(ip))
            .is_some_and(|&(start, count)| {
                now.duration_since(start) < self.window && count >= self.max
            })
    }

    /// Counts a failed attempt from `ip`.
    pub(crate) fn record_failure(&self, ip: IpAddr, now: Instant) {
        let mut table = lock(&self.table);
        if table.len() >= self.capacity {
            table.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let key = Self::key(ip);
        if !table.contains_key(&key) && table.len() >= self.capacity {
            tracing::warn!(
                tracked = table.len(),
                "{} reached; a failing address goes uncounted",
                self.capacity_key
            );
            return;
        }
        let entry = table.entry(key).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    /// Forgets windows that have passed.
    pub(crate) fn prune(&self, now: Instant) {
        lock(&self.table).retain(|_, (start, _)| now.duration_since(*start) < self.window);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn failures_are_limited_per_address_and_window() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60), 100, "test");
        let t0 = Instant::now();
        let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        for _ in 0..3 {
            assert!(!limiter.over_limit(a, t0));
            limiter.record_failure(a, t0);
        }
        assert!(limiter.over_limit(a, t0));
        assert!(!limiter.over_limit(b, t0), "per address");
        // The window passes: a fresh start.
        let later = t0 + Duration::from_secs(60);
        assert!(!limiter.over_limit(a, later));
        limiter.record_failure(a, later);
        assert!(!limiter.over_limit(a, later));

        // IPv6 counts per /64; IPv4-mapped addresses count as IPv4.
        let v6 = |last: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last));
        for last in 1..=3 {
            limiter.record_failure(v6(last), t0);
        }
        assert!(limiter.over_limit(v6(99), t0));
        let other_64 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
        assert!(!limiter.over_limit(other_64, t0));
        let c = Ipv4Addr::new(192, 0, 2, 3);
        for _ in 0..3 {
            limiter.record_failure(IpAddr::V6(c.to_ipv6_mapped()), t0);
        }
        assert!(limiter.over_limit(IpAddr::V4(c), t0));
        limiter.prune(t0 + Duration::from_secs(3600));
        assert!(lock(&limiter.table).is_empty());
    }
}
