//! Login rate limits: failures per username, attempts per client address.
//!
//! In memory on purpose: the limits protect the argon2 verify and slow down guessing; they need
//! no durability (a restart forgiving a few failures is harmless) and must not write anything on
//! the hot path. Time comes from the injected clock.
//!
//! Each key keeps the timestamps of its recent events, at most `limit` of them (a sliding
//! window log), so one key costs O(limit) memory. The number of keys is bounded too: when the
//! map grows past `max_keys`, keys with nothing inside their window are dropped, and if that is
//! not enough, the least recently seen half goes. An attacker spraying addresses can then at
//! worst make us forget other addresses' counts, never grow memory without bound.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::AuthError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitConfig {
    /// Failed logins allowed per username within `username_window_secs`.
    pub username_failures: u32,
    pub username_window_secs: u64,
    /// Login attempts (failed or not) allowed per client address within `address_window_secs`.
    pub address_attempts: u32,
    pub address_window_secs: u64,
    /// Keys tracked per limiter before old ones are evicted.
    pub max_keys: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            username_failures: 5,
            username_window_secs: 15 * 60,
            address_attempts: 30,
            address_window_secs: 60,
            max_keys: 100_000,
        }
    }
}

/// A sliding-window counter per key.
pub(crate) struct Window<K> {
    limit: usize,
    window: time::Duration,
    max_keys: usize,
    map: Mutex<HashMap<K, VecDeque<OffsetDateTime>>>,
}

impl<K: Hash + Eq + Clone> Window<K> {
    pub fn new(limit: u32, window_secs: u64, max_keys: usize) -> Self {
        Self {
            limit: limit.max(1) as usize,
            window: time::Duration::seconds(window_secs.min(i64::MAX as u64) as i64),
            max_keys: max_keys.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses when `key` already has `limit` events in the window; otherwise records one.
    /// Checking and recording under one lock means concurrent attempts cannot all slip in.
    pub fn hit(&self, key: &K, now: OffsetDateTime) -> Result<(), AuthError> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let cutoff = now - self.window;
        if let Some(q) = map.get_mut(key) {
            while q.front().is_some_and(|t| *t <= cutoff) {
                q.pop_front();
            }
            if q.len() >= self.limit {
                let oldest = q.front().copied().unwrap_or(now);
                let wait = (oldest + self.window - now).whole_seconds().max(1);
                return Err(AuthError::RateLimited { retry_after_secs: wait as u64 });
            }
            q.push_back(now);
            return Ok(());
        }
        if map.len() >= self.max_keys {
            self.evict(&mut map, cutoff);
        }
        map.insert(key.clone(), VecDeque::from([now]));
        Ok(())
    }

    /// Forgets the key (a successful login clears the username's failures).
    pub fn reset(&self, key: &K) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    fn evict(&self, map: &mut HashMap<K, VecDeque<OffsetDateTime>>, cutoff: OffsetDateTime) {
        map.retain(|_, q| q.back().is_some_and(|t| *t > cutoff));
        if map.len() < self.max_keys {
            return;
        }
        let mut last_seen: Vec<OffsetDateTime> = map.values().filter_map(|q| q.back().copied()).collect();
        let mid = last_seen.len() / 2;
        let (_, median, _) = last_seen.select_nth_unstable(mid);
        let median = *median;
        map.retain(|_, q| q.back().is_some_and(|t| *t > median));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The key for an address: IPv4 as is, IPv6 by its /64, which is what one client usually gets.
pub(crate) fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

pub(crate) struct LoginLimiter {
    pub usernames: Window<String>,
    pub addresses: Window<IpAddr>,
}

impl LoginLimiter {
    pub fn new(c: &RateLimitConfig) -> Self {
        Self {
            usernames: Window::new(c.username_failures, c.username_window_secs, c.max_keys),
            addresses: Window::new(c.address_attempts, c.address_window_secs, c.max_keys),
        }
    }
}
