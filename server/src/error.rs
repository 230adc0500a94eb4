//! The one place errors become HTTP statuses.
//!
//! Every crate's error is classified here, once, into an [`ErrorKind`] (what
//! a client can do about it); [`ErrorKind::status`] is the only map from a
//! kind to a status. Two envelopes carry it to the client:
//! [`ApiError`] (`{"error": …, "message": …}`, fleetlake's and InfluxDB's
//! APIs) and [`PromError`] (`{"status":"error","errorType":…,"error":…}`,
//! the Prometheus HTTP API).
//!
//! # Invariants
//! A user's mistake is a 4xx whose message says what to change; a 500 is a
//! bug or a failure of storage underneath, never a bad request.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What went wrong, as a client can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or asks for something impossible: fix it.
    BadRequest,
    /// No credentials, or a token that is not valid.
    Unauthorized,
    /// A valid token without the scope this request needs.
    Forbidden,
    /// The named thing does not exist.
    NotFound,
    /// The query ran past its time limit (SQL).
    Timeout,
    /// The request conflicts with the current state; retrying may work.
    Conflict,
    /// The body is larger than the server accepts.
    PayloadTooLarge,
    /// Well formed but not executable (over the memory limit, an
    /// unsupported construct, an evaluation error).
    Unprocessable,
    /// Overloaded or shutting down: retry later (`Retry-After`).
    Unavailable,
    /// A bug, or the storage underneath failed.
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Timeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds a client should wait before retrying, where retrying helps.
    fn retry_after_secs(self) -> Option<u64> {
        (self == ErrorKind::Unavailable).then_some(1)
    }
}

/// An error answer: `{"error": message, "message": message}` with the
/// status of its kind.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PayloadTooLarge, message)
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Internal, message.to_string())
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.kind.status(),
            Json(json!({"error": self.message, "message": self.message})),
        )
            .into_response();
        if let Some(secs) = self.kind.retry_after_secs() {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

impl From<fleetlake_ingest::Error> for ApiError {
    fn from(e: fleetlake_ingest::Error) -> Self {
        use fleetlake_ingest::Error as E;
        let kind = match &e {
            E::InvalidPrecision(_) | E::InvalidDatabase(_) | E::TooManyColumns { .. } => {
                ErrorKind::BadRequest
            }
            E::BufferFull { .. } | E::MemoryBudget(_) | E::ShuttingDown | E::WalClosed => {
                ErrorKind::Unavailable
            }
            E::ConcurrentSchemaChange { .. } => ErrorKind::Conflict,
            E::BodyOverBudget { .. } => ErrorKind::PayloadTooLarge,
            _ => ErrorKind::Internal,
        };
        ApiError::new(kind, e.to_string())
    }
}

impl From<fleetlake_query::Error> for ApiError {
    fn from(e: fleetlake_query::Error) -> Self {
        ApiError::new(query_kind(&e), e.to_string())
    }
}

fn query_kind(e: &fleetlake_query::Error) -> ErrorKind {
    use fleetlake_query::Error as E;
    match e {
        E::User(_) => ErrorKind::BadRequest,
        E::NotFound(_) => ErrorKind::NotFound,
        E::Timeout { .. } => ErrorKind::Timeout,
        E::MemoryLimit { .. } => ErrorKind::Unprocessable,
        E::ServerBusy(_) => ErrorKind::Unavailable,
        E::Internal(_) => ErrorKind::Internal,
    }
}

impl From<fleetlake_rules::Error> for ApiError {
    fn from(e: fleetlake_rules::Error) -> Self {
        use fleetlake_rules::Error as E;
        let kind = match &e {
            E::Query(q) => query_kind(q),
            E::Invalid(_) => ErrorKind::BadRequest,
            E::NotFound(_) | E::ActionNotFound(_) => ErrorKind::NotFound,
            E::Conflict(_) => ErrorKind::Conflict,
            E::Store(_) | E::Internal(_) => ErrorKind::Internal,
        };
        ApiError::new(kind, e.to_string())
    }
}

impl From<fleetlake_diagnosis::Error> for ApiError {
    fn from(e: fleetlake_diagnosis::Error) -> Self {
        use fleetlake_diagnosis::{Error as E, QueryFailure as Q};
        let kind = match &e {
            E::NotFound { .. } => ErrorKind::NotFound,
            E::Query { kind, .. } | E::RangeQuery { kind, .. } => match kind {
                Q::User => ErrorKind::BadRequest,
                Q::NotFound => ErrorKind::NotFound,
                Q::Timeout => ErrorKind::Timeout,
                Q::MemoryLimit => ErrorKind::Unprocessable,
                Q::ServerBusy => ErrorKind::Unavailable,
                Q::Internal => ErrorKind::Internal,
            },
            // A bad id, or rows that do not form a job: the request or the
            // data, never a bug.
            E::BadJobId { .. }
            | E::Cycle { .. }
            | E::UnknownParent { .. }
            | E::Duplicate { .. }
            | E::Backwards { .. }
            | E::Empty { .. }
            | E::TooManyJobs { .. }
            | E::Invalid(_) => ErrorKind::BadRequest,
        };
        ApiError::new(kind, e.to_string())
    }
}

impl From<fleetlake_storage::Error> for ApiError {
    fn from(e: fleetlake_storage::Error) -> Self {
        ApiError::internal(e)
    }
}

/// A Prometheus HTTP API error: `{"status":"error","errorType":…,"error":…}`.
#[derive(Debug)]
pub struct PromError {
    pub kind: ErrorKind,
    /// Prometheus' `errorType`: `bad_data`, `execution`, `timeout`, `internal`.
    pub error_type: &'static str,
    pub message: String,
}

impl PromError {
    pub fn bad_data(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::BadRequest,
            error_type: "bad_data",
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::NotFound,
            error_type: "not_found",
            message: message.into(),
        }
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self {
            kind: ErrorKind::Internal,
            error_type: "internal",
            message: message.to_string(),
        }
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        (
            self.kind.status(),
            Json(json!({"status": "error", "errorType": self.error_type, "error": self.message})),
        )
            .into_response()
    }
}

