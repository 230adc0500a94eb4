//! Diagnosis errors, classified once: the server maps them to HTTP statuses.
//! [`Error::NotFound`] is an unknown job; [`Error::Query`] carries the
//! classification of a failed query (a time or memory limit, storage);
//! every other variant is a problem with the request or the job's rows (or
//! the caller's configuration), never a bug: a caller answers it as a user
//! error.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The stage DAG has a cycle; the stages that could not be ordered.
    #[error("job {job_id}: the stage DAG has a cycle through stages {stages:?}")]
    Cycle { job_id: String, stages: Vec<u32> },

    /// A stage names a parent that has no row.
    #[error("job {job_id}: stage {stage} names parent stage {parent}, which has no row")]
    UnknownParent {
        job_id: String,
        stage: u32,
        parent: u32,
    },

    /// Two rows for the same stage, or for the same attempt of a task.
    #[error("job {job_id}: duplicate row for {what}")]
    Duplicate { job_id: String, what: String },

    /// A time range that ends before it starts.
    #[error("job {job_id}: {what} ends ({end_ns}) before it starts ({start_ns})")]
    Backwards {
        job_id: String,
        what: String,
        start_ns: i64,
        end_ns: i64,
    },

    /// The job has no stage and no attempt row: nothing to diagnose.
    #[error("job {job_id}: no stage or task rows")]
    Empty { job_id: String },

    /// A row or setting that cannot be read (e.g. a `parents` list).
    #[error("{0}")]
    Invalid(String),

    /// A job id that is not one (empty, too long, or a character outside
    /// `[A-Za-z0-9._:-]`): refused before any SQL is built.
    #[error("invalid job id {job_id:?}: {reason}")]
    BadJobId { job_id: String, reason: String },

    /// No row of any job table names the job.
    #[error("job {job_id:?} not found in database {db:?}")]
    NotFound { job_id: String, db: String },

    /// A query reading the job's rows failed.
    #[error("job {job_id}: reading {what} failed: {message}")]
    Query {
        job_id: String,
        what: String,
        kind: QueryFailure,
        message: String,
    },

    /// A query of a bulk diagnosis (many jobs at once) failed.
    #[error("bulk diagnosis: reading {what} failed: {message}")]
    RangeQuery {
        what: String,
        kind: QueryFailure,
        message: String,
    },

    /// More jobs in a bulk diagnosis's range than it reads at once.
    #[error(
        "{jobs} jobs ended in the range, more than the {max} a bulk diagnosis reads at once: narrow the range"
    )]
    TooManyJobs { jobs: usize, max: usize },
}

/// How a query failed, as the query engine classified it (kept as a kind
/// and a message so [`Error`] stays `Clone` and comparable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryFailure {
    /// The SQL or the table's columns do not fit (e.g. a job table without
    /// a column diagnosis needs).
    User,
    NotFound,
    Timeout,
    MemoryLimit,
    /// The server's memory budget had no room; retrying may work.
    ServerBusy,
    Internal,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
