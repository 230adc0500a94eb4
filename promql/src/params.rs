//! Request parameters as the Prometheus HTTP API spells them: times as
//! float unix seconds or RFC 3339, durations as float seconds or
//! Prometheus durations (`15s`, `1m30s`, `500ms`).

use crate::error::{Error, Result};

/// The earliest and latest times accepted, in ms: what nanosecond
/// timestamps (the store's) can hold, with room for windows around them.
pub const MAX_TIME_MS: i64 = 9_000_000_000_000;

/// A time in milliseconds since the epoch, within ±[`MAX_TIME_MS`].
pub fn parse_time(name: &str, s: &str) -> Result<i64> {
    let s = s.trim();
    let ms = if let Ok(f) = s.parse::<f64>()
        && f.is_finite()
    {
        (f * 1000.0).round()
    } else if let Some(ns) = fleetlake_time::parse_rfc3339(s) {
        (ns / 1_000_000) as f64
    } else {
        return Err(Error::BadData(format!(
            "invalid parameter \"{name}\": cannot parse \"{s}\" to a valid timestamp (use unix seconds like 1700000000.5 or RFC 3339)"
        )));
    };
    if ms.abs() > MAX_TIME_MS as f64 {
        return Err(Error::BadData(format!(
            "invalid parameter \"{name}\": {s} is outside the times fleetlake stores (years 1685 to 2255)"
        )));
    }
    Ok(ms as i64)
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
    let d = fleetlake_time::parse_duration(s)
        .map_err(|e| Error::BadData(format!("invalid parameter \"{name}\": {e}")))?;
    i64::try_from(d.as_millis()).map_err(|_| {
        Error::BadData(format!(
            "invalid parameter \"{name}\": cannot parse \"{s}\" to a valid duration. It overflows int64"
        ))
    })
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

    #[test]
    fn times_outside_nanosecond_range_are_refused() {
        for t in ["-1e300", "1e300", "9999999999999", "-9000000001"] {
            let e = parse_time("start", t).unwrap_err().to_string();
            assert!(e.contains("outside the times"), "{t}: {e}");
        }
        assert!(parse_time("start", "-9000000000").is_ok());
    }
}
