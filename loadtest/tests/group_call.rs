//! End to end: group calls (docs/protocol.md §7.1, issue #3) with real Rust clients through an
//! in-process Switchboard: real Socket.IO signaling, real WebRTC (ICE, DTLS, SRTP) to the SFU.
//!
//! `four_people_call_leave_and_late_join`: Alice calls Bob, Carol and Dave in one
//! `initiate_call`; everyone receives audio and video from each of the three others. Dave
//! leaves: the others hear about it (`participant_left`, `track_unpublished` for each of his
//! tracks), keep receiving from each other, and receive nothing more from him. Alice invites
//! Erin, who joins late and receives everyone's tracks (and they hers). The call ends when
//! the last but one leaves, and the server's counters return to zero.
//!
//! `call_size_limit_is_enforced`: with `max_participants_per_call = 3`, a call to three and an
//! invite into a full call (counting who still rings) are refused with `limit_exceeded`.
//!
//! Every wait polls against a deadline; a miss fails with what each client saw, announced and
//! received.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use loadtest::signaling::ErrorEvent;
use loadtest::{
    CallId, CallKind, EndReason, LeaveReason, MediaEvent, MediaKind, Participant,
    ParticipantConfig, ParticipantEvent, ParticipantEvents, ServerEvent, SignalingError, TrackId,
    TrackSource, UserId,
};
use support::{check_fatal, describe, enough_media, packets_from, TestServer, SIGNAL_TIMEOUT};
use tokio::time::Instant;

/// ICE + DTLS for up to ten connections on two cores, then the packet minimums.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(60);

/// One test client: a participant, everything it has seen, and whether a `call_ended` is
/// expected (it left, or is the last one in the call).
struct Member {
    name: &'static str,
    p: Participant,
    events: ParticipantEvents,
    seen: Vec<ServerEvent>,
    subscriber_answers: u32,
    ending: bool,
}

impl Member {
    async fn join(server: &TestServer, http: &reqwest::Client, name: &'static str) -> Result<Self> {
        let (p, events) =
            Participant::join(http, &server.base_url, name, ParticipantConfig::default())
                .await
                .with_context(|| format!("{name} joins"))?;
        Ok(Member {
            name,
            p,
            events,
            seen: Vec::new(),
            subscriber_answers: 0,
            ending: false,
        })
    }

    fn id(&self) -> &UserId {
        &self.p.user().id
    }

    fn take(&mut self, event: ParticipantEvent) -> Result<()> {
        // Once leaving, the call's end is expected, and so is the refusal of a subscriber
        // answer that crossed it (see `Dispatcher::media_event` in participant.rs).
        let expected_end = self.ending
            && match &event {
                ParticipantEvent::Signal(ServerEvent::CallEnded { .. }) => true,
                ParticipantEvent::Signal(ServerEvent::Error(e)) => {
                    e.code == "not_a_participant" || e.code == "unknown_call"
                }
                _ => false,
            };
        if !expected_end {
            check_fatal(self.name, &event).with_context(|| {
                let recent = &self.seen[self.seen.len().saturating_sub(12)..];
                format!("{}'s latest signals, oldest first: {recent:#?}", self.name)
            })?;
        }
        match event {
            ParticipantEvent::Signal(signal) => self.seen.push(signal),
            ParticipantEvent::Media(MediaEvent::SubscriberAnswered { count, .. }) => {
                self.subscriber_answers = count
            }
            ParticipantEvent::Media(_) => {}
        }
        Ok(())
    }

    /// Takes every pending event without waiting.
    fn pump(&mut self) -> Result<()> {
        while let Ok(event) = self.events.try_recv() {
            self.take(event)?;
        }
        Ok(())
    }

    /// Waits until `done` finds what it wants among everything seen so far.
    async fn until<T>(
        &mut self,
        what: &str,
        mut done: impl FnMut(&Member) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + SIGNAL_TIMEOUT;
        loop {
            self.pump()?;
            if let Some(found) = done(self) {
                return Ok(found);
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.take(event)?,
                Ok(None) => bail!("{}: event stream ended waiting for {what}", self.name),
                Err(_) => bail!(
                    "{}: no {what} within {SIGNAL_TIMEOUT:?}; saw {:#?}",
                    self.name,
                    self.seen
                ),
            }
        }
    }

