//! The load run: rooms of publishers and subscribers joined at a given rate, a steady
//! measurement window, and a [`Report`] (per track, aggregate, and the server process's own
//! CPU time and memory when its pid is known).
//!
//! ## Phases
//! 1. **Ramp**: every member joins through a shared pacer (`ramp` joins per second), rooms in
//!    parallel; the progress line runs from here on. On the SFU and Janus a join is entering
//!    the room; through signaling it is signing in, and once a room's members are online its
//!    call is placed and accepted at once (`call`).
//! 2. **Warm-up** (`warmup`): not measured; lets the last subscribers get their first keyframe.
//! 3. **Window** (`duration`): receive counters, the latency histogram and the server's
//!    utime+stime are snapshotted at both ends; rates, percentiles and CPU per forwarded packet
//!    come from the difference.
//! 4. **Leave**: everyone leaves; failures seen up to here are in the report.
//!
//! Latency is publisher send → subscriber receive, both clocks being this process's wall
//! clock. Forwarded packets are counted at the subscribers, so the figure is the same for any
//! server (Switchboard or Janus).
//!
//! ## Layout
//! This file has the configuration, the members on each target and the phases; `call` makes a
//! room one group call through signaling; `report` turns the counters into the [`Report`];
//! `churn` is the join/leave run ([`churn()`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use webrtc::peer_connection::RTCPeerConnectionState;

use crate::host::{HostEvent, RoomServer};
use crate::janus::JanusMember;
use crate::media::{self, ReceiveStats, SendStats};
use crate::peer::{PeerConfig, PeerEvent, Publisher, Subscriber};
use crate::procstat::ProcSample;
use crate::Participant;

mod call;
mod churn;
mod idle;
mod report;

pub use churn::{churn, ChurnReport, ProcReport};
pub use idle::{idle_users, IdleReport};
use report::{build_report, totals};
pub use report::{KindSummary, Report, ServerReport, TrackReport};

/// Which server, and how to reach it.
#[derive(Clone)]
pub enum Target {
    /// Switchboard's SFU driven through its room API (in process or an `sfu-host` process):
    /// rooms of any shape.
    Sfu(Arc<dyn RoomServer>),
    /// A Switchboard server through its real signaling (HTTP sign-in, Socket.IO): every room is
    /// one group call of its publishers and subscribers, so no larger than the server's
    /// `--max-participants-per-call` (16 by default).
    Switchboard {
        /// Base URL, e.g. `http://127.0.0.1:8080`.
        url: String,
    },
    /// Janus's VideoRoom plugin through Janus's HTTP API.
    Janus {
        /// Janus HTTP API base, e.g. `http://127.0.0.1:8088/janus`.
        url: String,
    },
}

/// What to run.
#[derive(Clone)]
pub struct RunConfig {
    /// The server.
    pub target: Target,
    /// Rooms.
    pub rooms: usize,
    /// Publishers per room (they also subscribe to each other).
    pub publishers: usize,
    /// Receive-only members per room (through signaling: participants with
    /// [`ParticipantConfig::publish`](crate::ParticipantConfig::publish) off).
    pub subscribers: usize,
    /// Publish Opus only.
    pub audio_only: bool,
    /// Joins per second, over all rooms.
    pub ramp: f64,
    /// Unmeasured time between the last join and the window.
    pub warmup: Duration,
    /// The measurement window.
    pub duration: Duration,
    /// Peer connection settings.
    pub peer: PeerConfig,
    /// Print a progress line to stderr every second.
    pub progress: bool,
    /// The server's pid, for CPU and memory from `/proc` (the target's own pid if it has one).
    pub server_pid: Option<u32>,
}

/// Failures seen during a run.
#[derive(Default)]
pub struct Failures {
    // std Mutex: push/copy only.
    list: Mutex<Vec<String>>,
    /// Set once everyone is leaving: connection state changes are expected from then on.
    leaving: AtomicBool,
}

