//! `GET /metrics`: everything in the process's default Prometheus registry, in the text
//! exposition format: the SFU's media metrics, signaling's event/call metrics, gauges read
//! from signaling at scrape time, and process metrics (CPU, memory, file descriptors).

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, IntGauge, IntGaugeVec, Opts, TextEncoder};
use switchboard_sfu::metrics::SfuMetrics;
use switchboard_signaling::Signaling;

/// The SFU's metrics, registered once per process in the default registry (several servers
/// in one test process share them).
pub fn sfu_metrics() -> anyhow::Result<SfuMetrics> {
    // A Mutex, not a OnceLock check-then-register: servers bound concurrently (tests) must
    // not both try to register.
    static METRICS: std::sync::Mutex<Option<SfuMetrics>> = std::sync::Mutex::new(None);
    let mut metrics = METRICS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(metrics) = metrics.as_ref() {
        return Ok(metrics.clone());
    }
    let registered = SfuMetrics::register(prometheus::default_registry())?;
    *metrics = Some(registered.clone());
    Ok(registered)
}

struct ScrapeGauges {
    connections: IntGauge,
    online_users: IntGauge,
    calls: IntGaugeVec,
    media_responsive: IntGauge,
    disk_free: IntGauge,
    disk_floor: IntGauge,
}

/// What a scrape looks at besides signaling: the media task (for the stalled-media alert)
/// and the recording directory's free space (for the disk-floor alert).
#[derive(Clone)]
pub struct ScrapeSources {
    pub signaling: Signaling,
    pub health: crate::health::Health,
    pub recording_dir: std::path::PathBuf,
    pub recording_floor_bytes: u64,
}

fn scrape_gauges() -> &'static ScrapeGauges {
    static GAUGES: OnceLock<ScrapeGauges> = OnceLock::new();
    GAUGES.get_or_init(|| {
        let registry = prometheus::default_registry();
        let gauges = ScrapeGauges {
            connections: IntGauge::new(
                "switchboard_socketio_connections",
                "Connected Socket.IO sockets.",
            )
            .expect("valid metric"),
            online_users: IntGauge::new(
                "switchboard_signaling_online_users",
                "Users with at least one connected socket.",
            )
            .expect("valid metric"),
            calls: IntGaugeVec::new(
                Opts::new("switchboard_signaling_calls", "Calls by state."),
                &["state"],
            )
            .expect("valid metric"),
            media_responsive: IntGauge::new(
                "switchboard_media_task_responsive",
                "1 when the media task answered within 2 s at this scrape, else 0.",
            )
            .expect("valid metric"),
            disk_free: IntGauge::new(
                "switchboard_recording_disk_free_bytes",
                "Free space available in the recording directory (-1 when unknown).",
            )
            .expect("valid metric"),
            disk_floor: IntGauge::new(
                "switchboard_recording_disk_floor_bytes",
                "Recordings stop below this much free space (--recording-min-free-mb).",
            )
            .expect("valid metric"),
        };
        // Registration only fails on a duplicate name, which this OnceLock rules out.
        let _ = registry.register(Box::new(gauges.connections.clone()));
        let _ = registry.register(Box::new(gauges.online_users.clone()));
        let _ = registry.register(Box::new(gauges.calls.clone()));
        let _ = registry.register(Box::new(gauges.media_responsive.clone()));
        let _ = registry.register(Box::new(gauges.disk_free.clone()));
        let _ = registry.register(Box::new(gauges.disk_floor.clone()));
        gauges
    })
}

pub fn router(sources: ScrapeSources) -> Router {
    switchboard_signaling::metrics::init();
    scrape_gauges();
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(sources)
}

async fn scrape(State(sources): State<ScrapeSources>) -> impl IntoResponse {
    let stats = sources.signaling.stats();
    let gauges = scrape_gauges();
    gauges
        .media_responsive
        .set(i64::from(sources.health.media_alive().await.is_ok()));
    // A statvfs: cheap, but a filesystem call, so off the async workers.
    let directory = sources.recording_dir.clone();
    let free = tokio::task::spawn_blocking(move || available_space(&directory))
        .await
        .ok()
        .flatten();
    gauges
        .disk_free
        .set(free.map_or(-1, |bytes| i64::try_from(bytes).unwrap_or(i64::MAX)));
    gauges
        .disk_floor
        .set(i64::try_from(sources.recording_floor_bytes).unwrap_or(i64::MAX));
    gauges.connections.set(stats.sockets as i64);
    gauges.online_users.set(stats.online_users as i64);
    gauges
        .calls
        .with_label_values(&["active"])
        .set(stats.active_calls as i64);
    gauges
        .calls
        .with_label_values(&["ringing"])
        .set(stats.calls.saturating_sub(stats.active_calls) as i64);
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&prometheus::gather(), &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
            body,
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

/// Free space for the recording directory, or for its nearest existing parent (it is created
/// at the first recording).
fn available_space(directory: &std::path::Path) -> Option<u64> {
    directory
        .ancestors()
        .filter(|dir| !dir.as_os_str().is_empty())
        .find_map(|dir| fs4::available_space(dir).ok())
        .or_else(|| fs4::available_space(".").ok())
}
