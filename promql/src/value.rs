//! Label sets, series and the values an expression evaluates to.

use std::fmt;

/// `__name__`.
pub const METRIC_NAME: &str = "__name__";

/// A label set, sorted by name, without empty values (an empty label is an
/// absent label in Prometheus).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// Builds a label set; pairs with an empty value are dropped and a later
    /// pair of the same name wins.
    pub fn new(mut pairs: Vec<(String, String)>) -> Self {
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
        for p in pairs {
            match out.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => out.push(p),
            }
        }
        Self(out)
    }

    pub fn iter(&self) -> impl Iterator<Item = &(String, String)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of `name`, `""` when absent.
    pub fn get(&self, name: &str) -> &str {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => &self.0[i].1,
            Err(_) => "",
        }
    }

    /// Sets `name` to `value`; an empty value removes the label.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].1 = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, (name.to_string(), value.to_string())),
        }
    }

    pub fn without_name(&self) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(n, _)| n != METRIC_NAME)
                .cloned()
                .collect(),
        )
    }

    /// Only the labels listed (`by`, `on`).
    pub fn keep(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(n, _)| names.iter().any(|x| x == n))
                .cloned()
                .collect(),
        )
    }

    /// Every label but those listed (`without`, `ignoring`).
    pub fn drop(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(n, _)| !names.iter().any(|x| x == n))
                .cloned()
                .collect(),
        )
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.get(METRIC_NAME);
        write!(f, "{name}{{")?;
        let mut first = true;
        for (n, v) in self.0.iter().filter(|(n, _)| n != METRIC_NAME) {
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            write!(f, "{n}={v:?}")?;
        }
        write!(f, "}}")
    }
}

/// Raw samples of one series, sorted by time (milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct RawSeries {
    pub labels: Labels,
    pub t: Vec<i64>,
    pub v: Vec<f64>,
}

impl RawSeries {
    /// The sample an instant selector sees at `te` (ms): the latest at or
    /// before it, if newer than `te - lookback` and not a staleness marker.
    pub fn lookback_index(&self, te: i64, lookback: i64) -> Option<usize> {
        let i = self.t.partition_point(|&x| x <= te);
        (i > 0 && self.t[i - 1] > te - lookback && !is_stale(self.v[i - 1])).then(|| i - 1)
    }
}

/// One series of an instant vector evaluated at every step: `v[i]` is the
/// value at step `i`, `None` where the series has no point.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSeries {
    pub labels: Labels,
    pub v: Vec<Option<f64>>,
}

/// What an expression evaluates to over all steps of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(Vec<f64>),
    String(String),
    Vector(Vec<StepSeries>),
    /// Only at the top of an instant query (`foo[5m]`): raw samples.
    Matrix(Vec<RawSeries>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// Prometheus' staleness marker: a NaN with this bit pattern ends a series.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A sample value as the HTTP API writes it (`"NaN"`, `"+Inf"`, `"-Inf"`,
/// shortest round-trip decimal otherwise).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sort_drop_empty_and_set() {
        let mut l = Labels::new(vec![
            ("b".into(), "2".into()),
            ("a".into(), "1".into()),
            ("c".into(), String::new()),
        ]);
        assert_eq!(l.to_string(), r#"{a="1", b="2"}"#);
        l.set("b", "");
        l.set("__name__", "m");
        assert_eq!(l.to_string(), r#"m{a="1"}"#);
        assert_eq!(l.get("zz"), "");
    }

    #[test]
    fn values_are_written_as_prometheus_does() {
        assert_eq!(format_value(2.0), "2");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    }
}
