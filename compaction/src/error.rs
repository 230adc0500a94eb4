//! Errors of rollups. Merging and garbage collection raise the storage
//! crate's errors as they are.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The rollup file is wrong: the message says where and why.
    #[error("invalid rollup configuration: {0}")]
    Config(String),

    /// A rollup cannot run as configured (e.g. it names a string field).
    #[error("{0}")]
    Rollup(String),

    #[error(transparent)]
    Storage(#[from] fleetlake_storage::Error),

    #[error("rollup query failed: {0}")]
    Query(#[from] fleetlake_query::Error),

    #[error(transparent)]
    Ingest(#[from] fleetlake_ingest::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Error::Storage(e.into())
    }
}

impl From<parquet::errors::ParquetError> for Error {
    fn from(e: parquet::errors::ParquetError) -> Self {
        Error::Storage(e.into())
    }
}
