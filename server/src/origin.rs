//! The origin check in front of every route (Socket.IO included): a browser page from another
//! site must not drive a signed-in user's socket or the HTTP API (cross-site WebSocket
//! hijacking, CSRF). Requests without an `Origin` header are not from a cross-origin browser
//! context (native clients, curl, same-origin navigations) and pass; tokens still apply.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Which `Origin`s may call the server.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// Exact origins (`scheme://host[:port]`, compared case-insensitively), or `*`.
    pub allowed: Vec<String>,
    /// Also allow http(s)://localhost, 127.0.0.1 and [::1] on any port (development).
    pub allow_localhost: bool,
}

/// Whether `s` looks like a serialized origin: `http(s)://host[:port]` without a path.
pub fn is_origin(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains(['/', '?', '#', '@'])
}

impl OriginPolicy {
    /// Whether a request with this `Origin` (and `Host`) header may proceed.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if !is_origin(origin) {
            // Includes the opaque `null` origin (sandboxed frames, file://).
            return self.allowed.iter().any(|a| a == "*");
        }
        let origin = origin.to_ascii_lowercase();
        if self
            .allowed
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(&origin))
        {
            return true;
        }
        let authority = origin.split_once("://").map_or("", |(_, a)| a);
        // Same origin: the page was served by this server under the name it used.
        if host.is_some_and(|h| h.eq_ignore_ascii_case(authority)) {
            return true;
        }
        if self.allow_localhost {
            let hostname = match authority.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or(""),
                None => authority.split(':').next().unwrap_or(""),
            };
            return matches!(hostname, "localhost" | "127.0.0.1" | "::1");
        }
        false
    }
}

/// axum middleware: 403 `origin_not_allowed` for a disallowed `Origin`.
pub async fn check(
    State(policy): State<Arc<OriginPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or(""));
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if policy.allows(origin, host) {
        return next.run(request).await;
    }
    tracing::debug!(origin, host, "request from a disallowed origin refused");
    (
        StatusCode::FORBIDDEN,
        Json(json!({ "error": { "code": "origin_not_allowed", "message": "this origin may not use the server" } })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> OriginPolicy {
        OriginPolicy {
            allowed: vec!["https://app.example.com".into()],
            allow_localhost: true,
        }
    }

    #[test]
    fn same_origin_listed_and_originless_requests_pass() {
        let p = OriginPolicy {
            allow_localhost: false,
            ..dev()
        };
        assert!(p.allows(None, Some("sb.example.com")));
        assert!(p.allows(Some("https://sb.example.com"), Some("sb.example.com")));
        assert!(p.allows(Some("https://APP.example.com"), Some("sb.example.com")));
        assert!(!p.allows(Some("https://evil.example"), Some("sb.example.com")));
        assert!(!p.allows(Some("http://localhost:3000"), Some("sb.example.com")));
        assert!(!p.allows(Some("null"), Some("sb.example.com")));
        assert!(!p.allows(Some("https://sb.example.com.evil"), Some("sb.example.com")));
    }

    #[test]
    fn development_allows_localhost_on_any_port() {
        let p = dev();
        for origin in [
            "http://localhost:3000",
            "http://127.0.0.1:8080",
            "https://[::1]:1",
        ] {
            assert!(p.allows(Some(origin), Some("10.0.0.2:8080")), "{origin}");
        }
        assert!(!p.allows(Some("http://localhost.evil.example"), Some("x")));
    }

    #[test]
    fn a_star_allows_everything() {
        let p = OriginPolicy {
            allowed: vec!["*".into()],
            allow_localhost: false,
        };
        assert!(p.allows(Some("https://anything.example"), None));
        assert!(p.allows(Some("null"), None));
    }

    #[test]
    fn origin_syntax() {
        assert!(is_origin("https://a.example:8443"));
        assert!(!is_origin("a.example"));
        assert!(!is_origin("https://a.example/path"));
        assert!(!is_origin("ftp://a.example"));
    }
}
