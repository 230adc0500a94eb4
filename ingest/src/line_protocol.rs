//! InfluxDB line protocol parser (v2 syntax, as written by Telegraf, the
//! InfluxDB client libraries and TSBS).
//!
//! ```text
//! measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]
//! ```
//!
//! [`parse_lines`] walks a request body and yields one [`Line`] per point, each
//! with its 1-based line number and either a [`ParsedLine`] or a
//! [`ParseError`] whose message is meant for the user who sent the line. A bad
//! line never stops the lines after it (InfluxDB accepts a batch partially).
//! [`parse_line`] parses a single line.
//!
//! ```
//! use fleetlake_ingest::line_protocol::{parse_lines, FieldValue};
//!
//! let body = "# TSBS\ncpu,host=h0 usage_user=58i,usage_idle=0.5 1451606400000000000\r\ncpu usage=\n";
//! let lines: Vec<_> = parse_lines(body).collect();
//! let first = lines[0].parsed.as_ref().unwrap();
//! assert_eq!(lines[0].number, 2);
//! assert_eq!(first.measurement, "cpu");
//! assert_eq!(first.tags[0], ("host".into(), "h0".into()));
//! assert_eq!(first.fields[0].1, FieldValue::I64(58));
//! assert_eq!(first.timestamp, Some(1451606400000000000));
//! assert_eq!(lines[1].number, 3);
//! assert_eq!(
//!     lines[1].parsed.as_ref().unwrap_err().to_string(),
//!     "field 'usage' has no value: write 'usage=<value>' \
//!      (a comma, space or '=' inside a field key must be escaped with a backslash)"
//! );
//! ```
//!
//! # The syntax accepted
//!
//! Where the specification (docs.influxdata.com, "Line protocol", InfluxDB v2)
//! is silent, the rules follow the `influxdb-line-protocol` crate (the parser
//! of InfluxDB 3, itself ported from InfluxDB's Go parser), and where that
//! crate is more lenient than the specification and the Go parser, the rules
//! follow the specification. `tests/lp_differential.rs` checks every
//! difference listed below against that crate.
//!
//! - **Sections** are separated by one or more spaces. Tabs are not separators.
//!   Spaces and tabs before the measurement are skipped; spaces after the last
//!   field or the timestamp are ignored *(the reference crate rejects them
//!   after the last field when there is no timestamp)*.
//! - **Escapes.** In the measurement, `\,` `\ ` and `\\` stand for `,` ` ` and
//!   `\`. In tag keys, tag values and field keys, `\,` `\=` `\ ` and `\\` stand
//!   for `,` `=` ` ` and `\`. A backslash before any other character is literal
//!   and both characters are kept (`a\b` is `a\b`, `m\=` as a measurement is
//!   `m\=`), and that character is never a delimiter.
//! - **Unescaped delimiters.** The measurement ends at an unescaped `,` or
//!   space. A tag key ends at `=`; a tag key containing an unescaped `,` or
//!   space is an error ([`ParseError::MissingTagValue`]). A tag value ends at
//!   `,` or space; an unescaped `=` in it is an error
//!   ([`ParseError::InvalidCharacter`]). A field key ends at `=`; an unescaped
//!   `,` or space in it is an error ([`ParseError::MissingFieldValue`]).
//!   *(The reference crate accepts these three as part of the name; InfluxDB's
//!   Go parser and the specification do not.)* An unescaped `=` or `"` in a
//!   measurement is an ordinary character.
//! - **Forbidden characters.** Unescaped tab and newline are not allowed in
//!   the measurement, tag keys, tag values or field keys, nor NUL in the
//!   measurement ([`ParseError::InvalidCharacter`]). Names and tag values
//!   must not be empty and must not end with a backslash once unescaped
//!   ([`ParseError::TrailingBackslash`], as in the reference crate: InfluxDB's
//!   Go parser would read the `\ ` of `a\\ b=1` as an escaped space). A
//!   `,` after a field must be followed by another field: `m a=1, 5` is
//!   [`ParseError::EmptyFieldKey`] *(the reference crate skips a dangling `,`
//!   after the first field only)*.
//! - **Field values.** Float: `-?\d+(\.\d+)?([eE][+-]?\d+)?` (`1`, `-1.5`,
//!   `1e10`, `1.5E-3`); no `+` sign, no `.5` or `5.`, no NaN or infinity, and a
//!   value that overflows `f64` (`1e999`) is [`ParseError::FloatOutOfRange`]
//!   *(the reference crate yields infinity; InfluxDB's Go parser rejects it)*.
//!   Integer: `-?\d+i`, an `i64`. Unsigned: `\d+u`, a `u64`. Out-of-range
//!   integers are errors. Boolean: `t T true True TRUE f F false False FALSE`.
//!   String: double-quoted; inside, `\"` and `\\` are escapes, any other
//!   backslash is literal, and spaces, commas, `=` and newlines are ordinary
//!   characters.
//! - **Timestamp:** optional, `-?\d+`, an `i64`, returned as written: the
//!   caller applies the request's precision.
//! - **Duplicates:** a tag key or a field key written twice in one line is an
//!   error, compared after unescaping *(the reference crate accepts both;
//!   InfluxDB's Go parser rejects duplicate tags)*.
//! - **Naming restrictions** (`_`-prefixed names, a `time` key) are not
//!   checked here: they are schema rules for the validation step.
//!
//! # Lines
//!
//! [`parse_lines`] splits the body as InfluxDB does: at a `\n` that is neither
//! escaped by a backslash nor inside a double-quoted field value (so string
//! fields may hold newlines, which InfluxDB accepts although the specification
//! says it does not support them). The quote tracking is InfluxDB's heuristic:
//! a `"` opens or closes a string only after the first unescaped space and
//! while more `=` than `,` have been seen outside quotes. An unterminated
//! string therefore swallows the rest of the body into one erroneous line, as
//! in InfluxDB. A trailing `\r` is removed from every line (CRLF bodies work;
//! *the reference crate rejects them*). A line whose first character other
//! than space or tab is `#` is a comment and ends at the next `\n` whatever it
//! contains *(the reference crate lets a `"` in a comment open a string)*;
//! so in a body, a measurement cannot start with `#`. Lines holding only
//! spaces and tabs are skipped.
//!
//! # Invariants
//!
//! - No heap allocation for a line without escapes and with at most 16 tags and
//!   16 fields: names and strings are [`Cow::Borrowed`] slices of the body
//!   unless an escape had to be removed, and the tag and field lists are inline
//!   [`SmallVec`]s. Errors allocate (they own their context).
//! - Tags and fields are returned in the order written, never sorted.
//! - Every returned `f64` is finite.

use std::borrow::Cow;

use smallvec::SmallVec;

/// A field value, typed by its syntax (`1.5`, `1i`, `1u`, `true`, `"s"`).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    /// Always finite.
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    /// Unescaped; borrowed from the input unless it contained `\"` or `\\`.
    Str(Cow<'a, str>),
}

/// One point, borrowing from the input wherever nothing had to be unescaped.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedLine<'a> {
    /// Unescaped, non-empty.
    pub measurement: Cow<'a, str>,
    /// Unescaped (key, value) pairs in the order written; keys are unique and
    /// both sides non-empty.
    pub tags: SmallVec<[(Cow<'a, str>, Cow<'a, str>); 16]>,
    /// Unescaped keys with their values, in the order written; at least one,
    /// keys unique.
    pub fields: SmallVec<[(Cow<'a, str>, FieldValue<'a>); 16]>,
    /// The timestamp as written, in the request's precision.
    pub timestamp: Option<i64>,
}

