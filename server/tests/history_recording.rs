//! Call history and call recording, end to end: real calls through the server (the loadtest
//! crate's clients: real Socket.IO signaling, real WebRTC, real Opus/VP8 clips), a real SQLite
//! file, the HTTP API, a real crash (SIGKILL of the `switchboard` binary) and the WebM files
//! checked with ffprobe/ffmpeg.
//!
//! Everything waits by polling against a deadline.

mod recording_common;
use recording_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_is_recorded_through_real_calls() -> Result<()> {
    // Alice calls Bob again and again, also right after he declines: this test is about what
    // the history records, not the ring throttles (security review finding 18), so they are
    // lifted here.
    let mut config = short_ring();
    config.limits.decline_cooldown_secs = 0;
    config.limits.ring_burst_per_callee = 100;
    let server = TestServer::start(config).await?;
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let (alice, mut alice_ev, alice_token) = join(&http, &base, "Alice").await?;
    let (bob, mut bob_ev, bob_token) = join(&http, &base, "Bob").await?;
    let (carol, _carol_ev, carol_token) = join(&http, &base, "Carol").await?;
    let (a, b) = (alice.signaling(), bob.signaling());

    // completed: answered, media flows, hung up.
    let completed = a.initiate_call(&bob.user().id, CallKind::Voice).await?;
    wait_for("bob", &mut bob_ev, SIGNAL_TIMEOUT, incoming).await?;
    let ringing = call_until(&http, &base, &alice_token, &completed, "ringing", |c| {
        c["state"] == "ringing"
    })
    .await?;
    ensure!(
        ringing["participants"].as_array().map(Vec::len) == Some(2),
        "{ringing}"
    );
    b.accept_call(&completed).await?;
    media_flows(&bob, alice.user(), MediaKind::Audio, 50).await?;
    media_flows(&alice, bob.user(), MediaKind::Audio, 50).await?;
    // Long enough for a few quality reports (every 2 s).
    tokio::time::sleep(Duration::from_secs(5)).await;
    a.end_call(&completed, None).await?;
    wait_for("bob", &mut bob_ev, SIGNAL_TIMEOUT, ended(&completed)).await?;
    let call = call_until(&http, &base, &alice_token, &completed, "ended", is_ended).await?;
    ensure!(call["outcome"] == "completed", "{call}");
    ensure!(
        call["kind"] == "voice" && call["interrupted"] == false,
        "{call}"
    );
    let duration = call["duration_ms"].as_i64().context("duration")?;
    ensure!(
        (5_000..30_000).contains(&duration),
        "duration {duration}: {call}"
    );
    for p in call["participants"].as_array().context("participants")? {
        ensure!(
            p["joined_at"].is_i64() && p["left_at"].is_i64(),
            "media times: {p}"
        );
        let q = &p["quality"];
        ensure!(
            q.is_object(),
            "no quality summary for {}: {call}",
            p["name"]
        );
        let (avg, worst) = (
            q["loss_avg_pct"].as_f64().unwrap(),
            q["loss_worst_pct"].as_f64().unwrap(),
        );
        ensure!(avg <= worst && (0.0..=100.0).contains(&worst), "{q}");
        // RTT is only known once receiver reports arrived; when known, avg <= worst.
        if let (Some(avg), Some(worst)) = (q["rtt_avg_ms"].as_f64(), q["rtt_worst_ms"].as_f64()) {
            ensure!(avg <= worst, "{q}");
        }
        ensure!(
            q["jitter_avg_ms"].as_f64().unwrap() <= q["jitter_worst_ms"].as_f64().unwrap(),
            "{q}"
        );
        ensure!((1.0..=5.0).contains(&q["mos"].as_f64().unwrap()), "{q}");
    }
    eprintln!(
        "completed call: duration {duration} ms, participants {}",
        call["participants"]
    );

    // missed: rings until the (2 s) ring timeout.
    let missed = a.initiate_call(&bob.user().id, CallKind::Video).await?;
    wait_for("bob", &mut bob_ev, SIGNAL_TIMEOUT, incoming).await?;
    let reason = wait_for("alice", &mut alice_ev, SIGNAL_TIMEOUT, ended(&missed)).await?;
    ensure!(reason == EndReason::NoAnswer);

    // rejected.
    let rejected = a.initiate_call(&bob.user().id, CallKind::Voice).await?;
    wait_for("bob", &mut bob_ev, SIGNAL_TIMEOUT, incoming).await?;
    b.reject_call(&rejected).await?;
    wait_for("alice", &mut alice_ev, SIGNAL_TIMEOUT, ended(&rejected)).await?;

    // cancelled, and recording is refused while ringing.
    let cancelled = a.initiate_call(&bob.user().id, CallKind::Voice).await?;
    wait_for("bob", &mut bob_ev, SIGNAL_TIMEOUT, incoming).await?;
    ensure!(refused_code(emit(a, "start_recording", &cancelled).await) == "invalid_state");
    ensure!(
        refused_code(emit(carol.signaling(), "start_recording", &cancelled).await)
            == "not_a_participant"
    );
    a.end_call(&cancelled, None).await?;
    wait_for("bob", &mut bob_ev, SIGNAL_TIMEOUT, ended(&cancelled)).await?;

    // failed: the callee has no camera/microphone after accepting.
    let failed = a.initiate_call(&bob.user().id, CallKind::Video).await?;
    wait_for("bob", &mut bob_ev, SIGNAL_TIMEOUT, incoming).await?;
    b.accept_call(&failed).await?;
    b.end_call(&failed, Some(EndReason::MediaUnavailable))
        .await?;
    wait_for("alice", &mut alice_ev, SIGNAL_TIMEOUT, ended(&failed)).await?;

    let expected = [
        (&failed, "failed", true),
        (&cancelled, "cancelled", false),
        (&rejected, "rejected", false),
        (&missed, "missed", false),
        (&completed, "completed", true),
    ];
    for (id, outcome, answered) in expected {
        let call = call_until(&http, &base, &bob_token, id, "ended", is_ended).await?;
        ensure!(call["outcome"] == outcome, "expected {outcome}: {call}");
        ensure!(call["answered_at"].is_i64() == answered, "answered? {call}");
        ensure!(call["duration_ms"].is_i64() == answered, "duration? {call}");
        ensure!(call["created_by"] == alice.user().id.as_str(), "{call}");
    }

    // Pagination over HTTP: 2 + 2 + 1, newest first, no duplicates.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/calls?limit=2&before={c}"),
            None => "/api/calls?limit=2".to_owned(),
        };
        let (status, page) = api(&http, &base, Some(&alice_token), &path).await?;
        ensure!(status == 200, "{status} {page}");
        let calls = page["calls"].as_array().context("calls")?;
        pages.push(calls.len());
        seen.extend(calls.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let want: Vec<String> = expected
        .iter()
        .map(|(id, ..)| id.as_str().to_owned())
        .collect();
    ensure!(seen == want, "pages {pages:?}: {seen:?} != {want:?}");
    ensure!(pages == [2, 2, 1], "pages {pages:?}");
    let (status, page) = api(
        &http,
        &base,
        Some(&alice_token),
        "/api/calls?outcome=missed",
    )
    .await?;
    ensure!(
        status == 200 && page["calls"].as_array().unwrap().len() == 1,
        "{page}"
    );

    // Nobody reads another user's calls; no token is a 401.
    let (status, page) = api(&http, &base, Some(&carol_token), "/api/calls").await?;
    ensure!(
        status == 200 && page["calls"].as_array().unwrap().is_empty(),
        "{page}"
    );
    let (status, body) = api(
        &http,
        &base,
        Some(&carol_token),
        &format!("/api/calls/{}", completed.as_str()),
    )
    .await?;
    ensure!(
        status == 404 && body["error"]["code"] == "unknown_call",
        "{status} {body}"
    );
    let (status, body) = api(&http, &base, None, "/api/calls").await?;
    ensure!(
        status == 401 && body["error"]["code"] == "missing_token",
        "{status} {body}"
    );

    alice.close().await;
    bob.close().await;
    carol.close().await;
    server.stop().await;
    Ok(())
}

