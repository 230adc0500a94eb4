//! The rollup file: which tables are downsampled into which, and how.
//!
//! ```toml
//! [[rollup]]
//! db = "fleet"        # optional, default "fleet"
//! source = "cpu"
//! target = "cpu_1m"
//! every = "1m"        # bucket width: ms, s, m, h or d
//! delay = "2m"        # optional, default = every
//! fields = ["usage_user", "usage_system"]  # optional, default every numeric field
//! ```
//!
//! Unknown keys, bad durations and contradictory entries are refused with a
//! message that names the entry, so a typo fails start-up instead of
//! silently materializing nothing.

use std::collections::HashSet;
use std::time::Duration;

use fleetlake_storage::schema::validate_name;
use fleetlake_time::{duration_ns, parse_duration};
use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};

/// The default database of a rollup, as for writes.
pub const DEFAULT_DB: &str = "fleet";

/// One declared rollup: `source` downsampled into `target` by buckets of `every`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupSpec {
    pub db: String,
    pub source: String,
    pub target: String,
    /// Bucket width in nanoseconds; buckets are aligned to the Unix epoch,
    /// as `date_bin(every, time)` aligns them.
    pub every_ns: i64,
    /// A bucket is closed (materialized) once `now - delay` passed its end.
    pub delay_ns: i64,
    /// Fields to aggregate; `None`: every numeric field of the source.
    pub fields: Option<Vec<String>>,
}

