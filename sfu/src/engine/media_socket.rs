//! The one media UDP socket: bound with enlarged kernel buffers, and a warning when the
//! kernel granted less than asked, so an operator sees when `net.core.rmem_max` is too low.

use std::net::SocketAddr;

use tracing::{debug, warn};

/// Binds the media socket asking for `buffer_bytes` of receive and send buffer (best effort:
/// the kernel caps them at `net.core.rmem_max` / `wmem_max`).
pub(super) fn bind_media_socket(
    addr: SocketAddr,
    buffer_bytes: usize,
) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(error) = socket.set_recv_buffer_size(buffer_bytes) {
        warn!(%error, "could not enlarge the media socket's receive buffer");
    }
    if let Err(error) = socket.set_send_buffer_size(buffer_bytes) {
        warn!(%error, "could not enlarge the media socket's send buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let (receive, send) = (socket.recv_buffer_size()?, socket.send_buffer_size()?);
    if granted(receive) < buffer_bytes {
        warn!(
            asked = buffer_bytes,
            got = granted(receive),
            "media socket receive buffer capped by the kernel: raise net.core.rmem_max to avoid drops under load"
        );
    }
    debug!(
        receive,
        send, "media socket buffers (as the kernel reports them)"
    );
    Ok(socket.into())
}

/// What a buffer-size request was granted, from what `getsockopt` reports: Linux doubles the
/// requested size to leave room for its own bookkeeping and reports the doubled value
/// (socket(7), `SO_RCVBUF`), so comparing the report with the request hid a cap of half the
/// request (ops review D11).
fn granted(reported: usize) -> usize {
    if cfg!(target_os = "linux") {
        reported / 2
    } else {
        reported
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::granted;
    use socket2::{Domain, Protocol, Socket, Type};

    fn rmem_max() -> usize {
        std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .expect("rmem_max readable")
            .trim()
            .parse()
            .expect("rmem_max is a number")
    }

    #[test]
    fn a_request_above_rmem_max_is_seen_as_capped() {
        // Ask for twice what the kernel allows: the kernel grants rmem_max and reports
        // 2 × rmem_max, which equals the request, so only the halved value shows the cap.
        let asked = 2 * rmem_max();
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        socket.set_recv_buffer_size(asked).unwrap();
        let reported = socket.recv_buffer_size().unwrap();
        assert!(granted(reported) < asked, "reported {reported} for {asked}");
    }

    #[test]
    fn a_request_within_rmem_max_is_granted_whole() {
        let asked = (rmem_max() / 2).max(4096);
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        socket.set_recv_buffer_size(asked).unwrap();
        assert!(granted(socket.recv_buffer_size().unwrap()) >= asked);
    }
}
