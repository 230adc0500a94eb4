//! Nanosecond Unix times and RFC 3339 text, without a date-time crate.

pub const SECOND_NS: i64 = 1_000_000_000;
pub const MINUTE_NS: i64 = 60 * SECOND_NS;
pub const HOUR_NS: i64 = 60 * MINUTE_NS;
pub const DAY_NS: i64 = 24 * HOUR_NS;

/// 2016-01-01T00:00:00Z, TSBS's default start.
pub const TSBS_START_NS: i64 = 1_451_606_400 * SECOND_NS;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// RFC 3339 in UTC; fractional seconds only when there are some.
pub fn rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(SECOND_NS);
    let frac = ns.rem_euclid(SECOND_NS);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let base = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
    match frac {
        0 => format!("{base}Z"),
        f if f % 1_000_000 == 0 => format!("{base}.{:03}Z", f / 1_000_000),
        f => format!("{base}.{f:09}Z"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(rfc3339(TSBS_START_NS), "2016-01-01T00:00:00Z");
        assert_eq!(days_from_civil(2016, 1, 1) * DAY_NS, TSBS_START_NS);
        assert_eq!(
            rfc3339(days_from_civil(2026, 3, 1) * DAY_NS + HOUR_NS + 1_500_000),
            "2026-03-01T01:00:00.001500000Z"
        );
        assert_eq!(rfc3339(250_000_000), "1970-01-01T00:00:00.250Z");
        assert_eq!(rfc3339(-SECOND_NS), "1969-12-31T23:59:59Z");
    }
}
