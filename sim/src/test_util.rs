//! Helpers of the unit tests: run a generator to the end and read its output
//! back with an independent parser (the `influxdb-line-protocol` crate).

use influxdb_line_protocol::FieldValue;

use crate::LineSource;

/// The whole output of `source`, in chunks of `chunk` lines.
pub fn generate_all(source: &mut dyn LineSource, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let before = out.len();
        let n = source.next_chunk(&mut out, chunk);
        if n == 0 {
            assert_eq!(out.len(), before, "0 lines but bytes appended");
            return out;
        }
        assert!(n <= chunk, "{n} lines for a chunk of {chunk}");
        let added = out[before..].iter().filter(|&&b| b == b'\n').count();
        assert_eq!(
            added, n,
            "returned line count differs from the lines appended"
        );
        assert_eq!(out.last(), Some(&b'\n'));
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    I(i64),
    U(u64),
    F(f64),
    S(String),
    B(bool),
}

#[derive(Debug, Clone)]
pub struct Row {
    pub table: String,
    pub tags: Vec<(String, String)>,
    pub fields: Vec<(String, Value)>,
    pub time: i64,
}

impl Row {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn field(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// An integer field; panics when absent or of another type.
    pub fn int(&self, key: &str) -> i64 {
        match self.field(key) {
            Some(Value::I(v)) => *v,
            other => panic!("{}: field {key} is {other:?}, not an integer", self.table),
        }
    }

    /// A numeric field as f64; panics when absent or not numeric.
    pub fn num(&self, key: &str) -> f64 {
        match self.field(key) {
            Some(Value::I(v)) => *v as f64,
            Some(Value::U(v)) => *v as f64,
            Some(Value::F(v)) => *v,
            other => panic!("{}: field {key} is {other:?}, not a number", self.table),
        }
    }

    pub fn string(&self, key: &str) -> Option<&str> {
        match self.field(key) {
            Some(Value::S(s)) => Some(s),
            _ => None,
        }
    }

    pub fn boolean(&self, key: &str) -> bool {
        match self.field(key) {
            Some(Value::B(b)) => *b,
            other => panic!("{}: field {key} is {other:?}, not a boolean", self.table),
        }
    }

    pub fn host(&self) -> &str {
        self.tag("hostname").unwrap_or("")
    }
}

/// Parses every line; panics on the first invalid one or one without a
/// timestamp.
pub fn parse(body: &[u8]) -> Vec<Row> {
    let text = std::str::from_utf8(body).expect("UTF-8 output");
    let mut rows = Vec::new();
    for (i, (line, parsed)) in text
        .lines()
        .zip(influxdb_line_protocol::parse_lines(text))
        .enumerate()
    {
        let parsed = parsed.unwrap_or_else(|e| panic!("line {}: {e}: {line}", i + 1));
        rows.push(Row {
            table: parsed.series.measurement.to_string(),
            tags: parsed
                .series
                .tag_set
                .iter()
                .flatten()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fields: parsed
                .field_set
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        FieldValue::I64(v) => Value::I(*v),
                        FieldValue::U64(v) => Value::U(*v),
                        FieldValue::F64(v) => Value::F(*v),
                        FieldValue::String(s) => Value::S(s.to_string()),
                        FieldValue::Boolean(b) => Value::B(*b),
                    };
                    (k.to_string(), v)
                })
                .collect(),
            time: parsed
                .timestamp
                .unwrap_or_else(|| panic!("line {}: no timestamp: {line}", i + 1)),
        });
    }
    assert_eq!(rows.len(), text.lines().count(), "parser skipped lines");
    rows
}
