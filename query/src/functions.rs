//! Anomaly and counter functions over a series, for rules and analysts.
//!
//! Every function is an aggregate UDF over `(value, time[, parameter])`, so
//! it has two shapes:
//!
//! - **Per series** (what a rule wants: one row per candidate): an ordinary
//!   aggregate, `GROUP BY` the series' tags over a `WHERE time > now() - …`
//!   window. The score is of the series' *latest* point against the points
//!   before it in the window.
//! - **Per row** (rolling scores, for charts and backtests): the same call
//!   with `OVER (PARTITION BY <tags> ORDER BY time ROWS|RANGE BETWEEN …
//!   PRECEDING AND CURRENT ROW)`. The frame's latest point is the current
//!   row, so each row is scored against the rows before it in its frame.
//!
//! The time is an argument, not the input order: the functions sort the
//! points themselves, so they are correct under any plan (partial
//! aggregates merged across partitions, unsorted scans).
//!
//! | function | result |
//! |---|---|
//! | `zscore(value, time)` | (last − mean) / sample stddev of the earlier points |
//! | `robust_zscore(value, time)` | (last − median) / (1.4826 × MAD) of the earlier points |
//! | `ewma_deviation(value, time, alpha)` | (last − EWMA) / EW stddev of the earlier points |
//! | `seasonal_delta(value, time, INTERVAL '1 day')` | last − the value one period earlier |
//! | `increase(counter, time)` | the counter's increase, resets handled |
//! | `rate(counter, time)` | `increase` per second between the first and last point |
//! | `staleness(time, now())` | seconds since the latest point (absence) |
//! | `anomaly_score(value, time)` | in [0, 1]: how unusual the last point is for this series, learned online ([`detector`]); ≥ 0.5 is anomalous |
//! | `anomaly_score(value, time, INTERVAL '1 minute')` | how anomalous the last span is as a whole ([`detector::span_score`]) |
//!
//! # Semantics shared by all
//!
//! - NULL, NaN and ±Infinity values are skipped, as if the row were absent.
//! - Points are ordered by time; rows with equal times keep arrival order.
//! - Too few points give NULL: the scores need [`score::MIN_BASELINE`] (3)
//!   points before the latest; `increase` and `rate` need 2;
//!   `seasonal_delta` needs a point at or before `latest − period`;
//!   `anomaly_score` learns from [`detector::LEARN`] (150) points before it
//!   scores, and scores 0 for [`detector::REST`] (100) points after a
//!   detection.
//! - Scores are finite: the spread divided by is at least half the
//!   series' decimal step ([`score::Baseline`]); a value equal to a flat
//!   baseline (min = max) scores exactly 0.
//! - Per row (window frames), the scored point is the current row: a row
//!   whose value is NULL scores NULL.
//! - Counter resets follow Prometheus: a decrease means the counter
//!   restarted from 0, so the new value is all increase. Unlike
//!   Prometheus's `rate`, nothing is extrapolated to the window's edges.
//! - `staleness(time, at)` is `at − max(time)` in seconds: "a host stopped
//!   reporting" is `HAVING staleness(time, now()) > 60` over a lookback
//!   window; a host silent for the whole window has no rows and so no group
//!   (pick the window longer than `for` + the silence you alert on).
//!
//! # Example
//!
//! ```sql
//! -- Per series: disks whose latency is far above their own last hour.
//! SELECT hostname, disk, robust_zscore(latency_ms, time) AS value
//! FROM diskio_hw WHERE time > now() - INTERVAL '1 hour'
//! GROUP BY hostname, disk HAVING robust_zscore(latency_ms, time) > 6;
//!
//! -- Per row: a rolling z-score over the previous 30 points.
//! SELECT hostname, time, zscore(temp_c, time) OVER (PARTITION BY hostname
//!   ORDER BY time ROWS BETWEEN 30 PRECEDING AND CURRENT ROW) AS z FROM cpu_thermal;
//! ```
//!
//! ```
//! use datafusion::execution::FunctionRegistry;
//! let ctx = datafusion::prelude::SessionContext::new();
//! fleetlake_query::functions::register(&ctx);
//! assert!(ctx.udaf("robust_zscore").is_ok());
//! ```

pub mod bounded;
pub mod detector;
pub mod score;
pub mod udaf;
pub mod window;

use datafusion::logical_expr::AggregateUDF;
use datafusion::prelude::SessionContext;

pub use udaf::{Kind, SeriesFunction};

/// Every series function, ready to register.
pub fn all() -> Vec<AggregateUDF> {
    Kind::ALL
        .into_iter()
        .map(|k| AggregateUDF::from(SeriesFunction::new(k)))
        .collect()
}

/// Registers every series function in `ctx`.
pub fn register(ctx: &SessionContext) {
    for f in all() {
        ctx.register_udaf(f);
    }
}
