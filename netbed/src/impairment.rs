//! What a link does to packets: plain, inspectable settings that become a
//! [`str0m_netem::NetemConfig`].
//!
//! `NetemConfig` keeps its fields private, so the proxy could not show (or a test could not
//! read back) what a flow is set to. These types hold the same knobs as plain data, are
//! validated once ([`LinkImpairment::to_netem`]) so that nothing out of range ever reaches
//! str0m-netem (its `Probability::new` asserts in debug builds, and an absurd delay would
//! overflow an `Instant`), and parse from the short strings the binary accepts
//! (`5%`, `30ms`, `1mbit`).
//!
//! The models themselves (loss, delay, queue) are str0m-netem's; nothing here decides the
//! fate of a packet.

use std::fmt;
use std::time::Duration;

use str0m_netem::{Bitrate, DataSize, GilbertElliot, NetemConfig, Probability, RandomLoss};

/// Longest delay or jitter accepted: long enough for any satellite link, short enough that
/// `Instant + delay` cannot overflow and a queue drains within a test's lifetime.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// Slowest link rate accepted (1 kbit/s): a full datagram then still leaves in ~0.5 s.
pub const MIN_RATE_BPS: u64 = 1_000;
/// Largest link buffer accepted (64 MiB).
pub const MAX_BUFFER_BYTES: u64 = 64 * 1024 * 1024;

/// An impairment setting that cannot be applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImpairmentError {
    #[error("{what} must be a probability between 0 and 1 (got {value})")]
    Probability { what: &'static str, value: f32 },
    #[error("{what} must be at most {max:?} (got {value:?})")]
    TooLong {
        what: &'static str,
        value: Duration,
        max: Duration,
    },
    #[error("the Gilbert-Elliott exit probability r must be above 0 (r = 0 never leaves the loss burst: use a black hole)")]
    EndlessBurst,
    #[error("reorder gap must be at least 2 (got {0})")]
    ReorderGap(u32),
    #[error("link rate must be at least {MIN_RATE_BPS} bit/s (got {0})")]
    Rate(u64),
    #[error("link buffer must be between 1 byte and {MAX_BUFFER_BYTES} bytes (got {0})")]
    Buffer(u64),
    #[error("cannot parse {what} from {input:?}: {hint}")]
    Parse {
        what: &'static str,
        input: String,
        hint: &'static str,
    },
}

/// How packets are lost (before delay and queueing).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Loss {
    /// Nothing is lost.
    #[default]
    None,
    /// Each packet is lost with `probability`; `correlation` (0..1) makes losses cluster.
    Random { probability: f32, correlation: f32 },
    /// Two-state Markov (Gilbert-Elliott) bursty loss: `p` = chance per packet to enter the
    /// bad state, `r` = chance per packet to leave it; `loss_in_bad` / `loss_in_good` are the
    /// loss probabilities in each state (classic Gilbert model: 1 and 0).
    /// Mean loss ≈ p / (p + r) with the defaults; mean burst length 1 / r.
    GilbertElliott {
        p: f32,
        r: f32,
        loss_in_bad: f32,
        loss_in_good: f32,
    },
}

/// A bottleneck: packets leave at `bits_per_second`; a queue of `buffer_bytes` absorbs
/// bursts and overflows by tail drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub bits_per_second: u64,
    pub buffer_bytes: u64,
}

/// What one direction of one flow does to its packets.
///
/// `Default` is a clean link. Build with the chained setters:
/// `LinkImpairment::none().random_loss(0.05).delay(ms(30)).jitter(ms(10)).seed(7)`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinkImpairment {
    pub loss: Loss,
    /// Fixed one-way delay added to every packet.
    pub delay: Duration,
    /// Uniform variation of the delay in `[-jitter, +jitter]` (clamped at zero delay).
    pub jitter: Duration,
    /// 0..1: how much each packet's jitter follows the previous one's.
    pub delay_correlation: f32,
    /// 0..1: chance that a packet is sent twice.
    pub duplicate: f32,
    /// Every Nth packet skips the delay queue (arrives before earlier ones).
    pub reorder_gap: Option<u32>,
    pub rate: Option<Rate>,
    /// Seed of the random decisions. The proxy mixes in the flow id and the direction, so
    /// two flows (or the two directions of one) never lose the same packets in lockstep.
    pub seed: u64,
}