/// Why a line is not valid line protocol. Every message names the offending
/// part and says what was expected; the caller adds the line number.
///
/// Names and values quoted in an error are unescaped and cut to
/// [`MAX_QUOTED_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty line")]
    EmptyLine,

    #[error(
        "missing measurement: a line must start with a measurement name, e.g. 'cpu,host=a usage=1'"
    )]
    EmptyMeasurement,

    /// A tab, newline, NUL (measurement only) or, in a tag value, `=` where
    /// it must be escaped.
    #[error(
        "unexpected {ch:?} after {what} '{text}': a {what} cannot contain {ch:?} unless it is escaped with a backslash"
    )]
    InvalidCharacter {
        /// `"measurement"`, `"tag key"`, `"tag value"` or `"field key"`.
        what: &'static str,
        /// The part read before the character.
        text: String,
        ch: char,
    },

    #[error("{what} '{text}' ends with a backslash, which line protocol does not allow")]
    TrailingBackslash { what: &'static str, text: String },

    #[error("empty tag key: each ',' after the measurement must be followed by key=value")]
    EmptyTagKey,

    /// The tag key is followed by `,`, a space, or the end of the line instead
    /// of `=value`, or by `=` and an empty value.
    #[error(
        "tag '{key}' has no value: write '{key}=<value>' (a comma, space or '=' inside a tag key must be escaped with a backslash)"
    )]
    MissingTagValue { key: String },

    #[error(
        "no fields: a line needs at least one field after the measurement and tags, e.g. 'cpu,host=a usage=1'"
    )]
    MissingFields,

    #[error("empty field key: each field must be written as key=value")]
    EmptyFieldKey,

    /// The field key is followed by `,`, a space, or the end of the line
    /// instead of `=value`, or by `=` and an empty value.
    #[error(
        "field '{field}' has no value: write '{field}=<value>' (a comma, space or '=' inside a field key must be escaped with a backslash)"
    )]
    MissingFieldValue { field: String },

    #[error(
        "field '{field}': '{value}' is not a valid value (expected a float like 1.5, an integer like 1i, an unsigned integer like 1u, a boolean like true, or a double-quoted string)"
    )]
    InvalidFieldValue { field: String, value: String },

    #[error(
        "field '{field}': '{value}' is not a valid float (write e.g. 1, -1.5, 1e10 or 1.5E-3; NaN and infinity are not supported)"
    )]
    InvalidFloat { field: String, value: String },

    #[error("field '{field}': float {value} out of range for f64")]
    FloatOutOfRange { field: String, value: String },

    #[error("field '{field}': '{value}' is not a valid integer (write e.g. 42i or -42i)")]
    InvalidInteger { field: String, value: String },

    #[error("field '{field}': integer {value} out of range for i64")]
    IntegerOutOfRange { field: String, value: String },

    #[error("field '{field}': '{value}' is not a valid unsigned integer (write e.g. 42u)")]
    InvalidUnsigned { field: String, value: String },

    #[error("field '{field}': unsigned integer {value} out of range for u64")]
    UnsignedOutOfRange { field: String, value: String },

    #[error("field '{field}': string value has no closing double quote")]
    UnterminatedString { field: String },

    #[error("timestamp '{value}' is not an integer")]
    InvalidTimestamp { value: String },

    #[error("timestamp {value} out of range for i64")]
    TimestampOutOfRange { value: String },

    #[error("unexpected '{text}' after the timestamp")]
    TrailingGarbage { text: String },

    #[error("tag key '{key}' appears more than once")]
    DuplicateTagKey { key: String },

    #[error("field '{key}' appears more than once")]
    DuplicateFieldKey { key: String },
}

/// Longest name or value (in characters) quoted in a [`ParseError`]; longer
/// ones are cut and end in `…`, so that a megabyte of garbage does not become
/// a megabyte of error message.
pub const MAX_QUOTED_CHARS: usize = 100;

/// One non-blank, non-comment line of a body.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    /// 1-based number of the line in the body (of its first line, if a string
    /// field spans several).
    pub number: usize,
    /// The raw line, without its terminator or trailing `\r`.
    pub text: &'a str,
    pub parsed: Result<ParsedLine<'a>, ParseError>,
}

/// Iterates over the points of a body: skips blank lines and comment lines
/// (first character other than space or tab is `#`), handles `\n` and `\r\n`.
/// See the [module documentation](self) for how lines are split.
pub fn parse_lines(body: &str) -> impl Iterator<Item = Line<'_>> {
    Lines {
        body,
        pos: 0,
        number: 1,
    }
}

/// Parses exactly one line, given without its terminator. Leading spaces and
/// tabs are skipped; a `#` here is an ordinary character, not a comment.
///
/// # Errors
///
/// Any [`ParseError`]; syntax errors are reported in the order they occur in
/// the line, duplicate keys after the whole line has been read.
pub fn parse_line(line: &str) -> Result<ParsedLine<'_>, ParseError> {
    Parser {
        s: line,
        b: line.as_bytes(),
    }
    .line()
}

struct Lines<'a> {
    body: &'a str,
    pos: usize,
    /// Number of the physical line that starts at `pos`.
    number: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        let b = self.body.as_bytes();
        while self.pos < b.len() {
            let start = self.pos;
            let rest = &b[start..];
            let first = rest
                .iter()
                .position(|&c| c != b' ' && c != b'\t')
                .unwrap_or(rest.len());
            let blank = match rest.get(first) {
                None | Some(b'\n') => true,
                Some(b'\r') => matches!(rest.get(first + 1), None | Some(b'\n')),
                _ => false,
            };
            if blank || rest[first] == b'#' {
                self.pos = find_newline(rest).map_or(b.len(), |nl| start + nl + 1);
                self.number += 1;
                continue;
            }

            let (end, newlines) = logical_line_end(rest);
            let mut text = &self.body[start..start + end];
            if let Some(t) = text.strip_suffix('\r') {
                text = t;
            }
            let line = Line {
                number: self.number,
                text,
                parsed: parse_line(text),
            };
            self.pos = (start + end + 1).min(b.len());
            self.number += newlines + 1;
            return Some(line);
        }
        None
    }
}

fn find_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `x` equal to `byte`, and possibly in bytes
/// above (more significant than) one that is: the lowest set bit is exact.
fn byte_mask(x: u64, byte: u8) -> u64 {
    let y = x ^ (LO * u64::from(byte));
    y.wrapping_sub(LO) & !y & HI
}

/// The index of the first `\n` in `b` (or `b.len()`), and whether a `"` or a
/// `\` comes before it. Eight bytes a step: this runs over every byte of the
/// body.
fn scan_newline(b: &[u8]) -> (usize, bool) {
    let mut chunks = b.chunks_exact(8);
    let mut special = false;
    let mut at = 0;
    for chunk in &mut chunks {
        let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let nl = byte_mask(x, b'\n');
        let sp = byte_mask(x, b'"') | byte_mask(x, b'\\');
        if nl != 0 {
            // Bits below the newline's; a false positive there implies a true
            // match further down, so `special` is exact.
            let below = (nl & nl.wrapping_neg()) - 1;
            return (
                at + nl.trailing_zeros() as usize / 8,
                special | (sp & below != 0),
            );
        }
        special |= sp != 0;
        at += 8;
    }
    for (i, &c) in chunks.remainder().iter().enumerate() {
        match c {
            b'\n' => return (at + i, special),
            b'"' | b'\\' => special = true,
            _ => {}
        }
    }
    (b.len(), special)
}

/// Where the line starting at `rest[0]` ends (index of its terminating `\n`,
/// or `rest.len()`), and how many `\n` it contains (escaped or quoted).
///
/// This is InfluxDB's `scanLine` (Go) as ported by the `influxdb-line-protocol`
/// crate's `split_lines`; keep the two in step, the differential test checks
/// that they split alike.
fn logical_line_end(rest: &[u8]) -> (usize, usize) {
    let (nl, special) = scan_newline(rest);
    // Without a quote or a backslash nothing can hide the first newline.
    if !special {
        return (nl, 0);
    }

    let (mut quoted, mut fields) = (false, false);
    let (mut equals, mut commas, mut newlines) = (0usize, 0usize, 0usize);
    let mut i = 0;
    while i < rest.len() {
        let c = rest[i];
        if c == b'\\' {
            // The escaped byte is skipped whatever it is, even a newline.
            if rest.get(i + 1) == Some(&b'\n') {
                newlines += 1;
            }
            i += 2;
            continue;
        }
        if c == b' ' {
            fields = true;
        } else if fields && !quoted && c == b'=' {
            equals += 1;
        } else if fields && !quoted && c == b',' {
            commas += 1;
        } else if fields && c == b'"' && equals > commas {
            quoted = !quoted;
        } else if c == b'\n' {
            if !quoted {
                return (i, newlines);
            }
            newlines += 1;
        }
        i += 1;
    }
    (rest.len(), newlines)
}

/// Bytes that end a name (besides the end of the line) or start an escape.
type Stops = [bool; 256];

