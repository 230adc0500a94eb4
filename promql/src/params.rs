//! Request parameters as the Prometheus HTTP API spells them: times as
//! float unix seconds or RFC 3339, durations as float seconds or
//! Prometheus durations (`15s`, `1m30s`, `500ms`).

use crate::error::{Error, Result};

/// A time in milliseconds since the epoch.
pub fn parse_time(name: &str, s: &str) -> Result<i64> {
    let s = s.trim();
    if let Ok(f) = s.parse::<f64>()
        && f.is_finite()
    {
        return Ok((f * 1000.0).round() as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    Err(Error::BadData(format!(
        "invalid parameter \"{name}\": cannot parse \"{s}\" to a valid timestamp (use unix seconds like 1700000000.5 or RFC 3339)"
    )))
}

/// A duration in milliseconds.
pub fn parse_duration(name: &str, s: &str) -> Result<i64> {
    let s = s.trim();
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() || f * 1000.0 > i64::MAX as f64 {
            return Err(Error::BadData(format!(
                "invalid parameter \"{name}\": cannot parse \"{s}\" to a valid duration. It overflows int64"
            )));
        }
        return Ok((f * 1000.0).round() as i64);
    }
    prom_duration(s).ok_or_else(|| {
        Error::BadData(format!(
            "invalid parameter \"{name}\": cannot parse \"{s}\" to a valid duration (use seconds like 15 or a duration like 15s, 1m, 1h30m)"
        ))
    })
}

/// `1y2w3d4h5m6s7ms`, units in descending order, each at most once.
fn prom_duration(s: &str) -> Option<i64> {
    const UNITS: [(&str, i64); 8] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
        ("", 0),
    ];
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total: i64 = 0;
    let mut last_unit = 0usize;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let idx = UNITS[..7].iter().position(|(u, _)| *u == unit)? + 1;
        if idx <= last_unit {
            return None;
        }
        last_unit = idx;
        total = total.checked_add(n.checked_mul(UNITS[idx - 1].1)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time("time", "4").unwrap(), 4000);
        assert_eq!(parse_time("time", "1.5").unwrap(), 1500);
        assert_eq!(
            parse_time("time", "2015-07-01T20:10:51.781Z").unwrap(),
            1_435_781_451_781
        );
        assert!(parse_time("time", "yesterday").is_err());
        assert_eq!(parse_duration("step", "15").unwrap(), 15_000);
        assert_eq!(parse_duration("step", "0.5").unwrap(), 500);
        assert_eq!(parse_duration("step", "1m30s").unwrap(), 90_000);
        assert_eq!(parse_duration("step", "500ms").unwrap(), 500);
        assert_eq!(parse_duration("step", "1h").unwrap(), 3_600_000);
        assert!(parse_duration("step", "1s1m").is_err());
        assert!(parse_duration("step", "abc").is_err());
        assert!(parse_duration("step", "5x").is_err());
    }
}