impl LinkImpairment {
    /// A clean link.
    pub fn none() -> Self {
        Self::default()
    }

    /// Independent random loss with this probability (0..1).
    pub fn random_loss(mut self, probability: f32) -> Self {
        self.loss = Loss::Random {
            probability,
            correlation: 0.0,
        };
        self
    }

    /// Gilbert-Elliott bursty loss: enter a burst with `p`, leave it with `r` (per packet).
    pub fn burst_loss(mut self, p: f32, r: f32) -> Self {
        self.loss = Loss::GilbertElliott {
            p,
            r,
            loss_in_bad: 1.0,
            loss_in_good: 0.0,
        };
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    pub fn duplicate(mut self, probability: f32) -> Self {
        self.duplicate = probability;
        self
    }

    pub fn reorder_gap(mut self, gap: u32) -> Self {
        self.reorder_gap = Some(gap);
        self
    }

    pub fn rate(mut self, bits_per_second: u64, buffer_bytes: u64) -> Self {
        self.rate = Some(Rate {
            bits_per_second,
            buffer_bytes,
        });
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// True when this setting lets every packet through at once, unchanged.
    pub fn is_clean(&self) -> bool {
        let clean_loss = match self.loss {
            Loss::None => true,
            Loss::Random { probability, .. } => probability == 0.0,
            Loss::GilbertElliott {
                p, loss_in_good, ..
            } => p == 0.0 && loss_in_good == 0.0,
        };
        clean_loss
            && self.delay.is_zero()
            && self.jitter.is_zero()
            && self.duplicate == 0.0
            && self.reorder_gap.is_none()
            && self.rate.is_none()
    }

    /// Check every field and build the str0m-netem configuration.
    pub fn to_netem(&self) -> Result<NetemConfig, ImpairmentError> {
        self.netem_with_seed(self.seed)
    }

    pub(crate) fn netem_with_seed(&self, seed: u64) -> Result<NetemConfig, ImpairmentError> {
        let mut config = NetemConfig::new()
            .latency(bounded("delay", self.delay)?)
            .jitter(bounded("jitter", self.jitter)?)
            .delay_correlation(probability("delay correlation", self.delay_correlation)?)
            .duplicate(probability("duplicate", self.duplicate)?)
            .seed(seed);
        match self.loss {
            Loss::None => {}
            Loss::Random {
                probability: p,
                correlation,
            } => {
                config = config.loss(
                    RandomLoss::new(probability("loss", p)?)
                        .correlation(probability("loss correlation", correlation)?),
                );
            }
            Loss::GilbertElliott {
                p,
                r,
                loss_in_bad,
                loss_in_good,
            } => {
                let p = probability("burst p", p)?.value();
                let r = probability("burst r", r)?.value();
                if r == 0.0 {
                    return Err(ImpairmentError::EndlessBurst);
                }
                // str0m-netem takes mean state durations (p = 1 / duration); 0 means "never
                // enter a burst" for the good state.
                let good = if p > 0.0 { 1.0 / p } else { 0.0 };
                config = config.loss(
                    GilbertElliot::new()
                        .good_duration(good)
                        .bad_duration(1.0 / r)
                        .loss_in_bad(probability("loss in bad state", loss_in_bad)?)
                        .loss_in_good(probability("loss in good state", loss_in_good)?),
                );
            }
        }
        if let Some(gap) = self.reorder_gap {
            if gap < 2 {
                return Err(ImpairmentError::ReorderGap(gap));
            }
            config = config.reorder_gap(gap);
        }
        if let Some(rate) = self.rate {
            if rate.bits_per_second < MIN_RATE_BPS {
                return Err(ImpairmentError::Rate(rate.bits_per_second));
            }
            if rate.buffer_bytes == 0 || rate.buffer_bytes > MAX_BUFFER_BYTES {
                return Err(ImpairmentError::Buffer(rate.buffer_bytes));
            }
            // Both fit: the buffer is capped far below i64::MAX above.
            config = config.link(
                Bitrate::bps(rate.bits_per_second),
                DataSize::bytes(rate.buffer_bytes as i64),
            );
        }
        Ok(config)
    }
}

/// The impairment of one flow: uplink (client → server) and downlink (server → client).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Impairment {
    pub uplink: LinkImpairment,
    pub downlink: LinkImpairment,
}

impl Impairment {
    /// Both directions clean.
    pub fn none() -> Self {
        Self::default()
    }

