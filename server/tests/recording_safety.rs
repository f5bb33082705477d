//! Recording rules and safety, end to end through the real server (Socket.IO clients, webrtc-rs
//! media, the HTTP API, the `switchboard` binary for crashes): who may stop a recording and
//! download it, concurrency caps, crash recovery and history writes under a locked database.
//! (docs/security.md findings 7, 8, 14, 15, 16; docs/history.md.)

mod recording_common;
use recording_common::*;

/// Finding 8: stopping needs the `record` grant and a member who joined — a ringing invitee
/// with no grants at all, a ringing invitee with every grant, and a joined member without
/// `record` are all refused, and the recording keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_joined_members_with_record_can_stop_a_recording() -> Result<()> {
    let server = TestServer::start(ServerConfig::for_tests()).await?;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let (alice, mut alice_ev, _) = join(&http, &base, "Alice").await?;
    let (bob, mut bob_ev, _) = join(&http, &base, "Bob").await?;
    let call = two_person_call(&alice, &bob, &mut bob_ev, CallKind::Voice).await?;
    emit(alice.signaling(), "start_recording", &call).await?;
    wait_for(
        "alice",
        &mut alice_ev,
        SIGNAL_TIMEOUT,
        named("recording_started", &call),
    )
    .await?;

    let no_record = Grants {
        record: false,
        ..Grants::full()
    };
    let (dave, d, mut dave_ev) = signaling_user(
        &base,
        "00000000-0000-4000-8000-0000000000d1",
        "Dave",
        Grants::default(),
    )
    .await?;
    let (erin, e, mut erin_ev) = signaling_user(
        &base,
        "00000000-0000-4000-8000-0000000000e1",
        "Erin",
        Grants::full(),
    )
    .await?;
    let (carol, c, mut carol_ev) = signaling_user(
        &base,
        "00000000-0000-4000-8000-0000000000c1",
        "Carol",
        no_record,
    )
    .await?;
    let b = bob.signaling();
    for (user, events) in [
        (&dave, &mut dave_ev),
        (&erin, &mut erin_ev),
        (&carol, &mut carol_ev),
    ] {
        invite_when_online(b, &call, user).await?;
        wait_signal(&user.name, events, incoming).await?;
    }
    c.accept_call(&call).await?;

    // Dave and Erin are only ringing; Carol joined but may not record.
    let code = refused_code(emit(&d, "stop_recording", &call).await);
    ensure!(
        code == "missing_grant",
        "ringing invitee without grants: {code}"
    );
    let code = refused_code(emit(&e, "stop_recording", &call).await);
    ensure!(
        code == "invalid_state",
        "ringing invitee with every grant: {code}"
    );
    let code = refused_code(emit(&c, "stop_recording", &call).await);
    ensure!(
        code == "missing_grant",
        "joined member without record: {code}"
    );

    // Still recording: a joined member with `record` stops it, and everyone hears it once.
    emit(b, "stop_recording", &call).await?;
    let body = wait_for(
        "alice",
        &mut alice_ev,
        SIGNAL_TIMEOUT,
        named("recording_stopped", &call),
    )
    .await?;
    ensure!(body["reason"] == "requested", "{body}");

    d.reject_call(&call).await?;
    e.reject_call(&call).await?;
    c.leave_call(&call, None).await?;
    for client in [d, e, c] {
        client.close();
    }
    alice.close().await;
    bob.close().await;
    server.stop().await;
    Ok(())
}