impl From<fleetlake_promql::Error> for PromError {
    /// Prometheus answers `bad_data` 400, `execution` 422, `timeout` 503.
    fn from(e: fleetlake_promql::Error) -> Self {
        let error_type = e.error_type();
        let kind = match error_type {
            "bad_data" => ErrorKind::BadRequest,
            "execution" => ErrorKind::Unprocessable,
            "timeout" | "unavailable" => ErrorKind::Unavailable,
            "not_found" => ErrorKind::NotFound,
            _ => ErrorKind::Internal,
        };
        Self {
            kind,
            error_type,
            message: e.to_string(),
        }
    }
}

impl From<ApiError> for PromError {
    fn from(e: ApiError) -> Self {
        let error_type = match e.kind {
            ErrorKind::BadRequest => "bad_data",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Timeout | ErrorKind::Unavailable => "unavailable",
            ErrorKind::Unprocessable | ErrorKind::Conflict | ErrorKind::PayloadTooLarge => {
                "execution"
            }
            ErrorKind::Internal => "internal",
        };
        Self {
            kind: e.kind,
            error_type,
            message: e.message,
        }
    }
}

impl From<fleetlake_ingest::Error> for PromError {
    fn from(e: fleetlake_ingest::Error) -> Self {
        PromError::internal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_says_when_to_retry() {
        let r = ApiError::new(ErrorKind::Unavailable, "busy").into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = ApiError::bad_request("no").into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn promql_errors_keep_prometheus_statuses() {
        use fleetlake_promql::Error as E;
        let cases = [
            (E::BadData("x".into()), 400, "bad_data"),
            (E::Unsupported("x".into()), 422, "execution"),
            (E::Timeout { limit_ms: 1 }, 503, "timeout"),
            (E::Internal("x".into()), 500, "internal"),
        ];
        for (e, status, kind) in cases {
            let p = PromError::from(e);
            assert_eq!((p.kind.status().as_u16(), p.error_type), (status, kind));
        }
    }

    #[test]
    fn query_errors_map_once() {
        use fleetlake_query::Error as E;
        let status = |e| ApiError::from(e).status().as_u16();
        assert_eq!(status(E::User("x".into())), 400);
        assert_eq!(status(E::NotFound("x".into())), 404);
        assert_eq!(status(E::Timeout { limit_ms: 5 }), 408);
        assert_eq!(status(E::Internal("x".into())), 500);
    }

    #[test]
    fn diagnosis_errors_map_once() {
        use fleetlake_diagnosis::{Error as E, QueryFailure};
        let status = |e| ApiError::from(e).status().as_u16();
        let e = E::NotFound {
            job_id: "job_9".into(),
            db: "fleet".into(),
        };
        assert!(ApiError::from(e.clone()).message.contains("job_9"));
        assert_eq!(status(e), 404);
        let bad = E::BadJobId {
            job_id: "j'".into(),
            reason: "quote".into(),
        };
        assert_eq!(status(bad), 400);
        let slow = E::Query {
            job_id: "j".into(),
            what: "job_tasks".into(),
            kind: QueryFailure::Timeout,
            message: "late".into(),
        };
        assert_eq!(status(slow), 408);
    }
}