impl Failures {
    /// Records a failure (ignored once the run is leaving).
    pub fn push(&self, failure: String) {
        if !self.leaving.load(Ordering::Relaxed) {
            tracing::warn!(%failure, "failure");
            self.list
                .lock()
                .expect("failures lock poisoned")
                .push(failure);
        }
    }

    fn all(&self) -> Vec<String> {
        self.list.lock().expect("failures lock poisoned").clone()
    }
}

/// One member of a room, on whatever target.
pub struct Member {
    /// `r{room}-p{i}` or `r{room}-s{i}`.
    pub name: String,
    /// Room index.
    pub room: usize,
    /// Tracks this member should receive (from the other publishers of its room).
    pub expected_tracks: usize,
    /// What it sent, if it publishes.
    pub send: Option<Arc<SendStats>>,
    /// What it received.
    pub receive: Arc<ReceiveStats>,
    conn: Conn,
}

enum Conn {
    Sfu {
        server: Arc<dyn RoomServer>,
        id: String,
        publisher: Option<Publisher>,
        subscriber: Arc<tokio::sync::Mutex<Option<Subscriber>>>,
        task: tokio::task::JoinHandle<()>,
    },
    Call(Box<Participant>, Option<crate::CallId>),
    Janus(Box<JanusMember>),
}

impl Member {
    /// The `a=msid` stream id its tracks arrive under, where that is not its name: its user
    /// id through signaling. (The SFU target publishes under the name.)
    fn stream_id(&self) -> Option<&str> {
        match &self.conn {
            Conn::Call(participant, _) => Some(participant.user().id.as_str()),
            Conn::Sfu { .. } | Conn::Janus(_) => None,
        }
    }

    /// Leaves the room and closes the connections.
    pub async fn leave(self) {
        match self.conn {
            Conn::Sfu {
                server,
                id,
                publisher,
                subscriber,
                task,
            } => {
                task.abort();
                let _ = server.leave(&id).await;
                if let Some(p) = publisher {
                    let _ = p.close().await;
                }
                if let Some(s) = subscriber.lock().await.take() {
                    let _ = s.close().await;
                }
            }
            Conn::Call(participant, call) => {
                // Leaving a group call leaves it to the others; the last but one ends it.
                if let Some(call) = call {
                    let _ = participant.signaling().leave_call(&call, None).await;
                }
                participant.close().await;
            }
            Conn::Janus(member) => member.leave().await,
        }
    }
}

/// Spaces joins `1/ramp` seconds apart, across every task that shares it.
pub struct Pacer {
    interval: tokio::sync::Mutex<tokio::time::Interval>,
}

impl Pacer {
    /// `per_second` joins per second (≤ 0 = no pacing).
    pub fn new(per_second: f64) -> Arc<Pacer> {
        let period = if per_second > 0.0 {
            Duration::from_secs_f64(1.0 / per_second)
        } else {
            Duration::from_micros(1)
        };
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Arc::new(Pacer {
            interval: tokio::sync::Mutex::new(interval),
        })
    }

    /// Waits for the next join slot.
    pub async fn wait(&self) {
        self.interval.lock().await.tick().await;
    }
}

fn watch_peer(
    name: String,
    mut events: mpsc::UnboundedReceiver<PeerEvent>,
    failures: Arc<Failures>,
) {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let PeerEvent::StateChanged {
                target,
                state: RTCPeerConnectionState::Failed,
            } = event
            {
                failures.push(format!("{name}: {target:?} connection failed"));
            }
        }
    });
}

