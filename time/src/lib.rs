//! Time as text, one grammar for the whole service: durations (flags, rule
//! files, rollups, retention, PromQL and Grafana parameters) and RFC 3339
//! timestamps (every JSON answer and every SQL literal we build).
//!
//! A leaf crate with no dependencies, so that the simulator, which is kept
//! free of arrow and DataFusion, shares it with the service.
//!
//! # Durations
//! A bare number is seconds (`90`, `1.5`). Otherwise one or more terms of a
//! whole number and a unit — `y` (365 days), `w`, `d`, `h`, `m`, `s`, `ms` —
//! largest unit first, each unit at most once, as Prometheus writes them:
//! `500ms`, `30s`, `5m`, `1h30m`, `7d`, `2w`. `0` is zero.
//!
//! ```
//! use std::time::Duration;
//! use fleetlake_time::{format_duration, parse_duration, rfc3339};
//! assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
//! assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
//! assert_eq!(rfc3339(1_451_606_400_250_000_000), "2016-01-01T00:00:00.250Z");
//! ```

use std::time::Duration;

pub const SECOND_NS: i64 = 1_000_000_000;
pub const DAY_NS: i64 = 86_400 * SECOND_NS;

/// Units largest first, in milliseconds.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses a duration in the grammar above.
///
/// # Errors
/// A message naming the text and the grammar: an unknown unit, units out of
/// order or repeated, a negative, fractional-with-unit or overflowing value.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "invalid duration {s:?}: expected seconds (90) or units largest first, e.g. 500ms, 30s, 5m, 1h30m, 7d, 2w"
        )
    };
    if t.is_empty() {
        return Err(bad());
    }
    if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = t.parse().map_err(|_| bad())?;
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("duration {s:?} is too long"));
    }
    let mut total_ms: u64 = 0;
    let mut rest = t;
    let mut next_unit = 0usize;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("duration {s:?} is too long"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let Some(i) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!(
                "invalid duration unit {unit:?} in {s:?}: use ms, s, m, h, d, w or y"
            ));
        };
        if i < next_unit {
            return Err(format!(
                "invalid duration {s:?}: units must go largest first, each once (e.g. 1h30m)"
            ));
        }
        next_unit = i + 1;
        total_ms = n
            .checked_mul(UNITS[i].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("duration {s:?} is too long"))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats as Prometheus does and [`parse_duration`] reads back: `1h30m`,
/// `45s`, `250ms`, `0s`. Below a millisecond is dropped.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in UNITS {
        let size = u128::from(size);
        // `y` is 365 days, not a calendar year: weeks and days say so.
        if unit == "y" {
            continue;
        }
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// Nanoseconds, saturating at `i64::MAX`.
pub fn duration_ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

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

/// `(year, month, day)` of day `z` since 1970-01-01: [`days_from_civil`]'s inverse.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
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

/// RFC 3339 in UTC, exact: no fraction for whole seconds, else 3, 6 or 9
/// digits, the fewest that hold the value.
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
        f if f % 1_000 == 0 => format!("{base}.{:06}Z", f / 1_000),
        f => format!("{base}.{f:09}Z"),
    }
}

/// Parses `YYYY-MM-DD[T ]HH:MM:SS[.fff…][Z|±HH:MM]` (no offset = UTC) to
/// Unix nanoseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse::<i64>().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ns = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let mut scale = 100_000_000;
        while i < b.len() && b[i].is_ascii_digit() {
            frac_ns += (b[i] - b'0') as i64 * scale;
            scale /= 10;
            i += 1;
        }
    }
    let offset_s = match s.get(i..)? {
        "" | "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (tz.get(1..3)?.parse::<i64>().ok()? * 3600
                + tz.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, u32::try_from(mo).ok()?, u32::try_from(d).ok()?) * 86_400
        + h * 3600
        + mi * 60
        + se
        - offset_s;
    secs.checked_mul(SECOND_NS)?.checked_add(frac_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TSBS_START_NS: i64 = 1_451_606_400 * SECOND_NS;

    #[test]
    fn durations_parse_one_way() {
        let d = |s| parse_duration(s).unwrap();
        assert_eq!(d("5m"), Duration::from_secs(300));
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert_eq!(d("90"), Duration::from_secs(90));
        assert_eq!(d("1.5"), Duration::from_millis(1500));
        assert_eq!(d("0"), Duration::ZERO);
        assert_eq!(d("2w"), Duration::from_secs(14 * 86_400));
        assert_eq!(d("1y"), Duration::from_secs(365 * 86_400));
        assert_eq!(d(" 7d "), Duration::from_secs(7 * 86_400));
        for bad in [
            "", "m", "5 weeks", "1s1m", "1m1m", "-5s", "1.5h", "10x", "1e3",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_duration("10x").unwrap_err().contains("\"x\""));
        assert!(
            parse_duration("99999999999999999999y")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn durations_round_trip() {
        for s in ["1h30m", "45s", "250ms", "1s500ms", "2w", "3d4h"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(TSBS_START_NS), "2016-01-01T00:00:00Z");
        assert_eq!(days_from_civil(2016, 1, 1) * DAY_NS, TSBS_START_NS);
        assert_eq!(
            rfc3339(TSBS_START_NS + 1_500_000),
            "2016-01-01T00:00:00.001500Z"
        );
        assert_eq!(rfc3339(TSBS_START_NS + 7), "2016-01-01T00:00:00.000000007Z");
        assert_eq!(rfc3339(250_000_000), "1970-01-01T00:00:00.250Z");
        assert_eq!(rfc3339(-SECOND_NS), "1969-12-31T23:59:59Z");
        assert_eq!(parse_rfc3339("2016-01-01T00:00:00Z"), Some(TSBS_START_NS));
        assert_eq!(
            parse_rfc3339("2016-01-01 01:00:00+01:00"),
            Some(TSBS_START_NS)
        );
        assert_eq!(
            parse_rfc3339("2016-01-01T00:00:00.5"),
            Some(TSBS_START_NS + 500_000_000)
        );
        let t = TSBS_START_NS + 123_456_789_000;
        assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        for bad in ["yesterday", "2016-13-01T00:00:00Z", "2016-01-01T00:00:00+1"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
