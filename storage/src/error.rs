//! Errors of the storage crate.

use std::path::PathBuf;

/// Errors raised by the object-store layout, the catalog and Parquet encoding.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("object store error at {path}: {source}")]
    ObjectStore {
        path: String,
        #[source]
        source: object_store::Error,
    },

    #[error("catalog commit {seq} is corrupt: {source}")]
    CorruptCommit {
        seq: u64,
        #[source]
        source: serde_json::Error,
    },

    #[error("catalog checkpoint {seq} is corrupt: {source}")]
    CorruptCheckpoint {
        seq: u64,
        #[source]
        source: serde_json::Error,
    },

    #[error("catalog commit log has a gap: expected commit {expected}, found {found}")]
    CommitGap { expected: u64, found: u64 },

    #[error("catalog commit conflicted {attempts} times in a row; giving up")]
    TooManyConflicts { attempts: usize },

    #[error(
        "column '{column}' of table '{table}' is a {existing}, but this write makes it a {requested}"
    )]
    ColumnTypeConflict {
        table: String,
        column: String,
        existing: String,
        requested: String,
    },

    #[error("table '{table}' not found in database '{db}'")]
    TableNotFound { db: String, table: String },

    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error("file {path} is no longer live in the catalog")]
    FileNotLive { path: String },

    #[error(transparent)]
    MemoryBudget(#[from] crate::memory_budget::Exhausted),

    #[error("invalid data: {0}")]
    Invalid(String),

    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    #[error("parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    #[error("cannot open object store {url}: {reason}")]
    BadObjectStoreUrl { url: String, reason: String },

    #[error("io error at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
