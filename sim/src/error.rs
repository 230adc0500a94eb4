//! Errors of the simulator: all of them are invalid configurations.

/// A configuration the generators cannot honour.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid simulation config: {0}")]
    InvalidConfig(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
