//! Request size limits applied before a handler reads anything.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ApiError;

/// Refuses a body whose declared length passes `limit` with a 413 that
/// names the flag; a chunked body is cut at the same limit by
/// `DefaultBodyLimit` as it is read.
pub async fn request_body(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared
        && n > limit as u64
    {
        return ApiError::too_large(format!(
            "request body of {n} bytes exceeds the limit of {limit} bytes (--max-request-bytes)"
        ))
        .into_response();
    }
    next.run(req).await
}