/// Joins one member to a room of the SFU: publishes (if `publish`; a receive-only member opens
/// no publisher connection), and answers every subscriber offer, creating the subscriber
/// connection on the first.
async fn join_sfu(
    server: Arc<dyn RoomServer>,
    room_name: &str,
    name: &str,
    publish: bool,
    video: bool,
    peer: &PeerConfig,
    failures: Arc<Failures>,
) -> Result<(Conn, Arc<ReceiveStats>), String> {
    let receive = Arc::new(ReceiveStats::default());
    receive
        .started_us
        .store(media::unix_micros(), Ordering::Relaxed);
    let id = format!("{room_name}/{name}");
    let mut events = server.join(room_name, &id, name).await?;
    let (peer_tx, peer_rx) = mpsc::unbounded_channel();
    watch_peer(id.clone(), peer_rx, Arc::clone(&failures));
    let subscriber: Arc<tokio::sync::Mutex<Option<Subscriber>>> = Arc::default();
    let task = {
        let (server, id, subscriber, receive, peer, peer_tx, failures) = (
            Arc::clone(&server),
            id.clone(),
            Arc::clone(&subscriber),
            Arc::clone(&receive),
            peer.clone(),
            peer_tx.clone(),
            Arc::clone(&failures),
        );
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    HostEvent::SubscriberOffer(sdp) => {
                        let mut slot = subscriber.lock().await;
                        if slot.is_none() {
                            match Subscriber::new(&peer, Arc::clone(&receive), peer_tx.clone())
                                .await
                            {
                                Ok(s) => *slot = Some(s),
                                Err(e) => {
                                    failures.push(format!("{id}: subscriber: {e}"));
                                    continue;
                                }
                            }
                        }
                        let sub = slot.as_ref().expect("just set");
                        let result = match sub.answer(sdp).await {
                            Ok(answer) => server.subscriber_answer(&id, answer).await,
                            Err(e) => Err(e.to_string()),
                        };
                        if let Err(e) = result {
                            failures.push(format!("{id}: subscriber answer: {e}"));
                        }
                    }
                    HostEvent::Failed(reason) => {
                        failures.push(format!("{id}: SFU dropped it: {reason}"))
                    }
                }
            }
        })
    };
    let publisher = if publish {
        let setup = async {
            let p = Publisher::new(peer, name, video, peer_tx.clone())
                .await
                .map_err(|e| e.to_string())?;
            let offer = p.create_offer().await.map_err(|e| e.to_string())?;
            let answer = server.publish(&id, offer).await?;
            p.set_answer(answer).await.map_err(|e| e.to_string())?;
            p.start_media();
            Ok::<_, String>(p)
        };
        match setup.await {
            Ok(p) => Some(p),
            Err(e) => {
                task.abort();
                let _ = server.leave(&id).await;
                return Err(format!("{id}: publish: {e}"));
            }
        }
    } else {
        None
    };
    Ok((
        Conn::Sfu {
            server,
            id,
            publisher,
            subscriber,
            task,
        },
        receive,
    ))
}

/// Everything members registered so far, for the progress line and the report.
#[derive(Default)]
pub struct Registry {
    // std Mutex: push/copy only.
    receivers: Mutex<Vec<Arc<ReceiveStats>>>,
    joined: AtomicUsize,
    failed_joins: AtomicUsize,
}

impl Registry {
    fn add(&self, m: &Member) {
        self.receivers
            .lock()
            .expect("registry lock poisoned")
            .push(Arc::clone(&m.receive));
        self.joined.fetch_add(1, Ordering::Relaxed);
    }

    fn receivers(&self) -> Vec<Arc<ReceiveStats>> {
        self.receivers
            .lock()
            .expect("registry lock poisoned")
            .clone()
    }
}

