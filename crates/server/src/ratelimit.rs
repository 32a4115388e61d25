//! Per-key request rate limits (GCRA through `governor`), answered with 429 + `Retry-After`,
//! and a failure counter that successes do not spend.

use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::http::ApiError;

/// A keyed limiter; `0` per minute disables it.
pub struct Limiter<K: Hash + Eq + Clone> {
    inner: Option<DefaultKeyedRateLimiter<K>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn per_minute(n: u32) -> Self {
        Self {
            inner: NonZeroU32::new(n).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
        }
    }

    pub fn check(&self, key: &K) -> Result<(), ApiError> {
        let Some(limiter) = &self.inner else {
            return Ok(());
        };
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::rate_limited(wait.as_secs() + 1)
        })
    }

    /// Forgets keys whose state is back to full; call now and then to bound memory.
    pub fn shrink(&self) {
        if let Some(l) = &self.inner {
            l.retain_recent();
        }
    }
}

/// Most keys a [`FailureLimiter`] holds. Beyond, new keys are not recorded (their failures
/// still count against the per-address login limit) rather than growing without end.
const MAX_FAILURE_KEYS: usize = 100_000;

/// Counts failures per key and refuses a key once it has `n` within a minute (GCRA, like
/// [`Limiter`]). Each attempt is counted as a failure before it is checked and taken back
/// ([`FailureLimiter::forgive`]) when it was not one, so parallel attempts cannot all slip
/// under the limit, and successes are never refused because of someone else's failures
/// under a different key.
pub struct FailureLimiter<K: Hash + Eq> {
    /// (emission interval, burst tolerance); `None` when disabled.
    quota: Option<(Duration, Duration)>,
    /// Per key, the theoretical arrival time of its next failure.
    tat: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq> FailureLimiter<K> {
    pub fn per_minute(n: u32) -> Self {
        Self {
            quota: (n > 0).then(|| {
                let interval = Duration::from_secs(60) / n;
                (interval, interval * (n - 1))
            }),
            tat: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<K, Instant>> {
        // A poisoned lock only means a panic elsewhere; the map itself stays consistent.
        self.tat.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts an attempt of `key` as a failure; `Err(seconds to wait)` when `key` has used
    /// up its failures (then nothing is counted).
    pub fn begin(&self, key: K) -> Result<(), u64> {
        let Some((interval, tolerance)) = self.quota else {
            return Ok(());
        };
        let now = Instant::now();
        let mut map = self.map();
        if let Some(&tat) = map.get(&key)
            && tat > now + tolerance
        {
            return Err((tat - tolerance - now).as_secs() + 1);
        }
        if map.len() >= MAX_FAILURE_KEYS && !map.contains_key(&key) {
            map.retain(|_, tat| *tat > now);
            if map.len() >= MAX_FAILURE_KEYS {
                tracing::warn!("failed-login limiter full; not tracking a new name and address");
                return Ok(());
            }
        }
        let tat = map.entry(key).or_insert(now);
        *tat = (*tat).max(now) + interval;
        Ok(())
    }

    /// Takes back an attempt counted by [`FailureLimiter::begin`] that was no failure.
    pub fn forgive(&self, key: &K) {
        let Some((interval, _)) = self.quota else {
            return;
        };
        let now = Instant::now();
        let mut map = self.map();
        if let Some(tat) = map.get_mut(key) {
            match tat.checked_sub(interval) {
                Some(earlier) if earlier > now => *tat = earlier,
                _ => {
                    map.remove(key);
                }
            }
        }
    }

    /// Forgets keys whose failures have all expired; call now and then to bound memory.
    pub fn shrink(&self) {
        let now = Instant::now();
        self.map().retain(|_, tat| *tat > now);
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.map().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_count_and_each_key_has_its_own_budget() {
        let l = FailureLimiter::per_minute(3);
        for _ in 0..3 {
            assert_eq!(l.begin("a"), Ok(()));
        }
        let wait = l.begin("a").unwrap_err();
        assert!((1..=21).contains(&wait), "{wait}");
        assert_eq!(l.begin("b"), Ok(()), "another key is not affected");
        assert_eq!(l.len(), 2);
        // Attempts taken back never use the budget up, and leave no key behind.
        for _ in 0..100 {
            assert_eq!(l.begin("c"), Ok(()));
            l.forgive(&"c");
        }
        l.forgive(&"b");
        assert_eq!(l.len(), 1);
        l.shrink();
        assert_eq!(l.len(), 1, "a key with live failures stays");
        let off = FailureLimiter::per_minute(0);
        assert_eq!((off.begin("a"), off.len()), (Ok(()), 0));
    }
}

/// Most keys a [`Window`] tracks before it forgets the ones whose window ended.
const MAX_WINDOW_KEYS: usize = 100_000;

/// Where a key stands in its [`Window`]: what the `X-RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window ends (at least 1).
    pub reset_after: u64,
}

/// `limit` requests per `period` and key, counted in fixed windows that start with a key's
/// first request: the chat limits (chat.md "Rate Limiting"), which clients are told about
/// in `X-RateLimit-Limit`, `-Remaining` and `-Reset`. A limit of 0 turns it off.
pub struct Window<K: Hash + Eq> {
    limit: u32,
    period: Duration,
    keys: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: Hash + Eq> Window<K> {
    pub fn new(limit: u32, period: Duration) -> Self {
        Self {
            limit,
            period,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request of `key`: `Ok` with the standing after it, `Err` with the
    /// standing when the window is used up (nothing counted). `None` when turned off.
    pub fn take(&self, key: K) -> Option<Result<Standing, Standing>> {
        if self.limit == 0 {
            return None;
        }
        let now = Instant::now();
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= MAX_WINDOW_KEYS && !keys.contains_key(&key) {
            let period = self.period;
            keys.retain(|_, (start, _)| now.duration_since(*start) < period);
        }
        let entry = keys.entry(key).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.period {
            *entry = (now, 0);
        }
        let left = self.period.saturating_sub(now.duration_since(entry.0));
        let reset_after = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        let standing = |used: u32| Standing {
            limit: self.limit,
            remaining: self.limit.saturating_sub(used),
            reset_after: reset_after.max(1),
        };
        if entry.1 >= self.limit {
            return Some(Err(standing(entry.1)));
        }
        entry.1 += 1;
        Some(Ok(standing(entry.1)))
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;

    #[test]
    fn a_window_counts_per_key_and_reports_what_is_left() {
        let w = Window::new(2, Duration::from_secs(5));
        let first = w.take("a").unwrap().unwrap();
        assert_eq!((first.limit, first.remaining), (2, 1));
        assert!((1..=5).contains(&first.reset_after));
        assert_eq!(w.take("a").unwrap().unwrap().remaining, 0);
        let refused = w.take("a").unwrap().unwrap_err();
        assert_eq!(refused.remaining, 0);
        assert_eq!(w.take("b").unwrap().unwrap().remaining, 1);
        assert!(Window::new(0, Duration::from_secs(1)).take("a").is_none());
    }
}