/// Finding 7: a call's recordings are listed and downloadable only for members who were in
/// the call while it was recorded. Mallory declined, Nina never answered, Carol joined and
/// left before the recording started: the call is in their history, its recordings are not,
/// and downloading them is a 404 like any unknown recording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_are_only_for_members_present_while_recording() -> Result<()> {
    let server = TestServer::start(ServerConfig::for_tests()).await?;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let (alice, _alice_ev, alice_token) = join(&http, &base, "Alice").await?;
    let (bob, mut bob_ev, bob_token) = join(&http, &base, "Bob").await?;
    let (carol, mut carol_ev, carol_token) = join(&http, &base, "Carol").await?;
    let (mallory, m, mut mallory_ev) = signaling_user(
        &base,
        "00000000-0000-4000-8000-0000000000a7",
        "Mallory",
        Grants::full(),
    )
    .await?;
    let (nina, n, mut nina_ev) = signaling_user(
        &base,
        "00000000-0000-4000-8000-0000000000b7",
        "Nina",
        Grants::full(),
    )
    .await?;
    let a = alice.signaling();
    let call = a
        .initiate_group_call(
            &[bob.user().id.clone(), carol.user().id.clone()],
            CallKind::Voice,
        )
        .await?;
    for user in [&mallory, &nina] {
        invite_when_online(a, &call, user).await?;
    }
    wait_signal("mallory", &mut mallory_ev, incoming).await?;
    wait_signal("nina", &mut nina_ev, incoming).await?;
    m.reject_call(&call).await?;
    for (p, events) in [(&bob, &mut bob_ev), (&carol, &mut carol_ev)] {
        wait_for("callee", events, SIGNAL_TIMEOUT, incoming).await?;
        p.signaling().accept_call(&call).await?;
    }
    media_flows(&carol, alice.user(), MediaKind::Audio, 25).await?;
    media_flows(&bob, alice.user(), MediaKind::Audio, 25).await?;
    media_flows(&alice, bob.user(), MediaKind::Audio, 25).await?;
    // Carol's stay is in the history before the recording starts.
    carol.signaling().leave_call(&call, None).await?;
    call_until(&http, &base, &alice_token, &call, "carol left", |c| {
        c["participants"].as_array().is_some_and(|ps| {
            ps.iter()
                .any(|p| p["name"] == "Carol" && p["left_at"].is_i64())
        })
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(50)).await;

    emit(a, "start_recording", &call).await?;
    wait_for(
        "bob",
        &mut bob_ev,
        SIGNAL_TIMEOUT,
        named("recording_started", &call),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    emit(a, "stop_recording", &call).await?;
    let detail = call_until(&http, &base, &bob_token, &call, "two recordings", |c| {
        finished_recordings(c, 2)
    })
    .await?;
    let ids: Vec<String> = detail["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();

    let outsiders = [
        ("mallory (declined)", token_for(&mallory, Grants::full())),
        ("nina (never answered)", token_for(&nina, Grants::full())),
        ("carol (left before)", carol_token.clone()),
    ];
    for (who, token) in &outsiders {
        let (status, call_json) = api(
            &http,
            &base,
            Some(token),
            &format!("/api/calls/{}", call.as_str()),
        )
        .await?;
        ensure!(
            status == 200,
            "{who}: the call stays in their history: {status}"
        );
        ensure!(
            call_json["recordings"]
                .as_array()
                .is_some_and(|r| r.is_empty()),
            "{who} sees recordings: {call_json}"
        );
        let (status, list) = api(&http, &base, Some(token), "/api/calls").await?;
        ensure!(status == 200, "{who}: {status}");
        let listed = list["calls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == call.as_str())
            .with_context(|| format!("{who}: call not listed: {list}"))?;
        ensure!(
            listed["recordings"]
                .as_array()
                .is_some_and(|r| r.is_empty()),
            "{who} lists recordings: {listed}"
        );
        for id in &ids {
            let (status, body) =
                api(&http, &base, Some(token), &format!("/api/recordings/{id}")).await?;
            ensure!(
                status == 404 && body["error"]["code"] == "unknown_recording",
                "{who} downloads {id}: {status} {body}"
            );
        }
    }
    for token in [&alice_token, &bob_token] {
        for id in &ids {
            let response = http
                .get(format!("{base}/api/recordings/{id}"))
                .bearer_auth(token)
                .send()
                .await?;
            ensure!(response.status().as_u16() == 200, "{}", response.status());
        }
    }

    a.end_call(&call, None).await?;
    m.close();
    n.close();
    alice.close().await;
    bob.close().await;
    carol.close().await;
    server.stop().await;
    Ok(())
}

/// Finding 16: the server records at most `--max-recordings` calls at once; one more is a
/// clear `limit_exceeded`, and room frees up when a recording stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_recordings_are_capped() -> Result<()> {
    let mut config = ServerConfig::for_tests();
    config.recording.max_recordings = 1;
    let server = TestServer::start(config).await?;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let (alice, mut alice_ev, _) = join(&http, &base, "Alice").await?;
    let (bob, mut bob_ev, _) = join(&http, &base, "Bob").await?;
    let (carol, mut carol_ev, _) = join(&http, &base, "Carol").await?;
    let (dave, mut dave_ev, _) = join(&http, &base, "Dave").await?;
    let first = two_person_call(&alice, &bob, &mut bob_ev, CallKind::Voice).await?;
    let second = two_person_call(&carol, &dave, &mut dave_ev, CallKind::Voice).await?;

    emit(alice.signaling(), "start_recording", &first).await?;
    wait_for(
        "alice",
        &mut alice_ev,
        SIGNAL_TIMEOUT,
        named("recording_started", &first),
    )
    .await?;
    let refused = emit(carol.signaling(), "start_recording", &second).await;
    let code = refused_code(refused);
    ensure!(code == "limit_exceeded", "second recording: {code}");
    // The refusal also comes as an `error` event naming the call.
    let error = wait_for("carol", &mut carol_ev, SIGNAL_TIMEOUT, |e| match e {
        ServerEvent::Error(e) if e.event.as_deref() == Some("start_recording") => Some(e.clone()),
        _ => None,
    })
    .await?;
    ensure!(error.code == "limit_exceeded", "{error:?}");

    emit(bob.signaling(), "stop_recording", &first).await?;
    wait_for(
        "alice",
        &mut alice_ev,
        SIGNAL_TIMEOUT,
        named("recording_stopped", &first),
    )
    .await?;
    emit(carol.signaling(), "start_recording", &second).await?;
    wait_for(
        "dave",
        &mut dave_ev,
        SIGNAL_TIMEOUT,
        named("recording_started", &second),
    )
    .await?;

    for p in [alice, bob, carol, dave] {
        p.close().await;
    }
    server.stop().await;
    Ok(())
}

/// Finding 16, the per-user cap: Alice starts recording a three-person call and leaves it (the
/// call and its recording go on with Bob and Carol). In her next call her second recording is
/// refused with `limit_exceeded`, while Dave, in that same call, may record it: the cap counts
/// recordings per user who started them, not per call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_per_user_are_capped() -> Result<()> {
    let mut config = ServerConfig::for_tests();
    config.recording.max_recordings_per_user = 1;
    let server = TestServer::start(config).await?;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let (alice, mut alice_ev, _) = join(&http, &base, "Alice").await?;
    let (bob, mut bob_ev, _) = join(&http, &base, "Bob").await?;
    let (carol, mut carol_ev, _) = join(&http, &base, "Carol").await?;
    let (dave, mut dave_ev, _) = join(&http, &base, "Dave").await?;
    let first = two_person_call(&alice, &bob, &mut bob_ev, CallKind::Voice).await?;
    invite_when_online(alice.signaling(), &first, carol.user()).await?;
    wait_for("carol", &mut carol_ev, SIGNAL_TIMEOUT, incoming).await?;
    carol.signaling().accept_call(&first).await?;
    emit(alice.signaling(), "start_recording", &first).await?;
    wait_for(
        "alice",
        &mut alice_ev,
        SIGNAL_TIMEOUT,
        named("recording_started", &first),
    )
    .await?;
    alice.signaling().leave_call(&first, None).await?;

    let second = two_person_call(&alice, &dave, &mut dave_ev, CallKind::Voice).await?;
    let code = refused_code(emit(alice.signaling(), "start_recording", &second).await);
    ensure!(code == "limit_exceeded", "Alice's second recording: {code}");
    emit(dave.signaling(), "start_recording", &second).await?;
    wait_for(
        "alice",
        &mut alice_ev,
        SIGNAL_TIMEOUT,
        named("recording_started", &second),
    )
    .await?;

    for p in [alice, bob, carol, dave] {
        p.close().await;
    }
    server.stop().await;
    Ok(())
}

/// Starts the `switchboard` binary on `database_url` and `recording_dir`; returns it once
/// it answers `/healthz`.
async fn spawn_binary(
    http: &reqwest::Client,
    database_url: &str,
    recording_dir: &Path,
    web_dir: &Path,
) -> Result<(tokio::process::Child, String)> {
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "--http-addr",
            &format!("127.0.0.1:{port}"),
            "--media-addr",
            "127.0.0.1:0",
        ])
        .args([
            "--database-url",
            database_url,
            "--token-secret",
            TEST_SECRET,
        ])
        .args(["--recording-min-free-mb", "1"])
        .arg("--recording-dir")
        .arg(recording_dir)
        .arg("--web-dir")
        .arg(web_dir)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .context("starting the switchboard binary")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        ensure!(Instant::now() < deadline, "child server never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((child, base))
}

