//! Media grants and limits through the real server, with real webrtc-rs clients (ICE, DTLS,
//! SRTP to the SFU): what a token does not grant is refused *and* never forwarded, whatever
//! the SDP spelling (security review finding 1, T5); the track limit holds for every
//! spelling; data channels are refused (finding 25); a publish-only member stays in its call
//! and is heard (finding 13).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{assert_refused, ring, Client, TestServer, SECRET};
use loadtest::{MediaKind, PeerConfig, Publisher, ReceiveStats, Subscriber};
use serde_json::{json, Value};
use switchboard_signaling::identity::{unix_now, TokenIssuer};
use switchboard_signaling::{Claims, Grants, PublishSource};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// ICE + DTLS on two shared cores, then enough packets.
const MEDIA_DEADLINE: Duration = Duration::from_secs(30);

async fn connect_with(server: &TestServer, name: &str, grants: Grants) -> Client {
    let id = format!("{name}-{}", rand::random::<u32>());
    let token = TokenIssuer::new(SECRET, Duration::from_secs(3600)).sign(&Claims {
        sub: id.clone(),
        name: name.to_owned(),
        exp: unix_now() + 600,
        grants,
    });
    let mut client = Client::connect(server.addr, Some(json!({ "token": token })))
        .await
        .expect("connects");
    client.user_id = id;
    client.token = token;
    client.name = name.to_owned();
    client
}

