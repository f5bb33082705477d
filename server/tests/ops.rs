//! Operations through the wire: secrets (files, rotation, strength), token policy (finding 19,
//! 23), `/healthz` and `/readyz`, the `healthcheck` subcommand, the separate metrics listener.

#[path = "../../signaling/tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::{Client, DEADLINE};
use serde_json::{json, Value};
use switchboard::{Server, ServerConfig};
use switchboard_signaling::identity::{unix_now, TokenIssuer, TokenKey, TokenPolicy};
use switchboard_signaling::{Claims, Grants};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const BINARY: &str = env!("CARGO_BIN_EXE_switchboard");
const GOOD_SECRET: &str = "Jx0Qe1m8yq5m8c0k7mTKZ0hN6a8Wq3vQ9yLk2pXr1bE=";
const OLD_SECRET: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

async fn start(config: ServerConfig) -> (Server, SocketAddr) {
    let server = Server::bind(config).await.expect("binds");
    let addr = server.http_addr();
    (server, addr)
}

fn run(server: Server) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    tx
}

/// `GET path` with an optional bearer token: (status, body).
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .expect("response in time")
        .unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn claims(sub: &str) -> Claims {
    Claims {
        sub: sub.into(),
        name: "Mallory".into(),
        exp: unix_now() + 600,
        grants: Grants::full(),
    }
}

fn sign_with(secret: &str, kid: Option<&str>, claims: &Claims) -> String {
    TokenIssuer::with_keys(
        &[TokenKey {
            kid: kid.map(str::to_owned),
            secret: secret.as_bytes().to_vec(),
        }],
        Duration::from_secs(3600),
        TokenPolicy::default(),
    )
    .sign(claims)
}

/// Runs the real binary with `args` (and no SWITCHBOARD_* environment) until it either prints
/// its listening line (then it is stopped) or exits: (started, stderr).
async fn run_binary(args: &[&str]) -> (bool, String) {
    let scratch = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(BINARY);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SWITCHBOARD_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .args(["--http-addr", "127.0.0.1:0", "--media-addr", "127.0.0.1:0"])
        .args(args)
        .current_dir(scratch.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("runs the binary");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = stdout.next_line().await {
            if line.starts_with("Switchboard listening on") {
                return true;
            }
        }
        false
    })
    .await
    .expect("starts or exits in time");
    if started {
        child.start_kill().unwrap();
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    let _ = child.wait().await;
    (started, stderr)
}