const fn stops(delimiters: &[u8]) -> Stops {
    let mut t = [false; 256];
    let mut i = 0;
    while i < delimiters.len() {
        t[delimiters[i] as usize] = true;
        i += 1;
    }
    t[b'\\' as usize] = true;
    t
}

static MEASUREMENT_STOPS: Stops = stops(b", \t\n\0");
/// Tag keys, tag values and field keys.
static KEY_STOPS: Stops = stops(b",= \t\n");

fn measurement_escape(c: u8) -> bool {
    matches!(c, b',' | b' ' | b'\\')
}

fn key_escape(c: u8) -> bool {
    matches!(c, b',' | b'=' | b' ' | b'\\')
}

fn string_escape(c: u8) -> bool {
    matches!(c, b'"' | b'\\')
}

/// Removes the backslash of every escape in `raw` (a backslash followed by a
/// byte for which `escape` holds); other backslashes are kept with the
/// character after them.
fn unescape(raw: &str, escape: fn(u8) -> bool) -> String {
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let (mut copied, mut i) = (0, 0);
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1).is_some_and(|&c| escape(c)) {
                out.push_str(&raw[copied..i]);
                copied = i + 1;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    out.push_str(&raw[copied.min(b.len())..]);
    out
}

/// Cuts `s` for quoting in an error message.
fn quote(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED_CHARS) {
        None => s.to_owned(),
        Some((at, _)) => format!("{}…", &s[..at]),
    }
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
}

type Tags<'a> = SmallVec<[(Cow<'a, str>, Cow<'a, str>); 16]>;
type Fields<'a> = SmallVec<[(Cow<'a, str>, FieldValue<'a>); 16]>;

impl<'a> Parser<'a> {
    fn line(&self) -> Result<ParsedLine<'a>, ParseError> {
        let b = self.b;
        let mut i = self.skip(0, |c| c == b' ' || c == b'\t');
        if i == b.len() {
            return Err(ParseError::EmptyLine);
        }

        let (measurement, end) = self.name(i, &MEASUREMENT_STOPS, measurement_escape);
        i = end;
        match b.get(i) {
            Some(&c @ (b'\t' | b'\n' | b'\0')) => {
                return Err(invalid_char("measurement", &measurement, c));
            }
            _ if measurement.is_empty() => return Err(ParseError::EmptyMeasurement),
            _ => {}
        }
        check_backslash("measurement", &measurement)?;

        let mut tags = Tags::new();
        if b.get(i) == Some(&b',') {
            i = self.tags(i + 1, &mut tags)?;
        }

        // Here b[i] is a space or i is the end of the line.
        i = self.skip(i, |c| c == b' ');
        if i == b.len() {
            return Err(ParseError::MissingFields);
        }
        let mut fields = Fields::new();
        i = self.fields(i, &mut fields)?;

        let mut timestamp = None;
        i = self.skip(i, |c| c == b' ');
        if i < b.len() {
            let end = self.skip(i, |c| c != b' ');
            timestamp = Some(match fast_timestamp(&b[i..end]) {
                Some(t) => t,
                None => parse_timestamp(&self.s[i..end])?,
            });
            i = self.skip(end, |c| c == b' ');
            if i < b.len() {
                return Err(ParseError::TrailingGarbage {
                    text: quote(&self.s[i..]),
                });
            }
        }

        if let Some(key) = first_duplicate(&tags) {
            return Err(ParseError::DuplicateTagKey { key: quote(key) });
        }
        if let Some(key) = first_duplicate(&fields) {
            return Err(ParseError::DuplicateFieldKey { key: quote(key) });
        }
        Ok(ParsedLine {
            measurement,
            tags,
            fields,
            timestamp,
        })
    }

    /// Parses `key=value[,key=value...]` from `i` (just after the comma that
    /// follows the measurement) to the space or end of line after it.
    fn tags(&self, mut i: usize, tags: &mut Tags<'a>) -> Result<usize, ParseError> {
        let b = self.b;
        loop {
            let (key, end) = self.name(i, &KEY_STOPS, key_escape);
            match b.get(end) {
                Some(b'=') if !key.is_empty() => {}
                Some(&c @ (b'\t' | b'\n')) => return Err(invalid_char("tag key", &key, c)),
                _ if key.is_empty() => return Err(ParseError::EmptyTagKey),
                _ => return Err(ParseError::MissingTagValue { key: quote(&key) }),
            }
            check_backslash("tag key", &key)?;

            let (value, end) = self.name(end + 1, &KEY_STOPS, key_escape);
            match b.get(end) {
                Some(&c @ (b'\t' | b'\n' | b'=')) => {
                    return Err(invalid_char("tag value", &value, c));
                }
                _ if value.is_empty() => {
                    return Err(ParseError::MissingTagValue { key: quote(&key) });
                }
                _ => {}
            }
            check_backslash("tag value", &value)?;
            tags.push((key, value));

            i = end + 1;
            match b.get(end) {
                Some(b',') => {}
                Some(_) => return Ok(end), // a space
                None => return Err(ParseError::MissingFields),
            }
        }
    }

    /// Parses the field set from `i` (its first byte, not a space) to the
    /// space or end of line after it.
    fn fields(&self, mut i: usize, fields: &mut Fields<'a>) -> Result<usize, ParseError> {
        let b = self.b;
        loop {
            let (key, end) = self.name(i, &KEY_STOPS, key_escape);
            match b.get(end) {
                Some(b'=') if !key.is_empty() => {}
                Some(&c @ (b'\t' | b'\n')) => return Err(invalid_char("field key", &key, c)),
                _ if key.is_empty() => return Err(ParseError::EmptyFieldKey),
                _ => return Err(ParseError::MissingFieldValue { field: quote(&key) }),
            }
            check_backslash("field key", &key)?;

            let (value, end) = self.field_value(end + 1, &key)?;
            fields.push((key, value));

            match b.get(end) {
                Some(b',') => i = end + 1,
                _ => return Ok(end), // a space or the end
            }
        }
    }

    /// Parses the value starting at `i`, returning it and the index of the
    /// `,`, space or end of line after it.
    fn field_value(&self, i: usize, key: &str) -> Result<(FieldValue<'a>, usize), ParseError> {
        let b = self.b;
        if b.get(i) == Some(&b'"') {
            let (value, end) = self
                .string(i + 1)
                .ok_or_else(|| ParseError::UnterminatedString { field: quote(key) })?;
            return match b.get(end) {
                None | Some(b',' | b' ') => Ok((FieldValue::Str(value), end)),
                Some(_) => {
                    let garbage_end = self.skip(end, |c| c != b',' && c != b' ');
                    Err(ParseError::InvalidFieldValue {
                        field: quote(key),
                        value: quote(&self.s[i..garbage_end]),
                    })
                }
            };
        }
        if let Some(parsed) = self.number(i) {
            return Ok(parsed);
        }
        let end = self.skip(i, |c| c != b',' && c != b' ');
        if end == i {
            return Err(ParseError::MissingFieldValue { field: quote(key) });
        }
        Ok((scalar(&self.s[i..end], key)?, end))
    }

    /// The common numbers in one pass: `-?\d{1,18}` followed by `i`, `u`
    /// (non-negative) or nothing (a float), then by `,`, a space or the end.
    /// `None` for anything else, which [`scalar`] then handles (including the
    /// errors).
    fn number(&self, i: usize) -> Option<(FieldValue<'a>, usize)> {
        let b = self.b;
        let negative = b.get(i) == Some(&b'-');
        let start = i + usize::from(negative);
        let (magnitude, mut end) = self.digits(start)?;
        let value = match b.get(end) {
            Some(b'i') => {
                end += 1;
                FieldValue::I64(if negative { -magnitude } else { magnitude })
            }
            Some(b'u') if !negative => {
                end += 1;
                FieldValue::U64(magnitude as u64)
            }
            // Exact: at most 18 digits, and below 2^53 an i64 converts to f64
            // exactly; above, leave the rounding to `f64::from_str`.
            _ if magnitude < (1 << 53) => {
                let f = magnitude as f64;
                FieldValue::F64(if negative { -f } else { f })
            }
            _ => return None,
        };
        match b.get(end) {
            None | Some(b',' | b' ') => Some((value, end)),
            _ => None,
        }
    }

    /// Up to 18 decimal digits from `i` (so that they fit an i64 unchecked):
    /// their value and the index after them; `None` if there are none or more.
    fn digits(&self, i: usize) -> Option<(i64, usize)> {
        let b = self.b;
        let mut v: i64 = 0;
        let mut j = i;
        while let Some(&c) = b.get(j) {
            if !c.is_ascii_digit() {
                break;
            }
            if j - i == 18 {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
            j += 1;
        }
        (j > i).then_some((v, j))
    }

    /// Reads a string body from `i` (just after the opening quote); returns the
    /// unescaped text and the index after the closing quote, or `None` when
    /// there is no closing quote.
    fn string(&self, i: usize) -> Option<(Cow<'a, str>, usize)> {
        let b = self.b;
        let mut j = i;
        let mut escaped = false;
        loop {
            match b.get(j)? {
                b'"' => break,
                b'\\' if b.get(j + 1).is_some_and(|&c| string_escape(c)) => {
                    escaped = true;
                    j += 2;
                }
                _ => j += 1,
            }
        }
        let raw = &self.s[i..j];
        let text = if escaped {
            Cow::Owned(unescape(raw, string_escape))
        } else {
            Cow::Borrowed(raw)
        };
        Some((text, j + 1))
    }

    /// Reads an escaped name from `i` up to the first unescaped byte in
    /// `stops` or the end of the line; returns it unescaped with the index of
    /// that byte.
    fn name(&self, i: usize, stops: &Stops, escape: fn(u8) -> bool) -> (Cow<'a, str>, usize) {
        let b = self.b;
        let mut j = i;
        let mut escaped = false;
        while j < b.len() {
            let c = b[j];
            if !stops[c as usize] {
                j += 1;
            } else if c == b'\\' {
                // The byte after a backslash is never a delimiter. A backslash
                // that ends the line is kept and reported as trailing.
                escaped |= b.get(j + 1).is_some_and(|&c| escape(c));
                j = (j + 2).min(b.len());
            } else {
                break;
            }
        }
        let raw = &self.s[i..j];
        let text = if escaped {
            Cow::Owned(unescape(raw, escape))
        } else {
            Cow::Borrowed(raw)
        };
        (text, j)
    }

    fn skip(&self, mut i: usize, while_: impl Fn(u8) -> bool) -> usize {
        while i < self.b.len() && while_(self.b[i]) {
            i += 1;
        }
        i
    }
}

