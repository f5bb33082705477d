//! `GET /api/recordings/{id}`: download a call recording (WebM), only by a participant of
//! its call.
//!
//! Authentication and errors follow the call history API (docs/history.md): the session token
//! as `Authorization: Bearer <token>`, `401 {"error": {"code": "missing_token" |
//! "invalid_token" | "expired_token"}}` with `WWW-Authenticate: Bearer` before anything else,
//! and `404 {"error": {"code": "unknown_recording"}}` both for a recording that does not exist
//! and for one the user may not see (of a call they were not in while it was recorded, see
//! docs/history.md), so ids cannot be probed. A file still being written is
//! `409 {"error": {"code": "recording_in_progress"}}`. The file is served by
//! tower-http's `ServeFile`: `Range` requests get `206 Partial Content`, `HEAD` works,
//! `Content-Type` is `video/webm`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use switchboard_signaling::history::http::error_response;
use switchboard_signaling::history::{HistoryStore, RecordingId, RecordingState};
use switchboard_signaling::{RecordingConfig, TokenError, User};
use tower_http::services::ServeFile;
use tracing::{error, warn};

type Verify = Arc<dyn Fn(Option<&str>) -> Result<User, TokenError> + Send + Sync>;

#[derive(Clone)]
struct RecordingsState {
    store: HistoryStore,
    verify: Verify,
}

/// The download route, ready to merge into the server's router.
pub fn router<S>(
    store: HistoryStore,
    verify: impl Fn(Option<&str>) -> Result<User, TokenError> + Send + Sync + 'static,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/recordings/{id}", get(download))
        .with_state(RecordingsState {
            store,
            verify: Arc::new(verify),
        })
}

async fn download(
    State(state): State<RecordingsState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let user = match bearer(&request).and_then(|token| (state.verify)(token)) {
        Ok(user) => user,
        Err(e) => return error_response(StatusCode::UNAUTHORIZED, e.code(), &e.to_string()),
    };
    let recording = match state
        .store
        .recording_for_user(&user.id, &RecordingId::new(&id))
        .await
    {
        Ok(Some(recording)) => recording,
        Ok(None) => return not_found(),
        Err(e) => {
            error!(error = %e, "recording lookup failed");
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the call history is unavailable",
            );
        }
    };
    if recording.state == RecordingState::Recording {
        return error_response(
            StatusCode::CONFLICT,
            "recording_in_progress",
            "the recording is still being written",
        );
    }
    match ServeFile::new(&recording.path).try_call(request).await {
        Ok(response) => {
            if response.status() == StatusCode::NOT_FOUND {
                warn!(recording_id = %recording.id, "recording file is missing");
                return not_found();
            }
            let mut response = response.map(Body::new);
            if response.status().is_success() {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("video/webm"));
            }
            response
        }
        Err(e) => {
            error!(recording_id = %recording.id, error = %e, "reading a recording failed");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the recording cannot be read",
            )
        }
    }
}

/// The bearer token (`None` without an `Authorization` header). The scheme is
/// case-insensitive; any other scheme is an invalid token.
fn bearer(request: &Request) -> Result<Option<&str>, TokenError> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| TokenError::Invalid)?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(Some(token)),
        _ => Err(TokenError::Invalid),
    }
}

fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "unknown_recording",
        "no such recording",
    )
}

/// Recording limits and retention (docs/security.md §4, docs/history.md), as flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RecordingFlags {
    /// Calls recorded at once on this server; more is `limit_exceeded`.
    #[arg(long, env = "SWITCHBOARD_MAX_RECORDINGS", default_value_t = RecordingConfig::DEFAULT_MAX_CONCURRENT)]
    pub max_recordings: usize,

    /// Calls one user may be recording at once; more is `limit_exceeded`.
    #[arg(long, env = "SWITCHBOARD_MAX_RECORDINGS_PER_USER", default_value_t = RecordingConfig::DEFAULT_MAX_PER_USER)]
    pub max_recordings_per_user: usize,

    /// MiB of stored recordings one user may have started before `start_recording` is
    /// refused with `limit_exceeded` (0: no quota).
    #[arg(long, env = "SWITCHBOARD_RECORDING_QUOTA_MB", default_value_t = RecordingConfig::DEFAULT_QUOTA_BYTES_PER_USER / (1024 * 1024))]
    pub recording_quota_mb: u64,

    /// Recordings older than this many days are deleted (file and history row) at start and
    /// daily (0: kept forever).
    #[arg(long, env = "SWITCHBOARD_RECORDING_RETENTION_DAYS", default_value_t = RecordingConfig::DEFAULT_RETENTION_DAYS)]
    pub recording_retention_days: u32,
}

impl Default for RecordingFlags {
    fn default() -> Self {
        let defaults = RecordingConfig::default();
        Self {
            max_recordings: defaults.max_concurrent,
            max_recordings_per_user: defaults.max_per_user,
            recording_quota_mb: defaults.quota_bytes_per_user / (1024 * 1024),
            recording_retention_days: defaults.retention_days,
        }
    }
}

impl RecordingFlags {
    /// Signaling's recording configuration for recordings written to `directory`.
    pub fn config(&self, directory: &std::path::Path) -> RecordingConfig {
        RecordingConfig {
            directory: directory.to_path_buf(),
            max_concurrent: self.max_recordings,
            max_per_user: self.max_recordings_per_user,
            quota_bytes_per_user: self.recording_quota_mb.saturating_mul(1024 * 1024),
            retention_days: self.recording_retention_days,
        }
    }

    /// Squares recordings with the history after the last run and starts retention (see
    /// [`switchboard_signaling::history::maintain_recordings`]).
    pub async fn maintain(
        &self,
        history: &HistoryStore,
        directory: &std::path::Path,
    ) -> anyhow::Result<()> {
        switchboard_signaling::history::maintain_recordings(history, &self.config(directory))
            .await
            .map_err(|e| anyhow::anyhow!("reconciling recordings with the history: {e}"))?;
        Ok(())
    }
}
