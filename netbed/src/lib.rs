//! # netbed: a network test bed for loopback
//!
//! A user-space UDP proxy that sits between WebRTC clients and the SFU's media port and makes
//! the path between them behave like a real network: loss (seeded random or Gilbert-Elliott
//! bursty), delay with jitter, reordering, duplication, a rate-limited bottleneck with a
//! queue, a black hole, and a NAT rebinding. No root and no `tc netem`: it works on
//! `127.0.0.1`, so tests and people can use it anywhere.
//!
//! ## The model
//!
//! ```text
//!  client A ──┐                      ┌── upstream socket A (127.0.0.1:a) ──┐
//!  client B ──┼──> listen socket ────┼── upstream socket B (127.0.0.1:b) ──┼──> server
//!  client C ──┘   (one address)      └── upstream socket C (127.0.0.1:c) ──┘
//! ```
//!
//! * Clients send to the proxy's one **listen** address. Each distinct client source address
//!   is a **flow**, created on its first datagram.
//! * Each flow has its own **upstream socket** on an ephemeral port, connected to the server,
//!   so the server sees one distinct client address per flow, as it would across real NATs.
//!   Whatever the server sends to that socket goes back to that client, from the listen
//!   socket.
//! * Each flow has two [`str0m_netem::Netem`] instances, **uplink** (client → server) and
//!   **downlink** (server → client), configured by an [`Impairment`]. str0m-netem is
//!   sans-I/O: we hand it each packet with its arrival time and send what it hands back when
//!   it says so; the models (which packet is lost, how long it waits) are entirely its own.
//! * New flows get the proxy's **default impairment**; every flow's impairment can be changed
//!   at run time. A **black hole** drops both directions of a flow (also what is already
//!   queued) until it is restored. A **rebind** gives a flow a new upstream socket: the server
//!   sees the same client come from a new port (a network switch or a NAT rebinding), while
//!   the client keeps talking to the same proxy address.
//!
//! ## Tasks, and why
//!
//! One **dispatcher** task reads the listen socket and hands each datagram to its flow through
//! a bounded channel; one **task per flow** owns that flow's upstream socket and its two Netem
//! instances and `select!`s over: the next uplink datagram, the next downlink datagram (its
//! upstream socket), the two Netem timers (`Output::Timeout` → `sleep_until`), control
//! commands, and its idle timer. One task per flow keeps every Netem single-owner (no locks
//! around the models), lets a flow swap its socket on rebind without coordinating with anyone,
//! and a slow or full flow cannot hold up the others: the dispatcher never awaits a flow (a
//! full channel drops the datagram and counts it). A single select loop over all flows would
//! need a dynamic set of sockets and timers (`FuturesUnordered` or similar) for no gain at the
//! tens of flows a test bed carries.
//!
//! ## Limits (everything is bounded)
//!
//! [`ProxyConfig`]: at most `max_flows` flows (datagrams from further clients are dropped and
//! counted in [`ProxyStats::refused_packets`], existing flows are not affected); at most
//! `max_queued_packets` per flow and direction inside Netem and in the channel to a flow
//! (beyond: dropped, counted as overflow); a flow without traffic for `idle_timeout` is
//! reaped. Receive buffers are reused (`BytesMut` blocks split into `Bytes`), so a packet costs
//! no allocation of its own. Nothing panics on input: bad settings are [`ImpairmentError`]s,
//! socket errors are counted and logged at debug level (per flow event, never per packet).
//!
//! ## Using it from a test
//!
//! ```no_run
//! # async fn demo(server: std::net::SocketAddr) -> Result<(), netbed::NetbedError> {
//! use netbed::{Impairment, LinkImpairment, Proxy, Target};
//! use std::time::Duration;
//!
//! let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), server).await?;
//! // Point the client at proxy.listen_addr() instead of the server (for WebRTC: make the
//! // server announce it, `--announce-media-addr`), then:
//! let flow = proxy.wait_for_flow(1, Duration::from_secs(5)).await?;
//! proxy
//!     .set_impairment(
//!         flow.id,
//!         Impairment::uplink(LinkImpairment::none().random_loss(0.05).seed(7)),
//!     )
//!     .await?;
//! proxy.blackhole(flow.id)?; // the path is gone
//! proxy.restore(flow.id)?; // and back
//! let new_port = proxy.rebind(flow.id).await?; // the server now sees the client here
//! # let _ = (new_port, Target::All);
//! # Ok(())
//! # }
//! ```

mod flow;
mod handle;
pub mod impairment;
mod proxy;

pub use handle::{DirStats, FlowId, FlowInfo, ProxyHandle, ProxyStats, Target};
pub use impairment::{Impairment, ImpairmentError, LinkImpairment, Loss, Rate};
pub use proxy::{Proxy, ProxyConfig};

use std::net::SocketAddr;
use std::time::Duration;

/// What can go wrong driving the proxy.
#[derive(Debug, thiserror::Error)]
pub enum NetbedError {
    #[error("cannot bind the {what} socket on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Impairment(#[from] ImpairmentError),
    #[error("no flow {0}")]
    NoSuchFlow(String),
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { after: Duration, what: String },
    #[error("the proxy has stopped")]
    Stopped,
}
