//! Nanosecond Unix time units of the simulator; dates and RFC 3339 text are
//! the service's one helper ([`fleetlake_time`]).

pub use fleetlake_time::{days_from_civil, rfc3339};

pub const SECOND_NS: i64 = 1_000_000_000;
pub const MINUTE_NS: i64 = 60 * SECOND_NS;
pub const HOUR_NS: i64 = 60 * MINUTE_NS;
pub const DAY_NS: i64 = 24 * HOUR_NS;

/// 2016-01-01T00:00:00Z, TSBS's default start.
pub const TSBS_START_NS: i64 = 1_451_606_400 * SECOND_NS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsbs_starts_on_new_year_2016() {
        assert_eq!(days_from_civil(2016, 1, 1) * DAY_NS, TSBS_START_NS);
        assert_eq!(rfc3339(TSBS_START_NS), "2016-01-01T00:00:00Z");
    }
}
