//! Starting the proxy, the flow table, and the dispatcher task that reads the listen socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tracing::debug;

use crate::flow::{
    bind_upstream, ensure_room, inc, Control, Counters, FlowControl, FlowParams, FlowShared,
    FlowTask,
};
use crate::handle::{FlowId, ProxyHandle, ProxyStats};
use crate::impairment::Impairment;
use crate::NetbedError;

/// Bounds and defaults of a proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Most flows at once; datagrams from further clients are dropped (and counted).
    pub max_flows: usize,
    /// A flow with no datagram in either direction for this long is removed.
    pub idle_timeout: Duration,
    /// Per flow and direction: most packets held inside the impairment model, and in the
    /// channel from the dispatcher to the flow.
    pub max_queued_packets: usize,
    /// What new flows start with.
    pub default_impairment: Impairment,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            max_flows: 64,
            idle_timeout: Duration::from_secs(60),
            max_queued_packets: 4096,
            default_impairment: Impairment::none(),
        }
    }
}

/// A running proxy. Dereferences to its [`ProxyHandle`]; dropping it stops the proxy.
pub struct Proxy {
    handle: ProxyHandle,
}

impl Proxy {
    /// Start a proxy listening on `listen` (use `127.0.0.1:0` for a free port) and forwarding
    /// to `upstream`, with the default [`ProxyConfig`].
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> Result<Proxy, NetbedError> {
        Self::start_with(listen, upstream, ProxyConfig::default()).await
    }

    pub async fn start_with(
        listen: SocketAddr,
        upstream: SocketAddr,
        config: ProxyConfig,
    ) -> Result<Proxy, NetbedError> {
        let socket = UdpSocket::bind(listen)
            .await
            .map_err(|source| NetbedError::Bind {
                what: "listen",
                addr: listen,
                source,
            })?;
        Self::start_on_tokio(socket, upstream, config)
    }

    /// Start on a listen socket bound beforehand. This breaks the chicken-and-egg of a server
    /// that must announce the proxy's address while the proxy must know the server's: bind
    /// the proxy's socket, start the server announcing its address, then start the proxy.
    pub async fn start_on(
        listen: std::net::UdpSocket,
        upstream: SocketAddr,
        config: ProxyConfig,
    ) -> Result<Proxy, NetbedError> {
        let addr = listen
            .local_addr()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let bind_error = |source| NetbedError::Bind {
            what: "listen",
            addr,
            source,
        };
        listen.set_nonblocking(true).map_err(bind_error)?;
        let socket = UdpSocket::from_std(listen).map_err(bind_error)?;
        Self::start_on_tokio(socket, upstream, config)
    }

    fn start_on_tokio(
        socket: UdpSocket,
        upstream: SocketAddr,
        mut config: ProxyConfig,
    ) -> Result<Proxy, NetbedError> {
        config.default_impairment.validate()?;
        config.max_flows = config.max_flows.max(1);
        config.max_queued_packets = config.max_queued_packets.max(1);
        let listen_addr = socket.local_addr().map_err(|source| NetbedError::Bind {
            what: "listen",
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        let (created_tx, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            listen_addr,
            upstream,
            listen: Arc::new(socket),
            table: Mutex::new(Table {
                flows: HashMap::new(),
                default_impairment: config.default_impairment,
                stopped: false,
                dispatcher: None,
            }),
            config,
            created_tx,
            flows_created: AtomicU64::new(0),
            refused_packets: AtomicU64::new(0),
            flows_reaped: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        });
        let dispatcher = tokio::spawn(dispatch(Arc::clone(&inner)));
        inner.lock().dispatcher = Some(dispatcher.abort_handle());
        debug!(listen = %listen_addr, upstream = %upstream, "netbed proxy started");
        Ok(Proxy {
            handle: ProxyHandle { inner },
        })
    }

    /// A cloneable control handle (it does not keep the proxy running).
    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }
}