    /// Waits for a seen event `pick` accepts.
    async fn until_event<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&ServerEvent) -> Option<T>,
    ) -> Result<T> {
        self.until(what, |m| m.seen.iter().find_map(&mut pick))
            .await
    }
}

/// Packet counts per (receiver, sender) index pair: [audio, video].
type Counts = BTreeMap<(usize, usize), [u64; 2]>;

/// Every ordered pair of distinct members of `group`.
fn pairs_within(group: &[usize]) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for &r in group {
        pairs.extend(group.iter().filter(|&&s| s != r).map(|&s| (r, s)));
    }
    pairs
}

/// `one` receiving from each of `others`, and each of them from `one`.
fn pairs_with(one: usize, others: &[usize]) -> Vec<(usize, usize)> {
    others.iter().flat_map(|&o| [(one, o), (o, one)]).collect()
}

fn counts(members: &[Member], pairs: &[(usize, usize)]) -> Counts {
    pairs
        .iter()
        .map(|&(r, s)| ((r, s), packets_from(&members[r].p, &members[s].p)))
        .collect()
}

/// The pairs that have not received enough audio and video since `since`, described.
fn media_shortfall(members: &[Member], pairs: &[(usize, usize)], since: &Counts) -> Vec<String> {
    let now = counts(members, pairs);
    pairs
        .iter()
        .filter_map(|pair| {
            let (got, before) = (now[pair], since.get(pair).copied().unwrap_or_default());
            let new = [got[0] - before[0], got[1] - before[1]];
            (!enough_media(new, CallKind::Video)).then(|| {
                format!(
                    "{} got {new:?} new (audio, video) packets from {}",
                    members[pair.0].name, members[pair.1].name
                )
            })
        })
        .collect()
}

/// What is wrong with the tracks `m` was told about, for a call with `others` in it: each
/// of them must have exactly a microphone and a camera track announced, nobody else any,
/// and each announced track must be the one packets arrive on (same stream and track id).
fn track_problems(m: &Member, others: &[&Member]) -> Vec<String> {
    let announced = m.p.remote_tracks();
    let mut problems = Vec::new();
    let expected: BTreeSet<(String, MediaKind, Option<TrackSource>)> = others
        .iter()
        .flat_map(|o| {
            [
                (
                    o.id().to_string(),
                    MediaKind::Audio,
                    Some(TrackSource::Microphone),
                ),
                (
                    o.id().to_string(),
                    MediaKind::Video,
                    Some(TrackSource::Camera),
                ),
            ]
        })
        .collect();
    let got: Vec<(String, MediaKind, Option<TrackSource>)> = announced
        .iter()
        .map(|t| (t.user_id.to_string(), t.kind, t.source))
        .collect();
    if got.len() != expected.len() || got.iter().cloned().collect::<BTreeSet<_>>() != expected {
        problems.push(format!(
            "{} was announced {got:?}, expected {expected:?}",
            m.name
        ));
    }
    let received = m.p.receive_stats().snapshot();
    for track in &announced {
        let flowing = received.iter().any(|r| {
            r.key.stream_id == track.user_id.as_str()
                && r.key.track_id == track.track_id.as_str()
                && r.packets > 0
        });
        if !flowing {
            problems.push(format!(
                "{}: nothing received on announced track {track:?}",
                m.name
            ));
        }
    }
    problems
}

