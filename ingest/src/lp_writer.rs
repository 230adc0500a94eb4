//! Writing line protocol: the escapes the parser ([`crate::line_protocol`])
//! undoes. Used wherever the service writes rows back through the write
//! path (record rules, remote write, the diagnosis journal).
//!
//! ```
//! use fleetlake_ingest::lp_writer::{push_measurement, push_tag};
//! let mut line = String::new();
//! push_measurement(&mut line, "disk io");
//! push_tag(&mut line, "host", "a,b=c");
//! assert_eq!(line, r"disk\ io,host=a\,b\=c");
//! ```

/// Appends a measurement (table) name: `,`, space and `\` escaped.
pub fn push_measurement(out: &mut String, name: &str) {
    escape_into(out, name, |c| matches!(c, ',' | ' ' | '\\'));
}

/// Appends `,key=value`: `,`, `=`, space and `\` escaped in both.
///
/// A value ending in `\` cannot be read back (the parser takes `\,` as an
/// escape); callers that accept outside data refuse such values first.
pub fn push_tag(out: &mut String, key: &str, value: &str) {
    out.push(',');
    escape_into(out, key, |c| matches!(c, ',' | '=' | ' ' | '\\'));
    out.push('=');
    escape_into(out, value, |c| matches!(c, ',' | '=' | ' ' | '\\'));
}

/// Appends a string field value: quoted, `"` and `\` escaped.
pub fn push_string_value(out: &mut String, value: &str) {
    out.push('"');
    escape_into(out, value, |c| matches!(c, '"' | '\\'));
    out.push('"');
}

fn escape_into(out: &mut String, s: &str, special: impl Fn(char) -> bool) {
    for c in s.chars() {
        if special(c) {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line_protocol::parse_lines;

    #[test]
    fn what_is_written_parses_back() {
        let mut line = String::new();
        push_measurement(&mut line, "m ,x");
        push_tag(&mut line, "k =,", "v,= w");
        line.push_str(" value=1,s=");
        push_string_value(&mut line, r#"a "b" \c"#);
        line.push_str(" 1\n");
        let parsed: Vec<_> = parse_lines(&line).collect();
        assert_eq!(parsed.len(), 1, "{line}");
        let l = parsed[0].parsed.as_ref().expect("parses");
        assert_eq!(l.measurement.as_ref(), "m ,x");
        assert_eq!(l.tags[0].0.as_ref(), "k =,");
        assert_eq!(l.tags[0].1.as_ref(), "v,= w");
        assert_eq!(
            l.fields[1].1,
            crate::line_protocol::FieldValue::Str(r#"a "b" \c"#.into())
        );
    }
}
