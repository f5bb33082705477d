//! Per-socket and per-user event rate limits (token buckets from `governor`), connection
//! rate limits per user and per client address, and the strike counter that disconnects a
//! socket which keeps breaking rules.
//!
//! A socket's limiters live in its [`Session`] (dropped with the socket). The per-user and
//! per-address limiters are keyed and shared ([`SharedLimits`]): their state outlives a
//! connection, so reconnecting does not refill a budget, and a key is dropped only once its
//! state is indistinguishable from a fresh one (`retain_recent`), so memory follows the
//! number of recently active users and addresses, not everyone ever seen.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Limits;
use crate::identity::Identity;
use crate::{SignalingError, UserId};

/// A token bucket: `per_sec` tokens per second, holding at most `burst`.
pub(crate) type Bucket = DefaultDirectRateLimiter;

fn nonzero(n: u32) -> NonZeroU32 {
    // `Limits::validate` refuses zeros; clamp anyway rather than panic.
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

pub(crate) fn bucket(per_sec: u32, burst: u32) -> Bucket {
    RateLimiter::direct(Quota::per_second(nonzero(per_sec)).allow_burst(nonzero(burst)))
}

/// Limiters shared by all connections, keyed by user or client address.
pub(crate) struct SharedLimits {
    user_events: DefaultKeyedRateLimiter<UserId>,
    user_connects: DefaultKeyedRateLimiter<UserId>,
    ip_connects: DefaultKeyedRateLimiter<IpAddr>,
    /// Rings per (caller, callee).
    rings: DefaultKeyedRateLimiter<(UserId, UserId)>,
    /// Checks since the last sweep of stale keys.
    checks: AtomicU32,
}

/// Stale keys are swept every this many checks (a sweep is O(keys)).
const SWEEP_EVERY: u32 = 1024;

impl SharedLimits {
    pub fn new(limits: &Limits) -> SharedLimits {
        let per_sec = |rate, burst| Quota::per_second(nonzero(rate)).allow_burst(nonzero(burst));
        SharedLimits {
            user_events: RateLimiter::hashmap(per_sec(
                limits.user_events_per_sec,
                limits.user_event_burst,
            )),
            user_connects: RateLimiter::hashmap(
                Quota::per_minute(nonzero(limits.user_connects_per_min))
                    .allow_burst(nonzero(limits.user_connect_burst)),
            ),
            ip_connects: RateLimiter::hashmap(per_sec(
                limits.ip_connects_per_sec,
                limits.ip_connect_burst,
            )),
            rings: RateLimiter::hashmap(
                Quota::per_minute(nonzero(limits.rings_per_callee_per_min))
                    .allow_burst(nonzero(limits.ring_burst_per_callee)),
            ),
            checks: AtomicU32::new(0),
        }
    }

    fn tick(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.user_events.retain_recent();
            self.user_events.shrink_to_fit();
            self.user_connects.retain_recent();
            self.user_connects.shrink_to_fit();
            self.ip_connects.retain_recent();
            self.ip_connects.shrink_to_fit();
            self.rings.retain_recent();
            self.rings.shrink_to_fit();
        }
    }

    /// One event of `user`, over all their sockets and connections.
    pub fn admit_user_event(&self, user: &UserId) -> bool {
        self.tick();
        self.user_events.check_key(user).is_ok()
    }

    /// One more connection from `ip` (the key is already aggregated, see `client_ip`).
    pub fn admit_connect_from(&self, ip: IpAddr) -> bool {
        self.tick();
        self.ip_connects.check_key(&ip).is_ok()
    }

    /// `caller` rings `callee` once more.
    pub fn admit_ring(&self, caller: &UserId, callee: &UserId) -> bool {
        self.tick();
        self.rings
            .check_key(&(caller.clone(), callee.clone()))
            .is_ok()
    }

    /// One more connection of `user`.
    pub fn admit_connect_of(&self, user: &UserId) -> bool {
        self.tick();
        self.user_connects.check_key(user).is_ok()
    }
}

/// Everything fixed about one connected socket, kept in its extensions.
#[derive(Clone)]
pub(crate) struct Session {
    pub identity: Arc<Identity>,
    pub ip: Option<IpAddr>,
    pub guard: Arc<SocketGuard>,
    pub shared: Arc<SharedLimits>,
}

/// The socket's own limiters.
pub(crate) struct SocketGuard {
    events: Bucket,
    strikes: Bucket,
    kicked: AtomicBool,
    evicted: AtomicBool,
}

impl SocketGuard {
    pub fn new(limits: &Limits) -> SocketGuard {
        let forgiveness = limits.strike_forgiveness;
        let strikes = Quota::with_period(forgiveness)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(nonzero(limits.strikes_before_disconnect));
        SocketGuard {
            events: bucket(limits.socket_events_per_sec, limits.socket_event_burst),
            strikes: RateLimiter::direct(strikes),
            kicked: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
        }
    }

    /// Records a refused event. Returns true exactly once: when the socket has used up its
    /// strikes and must be disconnected.
    pub fn strike(&self) -> bool {
        self.strikes.check().is_err() && !self.kicked.swap(true, Ordering::Relaxed)
    }

    /// Marks the socket evicted (it could not take its events): its further events are
    /// ignored. Returns true only the first time.
    pub fn evict(&self) -> bool {
        self.kicked.store(true, Ordering::Relaxed);
        !self.evicted.swap(true, Ordering::Relaxed)
    }

    pub fn is_kicked(&self) -> bool {
        self.kicked.load(Ordering::Relaxed)
    }
}

impl Session {
    /// Takes one token from the socket's bucket, then one from the user's.
    pub fn admit_event(&self) -> Result<(), SignalingError> {
        if self.guard.events.check().is_err()
            || !self.shared.admit_user_event(&self.identity.user.id)
        {
            return Err(SignalingError::RateLimited);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_refuse_beyond_the_burst() {
        let b = bucket(1, 3);
        assert!((0..3).all(|_| b.check().is_ok()));
        assert!(b.check().is_err());
    }

    #[test]
    fn strikes_kick_once() {
        let limits = Limits {
            strikes_before_disconnect: 2,
            strike_forgiveness: Duration::from_secs(60),
            ..Limits::default()
        };
        let guard = SocketGuard::new(&limits);
        assert!(!guard.strike());
        assert!(!guard.strike());
        assert!(guard.strike());
        assert!(guard.is_kicked());
        assert!(!guard.strike(), "only the first overflow kicks");
    }
}
