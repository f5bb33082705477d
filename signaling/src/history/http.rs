//! The history's HTTP API: a signed-in user reads their own calls, and nobody else's.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/calls?limit=&before=&outcome=` | `200 {"calls": [call…], "next_cursor": string\|null}`, newest first |
//! | `GET /api/calls/{id}` | `200 call` |
//!
//! Identity comes from `Authorization: Bearer <token>`, the session token of
//! `POST /api/session`, checked by the verifier the router is built with (normally
//! [`TokenIssuer::verify`](crate::identity::TokenIssuer::verify)), so this module neither
//! knows the secret nor duplicates token rules.
//!
//! Errors are `{"error": {"code", "message"}}`: 401 `missing_token` / `invalid_token` /
//! `expired_token` (checked before anything else), 400 `invalid_query`, 404 `unknown_call`,
//! 500 `internal`. Someone else's call is a 404 exactly like a call that does not exist, so
//! call ids cannot be probed.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{CallRecord, Cursor, HistoryError, HistoryStore, ListQuery, Outcome, Page};
use crate::identity::{TokenError, User};
use crate::CallId;

/// Checks a bearer token (`None` when the request carried none) and says whose it is.
pub type VerifyToken = Arc<dyn Fn(Option<&str>) -> Result<User, TokenError> + Send + Sync>;

#[derive(Clone)]
struct ApiState {
    store: HistoryStore,
    verify: VerifyToken,
}

/// The history routes, ready to merge into the server's router (whatever its state type).
///
/// ```text
/// let issuer = TokenIssuer::new(secret, lifetime);
/// let routes = history::http::router(store, move |token| issuer.verify(token));
/// ```
pub fn router<S>(
    store: HistoryStore,
    verify: impl Fn(Option<&str>) -> Result<User, TokenError> + Send + Sync + 'static,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/calls", get(list_calls))
        .route("/api/calls/{id}", get(get_call))
        .with_state(ApiState {
            store,
            verify: Arc::new(verify),
        })
}

/// Query parameters as sent: strings, so that every malformed value gets our own 400 with a
/// message, rather than a framework rejection in another format. Unknown parameters are
/// ignored (cache busters and the like).
#[derive(Deserialize)]
struct ListParams {
    limit: Option<String>,
    before: Option<String>,
    outcome: Option<String>,
}

impl ListParams {
    fn parse(self) -> Result<ListQuery, ApiError> {
        let mut query = ListQuery::default();
        if let Some(limit) = self.limit {
            query.limit = limit
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=ListQuery::MAX_LIMIT).contains(l))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "limit must be an integer between 1 and {}",
                        ListQuery::MAX_LIMIT
                    ))
                })?;
        }
        if let Some(before) = self.before {
            query.before = Some(before.parse::<Cursor>().map_err(|_| {
                ApiError::BadRequest("before must be a next_cursor from a previous page".into())
            })?);
        }
        if let Some(outcome) = self.outcome {
            query.outcome = Some(outcome.parse::<Outcome>().map_err(ApiError::BadRequest)?);
        }
        Ok(query)
    }
}

async fn list_calls(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let user = authenticate(&state, &headers)?;
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let query = params.parse()?;
    Ok(Json(state.store.list_for_user(&user.id, &query).await?))
}

async fn get_call(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<CallRecord>, ApiError> {
    let user = authenticate(&state, &headers)?;
    state
        .store
        .get_for_user(&user.id, &CallId::new(id))
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// `Authorization: Bearer <token>` → the user. The scheme is case-insensitive (RFC 9110);
/// any other scheme is an invalid token rather than a missing one, so a client sending the
/// wrong kind of credentials learns so.
fn authenticate(state: &ApiState, headers: &HeaderMap) -> Result<User, ApiError> {
    let token = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| ApiError::Unauthorized(TokenError::Invalid))?;
            match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Some(token),
                _ => return Err(ApiError::Unauthorized(TokenError::Invalid)),
            }
        }
    };
    (state.verify)(token).map_err(ApiError::Unauthorized)
}

enum ApiError {
    Unauthorized(TokenError),
    BadRequest(String),
    NotFound,
    Internal(HistoryError),
}

impl From<HistoryError> for ApiError {
    fn from(e: HistoryError) -> Self {
        match e {
            // Parameters are checked before the store sees them; kept for completeness.
            HistoryError::InvalidLimit(_) => ApiError::BadRequest(e.to_string()),
            e => ApiError::Internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::Unauthorized(e) => (StatusCode::UNAUTHORIZED, e.code(), e.to_string()),
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, "invalid_query", message),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "unknown_call", "no such call".into()),
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "call history request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the call history is unavailable".into(),
                )
            }
        };
        error_response(status, code, &message)
    }
}

/// The API's error body, `{"error": {"code", "message"}}`, with `WWW-Authenticate: Bearer` on
/// 401s. Shared with the server's other authenticated routes (recording downloads).
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let mut response = (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}
