//! Prometheus remote write 1.0: a snappy-compressed (block format) protobuf
//! `WriteRequest`, decoded and turned into line protocol for the ordinary
//! write path.
//!
//! Each time series becomes a table named by its `__name__` label, with the
//! other labels as tags and one float field `value`; each sample is one line
//! with a millisecond timestamp. Going through line protocol gives remote
//! write exactly the durability, replay, partial-write and back-pressure rules
//! of `/write`: the WAL stores line protocol.
//!
//! # Samples that are not stored
//! - **Stale markers** (the NaN with bits `0x7ff0000000000002`, which
//!   Prometheus sends when a series disappears from a scrape) are dropped.
//!   Prometheus itself treats them as "no value since"; a float column would
//!   store them as NaN, which would poison `avg`/`sum` in SQL. PromQL lookback
//!   over fleetlake therefore ends a vanished series 5 minutes after its last
//!   sample rather than at the marker.
//! - **Other NaN and ±Inf values** are dropped too: line protocol (the WAL's
//!   format) cannot represent them. Both counts are reported.
//! - Exemplars, metadata and native histograms are ignored.
//!
//! A series whose name or labels cannot be stored (no `__name__`, an invalid
//! table name, a label value with a tab or newline) is rejected alone and
//! named in the answer; the rest of the request is stored.

use std::fmt::Write as _;

use fleetlake_storage::schema::validate_name;
use prost::Message;

use crate::lp_writer::{push_measurement, push_tag};

/// The bit pattern of Prometheus' staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// `prometheus.WriteRequest` (remote write 1.0). Field 3 (metadata) is skipped.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`. Exemplars (3) and native histograms (4) are skipped.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Why a request body could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "body is not snappy block-compressed data (send Content-Encoding: snappy, block format): {0}"
    )]
    Snappy(String),
    #[error(
        "decompressed body is {size} bytes, over the limit of {limit}; lower queue_config.max_samples_per_send"
    )]
    TooLarge { size: usize, limit: usize },
    #[error("body is not a protobuf prometheus.WriteRequest: {0}")]
    Protobuf(String),
}

/// A series that was not stored, as reported to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedSeries {
    /// The series in Prometheus notation, e.g. `up{job="node"}`.
    pub series: String,
    pub reason: String,
}

/// A request converted to line protocol.
#[derive(Debug, Default)]
pub struct Converted {
    /// One line per stored sample, millisecond precision.
    pub lines: String,
    /// For line `i` (0-based) of `lines`, the index of its series in the request.
    pub line_series: Vec<u32>,
    /// The series in Prometheus notation, by index in the request.
    pub series_names: Vec<String>,
    pub rejected: Vec<RejectedSeries>,
    pub stale_markers_dropped: usize,
    pub non_finite_dropped: usize,
}

/// Decompresses (snappy block format) and decodes a remote-write body.
///
/// # Errors
/// [`DecodeError`] for a body that is not snappy, decompresses to more than
/// `limit` bytes, or is not a `WriteRequest`.
pub fn decode(body: &[u8], limit: usize) -> Result<WriteRequest, DecodeError> {
    let size = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if size > limit {
        return Err(DecodeError::TooLarge { size, limit });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Snappy(e.to_string()))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| DecodeError::Protobuf(e.to_string()))
}

/// Encodes a request as Prometheus sends it (tests and benchmarks).
pub fn encode(req: &WriteRequest) -> Vec<u8> {
    snappy(&req.encode_to_vec())
}

/// Snappy block-compresses `raw` (tests that build bodies by hand).
pub fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .expect("snappy compresses any input")
}

/// Turns a decoded request into line protocol (see the module docs).
pub fn to_line_protocol(req: &WriteRequest) -> Converted {
    let mut out = Converted::default();
    let mut tags: Vec<&Label> = Vec::new();
    let mut prefix = String::new();
    for ts in &req.timeseries {
        let idx = out.series_names.len() as u32;
        let name = series_name(&ts.labels);
        out.series_names.push(name.clone());
        if let Err(reason) = line_prefix(&ts.labels, &mut tags, &mut prefix) {
            out.rejected.push(RejectedSeries {
                series: name,
                reason,
            });
            continue;
        }
        for s in &ts.samples {
            if s.value.to_bits() == STALE_NAN_BITS {
                out.stale_markers_dropped += 1;
                continue;
            }
            if !s.value.is_finite() {
                out.non_finite_dropped += 1;
                continue;
            }
            out.lines.push_str(&prefix);
            out.lines.push_str(" value=");
            let mut buf = ryu::Buffer::new();
            out.lines.push_str(float_text(&mut buf, s.value));
            let _ = writeln!(out.lines, " {}", s.timestamp);
            out.line_series.push(idx);
        }
    }
    out
}

/// ryu writes `1e16` and `1.5e-7`, which line protocol accepts; it also
/// writes `1.0` for integral values, which is fine.
fn float_text(buf: &mut ryu::Buffer, v: f64) -> &str {
    buf.format_finite(v)
}

