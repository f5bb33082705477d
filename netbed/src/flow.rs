//! One flow: the task that owns a client's upstream socket and its two Netem instances.
//!
//! See the crate docs for the model. Everything a handle may read (counters, current
//! upstream address, impairment, black hole) lives in [`FlowShared`]; everything that must
//! be changed by the task itself (the Netem instances, the socket) is changed through a
//! [`Control`] command, answered once it is in effect.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use str0m_netem::{Input, Netem, Output};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::sleep_until;
use tracing::debug;

use crate::handle::{DirStats, FlowId};
use crate::impairment::{Impairment, ImpairmentError, LinkImpairment};

/// Largest UDP payload; every receive has at least this much room so nothing is truncated.
const MAX_DATAGRAM: usize = 65_536;
/// Receive buffers are allocated in blocks of this size and split into one `Bytes` per
/// datagram: one allocation per block, not per packet. A block is freed when its last packet
/// has been sent or dropped.
const BUFFER_BLOCK: usize = 256 * 1024;

/// Make room for one more datagram in a receive buffer (reuses the block while it lasts).
pub(crate) fn ensure_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < MAX_DATAGRAM {
        buf.reserve(BUFFER_BLOCK);
    }
}

/// Per-direction counters, written by the dispatcher and the flow task, read by handles.
#[derive(Default)]
pub(crate) struct Counters {
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub dropped_impairment: AtomicU64,
    pub dropped_blackhole: AtomicU64,
    pub dropped_overflow: AtomicU64,
    pub duplicated: AtomicU64,
}

pub(crate) fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub fn snapshot(&self) -> DirStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DirStats {
            packets_in: get(&self.packets_in),
            packets_out: get(&self.packets_out),
            dropped_impairment: get(&self.dropped_impairment),
            dropped_blackhole: get(&self.dropped_blackhole),
            dropped_overflow: get(&self.dropped_overflow),
            duplicated: get(&self.duplicated),
        }
    }
}

/// A flow as commands reach it: what handles see, and where its task listens.
pub(crate) type FlowControl = (Arc<FlowShared>, mpsc::Sender<Control>);

/// What handles can see of a flow.
pub(crate) struct FlowShared {
    pub id: FlowId,
    pub client: SocketAddr,
    pub created: Instant,
    pub upstream_local: Mutex<SocketAddr>,
    pub impairment: Mutex<Impairment>,
    pub blackholed: AtomicBool,
    pub rebinds: AtomicU32,
    pub uplink: Counters,
    pub downlink: Counters,
}

