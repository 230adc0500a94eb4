//! RFC 3339 text to nanoseconds (the other way is [`fleetlake_sim::time::rfc3339`]).

use fleetlake_sim::time::days_from_civil;

/// Parses `YYYY-MM-DD[T ]HH:MM:SS[.fff…][Z|±HH:MM]` (no offset = UTC) to
/// Unix nanoseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
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
    let offset_s = match &s[i..] {
        "" | "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (tz[1..3].parse::<i64>().ok()? * 3600 + tz[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, u32::try_from(mo).ok()?, u32::try_from(d).ok()?) * 86_400
        + h * 3600
        + mi * 60
        + se
        - offset_s;
    Some(secs * 1_000_000_000 + frac_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetlake_sim::time::{TSBS_START_NS, rfc3339};

    #[test]
    fn round_trips() {
        assert_eq!(parse_rfc3339("2016-01-01T00:00:00Z"), Some(TSBS_START_NS));
        assert_eq!(
            parse_rfc3339("2016-01-01 01:00:00+01:00"),
            Some(TSBS_START_NS)
        );
        assert_eq!(
            parse_rfc3339("2016-01-01T00:00:00.5Z"),
            Some(TSBS_START_NS + 500_000_000)
        );
        let t = TSBS_START_NS + 123_456_789_000;
        assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
