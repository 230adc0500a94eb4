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
    /// The request asks for more than one request may (see [`Limits`]).
    #[error("{0}")]
    OverLimit(String),
}

/// What one remote-write request may ask of the server. Checked on the
/// protobuf wire format before anything is decoded, so that a small body
/// cannot become a large allocation: an empty series costs 2 bytes on the
/// wire and ~50 decoded, and a 10 KiB label on 50,000 samples is 500 MB of
/// rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Decompressed bytes.
    pub max_decoded_bytes: usize,
    /// Series per request (Prometheus sends at most `max_samples_per_send`,
    /// 2,000 by default; vmagent 10,000 rows per block).
    pub max_series: usize,
    /// Samples per request.
    pub max_samples: usize,
    /// Labels per request, over all series.
    pub max_labels: usize,
    /// The rows a request expands to (line protocol: each sample repeats its
    /// series' labels), in bytes.
    pub max_rows_bytes: usize,
    /// The same, per byte received (the amplification a body may cause).
    pub max_expansion: usize,
}

/// Labels of one series; a series with more is rejected alone.
pub const MAX_LABELS_PER_SERIES: usize = 128;
/// Bytes of a label name; a series with a longer one is rejected alone.
pub const MAX_LABEL_NAME_BYTES: usize = 1024;
/// Bytes of a label value; a series with a longer one is rejected alone.
pub const MAX_LABEL_VALUE_BYTES: usize = 16 * 1024;
/// Row bytes a body may expand to regardless of its size (small bodies).
const EXPANSION_FLOOR: usize = 1 << 20;

impl Limits {
    /// The defaults for bodies of at most `max_body_bytes` (decompressed).
    pub fn new(max_body_bytes: usize) -> Self {
        Self {
            max_decoded_bytes: max_body_bytes,
            max_series: 100_000,
            max_samples: 1_000_000,
            max_labels: 1_000_000,
            max_rows_bytes: max_body_bytes,
            max_expansion: 128,
        }
    }
}

/// What a `WriteRequest` holds, counted on the wire.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    pub series: usize,
    pub labels: usize,
    pub samples: usize,
    /// Line-protocol bytes the request expands to, estimated from above:
    /// per sample, its series' encoded labels plus room for value and time.
    pub rows_bytes: u64,
}

/// Bytes of a row besides its labels: ` value=<float> <ms>\n`.
const ROW_OVERHEAD: u64 = 48;

/// Counts the series, labels and samples of an encoded `WriteRequest`
/// without decoding it (O(1) memory).
///
/// # Errors
/// [`DecodeError::Protobuf`] when the bytes are not well-formed protobuf.
pub fn census(raw: &[u8]) -> Result<Census, DecodeError> {
    let mut c = Census::default();
    let mut top = Wire(raw);
    while let Some((field, kind)) = top.key()? {
        if field != 1 || kind != WIRE_LEN {
            top.skip(kind)?;
            continue;
        }
        let mut ts = Wire(top.bytes()?);
        c.series += 1;
        let (mut labels_bytes, mut samples) = (0u64, 0u64);
        while let Some((field, kind)) = ts.key()? {
            match (field, kind) {
                (1, WIRE_LEN) => {
                    labels_bytes += ts.bytes()?.len() as u64 + 2;
                    c.labels += 1;
                }
                (2, WIRE_LEN) => {
                    ts.bytes()?;
                    samples += 1;
                }
                _ => ts.skip(kind)?,
            }
        }
        c.samples += samples as usize;
        c.rows_bytes = c
            .rows_bytes
            .saturating_add((labels_bytes + ROW_OVERHEAD).saturating_mul(samples));
    }
    Ok(c)
}

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

