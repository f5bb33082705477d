//! The run-time control surface: a cloneable [`ProxyHandle`] to list flows, find them, wait
//! for them, change their impairment, black-hole, restore and rebind them.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::debug;

use crate::flow::{Control, FlowControl, FlowShared};
use crate::impairment::Impairment;
use crate::proxy::Inner;
use crate::NetbedError;

/// How long a control command may wait for a flow task to carry it out.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

/// A flow's number: 1 for the first client the proxy saw, 2 for the second, … (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u64);

impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which flows a command applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Flow(FlowId),
    /// The flow of this client source address.
    Client(SocketAddr),
    /// Every flow from this client IP. Tests can bind each simulated person's sockets on
    /// their own loopback IP (127.0.0.2, 127.0.0.3, …: all of 127/8 is local) and then act on
    /// "everything of that person" without knowing their ports.
    ClientIp(IpAddr),
    All,
}

impl From<FlowId> for Target {
    fn from(id: FlowId) -> Self {
        Target::Flow(id)
    }
}

impl From<&FlowInfo> for Target {
    fn from(flow: &FlowInfo) -> Self {
        Target::Flow(flow.id)
    }
}

/// Packet counters of one direction of one flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Datagrams that arrived at the proxy in this direction.
    pub packets_in: u64,
    /// Datagrams sent on (duplicates included).
    pub packets_out: u64,
    /// Dropped by the impairment model (loss, or a full rate-limited link buffer).
    pub dropped_impairment: u64,
    /// Dropped because the flow was black-holed.
    pub dropped_blackhole: u64,
    /// Dropped by the proxy's own bounds (queue full, send failed).
    pub dropped_overflow: u64,
    /// Extra copies made by the duplication model.
    pub duplicated: u64,
}

impl DirStats {
    /// All drops, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_impairment + self.dropped_blackhole + self.dropped_overflow
    }
}

/// A snapshot of one flow.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowInfo {
    pub id: FlowId,
    /// The client's source address (as the proxy sees it).
    pub client: SocketAddr,
    /// The flow's current upstream socket: the client's address as the server sees it.
    pub upstream_local: SocketAddr,
    pub blackholed: bool,
    pub rebinds: u32,
    pub impairment: Impairment,
    /// Client → server.
    pub uplink: DirStats,
    /// Server → client.
    pub downlink: DirStats,
    pub age: Duration,
}

impl FlowInfo {
    pub(crate) fn of(shared: &FlowShared) -> Self {
        Self {
            id: shared.id,
            client: shared.client,
            upstream_local: shared.upstream_local(),
            blackholed: shared.blackholed.load(Ordering::Relaxed),
            rebinds: shared.rebinds.load(Ordering::Relaxed),
            impairment: shared.impairment(),
            uplink: shared.uplink.snapshot(),
            downlink: shared.downlink.snapshot(),
            age: shared.created.elapsed(),
        }
    }
}

/// Proxy-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    pub flows_created: u64,
    pub flows_active: usize,
    /// Datagrams from new clients dropped because `max_flows` flows exist (or the upstream
    /// socket for a new flow could not be bound).
    pub refused_packets: u64,
    pub flows_reaped: u64,
}

/// Cloneable control of a running proxy. All methods are cheap; none holds a lock across an
/// await.
#[derive(Clone)]
pub struct ProxyHandle {
    pub(crate) inner: Arc<Inner>,
}

impl ProxyHandle {
    /// Where clients send (the proxy's listen socket).
    pub fn listen_addr(&self) -> SocketAddr {
        self.inner.listen_addr
    }

    /// The server the proxy forwards to.
    pub fn upstream_addr(&self) -> SocketAddr {
        self.inner.upstream
    }

    /// Every live flow, oldest first.
    pub fn flows(&self) -> Vec<FlowInfo> {
        let mut flows: Vec<FlowInfo> = self
            .inner
            .shared_flows()
            .iter()
            .map(|f| FlowInfo::of(f))
            .collect();
        flows.sort_by_key(|f| f.id);
        flows
    }

    pub fn stats(&self) -> ProxyStats {
        self.inner.stats()
    }

    /// The flow with this id.
    pub fn flow(&self, id: FlowId) -> Result<FlowInfo, NetbedError> {
        self.find(|f| f.id == id)
            .ok_or_else(|| NetbedError::NoSuchFlow(format!("#{id}")))
    }

    /// The flow of this client source address.
    pub fn flow_by_client(&self, client: SocketAddr) -> Result<FlowInfo, NetbedError> {
        self.find(|f| f.client == client)
            .ok_or_else(|| NetbedError::NoSuchFlow(format!("from client {client}")))
    }

    /// Every flow from this client IP, oldest first (see [`Target::ClientIp`]).
    pub fn flows_from_ip(&self, ip: IpAddr) -> Vec<FlowInfo> {
        let mut flows = self.flows();
        flows.retain(|f| f.client.ip() == ip);
        flows
    }

    /// The flow whose upstream socket is `addr`: "which client is the server's peer at addr?"
    pub fn flow_by_upstream_local(&self, addr: SocketAddr) -> Result<FlowInfo, NetbedError> {
        self.find(|f| f.upstream_local() == addr)
            .ok_or_else(|| NetbedError::NoSuchFlow(format!("with upstream address {addr}")))
    }

    fn find(&self, pred: impl Fn(&FlowShared) -> bool) -> Option<FlowInfo> {
        self.inner
            .shared_flows()
            .iter()
            .find(|f| pred(f))
            .map(|f| FlowInfo::of(f))
    }

