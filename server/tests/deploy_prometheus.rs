//! The shipped dashboard and alert rules against a real Prometheus (Debian's `prometheus`;
//! scripts/test installs it) scraping a real server on loopback: after one call with media,
//! every dashboard expression returns data and every alert rule evaluates without error
//! (ops review D5, D13, D21, D22).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use loadtest::{CallKind, MediaKind, Participant, ParticipantConfig};
use serde_json::Value;
use switchboard::{Server, ServerConfig};
use tokio::time::Instant;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every `expr` of the dashboard, with the `$instance` variable set to "All" as Grafana does.
fn dashboard_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!("{DEPLOY}/grafana/dashboards/switchboard.json"))
        .expect("dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            exprs.push((
                panel["title"].as_str().unwrap_or_default().to_owned(),
                expr.replace("$instance", ".*"),
            ));
        }
    }
    exprs
}

async fn query(http: &reqwest::Client, prometheus: &str, expr: &str) -> Result<Vec<Value>> {
    let body: Value = http
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await?
        .json()
        .await?;
    if body["status"] != "success" {
        bail!("query failed: {body}");
    }
    Ok(body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// One 1:1 call with media until both sides received packets and quality was scored.
async fn one_call(base_url: &str) -> Result<()> {
    let http = reqwest::Client::new();
    let (alice, _alice_events) =
        Participant::join(&http, base_url, "Alice", ParticipantConfig::default()).await?;
    let (bob, _bob_events) =
        Participant::join(&http, base_url, "Bob", ParticipantConfig::default()).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let call_id = loop {
        match alice
            .signaling()
            .initiate_call(&bob.user().id, CallKind::Video)
            .await
        {
            Ok(call_id) => break call_id,
            // Bob's connect handler may not have registered him yet.
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => return Err(e).context("alice calls bob"),
        }
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    bob.signaling().accept_call(&call_id).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let alice_id = alice.user().id.as_str().to_owned();
    while bob
        .receive_stats()
        .packets_from(&alice_id, MediaKind::Video)
        < 100
    {
        if Instant::now() > deadline {
            bail!("media never flowed");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Quality is scored every 2 s; RTT needs receiver reports.
    tokio::time::sleep(Duration::from_secs(5)).await;
    alice
        .signaling()
        .end_call(&call_id, None)
        .await
        .context("end call")?;
    alice.close().await;
    bob.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_expression_returns_data_after_one_call() -> Result<()> {
    let prometheus_bin = which("prometheus").context(
        "Debian's `prometheus` is needed (apt-get install prometheus; scripts/test does)",
    )?;

    let config = ServerConfig {
        metrics_addr: Some("127.0.0.1:0".parse()?),
        ..ServerConfig::for_tests()
    };
    let server = Server::bind(config).await?;
    let base_url = format!("http://{}", server.http_addr());
    let metrics_addr: SocketAddr = server.metrics_addr().context("metrics listener")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    // The shipped rules and the shipped scrape job, pointed at this server, scraped every 1 s.
    let scratch = tempfile::tempdir()?;
    std::fs::copy(
        format!("{DEPLOY}/prometheus/alerts.yml"),
        scratch.path().join("alerts.yml"),
    )?;
    let shipped = std::fs::read_to_string(format!("{DEPLOY}/prometheus/prometheus.yml"))?;
    assert!(shipped.contains("switchboard:9100"));
    let config = shipped
        .replace("switchboard:9100", &metrics_addr.to_string())
        .replace("scrape_interval: 5s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s");
    std::fs::write(scratch.path().join("prometheus.yml"), config)?;
    let port = free_port();
    let prometheus = format!("http://127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(prometheus_bin)
        .arg(format!(
            "--config.file={}",
            scratch.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            scratch.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting prometheus")?;

    let result = async {
        one_call(&base_url).await?;
        let http = reqwest::Client::new();
        let mut missing = dashboard_exprs();
        assert!(missing.len() >= 20, "the dashboard's expressions");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !missing.is_empty() {
            let mut still = Vec::new();
            for (title, expr) in missing {
                if query(&http, &prometheus, &expr)
                    .await
                    .map_or(true, |r| r.is_empty())
                {
                    still.push((title, expr));
                }
            }
            missing = still;
            if !missing.is_empty() {
                if Instant::now() > deadline {
                    bail!("expressions without data: {missing:#?}");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        // Every alert rule loaded and evaluates cleanly against the live series.
        let rules: Value = http
            .get(format!("{prometheus}/api/v1/rules"))
            .send()
            .await?
            .json()
            .await?;
        let rules: Vec<&Value> = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        assert_eq!(rules.len(), 5, "{rules:?}");
        for rule in &rules {
            assert_eq!(rule["health"], "ok", "{rule}");
        }
        // docs/operations.md's metrics table names exactly the families /metrics serves now
        // that a call has happened (process_* is one row).
        let exposition = http
            .get(format!("http://{metrics_addr}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let served: std::collections::BTreeSet<String> = exposition
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|line| line.split(' ').next())
            .filter(|name| !name.starts_with("process_"))
            .map(str::to_owned)
            .collect();
        let documented = documented_metrics();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty() && stale.is_empty(),
            "not in docs/operations.md: {undocumented:?}; documented, not served: {stale:?}"
        );
        // The media task answers, so the stalled-media alert's series is 1, not absent.
        let responsive = query(&http, &prometheus, "switchboard_media_task_responsive").await?;
        assert_eq!(responsive[0]["value"][1], "1");
        anyhow::Ok(())
    }
    .await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    let _ = stop.send(());
    result
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| Path::new(path).is_file())
    })
}

/// The backticked `switchboard_*` names in the first column of docs/operations.md's metrics
/// table.
fn documented_metrics() -> std::collections::BTreeSet<String> {
    let docs = include_str!("../../docs/operations.md");
    let section = docs
        .split("\n## Metrics")
        .nth(1)
        .expect("a Metrics section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .flat_map(|line| {
            line.split('|')
                .nth(1)
                .unwrap_or_default()
                .split('`')
                .filter(|part| part.starts_with("switchboard_"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}