/// Polls every member until `problems` finds nothing left to complain about, within
/// `timeout`; fails with the last complaints and every member's state.
async fn until_all(
    members: &mut [Member],
    what: &str,
    timeout: Duration,
    problems: impl Fn(&[Member]) -> Vec<String>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        for m in members.iter_mut() {
            m.pump()?;
        }
        let left = problems(members);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let mut state = String::new();
            for m in members.iter() {
                state.push_str(&describe(&m.p).await);
            }
            bail!(
                "{what}: not within {timeout:?}:\n  {}\n{state}",
                left.join("\n  ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ids of a list of users, as a set.
fn ids<'a>(users: impl IntoIterator<Item = &'a UserId>) -> BTreeSet<UserId> {
    users.into_iter().cloned().collect()
}

/// Waits for `m`'s `call_ended` for `call_id`; returns its reason and who caused it.
async fn ended(m: &mut Member, call_id: &CallId) -> Result<(EndReason, Option<UserId>)> {
    m.until_event("call_ended", |e| match e {
        ServerEvent::CallEnded {
            call_id: id,
            reason,
            by,
        } if id == call_id => Some((*reason, by.as_ref().map(|u| u.id.clone()))),
        _ => None,
    })
    .await
}

/// `who` leaves `call_id` with `leave_call`: they get `call_ended{hangup, by: self}`, and each
/// of `others` gets `participant_left{left}` about them.
async fn leave(
    members: &mut [Member],
    who: usize,
    others: &[usize],
    call_id: &CallId,
) -> Result<()> {
    members[who].ending = true;
    members[who]
        .p
        .signaling()
        .leave_call(call_id, None)
        .await
        .with_context(|| format!("{} leaves", members[who].name))?;
    let leaver = members[who].id().clone();
    let (reason, by) = ended(&mut members[who], call_id).await?;
    ensure!(
        reason == EndReason::Hangup && by.as_ref() == Some(&leaver),
        "the leaver gets call_ended{{hangup, by: self}}, got {reason:?} by {by:?}"
    );
    heard_left(members, others, who, LeaveReason::Left, call_id).await
}

/// Each of `listeners` gets `participant_left{reason}` about `who`.
async fn heard_left(
    members: &mut [Member],
    listeners: &[usize],
    who: usize,
    reason: LeaveReason,
    call_id: &CallId,
) -> Result<()> {
    let leaver = members[who].id().clone();
    for &o in listeners {
        let heard = members[o]
            .until_event("participant_left", |e| match e {
                ServerEvent::ParticipantLeft {
                    call_id: id,
                    user,
                    reason,
                } if id == call_id && user.id == leaver => Some(*reason),
                _ => None,
            })
            .await?;
        ensure!(
            heard == reason,
            "{} heard {} left with {heard:?}, expected {reason:?}",
            members[o].name,
            members[who].name
        );
    }
    Ok(())
}

/// Polls the server's counters until no call, room or SFU participant is left.
async fn until_server_idle(server: &TestServer) -> Result<()> {
    let deadline = Instant::now() + SIGNAL_TIMEOUT;
    loop {
        let (sfu, signaling) = (server.sfu.stats().await, server.signaling.stats());
        if sfu.participants == 0
            && sfu.rooms == 0
            && sfu.publications == 0
            && sfu.subscriptions == 0
            && signaling.calls == 0
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the server still has call state after everyone left: {sfu:?}, {signaling:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What keeps the call among `in_call` from being complete: `pairs` short of media since
/// `since`, and announced tracks that do not match who is in the call.
fn call_problems(
    ms: &[Member],
    pairs: &[(usize, usize)],
    since: &Counts,
    in_call: &[usize],
) -> Vec<String> {
    let mut problems = media_shortfall(ms, pairs, since);
    for &r in in_call {
        let others: Vec<&Member> = in_call
            .iter()
            .filter(|&&o| o != r)
            .map(|&o| &ms[o])
            .collect();
        problems.extend(track_problems(&ms[r], &others));
    }
    problems
}

/// `call_accepted` for `call_id`: who it lists.
fn accepted(event: &ServerEvent, call_id: &CallId) -> Option<BTreeSet<UserId>> {
    match event {
        ServerEvent::CallAccepted {
            call_id: id,
            participants,
            ..
        } if id == call_id => Some(ids(participants.iter().map(|u| &u.id))),
        _ => None,
    }
}

/// `who` rings for `call_id`, invited by `inviter`: they get `incoming_call` listing `in_call`
/// (everyone joined), and each of `in_call` gets `participant_invited` about them.
async fn rings(
    ms: &mut [Member],
    who: usize,
    inviter: usize,
    in_call: &[usize],
    call_id: &CallId,
) -> Result<()> {
    let (invitee, by) = (ms[who].id().clone(), ms[inviter].id().clone());
    let expected = ids(in_call.iter().map(|&i| ms[i].id()));
    let (from, participants) = ms[who]
        .until_event("incoming_call", |e| match e {
            ServerEvent::IncomingCall {
                call_id: id,
                from,
                participants,
                ..
            } if id == call_id => Some((from.id.clone(), ids(participants.iter().map(|u| &u.id)))),
            _ => None,
        })
        .await?;
    ensure!(
        from == by && participants == expected,
        "{}: incoming_call from {from} listing {participants:?}; expected from {by} listing {expected:?}",
        ms[who].name
    );
    for &j in in_call {
        ms[j]
            .until_event("participant_invited", |e| {
                matches!(e, ServerEvent::ParticipantInvited { call_id: id, user, by: b }
                    if id == call_id && user.id == invitee && b.id == by)
                .then_some(())
            })
            .await?;
    }
    Ok(())
}

/// `who` accepts `call_id` and gets `call_accepted` listing `in_call` and themselves. The
/// first to accept (the caller alone in the call) turns the call active: the caller gets
/// `call_accepted` too; later, everyone in `in_call` gets `participant_joined`.
async fn accepts(ms: &mut [Member], who: usize, in_call: &[usize], call_id: &CallId) -> Result<()> {
    ms[who]
        .p
        .signaling()
        .accept_call(call_id)
        .await
        .with_context(|| format!("{} accepts", ms[who].name))?;
    let expected = ids(in_call.iter().chain([&who]).map(|&i| ms[i].id()));
    let newcomer = ms[who].id().clone();
    let mut listed = vec![(
        who,
        ms[who]
            .until_event("call_accepted", |e| accepted(e, call_id))
            .await?,
    )];
    if let [caller] = *in_call {
        listed.push((
            caller,
            ms[caller]
                .until_event("call_accepted", |e| accepted(e, call_id))
                .await?,
        ));
    } else {
        for &j in in_call {
            ms[j]
                .until_event("participant_joined", |e| {
                    matches!(e, ServerEvent::ParticipantJoined { call_id: id, user }
                        if id == call_id && user.id == newcomer)
                    .then_some(())
                })
                .await?;
        }
    }
    for (j, participants) in listed {
        ensure!(
            participants == expected,
            "{}: call_accepted lists {participants:?}, expected everyone joined: {expected:?}",
            ms[j].name
        );
    }
    Ok(())
}

/// The error code of a refused event, or what happened instead.
fn refused_code<T>(result: Result<T, SignalingError>) -> String {
    match result {
        Err(SignalingError::Refused { code, .. }) => code,
        Err(other) => format!("not a refusal: {other}"),
        Ok(_) => "accepted".to_owned(),
    }
}

/// The `error` events `m` got, but for answers that crossed the end of its call (expected,
/// see `Member::take`).
fn refusals(m: &Member) -> Vec<&ErrorEvent> {
    m.seen
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Error(error) => Some(error),
            _ => None,
        })
        .filter(|e| {
            !(e.event.as_deref() == Some("webrtc_answer")
                && (e.code == "not_a_participant" || e.code == "unknown_call"))
        })
        .collect()
}

const ALICE: usize = 0;
const BOB: usize = 1;
const CAROL: usize = 2;
const DAVE: usize = 3;
const ERIN: usize = 4;

async fn join_all(server: &TestServer, names: &[&'static str]) -> Result<Vec<Member>> {
    let http = reqwest::Client::new();
    let mut members = Vec::new();
    for &name in names {
        members.push(Member::join(server, &http, name).await?);
    }
    Ok(members)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_people_call_leave_and_late_join() -> Result<()> {
    support::init_tracing();
    let server = TestServer::start(switchboard::ServerConfig::for_tests()).await?;
    let mut members = join_all(&server, &["Alice", "Bob", "Carol", "Dave", "Erin"]).await?;
    let ms = &mut members[..];

    // Alice calls Bob, Carol and Dave at once; each rings, Alice hears of each invite.
    let callees: Vec<UserId> = [BOB, CAROL, DAVE].map(|i| ms[i].id().clone()).to_vec();
    let call_id = ms[ALICE]
        .p
        .signaling()
        .initiate_group_call(&callees, CallKind::Video)
        .await
        .context("alice calls bob, carol and dave")?;
    let first = ms[ALICE]
        .until_event("call_ringing", |e| match e {
            ServerEvent::CallRinging {
                call_id: id, to, ..
            } if *id == call_id => Some(to.id.clone()),
            _ => None,
        })
        .await?;
    assert_eq!(first, callees[0], "call_ringing.to is the first invitee");
    for i in [BOB, CAROL, DAVE] {
        rings(ms, i, ALICE, &[ALICE], &call_id).await?;
    }

    // They accept one after the other.
    let four = [ALICE, BOB, CAROL, DAVE];
    for n in 1..four.len() {
        accepts(ms, four[n], &four[..n], &call_id).await?;
    }

    // Everyone receives audio and video from each of the three others, on the tracks the
    // server announced, with their sources.
    until_all(ms, "media among all four", MEDIA_TIMEOUT, |ms| {
        call_problems(ms, &pairs_within(&four), &Counts::new(), &four)
    })
    .await?;
    tracing::info!("media flowing among four");

    // Dave leaves. The others lose exactly his tracks and renegotiate their subscriber
    // connection; they keep receiving from each other, and nothing more from him.
    let three = [ALICE, BOB, CAROL];
    let dave_id = ms[DAVE].id().clone();
    let dave_tracks: Vec<BTreeSet<TrackId>> = three
        .iter()
        .map(|&r| {
            ms[r]
                .p
                .remote_tracks()
                .into_iter()
                .filter(|t| t.user_id == dave_id)
                .map(|t| t.track_id)
                .collect()
        })
        .collect();
    let answers_before: Vec<u32> = three.iter().map(|&r| ms[r].subscriber_answers).collect();
    leave(ms, DAVE, &three, &call_id).await?;
    for (k, &r) in three.iter().enumerate() {
        let unpublished = ms[r]
            .until("track_unpublished for each of dave's tracks", |m| {
                let gone: BTreeSet<TrackId> = m
                    .seen
                    .iter()
                    .filter_map(|e| match e {
                        ServerEvent::TrackUnpublished {
                            call_id: id,
                            user_id,
                            track_id,
                        } if *id == call_id && *user_id == dave_id => Some(track_id.clone()),
                        _ => None,
                    })
                    .collect();
                gone.is_superset(&dave_tracks[k]).then_some(gone)
            })
            .await?;
        assert_eq!(
            unpublished, dave_tracks[k],
            "{}: unpublished exactly dave's tracks",
            ms[r].name
        );
        ms[r]
            .until("a subscriber renegotiation without dave", |m| {
                (m.subscriber_answers > answers_before[k]).then_some(())
            })
            .await?;
    }
    let dave_pairs = pairs_with(DAVE, &three);
    let mut since = counts(ms, &pairs_within(&three));
    let mut dave_counts = Vec::new();
    for round in 0..2 {
        until_all(
            ms,
            &format!("media among the three after dave left (round {round})"),
            MEDIA_TIMEOUT,
            |ms| call_problems(ms, &pairs_within(&three), &since, &three),
        )
        .await?;
        since = counts(ms, &pairs_within(&three));
        dave_counts.push(counts(ms, &dave_pairs));
    }
    let answers_after: Vec<u32> = three.iter().map(|&r| ms[r].subscriber_answers).collect();
    assert_eq!(
        answers_after,
        answers_before.iter().map(|n| n + 1).collect::<Vec<_>>(),
        "one subscriber re-offer each for dave's leave (alice, bob, carol)"
    );
    assert_eq!(
        dave_counts[0], dave_counts[1],
        "nothing flows to or from dave once he left ((receiver, sender) → [audio, video])"
    );

    // Alice invites Erin, who joins late and gets everyone's tracks (and they hers).
    ms[ALICE]
        .p
        .signaling()
        .invite_participant(&call_id, &ms[ERIN].id().clone())
        .await
        .context("alice invites erin")?;
    rings(ms, ERIN, ALICE, &three, &call_id).await?;
    accepts(ms, ERIN, &three, &call_id).await?;
    let now_in = [ALICE, BOB, CAROL, ERIN];
    until_all(
        ms,
        "media between erin and the three",
        MEDIA_TIMEOUT,
        |ms| call_problems(ms, &pairs_with(ERIN, &three), &Counts::new(), &now_in),
    )
    .await?;
    tracing::info!("erin joined late and media flows both ways");

    // Everyone but Alice leaves; the last but one leaving ends the call for her.
    leave(ms, ERIN, &three, &call_id).await?;
    leave(ms, BOB, &[ALICE, CAROL], &call_id).await?;
    ms[ALICE].ending = true;
    leave(ms, CAROL, &[], &call_id).await?;
    let (reason, by) = ended(&mut ms[ALICE], &call_id).await?;
    assert_eq!(
        reason,
        EndReason::Hangup,
        "the call ends with the last departure's reason"
    );
    assert_eq!(
        by.as_ref(),
        Some(ms[CAROL].id()),
        "call_ended.by is who left last"
    );

    for m in ms.iter() {
        assert!(
            refusals(m).is_empty(),
            "{}: refused: {:?}",
            m.name,
            refusals(m)
        );
    }
    until_server_idle(&server).await?;
    for m in members {
        m.p.close().await;
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_size_limit_is_enforced() -> Result<()> {
    support::init_tracing();
    let mut config = switchboard::ServerConfig::for_tests();
    config.limits.max_participants_per_call = 3;
    let server = TestServer::start(config).await?;
    let mut members = join_all(&server, &["Alice", "Bob", "Carol", "Dave"]).await?;
    let ms = &mut members[..];

    // Four people do not fit in a call of at most three; nothing starts.
    let callees: Vec<UserId> = [BOB, CAROL, DAVE].map(|i| ms[i].id().clone()).to_vec();
    let result = ms[ALICE]
        .p
        .signaling()
        .initiate_group_call(&callees, CallKind::Voice)
        .await;
    assert_eq!(
        refused_code(result),
        "limit_exceeded",
        "a call to three callees"
    );

    // Three do. While Carol still rings the call is full, so Dave cannot be invited.
    let call_id = ms[ALICE]
        .p
        .signaling()
        .initiate_group_call(&callees[..2], CallKind::Voice)
        .await
        .context("the refused call left nobody busy")?;
    for i in [BOB, CAROL] {
        rings(ms, i, ALICE, &[ALICE], &call_id).await?;
        let rang = ms[i]
            .seen
            .iter()
            .filter(|e| matches!(e, ServerEvent::IncomingCall { .. }))
            .count();
        assert_eq!(
            rang, 1,
            "{} rang only for the call that started",
            ms[i].name
        );
    }
    accepts(ms, BOB, &[ALICE], &call_id).await?;
    let result = ms[ALICE]
        .p
        .signaling()
        .invite_participant(&call_id, &ms[DAVE].id().clone())
        .await;
    assert_eq!(
        refused_code(result),
        "limit_exceeded",
        "inviting into a full call"
    );
    let code = ms[ALICE]
        .until_event("the error event of the refused invite", |e| match e {
            ServerEvent::Error(error) if error.event.as_deref() == Some("invite_participant") => {
                Some(error.code.clone())
            }
            _ => None,
        })
        .await?;
    assert_eq!(code, "limit_exceeded");

    // Carol declines: there is room again. (Whether a decliner gets a `call_ended` of its own
    // while the call goes on, §7.1 does not say: either is fine here.)
    ms[CAROL].ending = true;
    ms[CAROL].p.signaling().reject_call(&call_id).await?;
    heard_left(ms, &[ALICE, BOB], CAROL, LeaveReason::Rejected, &call_id).await?;
    ms[ALICE]
        .p
        .signaling()
        .invite_participant(&call_id, &ms[DAVE].id().clone())
        .await
        .context("inviting dave once carol declined")?;
    rings(ms, DAVE, ALICE, &[ALICE, BOB], &call_id).await?;

    // Dave declines too; Alice leaving then ends the call for Bob.
    ms[DAVE].ending = true;
    ms[DAVE].p.signaling().reject_call(&call_id).await?;
    heard_left(ms, &[ALICE, BOB], DAVE, LeaveReason::Rejected, &call_id).await?;
    ms[BOB].ending = true;
    leave(ms, ALICE, &[], &call_id).await?;
    let (reason, by) = ended(&mut ms[BOB], &call_id).await?;
    assert_eq!(reason, EndReason::Hangup);
    assert_eq!(by.as_ref(), Some(ms[ALICE].id()));

    let refused: Vec<_> = ms
        .iter()
        .flat_map(|m| {
            refusals(m)
                .into_iter()
                .map(|e| (m.name, e.event.clone(), e.code.clone()))
        })
        .collect();
    let limit = |event: &str| {
        (
            ms[ALICE].name,
            Some(event.to_owned()),
            "limit_exceeded".to_owned(),
        )
    };
    assert_eq!(
        refused,
        [limit("initiate_call"), limit("invite_participant")],
        "the only refusals are the two over the limit"
    );
    until_server_idle(&server).await?;
    for m in members {
        m.p.close().await;
    }
    server.stop().await
}