fn invalid_char(what: &'static str, text: &str, c: u8) -> ParseError {
    ParseError::InvalidCharacter {
        what,
        text: quote(text),
        ch: char::from(c),
    }
}

fn check_backslash(what: &'static str, text: &str) -> Result<(), ParseError> {
    if text.ends_with('\\') {
        Err(ParseError::TrailingBackslash {
            what,
            text: quote(text),
        })
    } else {
        Ok(())
    }
}

/// The first key (in the order written) that an earlier entry already has.
///
/// Up to 32 keys: each key's fingerprint is looked up in a 256-bit filter on
/// the stack, and only on a hit compared with the earlier fingerprints, and
/// strings only when fingerprints match: no allocation, and close to linear.
/// Past 32 keys a sorted `Vec` is cheaper than the scans; such a line has
/// spilled its `SmallVec` to the heap anyway.
fn first_duplicate<'s, V>(entries: &'s [(Cow<'_, str>, V)]) -> Option<&'s str> {
    if entries.len() <= 32 {
        let mut prints = [0u32; 32];
        let mut filter = [0u64; 4];
        for (j, (key, _)) in entries.iter().enumerate() {
            let print = fingerprint(key.as_bytes());
            let (word, bit) = ((print >> 30) as usize, 1u64 << ((print >> 24) & 63));
            if filter[word] & bit != 0
                && prints[..j]
                    .iter()
                    .zip(entries)
                    .any(|(&p, (k, _))| p == print && k == key)
            {
                return Some(key);
            }
            filter[word] |= bit;
            prints[j] = print;
        }
        return None;
    }
    // (key, position) sorted: a duplicated key sits next to its earlier copy.
    let mut keys: Vec<(&str, usize)> = entries
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (k.as_ref(), i))
        .collect();
    keys.sort_unstable();
    keys.windows(2)
        .filter(|w| w[0].0 == w[1].0)
        .map(|w| w[1])
        .min_by_key(|&(_, i)| i)
        .map(|(k, _)| k)
}

/// Equal keys have equal fingerprints: a hash of the length and of the
/// first, middle and last bytes (constant time; collisions only cost a string
/// comparison).
fn fingerprint(b: &[u8]) -> u32 {
    let n = b.len();
    let raw = match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            u32::from(first) | u32::from(b[n / 2]) << 8 | u32::from(last) << 16 | (n as u32) << 24
        }
        _ => 0,
    };
    raw.wrapping_mul(0x9e37_79b1)
}

fn is_digits(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(u8::is_ascii_digit)
}

/// `-?\d+`
fn is_signed_digits(b: &[u8]) -> bool {
    is_digits(b.strip_prefix(b"-").unwrap_or(b))
}

/// `-?\d+(\.\d+)?([eE][+-]?\d+)?`: the float syntax of InfluxDB and of the
/// reference crate.
fn is_float(b: &[u8]) -> bool {
    let b = b.strip_prefix(b"-").unwrap_or(b);
    let int_end = b
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(b.len());
    if int_end == 0 {
        return false;
    }
    let mut rest = &b[int_end..];
    if let Some(r) = rest.strip_prefix(b".") {
        let n = r
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(r.len());
        if n == 0 {
            return false;
        }
        rest = &r[n..];
    }
    if let Some(r) = rest.strip_prefix(b"e").or_else(|| rest.strip_prefix(b"E")) {
        let r = r
            .strip_prefix(b"+")
            .or_else(|| r.strip_prefix(b"-"))
            .unwrap_or(r);
        return is_digits(r);
    }
    rest.is_empty()
}

/// Accumulates decimal digits (already checked) into an `i64`, negatively when
/// `negative` so that `i64::MIN` fits.
fn digits_to_i64(digits: &[u8], negative: bool) -> Option<i64> {
    let mut v: i64 = 0;
    for &d in digits {
        let d = i64::from(d - b'0');
        v = v.checked_mul(10)?;
        v = if negative {
            v.checked_sub(d)?
        } else {
            v.checked_add(d)?
        };
    }
    Some(v)
}

fn digits_to_u64(digits: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for &d in digits {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(v)
}

fn signed(b: &[u8]) -> Option<i64> {
    match b.strip_prefix(b"-") {
        Some(digits) => digits_to_i64(digits, true),
        None => digits_to_i64(b, false),
    }
}

/// A non-string field value: `raw` is non-empty and holds no `,` or space.
fn scalar<'a>(raw: &str, key: &str) -> Result<FieldValue<'a>, ParseError> {
    let b = raw.as_bytes();
    let (body, suffix) = b.split_at(b.len() - 1);
    let err = |make: fn(String, String) -> ParseError| Err(make(quote(key), quote(raw)));
    match suffix[0] {
        b'i' if is_signed_digits(body) => {
            return match signed(body) {
                Some(v) => Ok(FieldValue::I64(v)),
                None => err(|field, value| ParseError::IntegerOutOfRange { field, value }),
            };
        }
        b'u' if is_digits(body) => {
            return match digits_to_u64(body) {
                Some(v) => Ok(FieldValue::U64(v)),
                None => err(|field, value| ParseError::UnsignedOutOfRange { field, value }),
            };
        }
        _ => {}
    }
    match raw {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(FieldValue::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(FieldValue::Bool(false)),
        _ => {}
    }
    if is_float(b) {
        // The syntax is a subset of what `f64::from_str` takes, which rounds
        // correctly; it only saturates to infinity on overflow.
        return match raw.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(FieldValue::F64(v)),
            _ => err(|field, value| ParseError::FloatOutOfRange { field, value }),
        };
    }

    // Not valid: say what it looks like it was meant to be.
    let numeric = |b: &[u8]| matches!(b.first(), Some(b'0'..=b'9' | b'-' | b'+' | b'.'));
    let lower = raw.to_ascii_lowercase();
    let lower = lower.trim_start_matches(['+', '-']);
    match suffix[0] {
        b'i' if numeric(body) => err(|field, value| ParseError::InvalidInteger { field, value }),
        b'u' if numeric(body) => err(|field, value| ParseError::InvalidUnsigned { field, value }),
        _ if numeric(b) || matches!(lower, "nan" | "inf" | "infinity") => {
            err(|field, value| ParseError::InvalidFloat { field, value })
        }
        _ => err(|field, value| ParseError::InvalidFieldValue { field, value }),
    }
}

/// `-?\d{1,19}` within `i64`, in one pass; `None` for anything else
/// (including errors, which [`parse_timestamp`] then reports).
fn fast_timestamp(b: &[u8]) -> Option<i64> {
    let (negative, digits) = match b.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    // 19 digits fit a u64 unchecked.
    let mut v: u64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + u64::from(d);
    }
    if negative {
        0i64.checked_sub_unsigned(v)
    } else {
        i64::try_from(v).ok()
    }
}

