//! `POST /api/session`: the demo's sign-in.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::hub::Hub;

#[derive(Deserialize)]
struct SessionRequest {
    name: String,
}

pub(crate) fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/api/session", post(create_session))
        // A name is at most 40 characters; anything near this limit is not a sign-in.
        .layer(DefaultBodyLimit::max(4096))
        .with_state(hub)
}

async fn create_session(
    State(hub): State<Arc<Hub>>,
    body: Result<Json<SessionRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => {
            return bad_request(format!(
                "expected JSON {{\"name\": string}}: {}",
                rejection.body_text()
            ))
        }
    };
    match hub.issue(&request.name) {
        Ok((token, user)) => Json(json!({ "token": token, "user": user })).into_response(),
        Err(e) => bad_request(e.to_string()),
    }
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": { "code": "invalid_name", "message": message } })),
    )
        .into_response()
}
