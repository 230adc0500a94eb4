//! Timestamp precision of a write.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Nanosecond,
    Microsecond,
    Millisecond,
    Second,
    Minute,
    Hour,
    /// InfluxDB 3's `auto`: guess the unit from the magnitude of each timestamp.
    Auto,
}

impl Precision {
    /// Parses the `precision` parameter of any of the write APIs (v1 `n`, `u`,
    /// `ms`, `s`, `m`, `h`; v2 `ns`, `us`, `ms`, `s`; v3 long names and `auto`).
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "" | "n" | "ns" | "nanosecond" => Self::Nanosecond,
            "u" | "us" | "µs" | "µ" | "microsecond" => Self::Microsecond,
            "ms" | "millisecond" => Self::Millisecond,
            "s" | "second" => Self::Second,
            "m" | "minute" => Self::Minute,
            "h" | "hour" => Self::Hour,
            "auto" => Self::Auto,
            other => return Err(Error::InvalidPrecision(other.to_string())),
        })
    }

    pub fn to_u8(self) -> u8 {
        self as u8
    }

    pub fn from_u8(v: u8) -> Option<Self> {
        [
            Self::Nanosecond,
            Self::Microsecond,
            Self::Millisecond,
            Self::Second,
            Self::Minute,
            Self::Hour,
            Self::Auto,
        ]
        .get(v as usize)
        .copied()
    }

    /// Converts a timestamp written in this precision to nanoseconds, or
    /// `None` when it does not fit an i64.
    pub fn to_nanos(self, ts: i64) -> Option<i64> {
        let mult: i64 = match self {
            Self::Nanosecond => 1,
            Self::Microsecond => 1_000,
            Self::Millisecond => 1_000_000,
            Self::Second => 1_000_000_000,
            Self::Minute => 60_000_000_000,
            Self::Hour => 3_600_000_000_000,
            Self::Auto => {
                // As InfluxDB 3: pick the unit that puts the value nearest "now"-scale.
                let a = ts.unsigned_abs();
                if a < 5_000_000_000 {
                    1_000_000_000
                } else if a < 5_000_000_000_000 {
                    1_000_000
                } else if a < 5_000_000_000_000_000 {
                    1_000
                } else {
                    1
                }
            }
        };
        ts.checked_mul(mult)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(
            Precision::parse("s").unwrap().to_nanos(2),
            Some(2_000_000_000)
        );
        assert_eq!(
            Precision::parse("h").unwrap().to_nanos(1),
            Some(3_600_000_000_000)
        );
        assert_eq!(Precision::Second.to_nanos(i64::MAX / 10), None);
        assert_eq!(
            Precision::Auto.to_nanos(1_451_606_400),
            Some(1_451_606_400_000_000_000)
        );
        assert_eq!(
            Precision::Auto.to_nanos(1_451_606_400_000_000_000),
            Some(1_451_606_400_000_000_000)
        );
        assert!(Precision::parse("weeks").is_err());
        for p in 0..7 {
            assert_eq!(Precision::from_u8(p).unwrap().to_u8(), p);
        }
    }
}
