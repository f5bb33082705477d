//! What the netbed tests share: an echo server behind the proxy, client sockets, round trips.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

pub const WAIT: Duration = Duration::from_secs(5);
/// How long without a reply counts as "nothing more is coming" (no upper-bound timing assert
/// depends on it; it only ends a wait).
pub const QUIET: Duration = Duration::from_millis(300);

/// An echo server that remembers every source address it has seen, in order.
pub struct Echo {
    pub addr: SocketAddr,
    sources: Arc<Mutex<Vec<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Echo {
    pub async fn start() -> Echo {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// An echo server on this address (e.g. where a stopped one was).
    pub async fn start_on(addr: SocketAddr) -> Echo {
        let socket = UdpSocket::bind(addr).await.unwrap();
        let addr = socket.local_addr().unwrap();
        let sources = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&sources);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                {
                    let mut seen = seen.lock().unwrap();
                    if seen.last() != Some(&from) {
                        seen.push(from);
                    }
                }
                let _ = socket.send_to(&buf[..n], from).await;
            }
        });
        Echo {
            addr,
            sources,
            task,
        }
    }

    /// Stop serving and close the socket (the server is gone).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    pub fn distinct_sources(&self) -> HashSet<SocketAddr> {
        self.sources.lock().unwrap().iter().copied().collect()
    }

    pub fn last_source(&self) -> Option<SocketAddr> {
        self.sources.lock().unwrap().last().copied()
    }
}

pub async fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Send `count` numbered datagrams to `to` in batches, collecting the echoes of each batch
/// before the next (so no socket buffer overflows muddle the figures). Returns how many
/// distinct numbers came back.
pub async fn send_and_count(socket: &UdpSocket, to: SocketAddr, count: u32, batch: u32) -> usize {
    send_and_collect(socket, to, count, batch).await.len()
}

/// As [`send_and_count`], returning which numbers came back.
pub async fn send_and_collect(
    socket: &UdpSocket,
    to: SocketAddr,
    count: u32,
    batch: u32,
) -> HashSet<u32> {
    let mut got = HashSet::new();
    let mut buf = [0u8; 64];
    let mut next = 0;
    while next < count {
        let end = (next + batch).min(count);
        for seq in next..end {
            socket.send_to(&seq.to_be_bytes(), to).await.unwrap();
        }
        let batch_start = got.len();
        while got.len() - batch_start < (end - next) as usize {
            match tokio::time::timeout(QUIET, socket.recv_from(&mut buf)).await {
                Ok(Ok((4, _))) => {
                    got.insert(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
                }
                Ok(_) => panic!("unexpected datagram"),
                Err(_) => break,
            }
        }
        next = end;
    }
    got
}

/// One round trip: send one datagram and wait for its echo (None: nothing within QUIET).
pub async fn round_trip(socket: &UdpSocket, to: SocketAddr, payload: &[u8]) -> Option<Duration> {
    let started = Instant::now();
    socket.send_to(payload, to).await.unwrap();
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(QUIET, socket.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) if &buf[..n] == payload => return Some(started.elapsed()),
            Ok(Ok(_)) => continue, // a late echo of an earlier datagram
            Ok(Err(e)) => panic!("receive failed: {e}"),
            Err(_) => return None,
        }
    }
}