/// A free local TCP port for the child server.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_closes_calls_a_crash_left_open() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let database_url = format!(
        "sqlite://{}?mode=rwc",
        scratch.path().join("history.sqlite").display()
    );
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "--http-addr",
            &format!("127.0.0.1:{port}"),
            "--media-addr",
            "127.0.0.1:0",
        ])
        .args([
            "--database-url",
            &database_url,
            "--token-secret",
            TEST_SECRET,
        ])
        .arg("--recording-dir")
        .arg(scratch.path().join("recordings"))
        .arg("--web-dir")
        .arg(scratch.path())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .context("starting the switchboard binary")?;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        ensure!(Instant::now() < deadline, "child server never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An active call with media, and a ringing one.
    let (alice, _alice_ev, alice_token) = join(&http, &base, "Alice").await?;
    let (bob, mut bob_ev, _) = join(&http, &base, "Bob").await?;
    let (carol, _carol_ev, carol_token) = join(&http, &base, "Carol").await?;
    let (dave, mut dave_ev, _) = join(&http, &base, "Dave").await?;
    let active = alice
        .signaling()
        .initiate_call(&bob.user().id, CallKind::Voice)
        .await?;
    wait_for("bob", &mut bob_ev, SIGNAL_TIMEOUT, incoming).await?;
    bob.signaling().accept_call(&active).await?;
    media_flows(&bob, alice.user(), MediaKind::Audio, 25).await?;
    let ringing = carol
        .signaling()
        .initiate_call(&dave.user().id, CallKind::Video)
        .await?;
    wait_for("dave", &mut dave_ev, SIGNAL_TIMEOUT, incoming).await?;
    // The reports are in the database before the crash.
    call_until(
        &http,
        &base,
        &alice_token,
        &active,
        "active with media",
        |c| c["state"] == "active" && c["participants"][0]["joined_at"].is_i64(),
    )
    .await?;
    call_until(&http, &base, &carol_token, &ringing, "ringing", |c| {
        c["state"] == "ringing"
    })
    .await?;

    // Crash: SIGKILL, nothing ends gracefully.
    child.kill().await?;
    let killed_at = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    alice.close().await;
    bob.close().await;
    carol.close().await;
    dave.close().await;

    let mut config = ServerConfig::for_tests();
    config.database_url = database_url;
    let server = TestServer::start(config).await?;
    let call = call_until(
        &http,
        &server.base,
        &alice_token,
        &active,
        "closed",
        is_ended,
    )
    .await?;
    ensure!(
        call["outcome"] == "completed" && call["interrupted"] == true,
        "{call}"
    );
    ensure!(call["ended_at"].as_i64().unwrap() >= killed_at, "{call}");
    ensure!(call["duration_ms"].as_i64().unwrap() > 0, "{call}");
    ensure!(
        call["participants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["left_at"].is_i64()),
        "{call}"
    );
    let call = call_until(
        &http,
        &server.base,
        &carol_token,
        &ringing,
        "closed",
        is_ended,
    )
    .await?;
    ensure!(
        call["outcome"] == "failed" && call["interrupted"] == true,
        "{call}"
    );
    ensure!(call["answered_at"].is_null(), "{call}");
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_call_is_recorded_listed_and_downloaded() -> Result<()> {
    let server = TestServer::start(ServerConfig::for_tests()).await?;
    let recording_dir = server.config.recording_dir.clone();
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let (alice, mut alice_ev, alice_token) = join(&http, &base, "Alice").await?;
    let (bob, mut bob_ev, bob_token) = join(&http, &base, "Bob").await?;
    let (carol, _carol_ev, carol_token) = join(&http, &base, "Carol").await?;
    let (a, b) = (alice.signaling(), bob.signaling());

    let call = a.initiate_call(&bob.user().id, CallKind::Video).await?;
    wait_for("bob", &mut bob_ev, SIGNAL_TIMEOUT, incoming).await?;
    ensure!(refused_code(emit(a, "start_recording", &call).await) == "invalid_state");
    b.accept_call(&call).await?;
    media_flows(&bob, alice.user(), MediaKind::Video, 90).await?;
    media_flows(&alice, bob.user(), MediaKind::Video, 90).await?;

    ensure!(refused_code(emit(b, "stop_recording", &call).await) == "not_recording");
    ensure!(
        refused_code(emit(carol.signaling(), "start_recording", &call).await)
            == "not_a_participant"
    );
    let started = Instant::now();
    emit(a, "start_recording", &call).await?;
    for (who, events) in [("alice", &mut alice_ev), ("bob", &mut bob_ev)] {
        let body = wait_for(
            who,
            events,
            SIGNAL_TIMEOUT,
            named("recording_started", &call),
        )
        .await?;
        ensure!(
            body["by"]["id"] == alice.user().id.as_str() && body["by"]["name"] == "Alice",
            "{body}"
        );
    }
    ensure!(refused_code(emit(b, "start_recording", &call).await) == "already_recording");
    tokio::time::sleep(Duration::from_secs(5)).await;
    emit(b, "stop_recording", &call).await?;
    let recorded = started.elapsed().as_secs_f64();
    for (who, events) in [("alice", &mut alice_ev), ("bob", &mut bob_ev)] {
        let body = wait_for(
            who,
            events,
            SIGNAL_TIMEOUT,
            named("recording_stopped", &call),
        )
        .await?;
        ensure!(body["reason"] == "requested", "{body}");
    }

    // Both participants' files reach the history, with size and duration.
    let detail = call_until(&http, &base, &bob_token, &call, "two recordings", |c| {
        finished_recordings(c, 2)
    })
    .await?;
    let files = webm_files(&recording_dir)?;
    ensure!(files.len() == 2, "files: {files:?}");
    for recording in detail["recordings"].as_array().unwrap() {
        ensure!(
            recording["started_by"] == alice.user().id.as_str(),
            "{recording}"
        );
        ensure!(
            recording.get("path").is_none(),
            "server path leaked: {recording}"
        );
        let duration_ms = recording["duration_ms"].as_f64().unwrap();
        ensure!(
            (duration_ms / 1000.0 - recorded).abs() <= recorded * 0.1,
            "history duration {duration_ms} ms vs {recorded:.2} s"
        );
        let bytes = recording["bytes"].as_u64().unwrap();
        let participant = recording["participant"].as_str().unwrap();
        let file = files
            .iter()
            .find(|f| {
                f.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .contains(participant)
            })
            .with_context(|| format!("no file for {participant}"))?;
        ensure!(
            std::fs::metadata(file)?.len() == bytes,
            "size of {file:?} != {bytes}"
        );
        let (codecs, probed) = probe(file)?;
        eprintln!("recording of {participant}: {bytes} bytes, history {duration_ms} ms, ffprobe {probed:.3} s, codecs {codecs:?}, recorded for {recorded:.3} s");
        ensure!(
            codecs.contains(&"opus".to_owned()) && codecs.contains(&"vp8".to_owned()),
            "codecs {codecs:?}"
        );
        ensure!(
            (probed - recorded).abs() <= recorded * 0.1,
            "ffprobe duration {probed} vs {recorded:.3} s"
        );
        let errors = decode_errors(file)?;
        ensure!(
            errors.trim().is_empty(),
            "ffmpeg decode errors in {file:?}: {errors}"
        );

        // Download: participants only, with Range support.
        let path = format!("/api/recordings/{}", recording["id"].as_str().unwrap());
        let (status, body) = api(&http, &base, Some(&carol_token), &path).await?;
        ensure!(
            status == 404 && body["error"]["code"] == "unknown_recording",
            "{status} {body}"
        );
        let (status, body) = api(&http, &base, None, &path).await?;
        ensure!(
            status == 401 && body["error"]["code"] == "missing_token",
            "{status} {body}"
        );
        let response = http
            .get(format!("{base}{path}"))
            .bearer_auth(&alice_token)
            .header("Range", "bytes=100-1099")
            .send()
            .await?;
        ensure!(
            response.status().as_u16() == 206,
            "range status {}",
            response.status()
        );
        ensure!(
            response.headers()["content-type"] == "video/webm",
            "{:?}",
            response.headers()
        );
        let part = response.bytes().await?;
        ensure!(
            part[..] == std::fs::read(file)?[100..1100],
            "range bytes differ"
        );
        let response = http
            .get(format!("{base}{path}"))
            .bearer_auth(&bob_token)
            .send()
            .await?;
        ensure!(response.status().as_u16() == 200);
        ensure!(response.bytes().await?.len() as u64 == bytes);
    }
    let (status, _) = api(
        &http,
        &base,
        Some(&carol_token),
        "/api/recordings/no-such-recording",
    )
    .await?;
    ensure!(status == 404);

    // Recording again, then the call ends: the recording stops with it.
    emit(b, "start_recording", &call).await?;
    wait_for(
        "alice",
        &mut alice_ev,
        SIGNAL_TIMEOUT,
        named("recording_started", &call),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.end_call(&call, None).await?;
    let body = wait_for(
        "bob",
        &mut bob_ev,
        SIGNAL_TIMEOUT,
        named("recording_stopped", &call),
    )
    .await?;
    ensure!(body["reason"] == "call_ended", "{body}");
    wait_for("bob", &mut bob_ev, SIGNAL_TIMEOUT, ended(&call)).await?;
    let detail = call_until(&http, &base, &alice_token, &call, "four recordings", |c| {
        is_ended(c) && finished_recordings(c, 4)
    })
    .await?;
    ensure!(
        detail["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["started_by"] == bob.user().id.as_str())
            .count()
            == 2,
        "{detail}"
    );

    alice.close().await;
    bob.close().await;
    carol.close().await;
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_needs_the_record_grant() -> Result<()> {
    let server = TestServer::start(ServerConfig::for_tests()).await?;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let (alice, _alice_ev, _) = join(&http, &base, "Alice").await?;
    // Dave may call but not record: a plain signaling client, no media needed.
    let dave = UserInfo {
        id: loadtest::UserId("00000000-0000-4000-8000-00000000da7e".into()),
        name: "Dave".into(),
    };
    let grants = Grants {
        record: false,
        ..Grants::full()
    };
    let (d, mut dave_ev) =
        SignalingClient::connect(&base, &token_for(&dave, grants), SignalingConfig::default())
            .await?;
    // Dave is online once the server registered his socket, just after the connect ack.
    let deadline = Instant::now() + SIGNAL_TIMEOUT;
    let call = loop {
        match alice
            .signaling()
            .initiate_call(&dave.id, CallKind::Voice)
            .await
        {
            Err(SignalingError::Refused { code, .. })
                if code == "user_offline" && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => break other?,
        }
    };
    wait_signal("dave", &mut dave_ev, incoming).await?;
    d.accept_call(&call).await?;
    ensure!(refused_code(emit(&d, "start_recording", &call).await) == "missing_grant");
    ensure!(refused_code(emit(&d, "stop_recording", &call).await) == "missing_grant");
    let error = wait_signal("dave", &mut dave_ev, |e| match e {
        ServerEvent::Error(e) if e.event.as_deref() == Some("start_recording") => Some(e.clone()),
        _ => None,
    })
    .await?;
    ensure!(
        error.code == "missing_grant" && error.call_id.as_ref() == Some(&call),
        "{error:?}"
    );
    d.end_call(&call, None).await?;
    d.close();
    alice.close().await;
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_stops_recording_and_keeps_every_file() -> Result<()> {
    let server = TestServer::start(ServerConfig::for_tests()).await?;
    let config = server.config.clone();
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let (alice, mut alice_ev, alice_token) = join(&http, &base, "Alice").await?;
    let (bob, mut bob_ev, _) = join(&http, &base, "Bob").await?;
    let call = alice
        .signaling()
        .initiate_call(&bob.user().id, CallKind::Voice)
        .await?;
    wait_for("bob", &mut bob_ev, SIGNAL_TIMEOUT, incoming).await?;
    bob.signaling().accept_call(&call).await?;
    media_flows(&bob, alice.user(), MediaKind::Audio, 50).await?;
    emit(alice.signaling(), "start_recording", &call).await?;
    wait_for(
        "bob",
        &mut bob_ev,
        SIGNAL_TIMEOUT,
        named("recording_started", &call),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    server.stop().await;
    for (who, events) in [("alice", &mut alice_ev), ("bob", &mut bob_ev)] {
        let body = wait_for(
            who,
            events,
            SIGNAL_TIMEOUT,
            named("recording_stopped", &call),
        )
        .await?;
        ensure!(body["reason"] == "shutdown", "{who}: {body}");
        let reason = wait_for(who, events, SIGNAL_TIMEOUT, ended(&call)).await?;
        ensure!(reason == EndReason::Shutdown, "{who}: {reason:?}");
    }
    alice.close().await;
    bob.close().await;

    // Everything was written before the store closed: read it back through a new server.
    let server = TestServer::start(config.clone()).await?;
    let (status, detail) = api(
        &http,
        &server.base,
        Some(&alice_token),
        &format!("/api/calls/{}", call.as_str()),
    )
    .await?;
    ensure!(status == 200, "{status} {detail}");
    ensure!(
        detail["outcome"] == "completed" && detail["interrupted"] == false,
        "{detail}"
    );
    let recordings = detail["recordings"].as_array().context("recordings")?;
    ensure!(recordings.len() == 2, "{detail}");
    let files = webm_files(&config.recording_dir)?;
    ensure!(files.len() == 2, "{files:?}");
    for recording in recordings {
        let duration = recording["duration_ms"].as_u64().unwrap();
        ensure!((1_500..3_500).contains(&duration), "{recording}");
        let (codecs, _) = probe(
            files
                .iter()
                .find(|f| {
                    f.to_string_lossy()
                        .contains(recording["participant"].as_str().unwrap())
                })
                .context("file")?,
        )?;
        ensure!(codecs == ["opus"], "voice call, audio only: {codecs:?}");
    }
    server.stop().await;
    Ok(())
}