/// Runs the load and returns its report.
pub async fn run(config: RunConfig) -> Report {
    let failures = Arc::new(Failures::default());
    let registry = Arc::new(Registry::default());
    let pacer = Pacer::new(config.ramp);
    let server_pid = config.server_pid.or(match &config.target {
        Target::Sfu(s) => s.pid(),
        _ => None,
    });
    let before = server_pid.and_then(ProcSample::read);
    let started = Instant::now();

    let progress = config.progress.then(|| {
        let (registry, failures) = (Arc::clone(&registry), Arc::clone(&failures));
        let total = config.rooms * (config.publishers + config.subscribers);
        tokio::spawn(async move {
            let mut last = totals(&[], None);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = totals(&registry.receivers(), None);
                let dt = now.at.zip(last.at).map(|(a, b)| (a - b).as_secs_f64()).unwrap_or(1.0);
                let loss = if now.expected > 0 {
                    100.0 * now.lost as f64 / now.expected as f64
                } else {
                    0.0
                };
                eprintln!(
                    "[{:>4}s] clients {}/{} joined ({} failed), rx {:.1} Mbit/s, {:.0} packets/s, loss {:.2}%, failures {}",
                    started.elapsed().as_secs(),
                    registry.joined.load(Ordering::Relaxed),
                    total,
                    registry.failed_joins.load(Ordering::Relaxed),
                    (now.bytes - last.bytes.min(now.bytes)) as f64 * 8.0 / dt / 1e6,
                    (now.packets - last.packets.min(now.packets)) as f64 / dt,
                    loss,
                    failures.all().len(),
                );
                last = now;
            }
        })
    });

    // 1. Ramp: rooms in parallel, members through the pacer.
    let mut room_tasks = Vec::new();
    for room in 0..config.rooms {
        let (config, pacer, failures, registry) = (
            config.clone(),
            Arc::clone(&pacer),
            Arc::clone(&failures),
            Arc::clone(&registry),
        );
        room_tasks.push(tokio::spawn(async move {
            join_room(&config, room, pacer, failures, registry).await
        }));
    }
    let mut members = Vec::new();
    for task in room_tasks {
        if let Ok(m) = task.await {
            members.extend(m);
        }
    }

    // 2. Warm-up, 3. window.
    tokio::time::sleep(config.warmup).await;
    let receivers = registry.receivers();
    let a = totals(&receivers, server_pid);
    tokio::time::sleep(config.duration).await;
    let b = totals(&receivers, server_pid);
    if let Some(p) = progress {
        p.abort();
    }

    let report = build_report(
        &config,
        &registry,
        &failures,
        &members,
        &a,
        &b,
        before.as_ref(),
    );

    // 4. Leave.
    failures.leaving.store(true, Ordering::Relaxed);
    let leaves: Vec<_> = members
        .into_iter()
        .map(|m| tokio::spawn(m.leave()))
        .collect();
    for l in leaves {
        let _ = l.await;
    }
    report
}

/// A room's members in joining order, publishers first: `(name, publishes)`.
fn roster(config: &RunConfig, room: usize) -> impl Iterator<Item = (String, bool)> + '_ {
    let publishers = (0..config.publishers).map(move |i| (format!("r{room}-p{i}"), true));
    let subscribers = (0..config.subscribers).map(move |i| (format!("r{room}-s{i}"), false));
    publishers.chain(subscribers)
}

/// Tracks a member should receive: both kinds (or audio only) of every other publisher.
fn expected_tracks(config: &RunConfig, publish: bool) -> usize {
    let kinds = if config.audio_only { 1 } else { 2 };
    (config.publishers - usize::from(publish)) * kinds
}

