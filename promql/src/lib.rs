//! fleetlake PromQL: the Prometheus query language over fleetlake tables.
//!
//! - [`names`]: how tables and fields appear as metrics (`<table>_<field>`,
//!   a `value`-only table as `<table>`), tags as labels, `__name__`.
//! - [`plan`] + [`fetch`]: every selector of an expression, with the time
//!   window it reads, scanned through DataFusion with its label matchers
//!   pushed down as SQL filters.
//! - [`eval`]: Prometheus' semantics evaluated in Rust over sorted
//!   per-series samples: 5 minute lookback, windows `(t - range, t]`,
//!   `rate`'s extrapolation and counter resets, vector matching.
//! - [`query`]: one request end to end, under the engine's time limit.
//!
//! # Invariants
//! - Evaluation never touches storage: everything it reads was fetched by
//!   the plan, keyed by the selector node's address in the boxed AST.
//! - A construct that is not implemented is [`Error::Unsupported`] naming
//!   it, never a wrong answer.
//!
//! ```
//! use fleetlake_promql::params::parse_duration;
//! assert_eq!(parse_duration("step", "1m").unwrap(), 60_000);
//! assert!(fleetlake_promql::query::parse("rate(x[5m]").is_err());
//! ```

pub mod error;
pub mod eval;
pub mod fetch;
pub mod names;
pub mod params;
pub mod plan;
pub mod query;
pub mod value;

pub use error::{Error, Result};
pub use query::{QueryOutput, QueryRequest, run};