#[tokio::test]
async fn production_binary_refuses_missing_placeholder_and_weak_secrets() {
    let (started, stderr) = run_binary(&["--production"]).await;
    assert!(!started);
    assert!(stderr.contains("--token-secret-file"), "{stderr}");
    assert!(stderr.contains("openssl rand -base64 32"), "{stderr}");

    // The secret the deploy files used to ship (security review finding 5).
    let (started, stderr) = run_binary(&[
        "--production",
        "--token-secret",
        "change-me-to-32-random-bytes-please",
    ])
    .await;
    assert!(!started);
    assert!(stderr.contains("placeholder"), "{stderr}");

    let (started, stderr) = run_binary(&["--production", "--token-secret", &"ab".repeat(20)]).await;
    assert!(!started);
    assert!(stderr.contains("entropy"), "{stderr}");

    // 32 bytes at least, in development too.
    let (started, stderr) = run_binary(&["--token-secret", "sixteen-bytes-ok"]).await;
    assert!(!started);
    assert!(stderr.contains("at least 32"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token-secret");
    std::fs::write(&file, format!("{GOOD_SECRET}\n")).unwrap();
    let (started, stderr) = run_binary(&[
        "--production",
        "--token-secret-file",
        file.to_str().unwrap(),
    ])
    .await;
    assert!(started, "{stderr}");
    let (started, stderr) = run_binary(&[
        "--production",
        "--token-secret-file",
        dir.path().join("missing").to_str().unwrap(),
    ])
    .await;
    assert!(!started);
    assert!(
        stderr.contains("cannot read the token secret file"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_rotated_key_file_keeps_old_tokens_valid() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(
        &file,
        format!("# newest first\n2026-12={GOOD_SECRET}\n2026-11={OLD_SECRET}\n"),
    )
    .unwrap();
    let config = ServerConfig {
        production: true,
        demo_sign_in: true,
        token_secret: None,
        token_secret_file: Some(file),
        ..ServerConfig::for_tests()
    };
    let (server, addr) = start(config).await;
    let signaling = server.signaling();
    let _stop = run(server);

    // Issued with the first key, named in the header.
    let (fresh, _) = signaling.issue_session("Ann").unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&fresh).unwrap().kid.as_deref(),
        Some("2026-12")
    );
    assert_eq!(get(addr, "/api/calls", Some(&fresh)).await.0, 200);
    // A token from before the rotation still works, by kid and without one.
    let old = sign_with(OLD_SECRET, Some("2026-11"), &claims("user-1"));
    assert_eq!(get(addr, "/api/calls", Some(&old)).await.0, 200);
    let old_bare = sign_with(OLD_SECRET, None, &claims("user-1"));
    assert_eq!(get(addr, "/api/calls", Some(&old_bare)).await.0, 200);
    // A kid that names another key than the one that signed is refused.
    let mismatched = sign_with(OLD_SECRET, Some("2026-12"), &claims("user-1"));
    assert_eq!(get(addr, "/api/calls", Some(&mismatched)).await.0, 401);
    let unknown = sign_with("another-secret-another-secret-another", None, &claims("u"));
    assert_eq!(get(addr, "/api/calls", Some(&unknown)).await.0, 401);
}

#[tokio::test]
async fn token_policy_is_enforced_on_the_wire() {
    let config = ServerConfig {
        token_issuer: Some("https://auth.example".into()),
        token_audience: Some("switchboard".into()),
        token_max_lifetime_secs: 3600,
        ..ServerConfig::for_tests()
    };
    let secret = config.token_secret.clone().unwrap();
    let (server, addr) = start(config).await;
    let _stop = run(server);
    let now = unix_now();
    let sign = |body: Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &body,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let good = json!({"sub": "u-1", "name": "N", "exp": now + 600,
        "iss": "https://auth.example", "aud": "switchboard"});
    assert_eq!(
        get(addr, "/api/calls", Some(&sign(good.clone()))).await.0,
        200
    );
    let mut refused = Vec::new();
    for (field, value) in [
        ("nbf", json!(now + 300)),
        ("exp", json!(now + 7200)),
        ("iss", json!("https://evil.example")),
        ("aud", json!("another-service")),
        ("sub", json!("bob a=ssrc")),
    ] {
        let mut body = good.clone();
        body[field] = value;
        refused.push((field, get(addr, "/api/calls", Some(&sign(body))).await.0));
    }
    assert!(
        refused.iter().all(|(_, status)| *status == 401),
        "{refused:?}"
    );
}

#[tokio::test]
async fn an_msid_injecting_sub_cannot_connect() {
    let config = ServerConfig::for_tests();
    let secret = config.token_secret.clone().unwrap();
    let (server, addr) = start(config).await;
    let _stop = run(server);
    for sub in ["bob\r\na=ssrc:1 cname:x", "victim-id evil", "<script>"] {
        let token = sign_with(&secret, None, &claims(sub));
        let refused = Client::connect(addr, Some(json!({ "token": token }))).await;
        assert_eq!(refused.err().as_deref(), Some("invalid_token"), "{sub:?}");
    }
    let token = sign_with(&secret, None, &claims("alice@example.com"));
    assert!(Client::connect(addr, Some(json!({ "token": token })))
        .await
        .is_ok());
}

#[tokio::test]
async fn healthz_and_readyz_follow_the_media_task() {
    let (server, addr) = start(ServerConfig::for_tests()).await;
    let sfu = server.sfu();
    let _stop = run(server);
    assert_eq!(get(addr, "/healthz", None).await, (200, "ok".into()));
    assert_eq!(get(addr, "/readyz", None).await, (200, "ok".into()));
    let status = tokio::process::Command::new(BINARY)
        .args(["--http-addr", &addr.to_string(), "healthcheck"])
        .status()
        .await
        .unwrap();
    assert!(status.success());

    // A media task that is gone: both fail, and so does the container health check.
    sfu.shutdown().await;
    let (status, body) = get(addr, "/healthz", None).await;
    assert_eq!((status, body.as_str()), (503, "media task stopped"));
    assert_eq!(get(addr, "/readyz", None).await.0, 503);
    let output = tokio::process::Command::new(BINARY)
        .args(["--http-addr", &addr.to_string(), "healthcheck"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("503"));
}

#[tokio::test]
async fn metrics_addr_moves_metrics_off_the_public_port() {
    let config = ServerConfig {
        metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..ServerConfig::for_tests()
    };
    let (server, addr) = start(config).await;
    let metrics_addr = server.metrics_addr().expect("a metrics listener");
    let _stop = run(server);
    assert_eq!(get(addr, "/metrics", None).await.0, 404);
    let (status, body) = get(metrics_addr, "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("switchboard_media_task_responsive 1"),
        "{body}"
    );
    assert!(body.contains("switchboard_recording_disk_free_bytes"));
    assert!(!body.contains("switchboard_recording_disk_free_bytes -1"));
    // Pre-created before any client event (D13): the dashboard shows 0, not "No data".
    assert!(
        body.contains(r#"switchboard_signaling_events_total{event="stop_recording",result="ok"}"#),
        "{body}"
    );
    // Nothing else is served there.
    assert_eq!(get(metrics_addr, "/api/calls", None).await.0, 404);
}
