//! Where things live in the object store.
//!
//! ```text
//! <db>/<table>/day=YYYY-MM-DD/<file-id>.parquet   data, hive-style partitions
//! _catalog/...                                    commit log + checkpoints
//! ```

use chrono::{DateTime, Utc};
use object_store::path::Path;

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// The partition day of a timestamp in nanoseconds: `YYYY-MM-DD` (UTC).
pub fn day_of(time_ns: i64) -> String {
    let days = time_ns.div_euclid(NANOS_PER_DAY);
    let secs = days * 86_400;
    DateTime::<Utc>::from_timestamp(secs, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "out-of-range".to_string())
}

/// Index of the partition day of a timestamp (days since 1970-01-01).
pub fn day_index(time_ns: i64) -> i64 {
    time_ns.div_euclid(NANOS_PER_DAY)
}

/// Nanosecond bounds `[start, end)` of day index `day`.
pub fn day_bounds(day: i64) -> (i64, i64) {
    (
        day.saturating_mul(NANOS_PER_DAY),
        (day + 1).saturating_mul(NANOS_PER_DAY),
    )
}

/// The folder of a table: `<db>/<table>`.
pub fn table_dir(db: &str, table: &str) -> Path {
    Path::from_iter([db, table])
}

/// A new data file path: `<db>/<table>/day=<day>/<id>.parquet`.
pub fn data_file_path(db: &str, table: &str, day: &str, id: &str) -> Path {
    Path::from_iter([
        db.to_string(),
        table.to_string(),
        format!("day={day}"),
        format!("{id}.parquet"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_451_606_400_000_000_000), "2016-01-01");
        assert_eq!(day_of(-1), "1969-12-31");
        assert_eq!(
            data_file_path("fleet", "cpu", "2016-01-01", "a").to_string(),
            "fleet/cpu/day=2016-01-01/a.parquet"
        );
    }
}