/// `caller` calls `callee`, who accepts: the call id.
async fn call(caller: &mut Client, callee: &mut Client) -> String {
    // On a multi-threaded runtime the CONNECT reply can overtake the callee's registration.
    let callee_id = callee.user_id.clone();
    caller
        .expect_presence(|users| common::presence_entry(users, &callee_id).is_some())
        .await;
    let call_id = ring(caller, callee).await;
    let ack = callee
        .request("accept_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    caller.expect("call_accepted").await;
    callee.expect("call_accepted").await;
    call_id
}

fn publisher_offer(call_id: &str, sdp: &str) -> Value {
    json!({ "call_id": call_id, "target": "publisher", "sdp": sdp })
}

/// A real webrtc-rs publisher (audio, and video if `video`) whose media stream id is the
/// member's user id.
async fn publisher(user_id: &str, video: bool) -> Publisher {
    let (events, _) = mpsc::unbounded_channel();
    Publisher::new(&PeerConfig::default(), user_id, video, events)
        .await
        .expect("publisher")
}

/// Sends `sdp` as the publisher offer; if accepted, completes the connection with the
/// server's answer and starts sending. Returns the ack.
async fn offer_and_send(
    client: &mut Client,
    publisher: &Publisher,
    call_id: &str,
    sdp: &str,
) -> Value {
    let ack = client
        .request("webrtc_offer", publisher_offer(call_id, sdp))
        .await;
    if ack["ok"] == true {
        let answer = client
            .expect_where("webrtc_answer", |d| d["target"] == "publisher")
            .await;
        publisher
            .set_answer(answer["sdp"].as_str().unwrap().to_owned())
            .await
            .expect("answer applies");
        publisher.start_media();
    }
    ack
}

/// A receiving member: answers every subscriber offer its socket gets.
struct Receiver {
    subscriber: Subscriber,
    stats: Arc<ReceiveStats>,
}

impl Receiver {
    async fn new() -> Receiver {
        let stats = Arc::new(ReceiveStats::default());
        let (events, _) = mpsc::unbounded_channel();
        let subscriber = Subscriber::new(&PeerConfig::default(), Arc::clone(&stats), events)
            .await
            .expect("subscriber");
        Receiver { subscriber, stats }
    }

    /// Answers pending subscriber offers until `done` holds or `within` passes; whether it held.
    async fn serve_until(
        &self,
        client: &mut Client,
        call_id: &str,
        within: Duration,
        mut done: impl FnMut(&ReceiveStats) -> bool,
    ) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if done(&self.stats) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            if client.has_pending("webrtc_offer") {
                let offer = client
                    .expect_where("webrtc_offer", |d| d["target"] == "subscriber")
                    .await;
                let answer = self
                    .subscriber
                    .answer(offer["sdp"].as_str().unwrap().to_owned())
                    .await
                    .expect("offer applies");
                let ack = client
                    .request(
                        "webrtc_answer",
                        json!({ "call_id": call_id, "target": "subscriber", "sdp": answer }),
                    )
                    .await;
                assert_eq!(ack["ok"], true, "{ack}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The SDP's video section, rewritten by `spell`.
fn respell_video(sdp: &str, spell: impl Fn(&str) -> String) -> String {
    let start = sdp.find("m=video").expect("a video section");
    let end = sdp[start + 1..]
        .find("\r\nm=")
        .map_or(sdp.len(), |i| start + 1 + i + 2);
    format!(
        "{}{}{}",
        &sdp[..start],
        spell(&sdp[start..end]),
        &sdp[end..]
    )
}

/// The hostile ways to write "I send video" that a text scan misread (review finding 1),
/// plus the honest one.
fn video_spellings(sdp: &str) -> Vec<(&'static str, String)> {
    let port_zero = |s: &str| s.replacen("m=video 9 ", "m=video 0 ", 1);
    vec![
        ("honest", sdp.to_owned()),
        ("port 0", respell_video(sdp, port_zero)),
        (
            "tab-separated m-line",
            respell_video(sdp, |s| {
                let (line, rest) = s.split_once("\r\n").unwrap();
                format!("{}\r\n{rest}", line.replace(' ', "\t"))
            }),
        ),
        (
            "duplicate direction (first sendonly, then inactive)",
            respell_video(sdp, |s| {
                s.replacen("a=sendrecv\r\n", "a=sendonly\r\na=inactive\r\n", 1)
            }),
        ),
        (
            "RFC 8843 bundle-only, port 0",
            respell_video(sdp, |s| {
                let s = port_zero(s);
                let (line, rest) = s.split_once("\r\n").unwrap();
                format!("{line}\r\na=bundle-only\r\n{rest}")
            }),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_without_the_video_grant_is_refused_and_never_forwarded_by_any_spelling() {
    let server = TestServer::start().await;
    let audio_only = Grants {
        publish: vec![PublishSource::Audio],
        ..Grants::full()
    };
    // (spelling, ack, video packets Bob received from Alice)
    let mut outcomes = Vec::new();
    for index in 0..video_spellings("m=video 9 x\r\n").len() {
        let mut alice = connect_with(&server, "Alice", audio_only.clone()).await;
        let mut bob = server.user("Bob").await;
        let call_id = call(&mut alice, &mut bob).await;
        let bob_media = Receiver::new().await;

        // A real webrtc-rs client that sends audio and video once it has an answer.
        let client = publisher(&alice.user_id, true).await;
        let offer = client.create_offer().await.unwrap();
        let (spelling, sdp) = video_spellings(&offer).swap_remove(index);
        let ack = offer_and_send(&mut alice, &client, &call_id, &sdp).await;
        // Refused: what the grant allows still works for the same member (a control: media
        // does flow, so "no video" below means something).
        let mut audio_client = None;
        if ack["ok"] != true {
            let audio = publisher(&alice.user_id, false).await;
            let audio_offer = audio.create_offer().await.unwrap();
            let audio_ack = offer_and_send(&mut alice, &audio, &call_id, &audio_offer).await;
            assert_eq!(audio_ack["ok"], true, "{spelling}: {audio_ack}");
            audio_client = Some(audio);
        }
        let alice_id = alice.user_id.clone();
        let heard = bob_media
            .serve_until(&mut bob, &call_id, MEDIA_DEADLINE, |stats| {
                stats.packets_from(&alice_id, MediaKind::Audio) >= 25
            })
            .await;
        assert!(
            heard,
            "{spelling}: Bob never heard Alice's audio: subscriber {:?}, received {:?}",
            bob_media.subscriber.state(),
            bob_media.stats.snapshot()
        );
        // Any video would have arrived alongside (it is sent at 30 frames/s from the start).
        bob_media
            .serve_until(&mut bob, &call_id, Duration::from_secs(1), |_| false)
            .await;
        let video = bob_media.stats.packets_from(&alice_id, MediaKind::Video);
        outcomes.push((spelling, ack, video));
        drop(audio_client);
        let _ = client.close().await;
        let _ = bob_media.subscriber.close().await;
    }
    for (spelling, _, video) in &outcomes {
        assert_eq!(
            *video, 0,
            "{spelling}: Bob received Alice's ungranted video"
        );
    }
    for (spelling, ack, _) in &outcomes {
        assert_refused(ack, "missing_grant");
        assert!(
            ack["error"]["message"].as_str().unwrap().contains("video"),
            "{spelling}: {ack}"
        );
    }
}

/// `sdp` with `copies` more copies of its audio section, each a new track (mid, msid, SSRC),
/// written with port 0 or tab-separated fields, alternately.
fn with_extra_audio_sections(sdp: &str, copies: usize) -> String {
    let start = sdp.find("m=audio").expect("an audio section");
    let end = sdp[start + 1..]
        .find("\r\nm=")
        .map_or(sdp.len(), |i| start + 1 + i + 2);
    let section = &sdp[start..end];
    let mut extra = String::new();
    let mut mids = String::new();
    for i in 0..copies {
        let mid = format!("x{i}");
        let mut copy = String::new();
        for line in section.split_inclusive("\r\n") {
            let line = if line.starts_with("m=audio") {
                if i % 2 == 0 {
                    line.replacen("m=audio 9 ", "m=audio 0 ", 1)
                } else {
                    line.replace(' ', "\t")
                }
            } else if line.starts_with("a=mid:") {
                format!("a=mid:{mid}\r\n")
            } else if let Some(msid) = line.strip_prefix("a=msid:") {
                let stream = msid.split_whitespace().next().unwrap_or("s");
                format!("a=msid:{stream} extra-{i}\r\n")
            } else if line.starts_with("a=ssrc:") {
                let rest = line.split_once(' ').map_or("", |(_, r)| r);
                format!("a=ssrc:{} {rest}", 10_000 + i)
            } else {
                line.to_owned()
            };
            copy.push_str(&line);
        }
        extra.push_str(&copy);
        mids.push(' ');
        mids.push_str(&mid);
    }
    let mut out = format!("{}{}{}", &sdp[..end], extra, &sdp[end..]);
    if let Some(group) = out.find("a=group:BUNDLE") {
        let eol = group + out[group..].find("\r\n").unwrap();
        out.insert_str(eol, &mids);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_track_limit_holds_for_every_spelling() {
    let server = TestServer::start().await; // 4 tracks per participant
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let call_id = call(&mut alice, &mut bob).await;

    let client = publisher(&alice.user_id, false).await;
    let offer = client.create_offer().await.unwrap();
    let flood = with_extra_audio_sections(&offer, 24);
    assert_eq!(flood.matches("a=mid:").count(), 25, "{flood}");
    let ack = alice
        .request("webrtc_offer", publisher_offer(&call_id, &flood))
        .await;
    assert_refused(&ack, "limit_exceeded");
    // The refused offer was undone: the member's honest offer is answered.
    let ack = offer_and_send(&mut alice, &client, &call_id, &offer).await;
    assert_eq!(ack["ok"], true, "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_bundle_only_sections_count_as_sending() {
    // Firefox writes every section after the first as `m=... 0` + `a=bundle-only` (RFC
    // 8843): they send, so they count against the limit (and the grants).
    let server = TestServer::start_with(|c| c.limits.max_tracks_per_participant = 1).await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let call_id = call(&mut alice, &mut bob).await;
    let client = publisher(&alice.user_id, true).await;
    let offer = client.create_offer().await.unwrap();
    let (_, bundle_only) = video_spellings(&offer).swap_remove(4);
    let ack = alice
        .request("webrtc_offer", publisher_offer(&call_id, &bundle_only))
        .await;
    assert_refused(&ack, "limit_exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_channels_are_refused() {
    let server = TestServer::start().await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let call_id = call(&mut alice, &mut bob).await;
    let client = publisher(&alice.user_id, false).await;
    let offer = client.create_offer().await.unwrap();
    let mid = "dc";
    let mut with_data = offer.clone()
        + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
        + &format!("a=mid:{mid}\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n");
    if let Some(group) = with_data.find("a=group:BUNDLE") {
        let eol = group + with_data[group..].find("\r\n").unwrap();
        with_data.insert_str(eol, &format!(" {mid}"));
    }
    let ack = alice
        .request("webrtc_offer", publisher_offer(&call_id, &with_data))
        .await;
    assert_refused(&ack, "media_rejected");
    assert!(
        ack["error"]["message"]
            .as_str()
            .unwrap()
            .contains("data channel"),
        "{ack}"
    );
    let ack = offer_and_send(&mut alice, &client, &call_id, &offer).await;
    assert_eq!(ack["ok"], true, "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_only_member_is_never_offered_a_subscriber_connection_and_stays() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("switchboard_sfu=debug,switchboard_signaling=debug")
        .with_test_writer()
        .try_init();
    let connect_timeout = Duration::from_secs(4);
    let server =
        TestServer::start_with_sfu(|_| {}, |sfu| sfu.connect_timeout = connect_timeout).await;
    let publish_only = Grants {
        subscribe: false,
        ..Grants::full()
    };
    let mut alice = connect_with(&server, "Alice", publish_only).await;
    let mut bob = server.user("Bob").await;
    let call_id = call(&mut alice, &mut bob).await;
    let bob_media = Receiver::new().await;

    // Both publish: Bob's track is something Alice could have been offered.
    let bob_sends = publisher(&bob.user_id, false).await;
    let bob_offer = bob_sends.create_offer().await.unwrap();
    let ack = offer_and_send(&mut bob, &bob_sends, &call_id, &bob_offer).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let alice_sends = publisher(&alice.user_id, true).await;
    let alice_offer = alice_sends.create_offer().await.unwrap();
    let ack = offer_and_send(&mut alice, &alice_sends, &call_id, &alice_offer).await;
    assert_eq!(ack["ok"], true, "{ack}");

    let alice_id = alice.user_id.clone();
    let heard = bob_media
        .serve_until(&mut bob, &call_id, MEDIA_DEADLINE, |stats| {
            stats.packets_from(&alice_id, MediaKind::Audio) >= 25
        })
        .await;
    assert!(
        heard,
        "Bob never heard Alice: {:?}",
        bob_media.stats.snapshot()
    );
    // Twice the connect timeout later, Alice is still in the call and still heard.
    let before = bob_media.stats.packets_from(&alice_id, MediaKind::Audio);
    bob_media
        .serve_until(&mut bob, &call_id, connect_timeout * 2, |_| false)
        .await;
    assert!(!alice.has_pending("call_ended"), "Alice's call ended");
    assert!(!bob.has_pending("call_ended"), "Bob's call ended");
    assert!(!bob.has_pending("participant_left"), "Alice was removed");
    assert!(
        !alice.has_pending("webrtc_offer"),
        "Alice (no subscribe grant) was offered a subscriber connection"
    );
    let after = bob_media.stats.packets_from(&alice_id, MediaKind::Audio);
    assert!(
        after > before + 25,
        "Alice's audio stopped: {before} -> {after}"
    );
    let ack = alice
        .request("end_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "the call is still there: {ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sfu_refusals_caused_by_the_client_are_strikes_not_internal_errors() {
    // Review finding 21: the SFU's own limit (here lower than signaling's) refused with
    // `internal`, which gives no strike, so a client could repeat it forever.
    let server = TestServer::start_with_sfu(
        |c| c.limits.strikes_before_disconnect = 3,
        |sfu| sfu.max_tracks_per_participant = 1,
    )
    .await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let call_id = call(&mut alice, &mut bob).await;
    let client = publisher(&alice.user_id, true).await;
    let offer = client.create_offer().await.unwrap();
    for _ in 0..3 {
        let ack = alice
            .request("webrtc_offer", publisher_offer(&call_id, &offer))
            .await;
        assert_refused(&ack, "limit_exceeded");
    }
    alice.emit("webrtc_offer", publisher_offer(&call_id, &offer));
    alice.expect_closed().await;
    alice.expect_error("too_many_violations").await;
}