/// A cursor over protobuf wire-format bytes.
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn malformed(what: &str) -> DecodeError {
        DecodeError::Protobuf(format!("malformed protobuf: {what}"))
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self
                .0
                .split_first()
                .ok_or_else(|| Self::malformed("truncated varint"))?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Self::malformed("varint longer than 10 bytes"))
    }

    /// The next field number and wire type, or `None` at the end.
    fn key(&mut self) -> Result<Option<(u64, u8)>, DecodeError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let k = self.varint()?;
        Ok(Some((k >> 3, (k & 7) as u8)))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.0.len())
            .ok_or_else(|| Self::malformed("field runs past the end"))?;
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.varint()?;
        self.take(n)
    }

    fn skip(&mut self, kind: u8) -> Result<(), DecodeError> {
        match kind {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_I64 => self.take(8).map(drop),
            WIRE_LEN => self.bytes().map(drop),
            WIRE_I32 => self.take(4).map(drop),
            other => Err(Self::malformed(&format!("unsupported wire type {other}"))),
        }
    }
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

/// Decompresses (snappy block format), checks against `limits` and decodes
/// a remote-write body.
///
/// # Errors
/// [`DecodeError`] for a body that is not snappy, decompresses to more than
/// `limits.max_decoded_bytes`, is not a `WriteRequest`, or asks for more
/// than `limits` allow.
pub fn decode(body: &[u8], limits: &Limits) -> Result<WriteRequest, DecodeError> {
    let limit = limits.max_decoded_bytes;
    let size = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if size > limit {
        return Err(DecodeError::TooLarge { size, limit });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Snappy(e.to_string()))?;
    check(&census(&raw)?, body.len(), limits)?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| DecodeError::Protobuf(e.to_string()))
}