    /// The same setting on both directions (each still gets its own random sequence).
    pub fn symmetric(link: LinkImpairment) -> Self {
        Self {
            uplink: link,
            downlink: link,
        }
    }

    /// Impair only what the client sends.
    pub fn uplink(link: LinkImpairment) -> Self {
        Self {
            uplink: link,
            downlink: LinkImpairment::none(),
        }
    }

    /// Impair only what the client receives.
    pub fn downlink(link: LinkImpairment) -> Self {
        Self {
            uplink: LinkImpairment::none(),
            downlink: link,
        }
    }

    /// Check both directions.
    pub fn validate(&self) -> Result<(), ImpairmentError> {
        self.uplink.to_netem()?;
        self.downlink.to_netem()?;
        Ok(())
    }
}

impl fmt::Display for LinkImpairment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return f.write_str("clean");
        }
        let mut sep = "";
        let mut part = |f: &mut fmt::Formatter<'_>, args: fmt::Arguments<'_>| {
            let r = write!(f, "{sep}{args}");
            sep = " ";
            r
        };
        match self.loss {
            Loss::None => {}
            Loss::Random { probability, .. } => {
                part(f, format_args!("loss {:.2}%", probability * 100.0))?
            }
            Loss::GilbertElliott { p, r, .. } => part(f, format_args!("burst-loss p={p} r={r}"))?,
        }
        if !self.delay.is_zero() {
            part(f, format_args!("delay {:?}", self.delay))?;
        }
        if !self.jitter.is_zero() {
            part(f, format_args!("jitter {:?}", self.jitter))?;
        }
        if self.duplicate > 0.0 {
            part(f, format_args!("dup {:.2}%", self.duplicate * 100.0))?;
        }
        if let Some(gap) = self.reorder_gap {
            part(f, format_args!("reorder every {gap}"))?;
        }
        if let Some(rate) = self.rate {
            part(
                f,
                format_args!(
                    "rate {} kbit/s buffer {} B",
                    rate.bits_per_second / 1000,
                    rate.buffer_bytes
                ),
            )?;
        }
        Ok(())
    }
}

fn probability(what: &'static str, value: f32) -> Result<Probability, ImpairmentError> {
    if !(0.0..=1.0).contains(&value) {
        // Also catches NaN: it is contained in no range.
        return Err(ImpairmentError::Probability { what, value });
    }
    Ok(Probability::new(value))
}

fn bounded(what: &'static str, value: Duration) -> Result<Duration, ImpairmentError> {
    if value > MAX_DELAY {
        return Err(ImpairmentError::TooLong {
            what,
            value,
            max: MAX_DELAY,
        });
    }
    Ok(value)
}

/// Parse a probability written as a percentage (`5%`, `0.5%`) or a fraction (`0.05`).
pub fn parse_probability(input: &str) -> Result<f32, ImpairmentError> {
    let err = || ImpairmentError::Parse {
        what: "a probability",
        input: input.to_owned(),
        hint: "write 5% or 0.05",
    };
    let s = input.trim();
    let value = match s.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f32>().map_err(|_| err())? / 100.0,
        None => s.parse::<f32>().map_err(|_| err())?,
    };
    probability("probability", value)?;
    Ok(value)
}