    /// Wait until the `n`th flow this proxy ever created (1-based: [`FlowId`]`(n)`) exists.
    /// Fails if it was already reaped, or on timeout.
    pub async fn wait_for_flow(&self, n: u64, timeout: Duration) -> Result<FlowInfo, NetbedError> {
        self.wait_until(timeout, &format!("flow #{n}"), |h| {
            if h.inner.flows_created() >= n {
                Some(h.flow(FlowId(n)))
            } else {
                None
            }
        })
        .await
    }

    /// Wait until the flow of this client source address exists.
    pub async fn wait_for_client(
        &self,
        client: SocketAddr,
        timeout: Duration,
    ) -> Result<FlowInfo, NetbedError> {
        self.wait_until(timeout, &format!("a flow from {client}"), |h| {
            h.flow_by_client(client).ok().map(Ok)
        })
        .await
    }

    async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        check: impl Fn(&Self) -> Option<Result<FlowInfo, NetbedError>>,
    ) -> Result<FlowInfo, NetbedError> {
        let mut created = self.inner.created_rx();
        let wait = async {
            loop {
                if let Some(result) = check(self) {
                    return result;
                }
                if self.inner.is_stopped() {
                    return Err(NetbedError::Stopped);
                }
                if created.changed().await.is_err() {
                    return Err(NetbedError::Stopped);
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| NetbedError::Timeout {
                after: timeout,
                what: what.to_owned(),
            })?
    }

    /// The impairment new flows start with.
    pub fn default_impairment(&self) -> Impairment {
        self.inner.default_impairment()
    }

    /// Set the impairment new flows start with (existing flows keep theirs).
    pub fn set_default_impairment(&self, impairment: Impairment) -> Result<(), NetbedError> {
        impairment.validate()?;
        self.inner.set_default_impairment(impairment);
        debug!(uplink = %impairment.uplink, downlink = %impairment.downlink,
            "default impairment set");
        Ok(())
    }

    /// Change the impairment of existing flows; returns how many. In effect for every packet
    /// arriving after this returns. `Target::All` does not change the default for new flows.
    pub async fn set_impairment(
        &self,
        target: impl Into<Target>,
        impairment: Impairment,
    ) -> Result<usize, NetbedError> {
        impairment.validate()?;
        let flows = self.select(target.into())?;
        for (shared, control) in &flows {
            let (tx, rx) = oneshot::channel();
            self.command(
                shared,
                control,
                Control::SetImpairment(Box::new(impairment), tx),
                rx,
            )
            .await??;
        }
        Ok(flows.len())
    }

    /// Drop everything in both directions of the target flows (including what their links
    /// still hold) until [`restore`](Self::restore). Returns how many flows.
    pub fn blackhole(&self, target: impl Into<Target>) -> Result<usize, NetbedError> {
        self.set_blackhole(target.into(), true)
    }

    /// Undo [`blackhole`](Self::blackhole).
    pub fn restore(&self, target: impl Into<Target>) -> Result<usize, NetbedError> {
        self.set_blackhole(target.into(), false)
    }

    fn set_blackhole(&self, target: Target, on: bool) -> Result<usize, NetbedError> {
        let flows = self.select(target)?;
        for (shared, _) in &flows {
            if shared.blackholed.swap(on, Ordering::Relaxed) != on {
                debug!(flow = %shared.id, client = %shared.client, blackholed = on,
                    "flow black hole changed");
            }
        }
        Ok(flows.len())
    }

    /// Give a flow a new upstream socket: from now on the server sees this client at the
    /// returned address (a new source port), and the old one goes silent; the client keeps
    /// sending to the same proxy address and gets the server's replies to the new socket.
    pub async fn rebind(&self, flow: impl Into<Target>) -> Result<SocketAddr, NetbedError> {
        let flows = self.select(flow.into())?;
        let [(shared, control)] = flows.as_slice() else {
            return Err(NetbedError::NoSuchFlow(
                "to rebind: name exactly one flow".to_owned(),
            ));
        };
        let (tx, rx) = oneshot::channel();
        self.command(shared, control, Control::Rebind(tx), rx)
            .await?
            .map_err(|source| NetbedError::Bind {
                what: "rebound upstream",
                addr: self.inner.upstream,
                source,
            })
    }

    fn select(&self, target: Target) -> Result<Vec<FlowControl>, NetbedError> {
        let flows = self.inner.control_of(|f| match target {
            Target::Flow(id) => f.id == id,
            Target::Client(addr) => f.client == addr,
            Target::ClientIp(ip) => f.client.ip() == ip,
            Target::All => true,
        })?;
        match (target, flows.is_empty()) {
            (Target::Flow(id), true) => Err(NetbedError::NoSuchFlow(format!("#{id}"))),
            (Target::Client(addr), true) => {
                Err(NetbedError::NoSuchFlow(format!("from client {addr}")))
            }
            (Target::ClientIp(ip), true) => Err(NetbedError::NoSuchFlow(format!("from {ip}"))),
            _ => Ok(flows),
        }
    }

    async fn command<T>(
        &self,
        shared: &FlowShared,
        control: &tokio::sync::mpsc::Sender<Control>,
        command: Control,
        reply: oneshot::Receiver<T>,
    ) -> Result<T, NetbedError> {
        let gone = || NetbedError::NoSuchFlow(format!("#{} (it ended)", shared.id));
        let exchange = async {
            control.send(command).await.map_err(|_| gone())?;
            reply.await.map_err(|_| gone())
        };
        tokio::time::timeout(CONTROL_TIMEOUT, exchange)
            .await
            .map_err(|_| NetbedError::Timeout {
                after: CONTROL_TIMEOUT,
                what: format!("flow #{} to carry out a command", shared.id),
            })?
    }

    /// Stop the proxy: every flow task and the dispatcher end, sockets close.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}
