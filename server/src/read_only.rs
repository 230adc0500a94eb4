//! A read replica (`--role query`) answers reads and refuses, with a 403
//! that says where to go instead, every request that would change the
//! store: writes, deletes, admin actions, retention, tokens, and rules
//! (they run on the writing server, which holds their state).

use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorKind};

/// Refuses the request if it would change the store.
pub async fn refuse_changes(req: Request, next: Next) -> Response {
    if let Some(what) = refusal(req.method(), req.uri().path()) {
        return refused(what).into_response();
    }
    next.run(req).await
}

/// The 403 for `what` (e.g. "a write").
pub fn refused(what: &str) -> ApiError {
    ApiError::new(
        ErrorKind::Forbidden,
        format!(
            "this server is a read replica (--role query): {what} goes to the server that writes its object store"
        ),
    )
}

fn refusal(method: &Method, path: &str) -> Option<&'static str> {
    let path = path.trim_end_matches('/');
    let reading = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    match path {
        "/write"
        | "/api/v2/write"
        | "/api/v3/write_lp"
        | "/api/v1/prom/write"
        | "/prometheus/api/v1/write" => Some("a write"),
        _ if path.starts_with("/api/v1/admin/") => Some("an admin action"),
        "/api/v1/retention" if !reading => Some("a retention change"),
        _ if path.starts_with("/api/v1/tokens") && !reading => Some("a token change"),
        _ if path.starts_with("/api/v1/rules")
            || path.starts_with("/api/v1/alerts")
            || path.starts_with("/api/v1/actions") =>
        {
            Some("rules and their alerts")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_refused_and_reads_pass() {
        for (m, p) in [
            (Method::POST, "/write"),
            (Method::POST, "/api/v3/write_lp"),
            (Method::POST, "/prometheus/api/v1/write"),
            (Method::POST, "/api/v1/admin/flush"),
            (Method::PUT, "/api/v1/retention"),
            (Method::POST, "/api/v1/tokens"),
            (Method::DELETE, "/api/v1/tokens/abc"),
            (Method::GET, "/api/v1/rules"),
            (Method::POST, "/api/v1/actions/1/approve"),
        ] {
            assert!(refusal(&m, p).is_some(), "{m} {p}");
        }
        for (m, p) in [
            (Method::POST, "/api/v1/sql"),
            (Method::GET, "/api/v1/sql"),
            (Method::POST, "/api/v1/query_range"),
            (Method::GET, "/api/v1/retention"),
            (Method::GET, "/api/v1/tokens"),
            (Method::GET, "/metrics"),
            (Method::POST, "/api/v1/writer"),
        ] {
            assert!(refusal(&m, p).is_none(), "{m} {p}");
        }
    }
}
