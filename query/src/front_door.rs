//! Limits on SQL text checked before it is parsed: its size, how deeply it
//! nests, and how many operators it chains.
//!
//! Parsing, planning, optimizing and even dropping an expression tree
//! recurse once per level; `1+1+…+1` with thousands of terms, or thousands
//! of nested parentheses, would overflow a thread's stack and abort the
//! whole process. A lexical scan costs nothing and needs no recursion, so
//! it runs first; the limits sit far above any query a person or Grafana
//! writes.

use crate::error::{Error, Result};

/// The longest SQL accepted, in bytes.
pub const MAX_SQL_BYTES: usize = 1 << 20;
/// The deepest nesting of parentheses and brackets accepted.
pub const MAX_NESTING: usize = 256;
/// The most binary operators (`+`, `AND`, `||`, `=`, …) in one statement.
pub const MAX_OPERATORS: usize = 2_000;

/// Checks `sql` against the limits above.
///
/// # Errors
/// [`Error::User`] saying which limit the text passes and by how much.
pub fn check_sql(sql: &str) -> Result<()> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(Error::User(format!(
            "the SQL is {} bytes long; the limit is {MAX_SQL_BYTES}",
            sql.len()
        )));
    }
    let b = sql.as_bytes();
    let (mut depth, mut max_depth, mut operators) = (0usize, 0usize, 0usize);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            // Strings and quoted identifiers: skip to the closing quote
            // (a doubled quote is an escaped one and simply reopens).
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'(' | b'[' => {
                depth += 1;
                max_depth = max_depth.max(depth);
            }
            b')' | b']' => depth = depth.saturating_sub(1),
            b'+' | b'-' | b'*' | b'/' | b'%' | b'<' | b'>' | b'=' | b'|' | b'&' | b'^' => {
                operators += 1
            }
            c if c.is_ascii_alphabetic() => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &sql[start..i];
                if word.eq_ignore_ascii_case("and") || word.eq_ignore_ascii_case("or") {
                    operators += 1;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    if max_depth > MAX_NESTING {
        return Err(Error::User(format!(
            "the SQL nests {max_depth} levels deep; the limit is {MAX_NESTING}"
        )));
    }
    if operators > MAX_OPERATORS {
        return Err(Error::User(format!(
            "the SQL chains {operators} operators; the limit is {MAX_OPERATORS} (use IN (…) instead of long OR chains)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_long_and_chained_sql_is_refused() {
        let chain = format!("SELECT {}", vec!["1"; 3_000].join("+"));
        assert!(
            check_sql(&chain)
                .unwrap_err()
                .to_string()
                .contains("operators")
        );
        let ors = format!("SELECT 1 WHERE {}", vec!["a = 1"; 1_500].join(" OR "));
        assert!(
            check_sql(&ors)
                .unwrap_err()
                .to_string()
                .contains("operators")
        );
        let deep = format!("SELECT {}1{}", "(".repeat(1_000), ")".repeat(1_000));
        assert!(check_sql(&deep).unwrap_err().to_string().contains("nests"));
        assert!(check_sql(&"x".repeat(MAX_SQL_BYTES + 1)).is_err());
    }

    #[test]
    fn ordinary_sql_and_quoted_text_pass() {
        assert!(check_sql("SELECT a + b FROM t WHERE x = 'a+b' AND y > 2 -- c+d").is_ok());
        let quoted = format!(
            "SELECT '{}' AS \"{}\"",
            "+(".repeat(5_000),
            "or ".repeat(100)
        );
        assert!(check_sql(&quoted).is_ok());
        let commented = format!("SELECT 1 /* {} */", "((+".repeat(5_000));
        assert!(check_sql(&commented).is_ok());
        let list = format!(
            "SELECT * FROM t WHERE h IN ({})",
            vec!["'x'"; 10_000].join(", ")
        );
        assert!(check_sql(&list).is_ok());
        // Words that contain and/or are not operators.
        let words = format!("SELECT {}", vec!["order_count"; 3_000].join(", "));
        assert!(check_sql(&words).is_ok());
    }
}