async fn join_room(
    config: &RunConfig,
    room: usize,
    pacer: Arc<Pacer>,
    failures: Arc<Failures>,
    registry: Arc<Registry>,
) -> Vec<Member> {
    let kinds = if config.audio_only { 1 } else { 2 };
    let mut members = Vec::new();
    match &config.target {
        Target::Sfu(server) => {
            let room_name = format!("lt-room-{room}");
            // Publishers first, one after the other (each waits for its answer), then the
            // subscribers concurrently, all through the pacer.
            let mut pending = Vec::new();
            for (name, publish) in roster(config, room) {
                let expected = expected_tracks(config, publish);
                let (server, room_name, peer, failures, pacer, registry) = (
                    Arc::clone(server),
                    room_name.clone(),
                    config.peer.clone(),
                    Arc::clone(&failures),
                    Arc::clone(&pacer),
                    Arc::clone(&registry),
                );
                let video = !config.audio_only;
                let join = async move {
                    pacer.wait().await;
                    match join_sfu(
                        server,
                        &room_name,
                        &name,
                        publish,
                        video,
                        &peer,
                        Arc::clone(&failures),
                    )
                    .await
                    {
                        Ok((conn, receive)) => {
                            let send = match &conn {
                                Conn::Sfu {
                                    publisher: Some(p), ..
                                } => Some(Arc::clone(p.stats())),
                                _ => None,
                            };
                            let m = Member {
                                name,
                                room,
                                expected_tracks: expected,
                                send,
                                receive,
                                conn,
                            };
                            registry.add(&m);
                            Some(m)
                        }
                        Err(e) => {
                            registry.failed_joins.fetch_add(1, Ordering::Relaxed);
                            failures.push(format!("{name}: join: {e}"));
                            None
                        }
                    }
                };
                if publish {
                    members.extend(join.await);
                } else {
                    pending.push(tokio::spawn(join));
                }
            }
            for p in pending {
                if let Ok(Some(m)) = p.await {
                    members.push(m);
                }
            }
        }
        Target::Switchboard { url } => {
            members = call::join_call(url, config, room, &pacer, &failures, &registry).await;
        }
        Target::Janus { url } => {
            let room_id = 1_000 + room as u64;
            if let Err(e) = crate::janus::create_room(url, room_id).await {
                failures.push(format!("room {room}: janus create: {e}"));
                return members;
            }
            // Publishers first (subscribers need their feed ids).
            let mut feeds = Vec::new();
            for i in 0..config.publishers {
                pacer.wait().await;
                let name = format!("r{room}-p{i}");
                match JanusMember::publish(
                    url,
                    room_id,
                    &name,
                    !config.audio_only,
                    &config.peer,
                    Arc::clone(&failures),
                )
                .await
                {
                    Ok(m) => {
                        feeds.push(m.feed_id());
                        let member = Member {
                            name,
                            room,
                            expected_tracks: 0,
                            send: m.send_stats(),
                            receive: Arc::new(ReceiveStats::default()),
                            conn: Conn::Janus(Box::new(m)),
                        };
                        registry.add(&member);
                        members.push(member);
                    }
                    Err(e) => {
                        registry.failed_joins.fetch_add(1, Ordering::Relaxed);
                        failures.push(format!("{name}: janus publish: {e}"));
                    }
                }
            }
            let mut pending = Vec::new();
            for i in 0..config.subscribers {
                let (url, peer, failures, pacer, registry, feeds) = (
                    url.clone(),
                    config.peer.clone(),
                    Arc::clone(&failures),
                    Arc::clone(&pacer),
                    Arc::clone(&registry),
                    feeds.clone(),
                );
                let expected = feeds.len() * kinds;
                pending.push(tokio::spawn(async move {
                    pacer.wait().await;
                    let name = format!("r{room}-s{i}");
                    match JanusMember::subscribe(
                        &url,
                        room_id,
                        &feeds,
                        &peer,
                        Arc::clone(&failures),
                    )
                    .await
                    {
                        Ok(m) => {
                            let member = Member {
                                name,
                                room,
                                expected_tracks: expected,
                                send: None,
                                receive: m.receive_stats(),
                                conn: Conn::Janus(Box::new(m)),
                            };
                            registry.add(&member);
                            Some(member)
                        }
                        Err(e) => {
                            registry.failed_joins.fetch_add(1, Ordering::Relaxed);
                            failures.push(format!("{name}: janus subscribe: {e}"));
                            None
                        }
                    }
                }));
            }
            for p in pending {
                if let Ok(Some(m)) = p.await {
                    members.push(m);
                }
            }
        }
    }
    members
}