/// Parse a duration: `30ms`, `1.5s`, `500us`, `0`.
pub fn parse_duration(input: &str) -> Result<Duration, ImpairmentError> {
    let err = || ImpairmentError::Parse {
        what: "a duration",
        input: input.to_owned(),
        hint: "write 30ms, 1.5s or 500us",
    };
    let s = input.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if s == "0" {
        ("0", 1.0)
    } else {
        return Err(err());
    };
    let value: f64 = num.trim().parse().map_err(|_| err())?;
    if !value.is_finite() || value < 0.0 {
        return Err(err());
    }
    let secs = value * scale;
    if secs > MAX_DELAY.as_secs_f64() {
        return Err(ImpairmentError::TooLong {
            what: "duration",
            value: MAX_DELAY.saturating_add(Duration::from_secs(1)),
            max: MAX_DELAY,
        });
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parse a link rate in bits per second, `tc` style: `1mbit`, `500kbit`, `2gbit`, `64000bit`.
pub fn parse_rate(input: &str) -> Result<u64, ImpairmentError> {
    let err = || ImpairmentError::Parse {
        what: "a rate",
        input: input.to_owned(),
        hint: "write 1mbit, 500kbit or 64000bit (bits per second)",
    };
    let s = input.trim().to_ascii_lowercase();
    let (num, scale) = if let Some(n) = s.strip_suffix("gbit") {
        (n.to_owned(), 1e9)
    } else if let Some(n) = s.strip_suffix("mbit") {
        (n.to_owned(), 1e6)
    } else if let Some(n) = s.strip_suffix("kbit") {
        (n.to_owned(), 1e3)
    } else if let Some(n) = s.strip_suffix("bit") {
        (n.to_owned(), 1.0)
    } else {
        return Err(err());
    };
    let value: f64 = num.trim().parse().map_err(|_| err())?;
    let bps = value * scale;
    if !bps.is_finite() || bps < MIN_RATE_BPS as f64 || bps > 1e12 {
        return Err(ImpairmentError::Rate(if bps.is_finite() && bps > 0.0 {
            bps as u64
        } else {
            0
        }));
    }
    Ok(bps as u64)
}

/// Parse a size in bytes: `64kb`, `1mb`, `1500`, `1500b`.
pub fn parse_bytes(input: &str) -> Result<u64, ImpairmentError> {
    let err = || ImpairmentError::Parse {
        what: "a size",
        input: input.to_owned(),
        hint: "write 64kb, 1mb or 1500 (bytes)",
    };
    let s = input.trim().to_ascii_lowercase();
    let (num, scale) = if let Some(n) = s.strip_suffix("mb") {
        (n, 1024 * 1024)
    } else if let Some(n) = s.strip_suffix("kb") {
        (n, 1024)
    } else if let Some(n) = s.strip_suffix('b') {
        (n, 1)
    } else {
        (s.as_str(), 1)
    };
    let value: u64 = num.trim().parse().map_err(|_| err())?;
    let bytes = value.checked_mul(scale).ok_or_else(err)?;
    if bytes == 0 || bytes > MAX_BUFFER_BYTES {
        return Err(ImpairmentError::Buffer(bytes));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_short_forms() {
        assert_eq!(parse_probability("5%").unwrap(), 0.05);
        assert_eq!(parse_probability("0.2").unwrap(), 0.2);
        assert!(parse_probability("120%").is_err());
        assert!(parse_probability("NaN").is_err());
        assert!(parse_probability("-1%").is_err());
        assert_eq!(parse_duration("30ms").unwrap(), Duration::from_millis(30));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("1e30s").is_err());
        assert!(parse_duration("-5ms").is_err());
        assert_eq!(parse_rate("1mbit").unwrap(), 1_000_000);
        assert_eq!(parse_rate("500kbit").unwrap(), 500_000);
        assert!(parse_rate("1mbps").is_err());
        assert!(parse_rate("0bit").is_err());
        assert_eq!(parse_bytes("64kb").unwrap(), 65_536);
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("99999999999999mb").is_err());
    }

    #[test]
    fn out_of_range_settings_are_errors_not_panics() {
        assert!(LinkImpairment::none().random_loss(1.5).to_netem().is_err());
        assert!(LinkImpairment::none()
            .random_loss(f32::NAN)
            .to_netem()
            .is_err());
        assert_eq!(
            LinkImpairment::none().burst_loss(0.1, 0.0).to_netem().err(),
            Some(ImpairmentError::EndlessBurst)
        );
        assert!(LinkImpairment::none()
            .delay(Duration::from_secs(3600))
            .to_netem()
            .is_err());
        assert!(LinkImpairment::none().rate(10, 1000).to_netem().is_err());
        assert!(LinkImpairment::none().reorder_gap(1).to_netem().is_err());
        assert!(LinkImpairment::none()
            .random_loss(0.05)
            .delay(Duration::from_millis(30))
            .jitter(Duration::from_millis(10))
            .rate(1_000_000, 64 * 1024)
            .to_netem()
            .is_ok());
    }
}
