//! Per-socket and per-user event rate limits (token buckets from `governor`) and the strike
//! counter that disconnects a socket which keeps breaking rules.
//!
//! Every limiter is a fixed-size atomic cell: checking one never allocates or locks. A
//! socket's limiters live in its [`Session`] (dropped with the socket); a user's limiter lives
//! in the hub while the user has a socket, so memory follows the number of connected users.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::Limits;
use crate::identity::Identity;
use crate::SignalingError;

/// A token bucket: `per_sec` tokens per second, holding at most `burst`.
pub(crate) type Bucket = DefaultDirectRateLimiter;

fn nonzero(n: u32) -> NonZeroU32 {
    // `Limits::validate` refuses zeros; clamp anyway rather than panic.
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

pub(crate) fn bucket(per_sec: u32, burst: u32) -> Bucket {
    RateLimiter::direct(Quota::per_second(nonzero(per_sec)).allow_burst(nonzero(burst)))
}

/// Everything fixed about one connected socket, kept in its extensions.
#[derive(Clone)]
pub(crate) struct Session {
    pub identity: Arc<Identity>,
    pub ip: Option<IpAddr>,
    pub guard: Arc<SocketGuard>,
    pub user_events: Arc<Bucket>,
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
        if self.guard.events.check().is_err() || self.user_events.check().is_err() {
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