/// Refuses a request whose census is over `limits` (`received`: the body's
/// size on the wire).
fn check(c: &Census, received: usize, limits: &Limits) -> Result<(), DecodeError> {
    let split = "split it into smaller requests (lower queue_config.max_samples_per_send)";
    for (what, n, max) in [
        ("series", c.series, limits.max_series),
        ("samples", c.samples, limits.max_samples),
        ("labels", c.labels, limits.max_labels),
    ] {
        if n > max {
            return Err(DecodeError::OverLimit(format!(
                "request holds {n} {what}, over the limit of {max} per request; {split}"
            )));
        }
    }
    let allowed = (received.saturating_mul(limits.max_expansion))
        .max(EXPANSION_FLOOR)
        .min(limits.max_rows_bytes) as u64;
    if c.rows_bytes > allowed {
        return Err(DecodeError::OverLimit(format!(
            "request expands to about {} bytes of rows (every sample repeats its series' labels), \
             over the {allowed} allowed for a {received}-byte body (at most {}x the body, \
             {} bytes in all); send fewer samples per request or shorter labels",
            c.rows_bytes, limits.max_expansion, limits.max_rows_bytes
        )));
    }
    Ok(())
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
    if labels.len() > MAX_LABELS_PER_SERIES {
        return Err(format!(
            "series has {} labels, over the limit of {MAX_LABELS_PER_SERIES}",
            labels.len()
        ));
    }
    for l in labels {
        if l.name.len() > MAX_LABEL_NAME_BYTES {
            return Err(format!(
                "a label name is {} bytes, over the limit of {MAX_LABEL_NAME_BYTES}",
                l.name.len()
            ));
        }
        if l.value.len() > MAX_LABEL_VALUE_BYTES {
            return Err(format!(
                "label {:?} has a {}-byte value, over the limit of {MAX_LABEL_VALUE_BYTES}",
                cut_label(&l.name),
                l.value.len()
            ));
        }
        if l.name == "__name__" {
            if name.is_some() {
                return Err("series has two __name__ labels".into());
            }
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
    if let Some(w) = tags.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(format!(
            "duplicate label name {:?} (Prometheus refuses such series too)",
            cut_label(&w[0].name)
        ));
    }
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

/// Characters of a series or label name in an error report.
const MAX_REPORTED_CHARS: usize = 200;

fn cut_label(s: &str) -> String {
    cut(s.to_string())
}

fn cut(mut s: String) -> String {
    if let Some((i, _)) = s.char_indices().nth(MAX_REPORTED_CHARS) {
        s.truncate(i);
        s.push('…');
    }
    s
}

/// `name{a="1", b="2"}`, as Prometheus prints a series (cut to 200
/// characters: it names the series in an error report).
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
        if s.len() > MAX_REPORTED_CHARS * 4 {
            break;
        }
        if !first {
            s.push_str(", ");
        }
        first = false;
        let _ = write!(s, "{}={:?}", cut_label(&l.name), cut_label(&l.value));
    }
    s.push('}');
    cut(s)
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
        let decoded = decode(&body, &Limits::new(1 << 20)).unwrap();
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
        let err = decode(b"definitely not snappy", &Limits::new(1 << 20)).unwrap_err();
        assert!(matches!(err, DecodeError::Snappy(_)), "{err}");
        // Valid snappy around bytes that are not a WriteRequest.
        let junk = snap::raw::Encoder::new()
            .compress_vec(&[0x0a, 0xff, 0xff, 0xff])
            .unwrap();
        let err = decode(&junk, &Limits::new(1 << 20)).unwrap_err();
        assert!(matches!(err, DecodeError::Protobuf(_)), "{err}");
        let big = encode(&WriteRequest {
            timeseries: vec![series(&[("__name__", "up")], &[(1.0, 1); 100])],
        });
        let err = decode(&big, &Limits::new(100)).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn census_counts_what_decoding_would_build() {
        let req = WriteRequest {
            timeseries: vec![
                series(&[("__name__", "a"), ("x", "1")], &[(1.0, 1), (2.0, 2)]),
                series(&[], &[]),
                series(&[("__name__", "b")], &[(f64::NAN, i64::MIN)]),
            ],
        };
        let c = census(&req.encode_to_vec()).unwrap();
        assert_eq!((c.series, c.labels, c.samples), (3, 3, 3));
        // Truncated and invalid wire data are errors, never panics.
        let raw = req.encode_to_vec();
        for cut in 1..raw.len() {
            let _ = census(&raw[..cut]);
        }
        assert!(census(&[0x0b]).is_err(), "wire type 3 (groups)");
        assert!(census(&[0x0a, 0x05, 0x01]).is_err(), "length past the end");
        assert!(census(&[0x80; 12]).is_err(), "unterminated varint");
    }

    #[test]
    fn amplifying_requests_are_refused_before_decoding() {
        let limits = Limits::new(64 << 20);
        // 2,000,000 empty series: 4 MB on the wire, ~100 MB decoded.
        let empty = snappy(&[0x0a, 0x00].repeat(2_000_000));
        let err = decode(&empty, &limits).unwrap_err();
        assert!(matches!(err, DecodeError::OverLimit(_)), "{err}");
        assert!(err.to_string().contains("2000000 series"), "{err}");
        // One 10 KiB label on 50,000 samples: ~500 MB of rows from ~100 KiB.
        let long = WriteRequest {
            timeseries: vec![series(
                &[("__name__", "m"), ("l", &"x".repeat(10 << 10))],
                &vec![(1.0, 1); 50_000],
            )],
        };
        let body = encode(&long);
        assert!(body.len() < 200 << 10, "{}", body.len());
        let err = decode(&body, &limits).unwrap_err();
        assert!(err.to_string().contains("expands to"), "{err}");
        // The same label on a few samples is fine.
        let few = WriteRequest {
            timeseries: vec![series(
                long.timeseries[0]
                    .labels
                    .iter()
                    .map(|l| (l.name.as_str(), l.value.as_str()))
                    .collect::<Vec<_>>()
                    .as_slice(),
                &[(1.0, 1); 10],
            )],
        };
        assert_eq!(decode(&encode(&few), &limits).unwrap(), few);
    }

    #[test]
    fn oversized_labels_reject_their_series_alone() {
        let many: Vec<(String, String)> = (0..=MAX_LABELS_PER_SERIES)
            .map(|i| (format!("l{i}"), "v".to_string()))
            .chain([("__name__".to_string(), "m".to_string())])
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let long_value = "v".repeat(MAX_LABEL_VALUE_BYTES + 1);
        let long_name = "n".repeat(MAX_LABEL_NAME_BYTES + 1);
        let req = WriteRequest {
            timeseries: vec![
                series(&many, &[(1.0, 1)]),
                series(&[("__name__", "m"), ("l", &long_value)], &[(1.0, 1)]),
                series(&[("__name__", "m"), (&long_name, "v")], &[(1.0, 1)]),
                series(&[("__name__", "ok")], &[(1.0, 1)]),
            ],
        };
        let c = to_line_protocol(&req);
        assert_eq!(c.lines, "ok value=1.0 1\n");
        let reasons: Vec<_> = c.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert!(reasons[0].contains("130 labels"), "{reasons:?}");
        assert!(reasons[1].contains("16385-byte value"), "{reasons:?}");
        assert!(
            reasons[2].contains("label name is 1025 bytes"),
            "{reasons:?}"
        );
        // Reports name the series in a bounded number of characters.
        assert!(c.rejected.iter().all(|r| r.series.chars().count() <= 201));
    }

    /// Every fuzz corpus entry (fuzz/corpus/remote_write) decodes or is
    /// refused without a panic.
    #[test]
    fn fuzz_corpus_replays() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/remote_write");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("corpus") {
            let body = std::fs::read(entry.unwrap().path()).unwrap();
            if let Ok(req) = decode(&body, &Limits::new(1 << 20)) {
                to_line_protocol(&req);
            }
            n += 1;
        }
        assert!(n >= 3, "corpus has {n} entries");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn label() -> impl Strategy<Value = Label> {
            ("[a-z_]{1,8}|__name__", "\\PC{0,12}|[ ,=\\\\]{0,4}")
                .prop_map(|(name, value)| Label { name, value })
        }

        fn request() -> impl Strategy<Value = WriteRequest> {
            let sample = (any::<f64>(), any::<i64>())
                .prop_map(|(value, timestamp)| Sample { value, timestamp });
            let ts = (
                prop::collection::vec(label(), 0..6),
                prop::collection::vec(sample, 0..6),
            )
                .prop_map(|(labels, samples)| TimeSeries { labels, samples });
            prop::collection::vec(ts, 0..12).prop_map(|timeseries| WriteRequest { timeseries })
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            /// Any bytes, raw or snappy-framed: an answer, never a panic.
            #[test]
            fn any_bytes_get_an_answer(raw in prop::collection::vec(any::<u8>(), 0..512)) {
                let _ = census(&raw);
                let limits = Limits::new(1 << 20);
                let _ = decode(&raw, &limits).map(|r| to_line_protocol(&r));
                let _ = decode(&snappy(&raw), &limits).map(|r| to_line_protocol(&r));
            }

            /// The census counts what decoding builds, and every sample
            /// stored comes back from its line as sent.
            #[test]
            fn census_and_lines_agree_with_the_request(req in request()) {
                let raw = req.encode_to_vec();
                let c = census(&raw).unwrap();
                prop_assert_eq!(c.series, req.timeseries.len());
                prop_assert_eq!(c.labels, req.timeseries.iter().map(|t| t.labels.len()).sum::<usize>());
                prop_assert_eq!(c.samples, req.timeseries.iter().map(|t| t.samples.len()).sum::<usize>());
                let decoded = decode(&encode(&req), &Limits::new(1 << 20)).unwrap();
                prop_assert_eq!(&decoded, &req);
                let conv = to_line_protocol(&decoded);
                prop_assert!(conv.lines.len() as u64 <= c.rows_bytes.max(1), "{} > {}", conv.lines.len(), c.rows_bytes);
                for (line, &idx) in conv.lines.lines().zip(&conv.line_series) {
                    let parsed = crate::line_protocol::parse_line(line)
                        .map_err(|e| TestCaseError::fail(format!("{line:?}: {e}")))?;
                    let ts = &req.timeseries[idx as usize];
                    let name = ts.labels.iter().find(|l| l.name == "__name__").unwrap();
                    prop_assert_eq!(parsed.measurement.as_ref(), name.value.as_str());
                    for (k, v) in &parsed.tags {
                        prop_assert!(ts.labels.iter().any(|l| l.name == k.as_ref() && l.value == v.as_ref()), "{line:?}");
                    }
                    let time = parsed.timestamp.unwrap();
                    let sample = ts.samples.iter().find(|s| s.timestamp == time);
                    prop_assert!(sample.is_some(), "{line:?}");
                }
            }
        }
    }
}
