//! PromQL errors, classified the way the Prometheus HTTP API reports them.

/// # Invariants
/// Every variant names what went wrong in words a dashboard author can act
/// on; none of them is a bug except [`Error::Internal`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request or the expression is malformed (parse errors, bad times,
    /// bad steps): Prometheus' `bad_data`, HTTP 400.
    #[error("{0}")]
    BadData(String),

    /// A valid expression that fleetlake does not evaluate: HTTP 422,
    /// `execution`. The message names the construct.
    #[error("{0} is not supported by fleetlake")]
    Unsupported(String),

    /// The expression failed while evaluating (duplicate series, many-to-one
    /// matching without `group_left`, ...): HTTP 422, `execution`.
    #[error("{0}")]
    Execution(String),

    /// The query ran past the engine's time limit: HTTP 503, `timeout`.
    #[error("query timed out in expression evaluation (limit {limit_ms} ms)")]
    Timeout { limit_ms: u64 },

    /// A sample fetch failed in the query engine.
    #[error(transparent)]
    Query(#[from] fleetlake_query::Error),

    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Prometheus' `errorType` for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::BadData(_) => "bad_data",
            Error::Unsupported(_) | Error::Execution(_) => "execution",
            Error::Timeout { .. } => "timeout",
            Error::Query(fleetlake_query::Error::Timeout { .. }) => "timeout",
            Error::Query(fleetlake_query::Error::NotFound(_)) => "not_found",
            Error::Query(fleetlake_query::Error::User(_))
            | Error::Query(fleetlake_query::Error::MemoryLimit { .. }) => "execution",
            Error::Query(fleetlake_query::Error::ServerBusy(_)) => "unavailable",
            Error::Query(fleetlake_query::Error::Internal(_)) | Error::Internal(_) => "internal",
        }
    }
}
