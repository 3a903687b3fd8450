//! Login attempt limits, in memory: after [`MAX_FAILURES`] failed logins
//! for one login name, or from one client address, within [`WINDOW`],
//! further attempts are refused until the oldest failure leaves the
//! window. A successful login clears its login name's failures (not the
//! address's). The counts are lost on restart, which is acceptable: they
//! only slow password guessing down.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_FAILURES: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(5 * 60);
/// Past this many tracked keys, keys with no failure in the window are
/// dropped, so a flood of made-up logins cannot grow memory without bound.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Login(String),
    Address(IpAddr),
}

#[derive(Default)]
pub struct RateLimiter {
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// `Err(wait)` when an attempt for `login` from `address` must wait.
    pub fn check(&self, login: &str, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut failures = self.lock();
        let wait = [login_key(login), Key::Address(address)]
            .iter()
            .filter_map(|key| {
                let times = failures.get_mut(key)?;
                forget_old(times, now);
                (times.len() >= MAX_FAILURES)
                    .then(|| times.front().map(|first| *first + WINDOW - now))
                    .flatten()
            })
            .max();
        match wait {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    pub fn failed(&self, login: &str, address: IpAddr, now: Instant) {
        let mut failures = self.lock();
        if failures.len() > PRUNE_ABOVE {
            failures.retain(|_, times| {
                forget_old(times, now);
                !times.is_empty()
            });
        }
        for key in [login_key(login), Key::Address(address)] {
            let times = failures.entry(key).or_default();
            forget_old(times, now);
            times.push_back(now);
        }
    }

    pub fn succeeded(&self, login: &str) {
        self.lock().remove(&login_key(login));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, VecDeque<Instant>>> {
        // A panic while holding the lock leaves plain counters behind:
        // still usable.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Logins compare case-insensitively, as the login lookup does.
fn login_key(login: &str) -> Key {
    Key::Login(login.trim().to_lowercase())
}

fn forget_old(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) >= WINDOW)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn five_failures_block_a_login_until_the_window_passes() {
        let limiter = RateLimiter::default();
        let start = Instant::now();
        for i in 0..MAX_FAILURES {
            assert!(limiter.check("Ivanov", A, start).is_ok(), "attempt {i}");
            limiter.failed("ivanov", if i % 2 == 0 { A } else { B }, start);
        }
        let wait = limiter
            .check("IVANOV", IpAddr::V4(Ipv4Addr::LOCALHOST), start)
            .expect_err("blocked by login");
        assert_eq!(wait, WINDOW);
        let later = start + WINDOW;
        assert!(limiter.check("ivanov", A, later).is_ok());
    }

    #[test]
    fn one_address_is_blocked_across_logins_and_success_clears_only_the_login() {
        let limiter = RateLimiter::default();
        let now = Instant::now();
        for i in 0..MAX_FAILURES {
            limiter.failed(&format!("user{i}"), A, now);
        }
        assert!(limiter.check("someone", A, now).is_err());
        assert!(limiter.check("someone", B, now).is_ok());
        for _ in 0..MAX_FAILURES {
            limiter.failed("petrov", B, now);
        }
        limiter.succeeded("petrov");
        // The login is cleared; the address B still has its failures.
        assert!(limiter.check("petrov", A, now).is_err(), "A is blocked");
        assert!(limiter.check("petrov", B, now).is_err(), "B is blocked");
        let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
        assert!(limiter.check("petrov", other, now).is_ok());
    }
}
