//! Durations in rule files, in the service's one grammar
//! ([`fleetlake_time::parse_duration`]): `500ms`, `30s`, `5m`,
//! `1h30m`, `7d`, `2w`, or `0`.

use std::fmt;
use std::time::Duration;

use fleetlake_time::{format_duration, parse_duration};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as text in a rule (`"10m"`); serialized back the same way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

impl Dur {
    pub fn from_secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }

    /// Nanoseconds, saturating at `i64::MAX`.
    pub fn ns(self) -> i64 {
        self.0.as_nanos().min(i64::MAX as u128) as i64
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_durations_round_trip_as_text() {
        let d: Dur = serde_json::from_str("\"1h30m\"").unwrap();
        assert_eq!(d, Dur::from_secs(5400));
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1h30m\"");
        let e = serde_json::from_str::<Dur>("\"10x\"").unwrap_err();
        assert!(e.to_string().contains("\"x\""), "{e}");
    }
}
