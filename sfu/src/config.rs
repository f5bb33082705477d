use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Everything the media plane can be configured with. Filled by the server binary from flags
/// and environment; the SFU itself never reads the environment.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Where the one media UDP socket binds. Port 0 picks a free port (tests).
    pub udp_bind: SocketAddr,
    /// The address advertised in ICE candidates, for NAT/cloud deployments where the bind
    /// address is not reachable by browsers. Defaults to the bind IP (or 127.0.0.1 when the
    /// bind IP is unspecified).
    pub public_ip: Option<IpAddr>,
    /// The address (IP and port) advertised in ICE candidates when it differs from the bound
    /// socket: behind a port-mapping NAT or load balancer, or a test proxy in front of the
    /// media port. `public_ip`, when set, still overrides the IP. `None`: the bound port.
    pub announce_addr: Option<SocketAddr>,
    /// Kernel receive and send buffer asked for on the media socket. Bursts (a keyframe fanned
    /// out to every subscriber, many DTLS handshakes at once) overflow Linux's 208 KiB default;
    /// the kernel caps the request at `net.core.rmem_max`/`wmem_max` (see docs/operations.md).
    pub socket_buffer_bytes: usize,
    /// Most participants one room accepts.
    pub max_participants_per_room: usize,
    /// A peer connection whose ICE + DTLS has not completed within this time is released.
    pub connect_timeout: Duration,
    /// Minimum time between two keyframe requests (PLI) sent to one publisher.
    pub keyframe_request_interval: Duration,
    /// Most tracks (m-lines) one participant may publish: microphone, camera, screen and
    /// screen audio by default.
    pub max_tracks_per_participant: usize,
    /// How often each participant's connection quality is scored and reported.
    pub quality_interval: Duration,
    /// Recording stops (and is refused) when the recording directory's file system has less
    /// free space than this.
    pub recording_min_free_bytes: u64,
    /// Where to report Prometheus metrics (see [`crate::metrics::SfuMetrics::register`]).
    pub metrics: Option<crate::metrics::SfuMetrics>,
    /// Active-speaker detection tuning.
    pub speaker: crate::speaker::SpeakerConfig,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            udp_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 3478),
            public_ip: None,
            announce_addr: None,
            socket_buffer_bytes: 8 * 1024 * 1024,
            max_participants_per_room: 16,
            connect_timeout: Duration::from_secs(20),
            keyframe_request_interval: Duration::from_millis(500),
            max_tracks_per_participant: 4,
            quality_interval: Duration::from_secs(2),
            recording_min_free_bytes: 512 * 1024 * 1024,
            metrics: None,
            speaker: crate::speaker::SpeakerConfig::default(),
        }
    }
}

impl SfuConfig {
    /// Checks values that would make the SFU misbehave rather than fail loudly.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_participants_per_room < 2 {
            return Err("max_participants_per_room must be at least 2".into());
        }
        if self.connect_timeout < Duration::from_secs(1) {
            return Err("connect_timeout must be at least 1 s".into());
        }
        if self.max_tracks_per_participant == 0 {
            return Err("max_tracks_per_participant must be at least 1".into());
        }
        if self.quality_interval < Duration::from_millis(500) {
            return Err("quality_interval must be at least 500 ms".into());
        }
        Ok(())
    }

    /// The address written into the server's ICE candidate, given where the media socket is
    /// bound: IP from `public_ip`, else `announce_addr`, else the bind IP (127.0.0.1 for an
    /// unspecified bind IP); port from `announce_addr`, else the bound port.
    pub fn advertised_addr(&self, bound: SocketAddr) -> SocketAddr {
        let ip = match (self.public_ip, self.announce_addr) {
            (Some(ip), _) => ip,
            (None, Some(announce)) => announce.ip(),
            (None, None) if bound.ip().is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            (None, None) => bound.ip(),
        };
        let port = self.announce_addr.map_or(bound.port(), |a| a.port());
        SocketAddr::new(ip, port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_candidate_address_combines_public_ip_announce_and_bound_port() {
        let bound = addr("127.0.0.1:40000");
        let mut config = SfuConfig::default();
        assert_eq!(config.advertised_addr(bound), bound);
        assert_eq!(
            config.advertised_addr(addr("0.0.0.0:40000")),
            addr("127.0.0.1:40000")
        );
        config.announce_addr = Some(addr("203.0.113.7:3479"));
        assert_eq!(config.advertised_addr(bound), addr("203.0.113.7:3479"));
        // --public-ip overrides only the IP.
        config.public_ip = Some("198.51.100.2".parse().unwrap());
        assert_eq!(config.advertised_addr(bound), addr("198.51.100.2:3479"));
        config.announce_addr = None;
        assert_eq!(config.advertised_addr(bound), addr("198.51.100.2:40000"));
    }
}
