//! Errors of the ingest crate.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid precision {0:?}: use one of n, ns, u, us, ms, s, m, h")]
    InvalidPrecision(String),

    #[error("invalid database name: {0}")]
    InvalidDatabase(#[source] fleetlake_storage::Error),

    #[error("the write buffer is full ({used} of {budget} bytes); retry after the next flush")]
    BufferFull { used: usize, budget: usize },

    /// The server's memory budget (shared with queries and compaction) has
    /// no room for the write; retry later.
    #[error(transparent)]
    MemoryBudget(#[from] fleetlake_storage::memory_budget::Exhausted),

    #[error(
        "a body of {bytes} bytes can never fit the write buffer's budget of {budget} bytes; split it"
    )]
    BodyOverBudget { bytes: usize, budget: usize },

    #[error("column '{column}' of table '{table}' changed type concurrently; retry the write")]
    ConcurrentSchemaChange { table: String, column: String },

    #[error(
        "table '{table}' would have {columns} columns, over the limit of {limit} (--max-columns-per-table)"
    )]
    TooManyColumns {
        table: String,
        columns: usize,
        limit: usize,
    },

    #[error("WAL I/O error at {path}: {source}")]
    WalIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("WAL segment {path} is corrupt at byte {offset}: {reason}")]
    WalCorrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },

    #[error("the WAL writer has stopped")]
    WalClosed,

    #[error("the server is shutting down")]
    ShuttingDown,

    #[error(transparent)]
    Storage(#[from] fleetlake_storage::Error),

    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl Error {
    /// True when the client should retry the same request later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::BufferFull { .. } | Error::ConcurrentSchemaChange { .. }
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