impl RollupSpec {
    /// A spec with the defaults: the default database, delay = `every`, every numeric field.
    ///
    /// # Errors
    /// [`Error::Config`] for invalid names, a zero width, or `source == target`.
    pub fn new(source: &str, target: &str, every: Duration) -> Result<Self> {
        let every_ns = duration_ns(every);
        let spec = Self {
            db: default_db(),
            source: source.to_string(),
            target: target.to_string(),
            every_ns,
            delay_ns: every_ns,
            fields: None,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// `db.source → db.target`, for messages.
    pub fn describe(&self) -> String {
        format!("{}.{} → {}.{}", self.db, self.source, self.db, self.target)
    }

    fn validate(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::Config(format!(
                "rollup {} → {}: {reason}",
                self.source, self.target
            )))
        };
        for (what, name) in [
            ("db", &self.db),
            ("source", &self.source),
            ("target", &self.target),
        ] {
            if let Err(e) = validate_name(name) {
                return bad(format!("{what}: {e}"));
            }
        }
        if self.source == self.target {
            return bad("target must differ from source".into());
        }
        if self.every_ns <= 0 {
            return bad("`every` must be longer than zero".into());
        }
        if self.delay_ns < 0 {
            return bad("`delay` must not be negative".into());
        }
        if let Some(fields) = &self.fields {
            if fields.is_empty() {
                return bad(
                    "`fields` is empty; leave it out to aggregate every numeric field".into(),
                );
            }
            let mut seen = HashSet::new();
            if let Some(dup) = fields.iter().find(|f| !seen.insert(f.as_str())) {
                return bad(format!("field {dup:?} is listed twice"));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollupFile {
    #[serde(default)]
    rollup: Vec<RollupEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollupEntry {
    #[serde(default = "default_db")]
    db: String,
    source: String,
    target: String,
    #[serde(deserialize_with = "duration")]
    every: Duration,
    #[serde(default, deserialize_with = "optional_duration")]
    delay: Option<Duration>,
    #[serde(default)]
    fields: Option<Vec<String>>,
}

/// The server's `--default-db`, set once at start-up; [`DEFAULT_DB`] until then.
static SERVER_DEFAULT_DB: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the database of rollups that name none (the server's `--default-db`).
/// The first call wins: there is one default per process.
pub fn set_default_db(db: &str) {
    let _ = SERVER_DEFAULT_DB.set(db.to_string());
}

fn default_db() -> String {
    SERVER_DEFAULT_DB
        .get()
        .map_or(DEFAULT_DB, String::as_str)
        .to_string()
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// Parses and validates a rollup file.
///
/// # Errors
/// [`Error::Config`] with the TOML position for syntax errors, unknown keys
/// and bad durations; naming the entry for invalid names, a zero width,
/// empty or repeated fields, and two rollups with one target.
pub fn parse_rollups(text: &str) -> Result<Vec<RollupSpec>> {
    let file: RollupFile = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
    let mut specs = Vec::with_capacity(file.rollup.len());
    let mut targets = HashSet::new();
    for e in file.rollup {
        let every_ns = duration_ns(e.every);
        let spec = RollupSpec {
            db: e.db,
            source: e.source,
            target: e.target,
            every_ns,
            delay_ns: e.delay.map_or(every_ns, duration_ns),
            fields: e.fields,
        };
        spec.validate()?;
        if !targets.insert((spec.db.clone(), spec.target.clone())) {
            return Err(Error::Config(format!(
                "rollup {} → {}: another rollup already writes {}.{}",
                spec.source, spec.target, spec.db, spec.target
            )));
        }
        specs.push(spec);
    }
    // A target that is also a source would aggregate aggregates (`x_min_min`):
    // averages of it would no longer be exact. Roll up the raw table instead.
    for s in &specs {
        if targets.contains(&(s.db.clone(), s.source.clone())) {
            return Err(Error::Config(format!(
                "rollup {} → {}: {} is itself a rollup target; roll up the raw table instead",
                s.source, s.target, s.source
            )));
        }
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000_000;

    #[test]
    fn parses_entries_with_defaults() {
        let specs = parse_rollups(
            r#"
            [[rollup]]
            source = "cpu"
            target = "cpu_1m"
            every = "1m"

            [[rollup]]
            db = "metrics"
            source = "cpu"
            target = "cpu_1h"
            every = "1h"
            delay = "90s"
            fields = ["usage_user", "usage_system"]
            "#,
        )
        .unwrap();
        assert_eq!(
            specs[0],
            RollupSpec {
                db: "fleet".into(),
                source: "cpu".into(),
                target: "cpu_1m".into(),
                every_ns: MIN,
                delay_ns: MIN,
                fields: None,
            }
        );
        assert_eq!(specs[1].db, "metrics");
        assert_eq!(specs[1].every_ns, 60 * MIN);
        assert_eq!(specs[1].delay_ns, 90_000_000_000);
        assert_eq!(
            specs[1].fields.as_deref(),
            Some(&["usage_user".to_string(), "usage_system".to_string()][..])
        );
        assert!(parse_rollups("").unwrap().is_empty());
    }

    fn err(text: &str) -> String {
        parse_rollups(text).unwrap_err().to_string()
    }

    #[test]
    fn refuses_unknown_keys_with_their_position() {
        let e = err("[[rollup]]\nsource = \"cpu\"\ntarget = \"cpu_1m\"\nevry = \"1m\"\n");
        assert!(e.contains("unknown field `evry`"), "{e}");
        assert!(e.contains("line 4"), "{e}");
        let e = err("[[rollups]]\nsource = \"cpu\"\n");
        assert!(e.contains("unknown field `rollups`"), "{e}");
    }

    #[test]
    fn refuses_bad_durations() {
        let entry = |every: &str| {
            format!("[[rollup]]\nsource = \"cpu\"\ntarget = \"cpu_x\"\nevery = \"{every}\"\n")
        };
        let e = err(&entry("5x"));
        assert!(e.contains("invalid duration unit \"x\" in \"5x\""), "{e}");
        assert!(e.contains("line 4"), "{e}");
        let e = err(&entry("m"));
        assert!(e.contains("invalid duration \"m\""), "{e}");
        let e = err(&entry("0s"));
        assert!(e.contains("longer than zero"), "{e}");
        let e = err("[[rollup]]\nsource = \"cpu\"\ntarget = \"cpu_x\"\nevery = 60\n");
        assert!(e.contains("invalid type: integer"), "{e}");
        let e = err("[[rollup]]\nsource = \"cpu\"\ntarget = \"cpu_x\"\n");
        assert!(e.contains("missing field `every`"), "{e}");
    }

    #[test]
    fn refuses_contradictions() {
        let e = err("[[rollup]]\nsource = \"cpu\"\ntarget = \"cpu\"\nevery = \"1m\"\n");
        assert!(e.contains("target must differ from source"), "{e}");
        let twice = "[[rollup]]\nsource = \"cpu\"\ntarget = \"x\"\nevery = \"1m\"\n\
                     [[rollup]]\nsource = \"mem\"\ntarget = \"x\"\nevery = \"1h\"\n";
        assert!(err(twice).contains("another rollup already writes fleet.x"));
        let chained = "[[rollup]]\nsource = \"cpu\"\ntarget = \"cpu_1m\"\nevery = \"1m\"\n\
                       [[rollup]]\nsource = \"cpu_1m\"\ntarget = \"cpu_1h\"\nevery = \"1h\"\n";
        assert!(err(chained).contains("cpu_1m is itself a rollup target"));
        let e = err("[[rollup]]\nsource = \"cpu\"\ntarget = \"_x\"\nevery = \"1m\"\n");
        assert!(e.contains("target: invalid name"), "{e}");
        let e = err("[[rollup]]\nsource = \"cpu\"\ntarget = \"x\"\nevery = \"1m\"\nfields = []\n");
        assert!(e.contains("`fields` is empty"), "{e}");
        let e = err(
            "[[rollup]]\nsource = \"cpu\"\ntarget = \"x\"\nevery = \"1m\"\nfields = [\"a\", \"a\"]\n",
        );
        assert!(e.contains("listed twice"), "{e}");
    }
}
