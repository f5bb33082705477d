//! `--public-ip-from-stun host:port`: learn the address to announce in ICE candidates from a
//! STUN server the operator names (one STUN Binding request, RFC 8489), so one manifest serves
//! every node behind NAT. `--public-ip` overrides it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use rtc::stun::message::{Getter, Message, BINDING_REQUEST, BINDING_SUCCESS};
use rtc::stun::xoraddr::XorMappedAddress;

/// Requests sent before giving up, each waiting this long for the answer (UDP may drop one).
const ATTEMPTS: u32 = 3;
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// Asks the STUN server at `server` (`host:port`) which address our UDP packets come from.
pub async fn discover(server: &str) -> anyhow::Result<IpAddr> {
    let target = tokio::net::lookup_host(server)
        .await
        .with_context(|| format!("resolving the STUN server {server}"))?
        .next()
        .with_context(|| format!("the STUN server {server} has no address"))?;
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let socket = tokio::net::UdpSocket::bind(bind).await?;
    socket.connect(target).await?;
    for _ in 0..ATTEMPTS {
        let mut request = Message::new();
        request.new_transaction_id()?;
        request.set_type(BINDING_REQUEST);
        request.encode();
        socket.send(&request.raw).await?;
        let mut buf = [0u8; 1500];
        let deadline = tokio::time::Instant::now() + ATTEMPT_TIMEOUT;
        // Other datagrams (a late answer to an earlier attempt) are skipped until the deadline.
        while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            let n = received?;
            let mut response = Message::new();
            if response.unmarshal_binary(&buf[..n]).is_err()
                || response.transaction_id != request.transaction_id
            {
                continue;
            }
            if response.typ != BINDING_SUCCESS {
                bail!("the STUN server {server} refused the binding request");
            }
            let mut mapped = XorMappedAddress::default();
            mapped
                .get_from(&response)
                .with_context(|| format!("the STUN server {server} sent no mapped address"))?;
            return Ok(mapped.ip);
        }
    }
    bail!("no answer from the STUN server {server} after {ATTEMPTS} attempts")
}
