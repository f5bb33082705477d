//! `sfu-host`: Switchboard's SFU (`switchboard-sfu`, the same media plane the `switchboard`
//! server runs) in its own process, driven by JSON lines on stdin (wire format in
//! `loadtest::host`). The load tester spawns it for rooms larger than one call may be (one
//! publisher, hundreds of subscribers) and reads this process's CPU time and memory from
//! `/proc`, so the load generator's own work is not counted. Media on 127.0.0.1 only.

use std::sync::Arc;

use loadtest::host::{bench_sfu_config, HostLine, HostRequest};
use switchboard_sfu::{ParticipantId, RoomId, Sfu, SfuEvent};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .init();
    let (sfu, mut events) = Sfu::start(bench_sfu_config()).await?;
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<HostLine>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = out_rx.recv().await {
            let mut text = serde_json::to_string(&line).expect("serialisable line");
            text.push('\n');
            if stdout.write_all(text.as_bytes()).await.is_err() {
                break;
            }
            let _ = stdout.flush().await;
        }
    });
    let _ = out_tx.send(HostLine {
        ready: Some(true),
        media_addr: Some(sfu.media_addr().to_string()),
        pid: Some(std::process::id()),
        ..HostLine::default()
    });
    let tx = out_tx.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let line = match event {
                SfuEvent::SubscriberOffer { participant, sdp } => HostLine {
                    event: Some("subscriber_offer".into()),
                    participant: Some(participant.as_str().to_owned()),
                    sdp: Some(sdp),
                    ..HostLine::default()
                },
                SfuEvent::ParticipantFailed {
                    participant,
                    reason,
                } => HostLine {
                    event: Some("failed".into()),
                    participant: Some(participant.as_str().to_owned()),
                    error: Some(reason),
                    ..HostLine::default()
                },
                _ => continue,
            };
            let _ = tx.send(line);
        }
    });
    let sfu = Arc::new(sfu);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let request: HostRequest = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("sfu-host: bad request line: {e}");
                continue;
            }
        };
        // Each request on its own task: a slow publish must not hold up the others.
        let (sfu, tx) = (Arc::clone(&sfu), out_tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(handle(&sfu, request).await);
        });
    }
    // stdin closed: the load tester is done.
    sfu.shutdown().await;
    drop(out_tx);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), writer).await;
    Ok(())
}

async fn handle(sfu: &Sfu, request: HostRequest) -> HostLine {
    let participant = || ParticipantId::new(request.participant.clone().unwrap_or_default());
    let mut reply = HostLine {
        id: Some(request.id),
        ok: Some(true),
        ..HostLine::default()
    };
    let result = match request.op.as_str() {
        "join" => sfu
            .join(
                RoomId::new(request.room.clone().unwrap_or_default()),
                participant(),
                request.label.clone().unwrap_or_default(),
            )
            .await
            .map_err(|e| e.to_string()),
        "publish" => match sfu
            .publish(participant(), request.sdp.clone().unwrap_or_default())
            .await
        {
            Ok(sdp) => {
                reply.sdp = Some(sdp);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
        "answer" => sfu
            .subscriber_answer(participant(), request.sdp.clone().unwrap_or_default())
            .await
            .map_err(|e| e.to_string()),
        "leave" => sfu.leave(participant()).await.map_err(|e| e.to_string()),
        "stats" => {
            let s = sfu.stats().await;
            reply.stats = Some(loadtest::host::stats_json(&s));
            Ok(())
        }
        other => Err(format!("unknown op {other}")),
    };
    if let Err(e) = result {
        reply.ok = Some(false);
        reply.error = Some(e);
    }
    reply
}