impl FlowShared {
    pub fn upstream_local(&self) -> SocketAddr {
        *self
            .upstream_local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn impairment(&self) -> Impairment {
        *self
            .impairment
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Commands a flow task carries out; the reply says it is in effect.
pub(crate) enum Control {
    // Boxed: a rare command, and it keeps the channel's slots small.
    SetImpairment(
        Box<Impairment>,
        oneshot::Sender<Result<(), ImpairmentError>>,
    ),
    Rebind(oneshot::Sender<io::Result<SocketAddr>>),
}

/// Bind a fresh upstream socket and connect it to the server: the kernel then delivers only
/// the server's datagrams to it. On loopback it binds loopback, so nothing leaves the host.
pub(crate) fn bind_upstream(upstream: SocketAddr) -> io::Result<UdpSocket> {
    let ip: IpAddr = match (upstream.is_ipv4(), upstream.ip().is_loopback()) {
        (true, true) => Ipv4Addr::LOCALHOST.into(),
        (true, false) => Ipv4Addr::UNSPECIFIED.into(),
        (false, true) => Ipv6Addr::LOCALHOST.into(),
        (false, false) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
    socket.connect(upstream)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// Seeds differ per flow and direction (splitmix64 of seed, flow id, direction), so flows
/// with the same setting do not lose the same packets in lockstep; a run stays reproducible.
fn mix_seed(seed: u64, flow: FlowId, direction: u64) -> u64 {
    let mut z = seed ^ flow.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (direction << 63);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One direction: its model and when the model next wants the time.
struct Direction {
    netem: Netem<Bytes>,
    deadline: Option<Instant>,
    index: u64,
}

impl Direction {
    fn new(link: &LinkImpairment, flow: FlowId, index: u64) -> Result<Self, ImpairmentError> {
        Ok(Self {
            netem: Netem::new(link.netem_with_seed(mix_seed(link.seed, flow, index))?),
            deadline: None,
            index,
        })
    }

    fn configure(&mut self, link: &LinkImpairment, flow: FlowId) -> Result<(), ImpairmentError> {
        let config = link.netem_with_seed(mix_seed(link.seed, flow, self.index))?;
        self.netem.set_config(config);
        Ok(())
    }

    /// Hand one arriving packet to the model; account for what it decided.
    fn feed(&mut self, counters: &Counters, max_queued: usize, now: Instant, packet: Bytes) {
        let before = self.netem.queue_len();
        if before >= max_queued {
            inc(&counters.dropped_overflow);
            return;
        }
        self.netem.handle_input(Input::Packet(now, packet));
        // Netem does not report its decisions; its queue does: nothing queued = lost (loss
        // model or a full link buffer), two = duplicated.
        match self.netem.queue_len().saturating_sub(before) {
            0 => inc(&counters.dropped_impairment),
            1 => {}
            _ => inc(&counters.duplicated),
        }
    }

    /// Collect everything the model releases now into `outbox`; remember when it next wants
    /// the time. Bounded: each `Packet` pops one queued packet, and a `Timeout` comes at most
    /// once before `poll_output` returns `None`.
    fn drain(&mut self, counters: &Counters, blackholed: bool, outbox: &mut Vec<Bytes>) {
        while let Some(output) = self.netem.poll_output() {
            match output {
                Output::Timeout(at) => self.deadline = Some(at),
                Output::Packet(packet) if blackholed => {
                    drop(packet);
                    inc(&counters.dropped_blackhole);
                }
                Output::Packet(packet) => outbox.push(packet),
            }
        }
        if self.netem.is_empty() {
            self.deadline = None;
        }
    }

    fn on_timeout(&mut self, now: Instant) {
        self.deadline = None;
        self.netem.handle_input(Input::Timeout(now));
    }
}

/// What the flow task needs to know about its proxy.
pub(crate) struct FlowParams {
    pub listen: Arc<UdpSocket>,
    pub upstream: SocketAddr,
    pub idle_timeout: Duration,
    pub max_queued: usize,
}

/// Why a flow task ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FlowEnd {
    Idle,
    ProxyGone,
}

pub(crate) struct FlowTask {
    shared: Arc<FlowShared>,
    params: FlowParams,
    socket: UdpSocket,
    packets: mpsc::Receiver<Bytes>,
    control: mpsc::Receiver<Control>,
    up: Direction,
    down: Direction,
    buf: BytesMut,
    /// Packets released by a model, about to be sent (reused: no allocation per packet).
    outbox: Vec<Bytes>,
    last_activity: Instant,
    recv_errors: u64,
}

impl FlowTask {
    pub fn new(
        shared: Arc<FlowShared>,
        params: FlowParams,
        socket: UdpSocket,
        packets: mpsc::Receiver<Bytes>,
        control: mpsc::Receiver<Control>,
    ) -> Result<Self, ImpairmentError> {
        let impairment = shared.impairment();
        let up = Direction::new(&impairment.uplink, shared.id, 0)?;
        let down = Direction::new(&impairment.downlink, shared.id, 1)?;
        Ok(Self {
            shared,
            params,
            socket,
            packets,
            control,
            up,
            down,
            buf: BytesMut::new(),
            outbox: Vec::with_capacity(64),
            last_activity: Instant::now(),
            recv_errors: 0,
        })
    }

    /// Run until idle for `idle_timeout` or until the proxy drops its side.
    pub async fn run(mut self) -> FlowEnd {
        let shared = Arc::clone(&self.shared);
        loop {
            ensure_room(&mut self.buf);
            let idle_at = self.last_activity + self.params.idle_timeout;
            let up_at = self.up.deadline;
            let down_at = self.down.deadline;
            tokio::select! {
                command = self.control.recv() => match command {
                    Some(command) => self.on_control(command),
                    None => return FlowEnd::ProxyGone,
                },
                packet = self.packets.recv() => match packet {
                    Some(packet) => self.on_uplink(packet).await,
                    None => return FlowEnd::ProxyGone,
                },
                received = self.socket.recv_buf(&mut self.buf) => match received {
                    Ok(_) => {
                        let packet = self.buf.split().freeze();
                        self.on_downlink(packet).await;
                    }
                    // An ICMP "port unreachable" from the server side surfaces here on a
                    // connected socket (one per datagram while the server is down): not
                    // fatal, the next datagram may arrive fine. Logged at the 1st, 2nd, 4th,
                    // 8th, … error so a dead server costs a handful of lines, not one per packet.
                    Err(e) => {
                        self.recv_errors += 1;
                        if self.recv_errors.is_power_of_two() {
                            debug!(flow = %shared.id, client = %shared.client, error = %e,
                                errors = self.recv_errors, "upstream receive error");
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                },
                _ = sleep_until(up_at.unwrap_or(idle_at).into()), if up_at.is_some() => {
                    self.up.on_timeout(Instant::now());
                    self.drain_up().await;
                }
                _ = sleep_until(down_at.unwrap_or(idle_at).into()), if down_at.is_some() => {
                    self.down.on_timeout(Instant::now());
                    self.drain_down().await;
                }
                _ = sleep_until(idle_at.into()) => {
                    if self.last_activity.elapsed() >= self.params.idle_timeout {
                        return FlowEnd::Idle;
                    }
                }
            }
        }
    }

    fn blackholed(&self) -> bool {
        self.shared.blackholed.load(Ordering::Relaxed)
    }

    async fn on_uplink(&mut self, packet: Bytes) {
        // packets_in was counted by the dispatcher.
        let now = Instant::now();
        self.last_activity = now;
        if self.blackholed() {
            inc(&self.shared.uplink.dropped_blackhole);
            return;
        }
        self.up
            .feed(&self.shared.uplink, self.params.max_queued, now, packet);
        self.drain_up().await;
    }

    async fn on_downlink(&mut self, packet: Bytes) {
        let now = Instant::now();
        self.last_activity = now;
        inc(&self.shared.downlink.packets_in);
        if self.blackholed() {
            inc(&self.shared.downlink.dropped_blackhole);
            return;
        }
        self.down
            .feed(&self.shared.downlink, self.params.max_queued, now, packet);
        self.drain_down().await;
    }

    // Sends await the socket (not `try_send`): a socket tokio has not yet seen writable would
    // refuse a `try_send`, and on loopback the wait is nil. A send error is a counted drop.
    async fn drain_up(&mut self) {
        let blackholed = self.blackholed();
        self.up
            .drain(&self.shared.uplink, blackholed, &mut self.outbox);
        for packet in self.outbox.drain(..) {
            match self.socket.send(&packet).await {
                Ok(_) => inc(&self.shared.uplink.packets_out),
                Err(_) => inc(&self.shared.uplink.dropped_overflow),
            }
        }
    }

    async fn drain_down(&mut self) {
        let blackholed = self.blackholed();
        self.down
            .drain(&self.shared.downlink, blackholed, &mut self.outbox);
        let client = self.shared.client;
        for packet in self.outbox.drain(..) {
            match self.params.listen.send_to(&packet, client).await {
                Ok(_) => inc(&self.shared.downlink.packets_out),
                Err(_) => inc(&self.shared.downlink.dropped_overflow),
            }
        }
    }

    fn on_control(&mut self, command: Control) {
        let shared = Arc::clone(&self.shared);
        match command {
            Control::SetImpairment(impairment, reply) => {
                let impairment = *impairment;
                let result = self
                    .up
                    .configure(&impairment.uplink, shared.id)
                    .and_then(|()| self.down.configure(&impairment.downlink, shared.id));
                if result.is_ok() {
                    *shared
                        .impairment
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = impairment;
                    debug!(flow = %shared.id, client = %shared.client,
                        uplink = %impairment.uplink, downlink = %impairment.downlink,
                        "flow impairment set");
                }
                // Packets the old setting had queued keep their schedule; the new one applies
                // from the next packet on (str0m-netem's set_config keeps the queue).
                let _ = reply.send(result);
            }
            Control::Rebind(reply) => {
                let result = bind_upstream(self.params.upstream).and_then(|socket| {
                    let local = socket.local_addr()?;
                    let old = std::mem::replace(&mut self.socket, socket);
                    let old = old.local_addr().ok();
                    *shared
                        .upstream_local
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = local;
                    shared.rebinds.fetch_add(1, Ordering::Relaxed);
                    debug!(flow = %shared.id, client = %shared.client, old = ?old,
                        new = %local, "flow rebound to a new upstream socket");
                    Ok(local)
                });
                if let Err(e) = &result {
                    debug!(flow = %shared.id, error = %e, "flow rebind failed");
                }
                let _ = reply.send(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_per_flow_and_direction() {
        let a = mix_seed(7, FlowId(1), 0);
        assert_ne!(a, mix_seed(7, FlowId(1), 1));
        assert_ne!(a, mix_seed(7, FlowId(2), 0));
        assert_eq!(a, mix_seed(7, FlowId(1), 0));
    }
}