/// Finding 14: a recording survives a SIGKILL of the server. While recording, both files are
/// in the history as `recording` (and not downloadable yet). After `kill -9` and a restart on
/// the same database and directory they are `interrupted`, with the size on disk, and
/// downloadable; a `.webm` file no row names is deleted, so nothing is orphaned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_leaves_interrupted_recordings_not_orphans() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let database_url = format!(
        "sqlite://{}?mode=rwc",
        scratch.path().join("history.sqlite").display()
    );
    let recording_dir = scratch.path().join("recordings");
    let http = reqwest::Client::new();
    let (mut child, base) =
        spawn_binary(&http, &database_url, &recording_dir, scratch.path()).await?;

    let (alice, mut alice_ev, alice_token) = join(&http, &base, "Alice").await?;
    let (bob, mut bob_ev, bob_token) = join(&http, &base, "Bob").await?;
    let call = two_person_call(&alice, &bob, &mut bob_ev, CallKind::Voice).await?;
    emit(alice.signaling(), "start_recording", &call).await?;
    wait_for(
        "alice",
        &mut alice_ev,
        SIGNAL_TIMEOUT,
        named("recording_started", &call),
    )
    .await?;
    let live = call_until(
        &http,
        &base,
        &bob_token,
        &call,
        "two files recording",
        |c| {
            c["recordings"]
                .as_array()
                .is_some_and(|r| r.len() == 2 && r.iter().all(|r| r["state"] == "recording"))
        },
    )
    .await?;
    let first_id = live["recordings"][0]["id"].as_str().unwrap().to_owned();
    let (status, body) = api(
        &http,
        &base,
        Some(&alice_token),
        &format!("/api/recordings/{first_id}"),
    )
    .await?;
    ensure!(
        status == 409 && body["error"]["code"] == "recording_in_progress",
        "{status} {body}"
    );
    // Several 1 s clusters reach the files.
    tokio::time::sleep(Duration::from_secs(4)).await;

    child.kill().await?; // SIGKILL: nothing is finalised.
    alice.close().await;
    bob.close().await;
    let files = webm_files(&recording_dir)?;
    ensure!(files.len() == 2, "{files:?}");
    // A file the history never heard of (the crash came before its row was written).
    let stray = recording_dir.join("stray-call-stray-user-1-00000000.webm");
    std::fs::copy(&files[0], &stray)?;

    let mut config = ServerConfig::for_tests();
    config.database_url = database_url;
    config.recording_dir = recording_dir.clone();
    let server = TestServer::start(config).await?;
    let detail = call_until(
        &http,
        &server.base,
        &alice_token,
        &call,
        "interrupted",
        |c| {
            is_ended(c)
                && c["recordings"]
                    .as_array()
                    .is_some_and(|r| r.len() == 2 && r.iter().all(|r| r["state"] == "interrupted"))
        },
    )
    .await?;
    ensure!(!stray.exists(), "the stray file is still there");
    ensure!(
        webm_files(&recording_dir)?.len() == 2,
        "{:?}",
        webm_files(&recording_dir)?
    );
    for recording in detail["recordings"].as_array().unwrap() {
        let bytes = recording["bytes"].as_u64().unwrap();
        let duration_ms = recording["duration_ms"].as_u64().unwrap();
        ensure!(bytes > 1000, "{recording}");
        ensure!((2_000..15_000).contains(&duration_ms), "{recording}");
        let response = http
            .get(format!(
                "{}/api/recordings/{}",
                server.base,
                recording["id"].as_str().unwrap()
            ))
            .bearer_auth(&bob_token)
            .send()
            .await?;
        ensure!(response.status().as_u16() == 200, "{}", response.status());
        let body = response.bytes().await?;
        ensure!(
            body.len() as u64 == bytes,
            "served {} of {bytes}",
            body.len()
        );
        let participant = recording["participant"].as_str().unwrap();
        let file = webm_files(&recording_dir)?
            .into_iter()
            .find(|f| f.to_string_lossy().contains(participant))
            .with_context(|| format!("no file for {participant}"))?;
        let (codecs, packets) = probe_packets(&file)?;
        eprintln!("interrupted recording of {participant}: {bytes} bytes, {duration_ms} ms in the history, ffprobe reads {packets} packets {codecs:?}");
        ensure!(codecs == ["opus"], "{codecs:?}");
        // 50 Opus frames a second: at least 2 s of the 4 s recorded are playable.
        ensure!(packets >= 100, "only {packets} packets readable");
    }
    server.stop().await;
    Ok(())
}

