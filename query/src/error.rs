//! Query errors, classified once for the server to map to HTTP statuses.

use datafusion::error::DataFusionError;
use fleetlake_storage::memory_budget::EXHAUSTED;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query is wrong: syntax, unknown table or column, bad types or arguments.
    #[error("{0}")]
    User(String),

    /// The query names a database that does not exist.
    #[error("{0}")]
    NotFound(String),

    #[error("query exceeded its time limit of {limit_ms} ms and was cancelled")]
    Timeout { limit_ms: u64 },

    #[error("query exceeded its memory limit of {limit_bytes} bytes: {detail}")]
    MemoryLimit { limit_bytes: usize, detail: String },

    /// The server's memory budget, shared by every query, flush and
    /// compaction, had no room: the query may succeed when retried.
    #[error("{0}")]
    ServerBusy(String),

    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Classifies a DataFusion error. Storage and internal failures are ours;
    /// everything else came from the query text or its data.
    pub fn from_datafusion(e: DataFusionError, memory_limit: usize) -> Self {
        match e.find_root() {
            DataFusionError::ResourcesExhausted(m) if m.contains(EXHAUSTED) => {
                Error::ServerBusy(format!("query refused memory: {m}"))
            }
            DataFusionError::ResourcesExhausted(_) => Error::MemoryLimit {
                limit_bytes: memory_limit,
                detail: e.to_string(),
            },
            DataFusionError::ObjectStore(_)
            | DataFusionError::IoError(_)
            | DataFusionError::Internal(_)
            | DataFusionError::ParquetError(_)
            | DataFusionError::Substrait(_)
            | DataFusionError::Shared(_) => Error::Internal(e.to_string()),
            DataFusionError::External(inner) if inner.is::<fleetlake_storage::Error>() => {
                Error::Internal(e.to_string())
            }
            _ => Error::User(e.to_string()),
        }
    }
}