fn parse_timestamp(raw: &str) -> Result<i64, ParseError> {
    let b = raw.as_bytes();
    if !is_signed_digits(b) {
        return Err(ParseError::InvalidTimestamp { value: quote(raw) });
    }
    signed(b).ok_or_else(|| ParseError::TimestampOutOfRange { value: quote(raw) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every fuzz corpus entry (fuzz/corpus/line_protocol) splits into lines
    /// that parse or carry a reason.
    #[test]
    fn fuzz_corpus_replays() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/line_protocol");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("corpus") {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            if let Ok(body) = std::str::from_utf8(&bytes) {
                for line in parse_lines(body) {
                    if let Err(e) = line.parsed {
                        assert!(!e.to_string().is_empty());
                    }
                }
            }
            n += 1;
        }
        assert!(n >= 3, "corpus has {n} entries");
    }

    fn ok(line: &str) -> ParsedLine<'_> {
        parse_line(line).unwrap_or_else(|e| panic!("{line:?} should parse: {e}"))
    }

    fn err(line: &str) -> ParseError {
        match parse_line(line) {
            Ok(p) => panic!("{line:?} should fail, parsed as {p:?}"),
            Err(e) => e,
        }
    }

    fn msg(line: &str) -> String {
        err(line).to_string()
    }

    fn tags<'a>(p: &'a ParsedLine<'_>) -> Vec<(&'a str, &'a str)> {
        p.tags
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect()
    }

    fn field<'p, 'a>(p: &'p ParsedLine<'a>, key: &str) -> &'p FieldValue<'a> {
        &p.fields.iter().find(|(k, _)| k == key).expect("field").1
    }

    fn value(v: &str) -> FieldValue<'_> {
        let line = format!("m f={v}");
        match parse_line(&line) {
            Ok(p) => match p.fields[0].1.clone() {
                FieldValue::Str(s) => FieldValue::Str(Cow::Owned(s.into_owned())),
                FieldValue::F64(f) => FieldValue::F64(f),
                FieldValue::I64(i) => FieldValue::I64(i),
                FieldValue::U64(u) => FieldValue::U64(u),
                FieldValue::Bool(b) => FieldValue::Bool(b),
            },
            Err(e) => panic!("{v:?}: {e}"),
        }
    }

    fn value_err(v: &str) -> ParseError {
        err(&format!("m f={v}"))
    }

    fn s(v: &str) -> String {
        v.to_owned()
    }

    // ---- structure ----

    #[test]
    fn full_line() {
        let p = ok(
            "cpu,host=a,region=eu usage=1.5,count=3i,total=4u,up=true,msg=\"hi\" 1690000000000000000",
        );
        assert_eq!(p.measurement, "cpu");
        assert_eq!(tags(&p), [("host", "a"), ("region", "eu")]);
        assert_eq!(
            p.fields.to_vec(),
            [
                ("usage".into(), FieldValue::F64(1.5)),
                ("count".into(), FieldValue::I64(3)),
                ("total".into(), FieldValue::U64(4)),
                ("up".into(), FieldValue::Bool(true)),
                ("msg".into(), FieldValue::Str("hi".into())),
            ]
        );
        assert_eq!(p.timestamp, Some(1690000000000000000));
    }

    #[test]
    fn minimal_line_without_tags_or_timestamp() {
        let p = ok("m f=1");
        assert_eq!(p.measurement, "m");
        assert!(p.tags.is_empty());
        assert_eq!(p.fields.to_vec(), [("f".into(), FieldValue::F64(1.0))]);
        assert_eq!(p.timestamp, None);
    }

    #[test]
    fn order_written_is_kept() {
        let p = ok("m,z=1,a=2,m=3 y=1,b=2 5");
        assert_eq!(tags(&p), [("z", "1"), ("a", "2"), ("m", "3")]);
        let keys: Vec<_> = p.fields.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["y", "b"]);
    }

    #[test]
    fn spacing() {
        // Several spaces between sections, leading spaces and tabs, trailing
        // spaces after the fields or the timestamp.
        let want = ok("m,t=v f=1 5");
        assert_eq!(ok("m,t=v   f=1    5"), want);
        assert_eq!(ok(" \t m,t=v f=1 5"), want);
        assert_eq!(ok("m,t=v f=1 5   "), want);
        assert_eq!(ok("m,t=v f=1   ").timestamp, None);
        assert_eq!(ok("m  f=1").fields.len(), 1);
    }

    #[test]
    fn tab_is_not_a_separator() {
        assert_eq!(
            err("m\tf=1"),
            ParseError::InvalidCharacter {
                what: "measurement",
                text: s("m"),
                ch: '\t'
            }
        );
        assert_eq!(
            err("m,t=v\tf=1"),
            ParseError::InvalidCharacter {
                what: "tag value",
                text: s("v"),
                ch: '\t'
            }
        );
        assert_eq!(
            err("m,t\t=v f=1"),
            ParseError::InvalidCharacter {
                what: "tag key",
                text: s("t"),
                ch: '\t'
            }
        );
        assert_eq!(
            err("m f\t=1"),
            ParseError::InvalidCharacter {
                what: "field key",
                text: s("f"),
                ch: '\t'
            }
        );
        assert!(matches!(err("m f=1\t5"), ParseError::InvalidFloat { .. }));
        assert!(matches!(
            err("m f=1 5\t"),
            ParseError::InvalidTimestamp { .. }
        ));
    }

    #[test]
    fn sixteen_tags_and_fields_stay_inline_and_borrowed() {
        let tags: Vec<String> = (0..16).map(|i| format!("t{i}=v{i}")).collect();
        let fields: Vec<String> = (0..16).map(|i| format!("f{i}={i}i")).collect();
        let line = format!("m,{} {} 1", tags.join(","), fields.join(","));
        let p = ok(&line);
        assert!(!p.tags.spilled() && !p.fields.spilled());
        assert!(matches!(p.measurement, Cow::Borrowed(_)));
        assert!(
            p.tags
                .iter()
                .all(|(k, v)| matches!((k, v), (Cow::Borrowed(_), Cow::Borrowed(_))))
        );
        assert!(p.fields.iter().all(|(k, _)| matches!(k, Cow::Borrowed(_))));
        assert!(matches!(
            ok("m s=\"a b,c=d\"").fields[0].1,
            FieldValue::Str(Cow::Borrowed("a b,c=d"))
        ));
    }

    #[test]
    fn many_tags_and_fields_spill() {
        let tags: Vec<String> = (0..40).map(|i| format!("t{i}=v")).collect();
        let fields: Vec<String> = (0..40).map(|i| format!("f{i}=1")).collect();
        let line = format!("m,{} {}", tags.join(","), fields.join(","));
        let p = ok(&line);
        assert_eq!((p.tags.len(), p.fields.len()), (40, 40));
        let dup = format!("m,{},t7=x f=1", tags.join(","));
        assert_eq!(err(&dup), ParseError::DuplicateTagKey { key: s("t7") });
        let dup = format!("m {},f3=1,f1=2", fields.join(","));
        assert_eq!(err(&dup), ParseError::DuplicateFieldKey { key: s("f3") });
    }

    // ---- escapes ----

    #[test]
    fn measurement_escapes() {
        assert_eq!(ok(r"my\ cpu\,x f=1").measurement, "my cpu,x");
        assert_eq!(ok(r"a\\b f=1").measurement, r"a\b");
        // '=' is not escapable (nor needed) in a measurement: both characters stay.
        assert_eq!(ok(r"a\=b f=1").measurement, r"a\=b");
        assert_eq!(ok("a=b\"c f=1").measurement, "a=b\"c");
        // Other backslashes are literal, and the next character is never a delimiter.
        assert_eq!(ok(r"a\b f=1").measurement, r"a\b");
        assert_eq!(ok("a\\\tb f=1").measurement, "a\\\tb");
        assert_eq!(ok(r"a\é f=1").measurement, r"a\é");
        assert!(matches!(ok(r"a\b f=1").measurement, Cow::Borrowed(_)));
        assert!(matches!(ok(r"a\ b f=1").measurement, Cow::Owned(_)));
        // A measurement may start with an escaped space or with '#'.
        assert_eq!(ok(r"\ m f=1").measurement, " m");
        assert_eq!(ok("#m f=1").measurement, "#m");
    }

    #[test]
    fn tag_escapes() {
        let p = ok(r"m,k\ 1\,\=\\x=v\ 1\,\=\\y f=1");
        assert_eq!(tags(&p), [(r"k 1,=\x", r"v 1,=\y")]);
        let p = ok(r"m,a\b=c\d f=1");
        assert_eq!(tags(&p), [(r"a\b", r"c\d")]);
        assert!(matches!(p.tags[0], (Cow::Borrowed(_), Cow::Borrowed(_))));
        // Quotes are ordinary in tags.
        assert_eq!(tags(&ok("m,a=\"x\" f=1")), [("a", "\"x\"")]);
    }

    #[test]
    fn field_key_escapes() {
        let p = ok(r"m f\ 1\,\=\\x=1");
        assert_eq!(p.fields[0].0, r"f 1,=\x");
        assert_eq!(ok("m \"f\"=1").fields[0].0, "\"f\"");
        assert_eq!(ok(r"m f\x=1").fields[0].0, r"f\x");
    }

    #[test]
    fn string_values() {
        assert_eq!(value(r#""""#), FieldValue::Str("".into()));
        assert_eq!(value(r#""a b,c=d""#), FieldValue::Str("a b,c=d".into()));
        assert_eq!(
            value(r#""say \"hi\"""#),
            FieldValue::Str(r#"say "hi""#.into())
        );
        assert_eq!(value(r#""c:\\dir\\""#), FieldValue::Str(r"c:\dir\".into()));
        // Other backslashes are literal.
        assert_eq!(value(r#""a\nb\,""#), FieldValue::Str(r"a\nb\,".into()));
        assert_eq!(
            value("\"two\nlines\""),
            FieldValue::Str("two\nlines".into())
        );
        assert_eq!(value("\"tab\there\""), FieldValue::Str("tab\there".into()));
        let p = ok(r#"m a="x",b="y\"z",c=1 5"#);
        assert_eq!(field(&p, "a"), &FieldValue::Str("x".into()));
        assert_eq!(field(&p, "b"), &FieldValue::Str("y\"z".into()));
        assert_eq!(field(&p, "c"), &FieldValue::F64(1.0));
        assert_eq!(p.timestamp, Some(5));
    }

    #[test]
    fn unterminated_string() {
        let e = err(r#"m,t=v msg="never closed 123"#);
        assert_eq!(e, ParseError::UnterminatedString { field: s("msg") });
        assert_eq!(
            e.to_string(),
            "field 'msg': string value has no closing double quote"
        );
        // An escaped quote does not close the string.
        assert_eq!(
            err(r#"m s="a\""#),
            ParseError::UnterminatedString { field: s("s") }
        );
        assert_eq!(
            err(r#"m s=""#),
            ParseError::UnterminatedString { field: s("s") }
        );
    }

    #[test]
    fn garbage_after_string() {
        let e = err(r#"m s="a"b,c=1"#);
        assert_eq!(
            e,
            ParseError::InvalidFieldValue {
                field: s("s"),
                value: s(r#""a"b"#)
            }
        );
    }

    // ---- numbers and booleans ----

    #[test]
    fn floats() {
        for (text, want) in [
            ("1", 1.0),
            ("1.0", 1.0),
            ("-1.5", -1.5),
            ("1e10", 1e10),
            ("1E10", 1e10),
            ("1.5E-3", 1.5e-3),
            ("1.5e+3", 1.5e3),
            ("-2e-2", -2e-2),
            ("007.25", 7.25),
            ("1e-400", 0.0),
            ("1.7976931348623157e308", f64::MAX),
            ("0.1", 0.1),
        ] {
            assert_eq!(value(text), FieldValue::F64(want), "{text}");
        }
        let FieldValue::F64(z) = value("-0") else {
            panic!()
        };
        assert!(z == 0.0 && z.is_sign_negative());
    }

    #[test]
    fn invalid_floats() {
        for text in [
            ".5", "5.", "+5", "1.e5", "-.5", "1e", "1e+", "1.2.3", "1e5.5", "--1", "-", "0x10",
            "1_000",
        ] {
            assert_eq!(
                value_err(text),
                ParseError::InvalidFloat {
                    field: s("f"),
                    value: s(text)
                },
                "{text}"
            );
        }
        for text in ["NaN", "nan", "inf", "-inf", "+Inf", "Infinity"] {
            assert_eq!(
                value_err(text),
                ParseError::InvalidFloat {
                    field: s("f"),
                    value: s(text)
                },
                "{text}"
            );
        }
        assert_eq!(
            msg("m f=NaN"),
            "field 'f': 'NaN' is not a valid float (write e.g. 1, -1.5, 1e10 or 1.5E-3; NaN and infinity are not supported)"
        );
    }

    #[test]
    fn float_overflow() {
        assert_eq!(
            value_err("1e999"),
            ParseError::FloatOutOfRange {
                field: s("f"),
                value: s("1e999")
            }
        );
        assert_eq!(
            value_err("-1.8e308"),
            ParseError::FloatOutOfRange {
                field: s("f"),
                value: s("-1.8e308")
            }
        );
        assert_eq!(
            msg("m x=1e999"),
            "field 'x': float 1e999 out of range for f64"
        );
    }

    #[test]
    fn integers() {
        assert_eq!(value("0i"), FieldValue::I64(0));
        assert_eq!(value("-0i"), FieldValue::I64(0));
        assert_eq!(value("42i"), FieldValue::I64(42));
        assert_eq!(value("-42i"), FieldValue::I64(-42));
        assert_eq!(value("0009i"), FieldValue::I64(9));
        assert_eq!(value("9223372036854775807i"), FieldValue::I64(i64::MAX));
        assert_eq!(value("-9223372036854775808i"), FieldValue::I64(i64::MIN));
        for text in [
            "9223372036854775808i",
            "-9223372036854775809i",
            "99999999999999999999999i",
        ] {
            assert_eq!(
                value_err(text),
                ParseError::IntegerOutOfRange {
                    field: s("f"),
                    value: s(text)
                }
            );
        }
        assert_eq!(
            msg("cpu usage_user=9223372036854775808i"),
            "field 'usage_user': integer 9223372036854775808i out of range for i64"
        );
        for text in ["1.5i", "+1i", "1e3i", "-i", "--1i", "1ii"] {
            assert_eq!(
                value_err(text),
                ParseError::InvalidInteger {
                    field: s("f"),
                    value: s(text)
                },
                "{text}"
            );
        }
        assert_eq!(
            msg("m n=1.5i"),
            "field 'n': '1.5i' is not a valid integer (write e.g. 42i or -42i)"
        );
    }

    #[test]
    fn number_fast_path_boundaries() {
        // Up to 18 digits are converted in one pass; longer ones take the slow
        // path. Both must agree with `str::parse`.
        for digits in [1, 15, 16, 17, 18, 19, 20, 25] {
            let text: String = "9876543210".chars().cycle().take(digits).collect();
            let want: f64 = text.parse().unwrap();
            assert_eq!(value(&text), FieldValue::F64(want), "{text}");
            assert_eq!(
                value(&format!("-{text}")),
                FieldValue::F64(-want),
                "-{text}"
            );
            if digits <= 18 {
                let int: i64 = text.parse().unwrap();
                assert_eq!(value(&format!("{text}i")), FieldValue::I64(int));
                assert_eq!(value(&format!("-{text}i")), FieldValue::I64(-int));
                assert_eq!(value(&format!("{text}u")), FieldValue::U64(int as u64));
            }
        }
        // Floats above 2^53 round as `f64::from_str` does.
        assert_eq!(
            value("9007199254740993"),
            FieldValue::F64(9007199254740992.0)
        );
        assert_eq!(
            value("9007199254740991"),
            FieldValue::F64(9007199254740991.0)
        );
        assert_eq!(
            value("1234567890123456789i"),
            FieldValue::I64(1234567890123456789)
        );
        assert_eq!(
            value("-1234567890123456789i"),
            FieldValue::I64(-1234567890123456789)
        );
        assert_eq!(
            value("12345678901234567890u"),
            FieldValue::U64(12345678901234567890)
        );
        assert_eq!(
            ok("m f=1 999999999999999999").timestamp,
            Some(999999999999999999)
        );
        assert_eq!(
            err("m f=1 9999999999999999999"),
            ParseError::TimestampOutOfRange {
                value: s("9999999999999999999")
            }
        );
        assert_eq!(
            err("m f=1 -99999999999999999999"),
            ParseError::TimestampOutOfRange {
                value: s("-99999999999999999999")
            }
        );
    }

    #[test]
    fn unsigned() {
        assert_eq!(value("0u"), FieldValue::U64(0));
        assert_eq!(value("18446744073709551615u"), FieldValue::U64(u64::MAX));
        assert_eq!(
            value_err("18446744073709551616u"),
            ParseError::UnsignedOutOfRange {
                field: s("f"),
                value: s("18446744073709551616u")
            }
        );
        assert_eq!(
            msg("m n=18446744073709551616u"),
            "field 'n': unsigned integer 18446744073709551616u out of range for u64"
        );
        for text in ["-1u", "-0u", "+1u", "1.0u"] {
            assert_eq!(
                value_err(text),
                ParseError::InvalidUnsigned {
                    field: s("f"),
                    value: s(text)
                },
                "{text}"
            );
        }
        assert_eq!(
            msg("m n=-1u"),
            "field 'n': '-1u' is not a valid unsigned integer (write e.g. 42u)"
        );
    }

    #[test]
    fn booleans() {
        for text in ["t", "T", "true", "True", "TRUE"] {
            assert_eq!(value(text), FieldValue::Bool(true), "{text}");
        }
        for text in ["f", "F", "false", "False", "FALSE"] {
            assert_eq!(value(text), FieldValue::Bool(false), "{text}");
        }
        for text in ["tRUE", "yes", "tru", "truex", "FaLsE", "on", "1b", "\"true"] {
            assert!(
                matches!(
                    value_err(text),
                    ParseError::InvalidFieldValue { .. }
                        | ParseError::InvalidFloat { .. }
                        | ParseError::UnterminatedString { .. }
                ),
                "{text}"
            );
        }
        assert_eq!(
            msg("m up=yes"),
            "field 'up': 'yes' is not a valid value (expected a float like 1.5, an integer like 1i, \
             an unsigned integer like 1u, a boolean like true, or a double-quoted string)"
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(ok("m f=1 0").timestamp, Some(0));
        assert_eq!(ok("m f=1 -1").timestamp, Some(-1));
        assert_eq!(ok("m f=1 9223372036854775807").timestamp, Some(i64::MAX));
        assert_eq!(ok("m f=1 -9223372036854775808").timestamp, Some(i64::MIN));
        assert_eq!(ok("m f=1 0001").timestamp, Some(1));
        for text in ["+1", "1.5", "abc", "1e9", "-", "12ab", "\"1\""] {
            assert_eq!(
                err(&format!("m f=1 {text}")),
                ParseError::InvalidTimestamp { value: s(text) },
                "{text}"
            );
        }
        assert_eq!(
            err("m f=1 9223372036854775808"),
            ParseError::TimestampOutOfRange {
                value: s("9223372036854775808")
            }
        );
        assert_eq!(msg("m f=1 12ab"), "timestamp '12ab' is not an integer");
        assert_eq!(
            msg("m f=1 -9223372036854775809"),
            "timestamp -9223372036854775809 out of range for i64"
        );
    }

    // ---- errors ----

    #[test]
    fn trailing_garbage() {
        assert_eq!(
            err("m f=1 1 2"),
            ParseError::TrailingGarbage { text: s("2") }
        );
        assert_eq!(
            err("m f=1 1  x y "),
            ParseError::TrailingGarbage { text: s("x y ") }
        );
        assert_eq!(msg("m f=1 1 2"), "unexpected '2' after the timestamp");
    }

    #[test]
    fn empty_line_and_measurement() {
        assert_eq!(err(""), ParseError::EmptyLine);
        assert_eq!(err(" \t "), ParseError::EmptyLine);
        assert_eq!(err(",t=v f=1"), ParseError::EmptyMeasurement);
        assert_eq!(err(" ,t=v f=1"), ParseError::EmptyMeasurement);
        assert_eq!(
            msg(",t=v f=1"),
            "missing measurement: a line must start with a measurement name, e.g. 'cpu,host=a usage=1'"
        );
        assert_eq!(
            err("\0m f=1"),
            ParseError::InvalidCharacter {
                what: "measurement",
                text: s(""),
                ch: '\0'
            }
        );
        assert_eq!(
            err("m\0 f=1"),
            ParseError::InvalidCharacter {
                what: "measurement",
                text: s("m"),
                ch: '\0'
            }
        );
        // NUL is an ordinary character elsewhere (as in the reference crate).
        assert_eq!(tags(&ok("m,a\0=b\0 f\0=1")), [("a\0", "b\0")]);
    }

    #[test]
    fn missing_fields() {
        for line in [
            "cpu",
            "cpu ",
            "cpu,host=a",
            "cpu,host=a  ",
            "cpu,host=a,f=1",
        ] {
            assert_eq!(err(line), ParseError::MissingFields, "{line:?}");
        }
        assert_eq!(
            msg("cpu"),
            "no fields: a line needs at least one field after the measurement and tags, e.g. 'cpu,host=a usage=1'"
        );
    }

    #[test]
    fn tag_errors() {
        assert_eq!(err("m, f=1"), ParseError::EmptyTagKey);
        assert_eq!(err("m,=v f=1"), ParseError::EmptyTagKey);
        assert_eq!(err("m,a=b, f=1"), ParseError::EmptyTagKey);
        assert_eq!(err("m,a=b,,c=d f=1"), ParseError::EmptyTagKey);
        assert_eq!(err("m,a= f=1"), ParseError::MissingTagValue { key: s("a") });
        assert_eq!(
            err("m,a=,b=c f=1"),
            ParseError::MissingTagValue { key: s("a") }
        );
        assert_eq!(err("m,a f=1"), ParseError::MissingTagValue { key: s("a") });
        assert_eq!(err("m,a"), ParseError::MissingTagValue { key: s("a") });
        assert_eq!(err("m,a="), ParseError::MissingTagValue { key: s("a") });
        // An unescaped comma in a tag key (the reference crate accepts "a,b").
        assert_eq!(
            err("m,a,b=c f=1"),
            ParseError::MissingTagValue { key: s("a") }
        );
        assert_eq!(
            msg("m,host f=1"),
            "tag 'host' has no value: write 'host=<value>' \
             (a comma, space or '=' inside a tag key must be escaped with a backslash)"
        );
        assert_eq!(
            msg("m,=v f=1"),
            "empty tag key: each ',' after the measurement must be followed by key=value"
        );
        // An unescaped '=' in a tag value (the reference crate accepts "b=c").
        assert_eq!(
            err("m,a=b=c f=1"),
            ParseError::InvalidCharacter {
                what: "tag value",
                text: s("b"),
                ch: '='
            }
        );
        assert_eq!(
            err("m,a== f=1"),
            ParseError::InvalidCharacter {
                what: "tag value",
                text: s(""),
                ch: '='
            }
        );
        assert_eq!(
            msg("m,a=b=c f=1"),
            "unexpected '=' after tag value 'b': a tag value cannot contain '=' unless it is escaped with a backslash"
        );
    }

    #[test]
    fn field_errors() {
        assert_eq!(err("m =1"), ParseError::EmptyFieldKey);
        assert_eq!(err("m ,f=1"), ParseError::EmptyFieldKey);
        assert_eq!(err("m f=1,"), ParseError::EmptyFieldKey);
        assert_eq!(err("m f=1,,g=2"), ParseError::EmptyFieldKey);
        assert_eq!(err("m f=1, 5"), ParseError::EmptyFieldKey);
        assert_eq!(
            msg("m =1"),
            "empty field key: each field must be written as key=value"
        );
        assert_eq!(err("m f"), ParseError::MissingFieldValue { field: s("f") });
        assert_eq!(err("m f="), ParseError::MissingFieldValue { field: s("f") });
        assert_eq!(
            err("m f= 5"),
            ParseError::MissingFieldValue { field: s("f") }
        );
        assert_eq!(
            err("m f=,g=1"),
            ParseError::MissingFieldValue { field: s("f") }
        );
        assert_eq!(
            err("m f 5"),
            ParseError::MissingFieldValue { field: s("f") }
        );
        // An unescaped comma in a field key (the reference crate accepts "a,b").
        assert_eq!(
            err("m a,b=1"),
            ParseError::MissingFieldValue { field: s("a") }
        );
        // "a=1=2": the value is "1=2".
        assert_eq!(
            err("m a=1=2"),
            ParseError::InvalidFloat {
                field: s("a"),
                value: s("1=2")
            }
        );
        assert_eq!(
            err("m a=x=2"),
            ParseError::InvalidFieldValue {
                field: s("a"),
                value: s("x=2")
            }
        );
    }

    #[test]
    fn trailing_backslash() {
        assert_eq!(
            err(r"m\\ f=1"),
            ParseError::TrailingBackslash {
                what: "measurement",
                text: s("m\\")
            }
        );
        assert_eq!(
            err("m\\"),
            ParseError::TrailingBackslash {
                what: "measurement",
                text: s("m\\")
            }
        );
        assert_eq!(
            err(r"m,a\\=b f=1"),
            ParseError::TrailingBackslash {
                what: "tag key",
                text: s("a\\")
            }
        );
        assert_eq!(
            err(r"m,a=b\\ f=1"),
            ParseError::TrailingBackslash {
                what: "tag value",
                text: s("b\\")
            }
        );
        assert_eq!(
            err(r"m f\\=1"),
            ParseError::TrailingBackslash {
                what: "field key",
                text: s("f\\")
            }
        );
        assert_eq!(
            msg(r"m,a=b\\ f=1"),
            r"tag value 'b\' ends with a backslash, which line protocol does not allow"
        );
        // Not at the end: fine.
        assert_eq!(tags(&ok(r"m,a=b\\c f=1")), [("a", r"b\c")]);
    }

    #[test]
    fn duplicates() {
        assert_eq!(
            err("m,a=1,b=2,a=3 f=1"),
            ParseError::DuplicateTagKey { key: s("a") }
        );
        assert_eq!(
            err("m f=1,g=2,f=3i"),
            ParseError::DuplicateFieldKey { key: s("f") }
        );
        // Compared unescaped: `a\x` and `a\\x` are both the key `a\x`.
        assert_eq!(
            err(r"m,a\x=1,a\\x=2 f=1"),
            ParseError::DuplicateTagKey { key: s(r"a\x") }
        );
        // A tag and a field may share a key.
        assert_eq!(tags(&ok("m,a=1 a=1")), [("a", "1")]);
        // The first key written twice is named.
        assert_eq!(
            err("m b=1,a=1,a=2,b=2"),
            ParseError::DuplicateFieldKey { key: s("a") }
        );
        assert_eq!(
            msg("m,host=a,host=b f=1"),
            "tag key 'host' appears more than once"
        );
        assert_eq!(msg("m f=1,f=2"), "field 'f' appears more than once");
        // Syntax errors come first.
        assert!(matches!(
            err("m f=1,f=x"),
            ParseError::InvalidFieldValue { .. }
        ));
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let junk = "x".repeat(500);
        let ParseError::InvalidFieldValue { value, .. } = err(&format!("m f={junk}")) else {
            panic!()
        };
        assert_eq!(value.chars().count(), MAX_QUOTED_CHARS + 1);
        assert!(value.ends_with('…'));
    }

    #[test]
    fn unicode() {
        let p = ok("température,ville=Zürich été=\"chaud ☀\",δ=1i");
        assert_eq!(p.measurement, "température");
        assert_eq!(tags(&p), [("ville", "Zürich")]);
        assert_eq!(field(&p, "été"), &FieldValue::Str("chaud ☀".into()));
        assert_eq!(field(&p, "δ"), &FieldValue::I64(1));
    }

    // ---- bodies ----

    fn lines(body: &str) -> Vec<(usize, &str, Result<ParsedLine<'_>, ParseError>)> {
        parse_lines(body)
            .map(|l| (l.number, l.text, l.parsed))
            .collect()
    }

    #[test]
    fn body_skips_comments_and_blank_lines() {
        let body = "# header\n\n  \t\nm f=1 1\n   # indented comment\nm f=2 2\n\n";
        let got = lines(body);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0, got[0].1), (4, "m f=1 1"));
        assert_eq!((got[1].0, got[1].1), (6, "m f=2 2"));
        assert!(got.iter().all(|l| l.2.is_ok()));
        assert_eq!(parse_lines("").count(), 0);
        assert_eq!(parse_lines("\n\n# only\n").count(), 0);
    }

    #[test]
    fn body_crlf() {
        let body = "m f=1 1\r\n\r\n  \r\n# c\r\nm,t=v s=\"x\" 2\r\nm f=3";
        let got = lines(body);
        let texts: Vec<_> = got.iter().map(|l| (l.0, l.1)).collect();
        assert_eq!(
            texts,
            [(1, "m f=1 1"), (5, "m,t=v s=\"x\" 2"), (6, "m f=3")]
        );
        assert!(got.iter().all(|l| l.2.is_ok()));
        // A final line ending in '\r' without '\n'.
        assert_eq!(lines("m f=1\r")[0].1, "m f=1");
        assert!(lines("m f=1\r")[0].2.is_ok());
        // A '\r' inside a string that spans lines is kept.
        let got = lines("m s=\"a\r\nb\"\r\n");
        assert_eq!(
            got[0].2.as_ref().unwrap().fields[0].1,
            FieldValue::Str("a\r\nb".into())
        );
    }

    #[test]
    fn body_keeps_going_after_errors() {
        let body = "m f=1\nbad\nm,t= f=1\nm f=2";
        let got = lines(body);
        assert_eq!(got.len(), 4);
        assert!(got[0].2.is_ok());
        assert_eq!(got[1].2, Err(ParseError::MissingFields));
        assert_eq!(got[2].2, Err(ParseError::MissingTagValue { key: s("t") }));
        assert_eq!((got[3].0, got[3].2.is_ok()), (4, true));
    }

    #[test]
    fn body_string_spanning_lines() {
        let body = "m s=\"one\ntwo\nthree\",n=1i 5\nm f=1\n";
        let got = lines(body);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 1);
        assert_eq!(got[0].1, "m s=\"one\ntwo\nthree\",n=1i 5");
        let p = got[0].2.as_ref().unwrap();
        assert_eq!(p.fields[0].1, FieldValue::Str("one\ntwo\nthree".into()));
        assert_eq!(got[1].0, 4);
        // A quote that is not in the field set does not open a string.
        let got = lines("m,t=\"a f=1\nm f=2");
        assert_eq!(got.len(), 2);
        // Nor one in a field key (no '=' seen yet).
        let got = lines("m \"a=1\nm f=2");
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn body_unterminated_string_swallows_the_rest() {
        // As in InfluxDB: the newline is inside the (unclosed) string.
        let got = lines("m s=\"oops 1\nm f=1\nm f=2");
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].2,
            Err(ParseError::UnterminatedString { field: s("s") })
        );
    }

    #[test]
    fn body_escaped_newline_continues_the_line() {
        // As in InfluxDB, a backslash escapes the newline after it.
        let got = lines("m,t=a\\\nb f=1\nm f=2");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 1);
        assert_eq!(got[0].2.as_ref().unwrap().tags[0].1, "a\\\nb");
        assert_eq!(got[1].0, 3);
    }

    #[test]
    fn body_comments_are_whole_lines() {
        // A quote in a comment opens nothing (the reference crate differs).
        let got = lines("# a=\"b\nm f=1\nm f=2");
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|l| l.2.is_ok()));
        // A '#' after data is not a comment.
        assert!(lines("m f=1 # no")[0].2.is_err());
    }

    #[test]
    fn line_numbers_count_physical_lines() {
        let body = "\n\n# c\nm f=1\n\nm s=\"a\nb\"\n\nm f=2";
        let numbers: Vec<_> = parse_lines(body).map(|l| l.number).collect();
        assert_eq!(numbers, [4, 6, 9]);
    }
}