/// Finding 15: the history writer retries. An exclusive SQLite lock held for longer than the
/// 5 s busy timeout while calls start and end used to drop those reports; now every call is in
/// the history once the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_writes_survive_a_locked_database() -> Result<()> {
    use std::io::{BufRead, Write};
    let server = TestServer::start(ServerConfig::for_tests()).await?;
    let base = server.base.clone();
    let db_path = server
        .config
        .database_url
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let http = reqwest::Client::new();
    let (alice, alice_ev, alice_token) = join(&http, &base, "Alice").await?;
    let (bob, mut bob_ev, _) = join(&http, &base, "Bob").await?;
    drop(alice_ev);

    // Another process takes the write lock and keeps it for 8 s.
    let mut sqlite = std::process::Command::new("sqlite3")
        .arg(&db_path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running sqlite3")?;
    let mut stdin = sqlite.stdin.take().unwrap();
    writeln!(stdin, "BEGIN EXCLUSIVE; SELECT 'locked';")?;
    stdin.flush()?;
    let mut line = String::new();
    std::io::BufReader::new(sqlite.stdout.take().unwrap()).read_line(&mut line)?;
    ensure!(line.trim() == "locked", "sqlite3 said {line:?}");
    let locked_at = Instant::now();

    let mut calls = Vec::new();
    for _ in 0..3 {
        let call = alice
            .signaling()
            .initiate_call(&bob.user().id, CallKind::Voice)
            .await?;
        wait_for("bob", &mut bob_ev, SIGNAL_TIMEOUT, incoming).await?;
        bob.signaling().accept_call(&call).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        alice.signaling().end_call(&call, None).await?;
        wait_for("bob", &mut bob_ev, SIGNAL_TIMEOUT, ended(&call)).await?;
        calls.push(call);
    }
    let hold = Duration::from_secs(8).saturating_sub(locked_at.elapsed());
    tokio::time::sleep(hold).await;
    writeln!(stdin, "COMMIT;")?;
    drop(stdin);
    sqlite.wait()?;

    // Retries are up to 5 s apart, each waiting out a 5 s busy timeout.
    for call in &calls {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = api(
                &http,
                &base,
                Some(&alice_token),
                &format!("/api/calls/{}", call.as_str()),
            )
            .await?;
            if status == 200 && body["outcome"] == "completed" {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "call {} lost: {status} {body}",
                call.as_str()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    alice.close().await;
    bob.close().await;
    server.stop().await;
    Ok(())
}
