//! Who a peer connection actually exchanges datagrams with.
//!
//! webrtc-rs 0.21 has no API for the selected candidate pair's address, and its stats report
//! does not register candidates learned from the remote SDP, so "is this connection talking to
//! the SFU?" cannot be answered from inside the library. Instead each peer connection runs on
//! an [`ObservingRuntime`]: webrtc-rs's own tokio runtime with its UDP sockets wrapped so that
//! every datagram sent or received is counted per remote address. This is stronger evidence
//! than ICE state too — it shows where media really went.
//!
//! The counters sit behind a `std::sync::Mutex` taken once per datagram: each socket belongs
//! to one connection whose single driver task does all its I/O, so the lock is uncontended
//! and never held across an await.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    TokioRuntime, Transmit,
};

/// Datagrams exchanged with one remote address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    /// Datagrams received from it.
    pub packets_in: u64,
    /// Bytes received from it.
    pub bytes_in: u64,
    /// Datagrams sent to it.
    pub packets_out: u64,
    /// Bytes sent to it.
    pub bytes_out: u64,
}

/// Per-remote-address datagram counters of one peer connection.
#[derive(Debug, Default)]
pub struct TrafficLog {
    flows: Mutex<HashMap<SocketAddr, Flow>>,
}

impl TrafficLog {
    fn record_in(&self, from: SocketAddr, bytes: usize, datagrams: u64) {
        let mut flows = self.flows.lock().expect("traffic lock poisoned");
        let flow = flows.entry(from).or_default();
        flow.packets_in += datagrams;
        flow.bytes_in += bytes as u64;
    }

    fn record_out(&self, to: SocketAddr, bytes: usize) {
        let mut flows = self.flows.lock().expect("traffic lock poisoned");
        let flow = flows.entry(to).or_default();
        flow.packets_out += 1;
        flow.bytes_out += bytes as u64;
    }

    /// Every remote address seen so far, with its counters.
    pub fn flows(&self) -> HashMap<SocketAddr, Flow> {
        self.flows.lock().expect("traffic lock poisoned").clone()
    }

    /// The remote address we received the most bytes from: for a connected peer connection,
    /// the address its media comes from.
    pub fn main_peer(&self) -> Option<SocketAddr> {
        self.flows
            .lock()
            .expect("traffic lock poisoned")
            .iter()
            .filter(|(_, f)| f.packets_in > 0)
            .max_by_key(|(_, f)| f.bytes_in)
            .map(|(addr, _)| *addr)
    }
}

/// webrtc-rs's tokio runtime, with UDP sockets that record traffic into a [`TrafficLog`].
pub struct ObservingRuntime {
    inner: TokioRuntime,
    log: Arc<TrafficLog>,
}

impl ObservingRuntime {
    /// A runtime whose sockets record into `log`.
    pub fn new(log: Arc<TrafficLog>) -> Self {
        Self {
            inner: TokioRuntime,
            log,
        }
    }
}

impl fmt::Debug for ObservingRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObservingRuntime").finish_non_exhaustive()
    }
}

impl Runtime for ObservingRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.inner.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        Ok(Arc::new(ObservedUdpSocket {
            inner: self.inner.wrap_udp_socket(socket)?,
            log: Arc::clone(&self.log),
        }))
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.inner.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio (observed)"
    }
}

#[derive(Debug)]
struct ObservedUdpSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    log: Arc<TrafficLog>,
}

impl AsyncUdpSocket for ObservedUdpSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        let result = self.inner.poll_send(cx, transmit);
        if let Poll::Ready(Ok(bytes)) = &result {
            self.log.record_out(transmit.destination, *bytes);
        }
        result
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let result = self.inner.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(n)) = &result {
            for m in &meta[..*n] {
                // With GRO one buffer can hold several same-flow datagrams of `stride` bytes.
                let datagrams = m.len.div_ceil(m.stride.max(1)).max(1) as u64;
                self.log.record_in(m.addr, m.len, datagrams);
            }
        }
        result
    }

    fn max_gso_segments(&self) -> usize {
        self.inner.max_gso_segments()
    }

    fn max_gro_segments(&self) -> usize {
        self.inner.max_gro_segments()
    }
}
