//! Operators' view: a real call through an in-process server raises the expected Prometheus
//! metrics, and `/metrics` is valid exposition text (checked by `promtool check metrics` from
//! Debian's `prometheus` package, which scripts/test installs).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use loadtest::{
    CallKind, MediaKind, Participant, ParticipantConfig, ParticipantEvent, ServerEvent,
};
use tokio::time::Instant;

/// The value of one sample line (`name{labels} value`), summed over matching lines.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.split(['{', ' ']).next() == Some(name)
                && labels.iter().all(|label| line.contains(label))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(http: &reqwest::Client, base: &str) -> Result<String> {
    let response = http.get(format!("{base}/metrics")).send().await?;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str()?.to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    Ok(response.text().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_call_raises_the_expected_metrics() -> Result<()> {
    let server = switchboard::Server::bind(switchboard::ServerConfig::for_tests()).await?;
    let base = format!("http://{}", server.http_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let before = scrape(&http, &base).await?;

    let (alice, mut alice_events) =
        Participant::join(&http, &base, "Alice", ParticipantConfig::default()).await?;
    let (bob, mut bob_events) =
        Participant::join(&http, &base, "Bob", ParticipantConfig::default()).await?;
    // Call Bob once Alice sees him online, as a person would.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, alice_events.recv()).await {
            Ok(Some(ParticipantEvent::Signal(
                ServerEvent::Presence { users } | ServerEvent::PresenceUpdate { users, .. },
            ))) if users.iter().any(|u| u.id == bob.user().id) => break,
            Ok(Some(_)) => continue,
            _ => bail!("alice never saw bob online"),
        }
    }
    let call_id = alice
        .signaling()
        .initiate_call(&bob.user().id, CallKind::Video)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, bob_events.recv()).await {
            Ok(Some(ParticipantEvent::Signal(ServerEvent::IncomingCall { .. }))) => break,
            Ok(Some(_)) => continue,
            _ => bail!("bob was never rung"),
        }
    }
    bob.signaling().accept_call(&call_id).await?;
    // A refused event shows up under its error code.
    let refused = bob.signaling().accept_call(&call_id).await;
    assert!(refused.is_err(), "accepting twice is refused");

    let deadline = Instant::now() + Duration::from_secs(30);
    while alice
        .receive_stats()
        .packets_from(bob.user().id.as_str(), MediaKind::Video)
        < 60
    {
        if Instant::now() > deadline {
            bail!("no video reached alice");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Participants hear about each other's tracks and connection quality (every 2 s).
    let bob_id = bob.user().id.as_str().to_owned();
    let (mut tracks, mut quality) = (0, None);
    let deadline_events = Instant::now() + Duration::from_secs(10);
    while tracks < 2 || quality.is_none() {
        match tokio::time::timeout_at(deadline_events, alice_events.recv()).await {
            Ok(Some(ParticipantEvent::Signal(ServerEvent::TrackPublished {
                call_id: id,
                user_id,
                ..
            }))) if user_id.as_str() == bob_id => {
                assert_eq!(id, call_id);
                tracks += 1;
            }
            Ok(Some(ParticipantEvent::Signal(ServerEvent::Unrecognized {
                event,
                payload,
                ..
            }))) if event == "participant_quality" && payload["user_id"] == bob_id.as_str() => {
                quality = Some(payload["quality"].clone())
            }
            Ok(Some(_)) => continue,
            _ => bail!("alice saw {tracks} track_published about bob and quality {quality:?}"),
        }
    }
    let quality = quality.unwrap();
    assert!(
        matches!(quality["level"].as_str(), Some("excellent" | "good")),
        "loopback is clean: {quality}"
    );
    let mos = quality["mos"].as_f64().unwrap();
    assert!((1.0..=4.5).contains(&mos), "{quality}");
    let loss = quality["loss_percent"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&loss), "{quality}");
    assert!(quality["jitter_ms"].as_f64().unwrap() >= 0.0, "{quality}");
    assert!(quality["bitrate_bps"].as_u64().is_some(), "{quality}");

    // The SFU flushes its counters every 200 ms; scrape until they show the call.
    let text = loop {
        let text = scrape(&http, &base).await?;
        if sample(
            &text,
            "switchboard_sfu_rtp_forwarded_packets_total",
            &["kind=\"video\""],
        ) >= 60.0
        {
            break text;
        }
        if Instant::now() > deadline {
            bail!("forwarded video never showed in /metrics:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(sample(&before, "switchboard_sfu_participants", &[]) == 0.0);
    assert_eq!(sample(&text, "switchboard_sfu_participants", &[]), 2.0);
    assert_eq!(
        sample(
            &text,
            "switchboard_sfu_published_tracks",
            &["kind=\"video\""]
        ),
        2.0
    );
    assert!(
        sample(
            &text,
            "switchboard_sfu_rtp_received_bytes_total",
            &["kind=\"audio\""]
        ) > 0.0
    );
    assert_eq!(
        sample(&text, "switchboard_signaling_calls", &["state=\"active\""]),
        1.0
    );
    assert!(sample(&text, "switchboard_socketio_connections", &[]) >= 2.0);
    assert!(
        sample(
            &text,
            "switchboard_signaling_events_total",
            &["event=\"accept_call\"", "result=\"ok\""]
        ) >= 1.0
    );
    assert!(
        sample(
            &text,
            "switchboard_signaling_events_total",
            &["event=\"accept_call\"", "result=\"invalid_state\""]
        ) >= 1.0
            || sample(
                &text,
                "switchboard_signaling_events_total",
                &["event=\"accept_call\"", "result=\"not_a_participant\""]
            ) >= 1.0,
        "the refused accept is counted by its error code"
    );
    assert!(sample(&text, "switchboard_signaling_call_setup_seconds_count", &[]) >= 1.0);
    assert!(sample(&text, "process_resident_memory_bytes", &[]) > 0.0);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            !line.contains(call_id.as_str()) && !line.contains(alice.user().id.as_str()),
            "no per-call or per-user series: {line}"
        );
    }

    // Every metric the provisioned Grafana dashboard queries is exposed.
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/grafana/dashboards/switchboard.json"),
    )?;
    let exposed: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    let mut queried: Vec<String> = dashboard
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("switchboard_") || word.starts_with("process_"))
        .map(|word| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word)
                .to_owned()
        })
        .collect();
    queried.sort();
    queried.dedup();
    assert!(queried.len() >= 15, "{queried:?}");
    for name in &queried {
        assert!(
            exposed.contains(&name.as_str()),
            "the dashboard queries {name}, which /metrics lacks"
        );
    }

    // promtool validates the exposition format and the naming conventions.
    let path = std::env::temp_dir().join(format!("switchboard-metrics-{}.txt", std::process::id()));
    std::fs::write(&path, &text)?;
    let check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path)?)
        .output()
        .context("running promtool (apt-get install prometheus; scripts/test does)")?;
    let _ = std::fs::remove_file(&path);
    assert!(
        check.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    alice.signaling().end_call(&call_id, None).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(&http, &base).await?;
        if sample(
            &text,
            "switchboard_signaling_call_duration_seconds_count",
            &[],
        ) >= 1.0
            && sample(
                &text,
                "switchboard_signaling_calls_ended_total",
                &["reason=\"hangup\""],
            ) >= 1.0
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("call end never showed in /metrics:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    running.await??;
    Ok(())
}