impl Deref for Proxy {
    type Target = ProxyHandle;
    fn deref(&self) -> &ProxyHandle {
        &self.handle
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

struct FlowEntry {
    shared: Arc<FlowShared>,
    packets: mpsc::Sender<Bytes>,
    control: mpsc::Sender<Control>,
    task: AbortHandle,
}

struct Table {
    flows: HashMap<SocketAddr, FlowEntry>,
    default_impairment: Impairment,
    stopped: bool,
    dispatcher: Option<AbortHandle>,
}

/// State shared by the dispatcher, the flow tasks (to remove themselves) and the handles.
/// The table's lock is std's: held only for map operations, never across an await.
pub(crate) struct Inner {
    pub listen_addr: SocketAddr,
    pub upstream: SocketAddr,
    listen: Arc<UdpSocket>,
    config: ProxyConfig,
    table: Mutex<Table>,
    created_tx: watch::Sender<u64>,
    flows_created: AtomicU64,
    refused_packets: AtomicU64,
    flows_reaped: AtomicU64,
    stopped: AtomicBool,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn shared_flows(&self) -> Vec<Arc<FlowShared>> {
        self.lock()
            .flows
            .values()
            .map(|e| Arc::clone(&e.shared))
            .collect()
    }

    pub fn control_of(
        &self,
        pred: impl Fn(&FlowShared) -> bool,
    ) -> Result<Vec<FlowControl>, NetbedError> {
        let table = self.lock();
        if table.stopped {
            return Err(NetbedError::Stopped);
        }
        Ok(table
            .flows
            .values()
            .filter(|e| pred(&e.shared))
            .map(|e| (Arc::clone(&e.shared), e.control.clone()))
            .collect())
    }

    pub fn flows_created(&self) -> u64 {
        self.flows_created.load(Ordering::Relaxed)
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    pub fn created_rx(&self) -> watch::Receiver<u64> {
        self.created_tx.subscribe()
    }

    pub fn default_impairment(&self) -> Impairment {
        self.lock().default_impairment
    }

    pub fn set_default_impairment(&self, impairment: Impairment) {
        self.lock().default_impairment = impairment;
    }

    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            flows_created: self.flows_created(),
            flows_active: self.lock().flows.len(),
            refused_packets: self.refused_packets.load(Ordering::Relaxed),
            flows_reaped: self.flows_reaped.load(Ordering::Relaxed),
        }
    }

    pub fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::Relaxed) {
            return;
        }
        let mut table = self.lock();
        table.stopped = true;
        if let Some(dispatcher) = table.dispatcher.take() {
            dispatcher.abort();
        }
        for (_, entry) in table.flows.drain() {
            entry.task.abort();
        }
        drop(table);
        // Wake anyone waiting for a flow: there will be none.
        self.created_tx.send_replace(u64::MAX);
        debug!(listen = %self.listen_addr, "netbed proxy stopped");
    }

    /// Hand a datagram from `client` to its flow, creating the flow if there is room.
    fn route(self: &Arc<Self>, client: SocketAddr, packet: Bytes) {
        let mut table = self.lock();
        if table.stopped {
            return;
        }
        if !table.flows.contains_key(&client) {
            if table.flows.len() >= self.config.max_flows {
                drop(table);
                self.refuse(client, "flow limit reached");
                return;
            }
            let impairment = table.default_impairment;
            match self.new_flow(client, impairment) {
                Some(entry) => {
                    table.flows.insert(client, entry);
                }
                None => {
                    drop(table);
                    self.refuse(client, "cannot start flow");
                    return;
                }
            }
        }
        let Some(entry) = table.flows.get(&client) else {
            return;
        };
        inc(&entry.shared.uplink.packets_in);
        // Never wait for a flow: a full channel is a drop, counted on that flow only.
        if entry.packets.try_send(packet).is_err() {
            inc(&entry.shared.uplink.dropped_overflow);
        }
    }

    fn refuse(&self, client: SocketAddr, why: &'static str) {
        let n = self.refused_packets.fetch_add(1, Ordering::Relaxed) + 1;
        // Logged at 1, 2, 4, 8, …: a flood of refused datagrams costs a handful of lines.
        if n.is_power_of_two() {
            debug!(%client, refused_packets = n, why, "datagram from a new client refused");
        }
    }

    /// Bind the flow's upstream socket and spawn its task. Called under the table lock
    /// (binding a UDP socket does not block, and spawning does not await).
    fn new_flow(self: &Arc<Self>, client: SocketAddr, impairment: Impairment) -> Option<FlowEntry> {
        let socket = match bind_upstream(self.upstream) {
            Ok(socket) => socket,
            Err(e) => {
                debug!(%client, error = %e, "cannot bind an upstream socket for a new flow");
                return None;
            }
        };
        let upstream_local = socket.local_addr().ok()?;
        let id = FlowId(self.flows_created.load(Ordering::Relaxed) + 1);
        let shared = Arc::new(FlowShared {
            id,
            client,
            created: Instant::now(),
            upstream_local: Mutex::new(upstream_local),
            impairment: Mutex::new(impairment),
            blackholed: AtomicBool::new(false),
            rebinds: Default::default(),
            uplink: Counters::default(),
            downlink: Counters::default(),
        });
        let (packets_tx, packets_rx) = mpsc::channel(self.config.max_queued_packets);
        let (control_tx, control_rx) = mpsc::channel(8);
        let params = FlowParams {
            listen: Arc::clone(&self.listen),
            upstream: self.upstream,
            idle_timeout: self.config.idle_timeout,
            max_queued: self.config.max_queued_packets,
        };
        // The impairment was validated when it was set, so this cannot fail; if it ever did,
        // refuse the flow rather than panic.
        let task =
            FlowTask::new(Arc::clone(&shared), params, socket, packets_rx, control_rx).ok()?;
        self.flows_created.store(id.0, Ordering::Relaxed);
        let inner = Arc::clone(self);
        let flow_shared = Arc::clone(&shared);
        let handle = tokio::spawn(async move {
            let end = task.run().await;
            inner.remove(&flow_shared, end == crate::flow::FlowEnd::Idle);
        });
        debug!(flow = %id, %client, %upstream_local, uplink = %impairment.uplink,
            downlink = %impairment.downlink, "flow created");
        self.created_tx.send_replace(id.0);
        Some(FlowEntry {
            shared,
            packets: packets_tx,
            control: control_tx,
            task: handle.abort_handle(),
        })
    }

    fn remove(&self, shared: &FlowShared, idle: bool) {
        let mut table = self.lock();
        // Only if the entry is still this flow (the address may have a newer flow by now).
        if table
            .flows
            .get(&shared.client)
            .is_some_and(|e| e.shared.id == shared.id)
        {
            table.flows.remove(&shared.client);
        }
        drop(table);
        if idle {
            self.flows_reaped.fetch_add(1, Ordering::Relaxed);
        }
        debug!(flow = %shared.id, client = %shared.client, idle,
            uplink = ?shared.uplink.snapshot(), downlink = ?shared.downlink.snapshot(),
            "flow ended");
    }
}

/// Read the listen socket for ever (until aborted), one datagram at a time.
async fn dispatch(inner: Arc<Inner>) {
    let listen = Arc::clone(&inner.listen);
    let mut buf = BytesMut::new();
    let mut errors = 0u64;
    loop {
        ensure_room(&mut buf);
        match listen.recv_buf_from(&mut buf).await {
            Ok((_, client)) => {
                let packet = buf.split().freeze();
                inner.route(client, packet);
            }
            Err(e) => {
                // Unconnected UDP reports little (at most an ICMP error on some systems);
                // keep serving, without spinning if an error were to persist.
                // Logged at the 1st, 2nd, 4th, … error only.
                errors += 1;
                if errors.is_power_of_two() {
                    debug!(listen = %inner.listen_addr, error = %e, errors,
                        "listen socket receive error");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}