/// `measurement,tag=value,...` for a series, tags sorted by name.
fn line_prefix<'a>(
    labels: &'a [Label],
    tags: &mut Vec<&'a Label>,
    out: &mut String,
) -> Result<(), String> {
    out.clear();
    tags.clear();
    let mut name: Option<&str> = None;
    for l in labels {
        if l.name == "__name__" {
            name = Some(&l.value);
        } else if !l.value.is_empty() {
            // Prometheus: an empty label value is the same as no label.
            tags.push(l);
        }
    }
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or("series has no __name__ label")?;
    validate_name(name).map_err(|e| format!("metric name: {e}"))?;
    if name.starts_with('#') {
        return Err(format!(
            "metric name {name:?}: a name starting with '#' reads as a comment"
        ));
    }
    push_measurement(out, name);
    tags.sort_by(|a, b| a.name.cmp(&b.name));
    for l in tags.iter() {
        for (what, s) in [("label name", &l.name), ("label value", &l.value)] {
            if s.contains(['\n', '\r', '\t']) {
                return Err(format!(
                    "{what} {s:?} contains a tab or line break, which cannot be stored"
                ));
            }
            // Line protocol cannot end a tag with a backslash (see the parser).
            if s.ends_with('\\') {
                return Err(format!(
                    "{what} {s:?} ends with a backslash, which cannot be stored"
                ));
            }
        }
        push_tag(out, &l.name, &l.value);
    }
    Ok(())
}

/// `name{a="1", b="2"}`, as Prometheus prints a series.
pub fn series_name(labels: &[Label]) -> String {
    let name = labels
        .iter()
        .find(|l| l.name == "__name__")
        .map(|l| l.value.as_str())
        .unwrap_or("");
    let mut s = name.to_string();
    s.push('{');
    let mut first = true;
    for l in labels.iter().filter(|l| l.name != "__name__") {
        if !first {
            s.push_str(", ");
        }
        first = false;
        let _ = write!(s, "{}={:?}", l.name, l.value);
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(n: &str, v: &str) -> Label {
        Label {
            name: n.into(),
            value: v.into(),
        }
    }

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
            samples: samples
                .iter()
                .map(|&(value, timestamp)| Sample { value, timestamp })
                .collect(),
        }
    }

    #[test]
    fn round_trip_and_lines() {
        let req = WriteRequest {
            timeseries: vec![
                series(
                    &[
                        ("__name__", "node_cpu_seconds_total"),
                        ("mode", "idle"),
                        ("cpu", "0"),
                        ("empty", ""),
                    ],
                    &[(1.5, 1_000), (2.0, 2_000)],
                ),
                series(
                    &[("job", "a b,c=d\\e"), ("__name__", "up")],
                    &[(1.0, 3_000)],
                ),
            ],
        };
        let body = encode(&req);
        let decoded = decode(&body, 1 << 20).unwrap();
        assert_eq!(decoded, req);
        let c = to_line_protocol(&decoded);
        assert_eq!(
            c.lines,
            "node_cpu_seconds_total,cpu=0,mode=idle value=1.5 1000\n\
             node_cpu_seconds_total,cpu=0,mode=idle value=2.0 2000\n\
             up,job=a\\ b\\,c\\=d\\\\e value=1.0 3000\n"
        );
        assert_eq!(c.line_series, [0, 0, 1]);
        assert!(c.rejected.is_empty());
        // The escaped line parses back to the original label value.
        let line = crate::line_protocol::parse_line(c.lines.lines().nth(2).unwrap()).unwrap();
        assert_eq!(line.tags[0].1, "a b,c=d\\e");
    }

    #[test]
    fn stale_markers_and_non_finite_values_are_dropped() {
        let stale = f64::from_bits(STALE_NAN_BITS);
        let req = WriteRequest {
            timeseries: vec![series(
                &[("__name__", "up")],
                &[
                    (stale, 1),
                    (f64::NAN, 2),
                    (f64::INFINITY, 3),
                    (1e300, 4),
                    (-2.5e-9, 5),
                ],
            )],
        };
        let c = to_line_protocol(&req);
        assert_eq!(c.stale_markers_dropped, 1);
        assert_eq!(c.non_finite_dropped, 2);
        assert_eq!(c.lines, "up value=1e300 4\nup value=-2.5e-9 5\n");
        for l in c.lines.lines() {
            crate::line_protocol::parse_line(l).unwrap();
        }
    }

    #[test]
    fn bad_series_are_rejected_alone() {
        let req = WriteRequest {
            timeseries: vec![
                series(&[("job", "x")], &[(1.0, 1)]),
                series(&[("__name__", "_reserved")], &[(1.0, 1)]),
                series(&[("__name__", "m"), ("l", "a\nb")], &[(1.0, 1)]),
                series(&[("__name__", "ok")], &[(1.0, 1)]),
                series(&[("__name__", "m"), ("l", "a\\")], &[(1.0, 1)]),
            ],
        };
        let c = to_line_protocol(&req);
        assert_eq!(c.lines, "ok value=1.0 1\n");
        assert_eq!(c.line_series, [3]);
        let reasons: Vec<_> = c.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert!(reasons[0].contains("no __name__"), "{reasons:?}");
        assert!(reasons[1].contains("reserved"), "{reasons:?}");
        assert!(reasons[2].contains("line break"), "{reasons:?}");
        assert!(reasons[3].contains("ends with a backslash"), "{reasons:?}");
        assert_eq!(c.rejected[1].series, "_reserved{}");
        assert_eq!(c.rejected[2].series, "m{l=\"a\\nb\"}");
    }

    #[test]
    fn bad_bodies_are_errors() {
        let err = decode(b"definitely not snappy", 1 << 20).unwrap_err();
        assert!(matches!(err, DecodeError::Snappy(_)), "{err}");
        // Valid snappy around bytes that are not a WriteRequest.
        let junk = snap::raw::Encoder::new()
            .compress_vec(&[0x0a, 0xff, 0xff, 0xff])
            .unwrap();
        let err = decode(&junk, 1 << 20).unwrap_err();
        assert!(matches!(err, DecodeError::Protobuf(_)), "{err}");
        let big = encode(&WriteRequest {
            timeseries: vec![series(&[("__name__", "up")], &[(1.0, 1); 100])],
        });
        let err = decode(&big, 100).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { .. }), "{err}");
    }
}
