//! Rule errors, classified once: the server maps them to HTTP statuses.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The rule (or request) is wrong: the message says what to change.
    #[error("{0}")]
    Invalid(String),

    #[error("rule {0:?} not found")]
    NotFound(String),

    #[error("{0}")]
    Conflict(String),

    #[error("action {0:?} not found or no longer awaiting approval")]
    ActionNotFound(String),

    #[error("query failed: {0}")]
    Query(#[from] fleetlake_query::Error),

    #[error("object store: {0}")]
    Store(#[from] object_store::Error),

    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}
