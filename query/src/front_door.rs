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

    /// Every fuzz corpus entry (fuzz/corpus/sql_front_door) still passes
    /// through the front door without a panic.
    #[test]
    fn fuzz_corpus_replays() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/sql_front_door");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("corpus") {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            if let Ok(sql) = std::str::from_utf8(&bytes) {
                let _ = check_sql(sql);
            }
            n += 1;
        }
        assert!(n >= 5, "corpus has {n} entries");
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        /// One step of a chain that deepens an expression tree: binary
        /// operators, prefix and postfix forms, calls and parentheses.
        fn step() -> impl Strategy<Value = &'static str> {
            prop::sample::select(vec![
                "+1",
                "*2",
                "-x",
                "||'a'",
                " AND true",
                " OR false",
                "=1",
                "<>2",
                " IS NULL",
                " IS NOT NULL",
                "::BIGINT",
                "::DOUBLE",
                " NOT",
                " - ",
                "(",
                ")",
                "abs(",
                " BETWEEN 1 AND 2",
                " IN (1, 2)",
                " LIKE 'a%'",
                " COLLATE \"C\"",
                "[1]",
                " CASE WHEN true THEN 1 END",
                "'(('",
                "/* ( */",
                "-- (\n",
                "\"a((\"",
            ])
        }

        /// Plans `sql` on a thread with the server's query stack (32 MiB):
        /// a stack overflow aborts the test process, a failure no less.
        fn plan(sql: String) {
            std::thread::Builder::new()
                .stack_size(32 << 20)
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        let ctx = datafusion::prelude::SessionContext::new();
                        if let Ok(df) = ctx.sql(&sql).await {
                            let _ = df.into_optimized_plan();
                        }
                    });
                })
                .unwrap()
                .join()
                .expect("planning does not panic");
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            /// Any text: an answer, never a panic (unterminated quotes and
            /// comments, multi-byte characters, stray bytes).
            #[test]
            fn any_text_gets_an_answer(sql in "\\PC{0,400}") {
                let _ = check_sql(&sql);
            }

            /// Long chains of every construct: what the front door lets
            /// through is planned and optimized without overflowing the
            /// query threads' stack.
            #[test]
            fn what_passes_plans_within_the_stack(
                steps in prop::collection::vec(step(), 1..40),
                repeat in 1usize..400,
            ) {
                let body: String = steps.concat().repeat(repeat);
                let sql = format!("SELECT 1{body}");
                if check_sql(&sql).is_ok() {
                    plan(sql);
                }
            }

            /// The counts are those of a model: `n` operators chained, `d`
            /// parentheses deep.
            #[test]
            fn limits_match_the_model(n in 0usize..(2 * MAX_OPERATORS), d in 0usize..(2 * MAX_NESTING)) {
                let sql = format!("SELECT {}x{}{}", "(".repeat(d), ")".repeat(d), "+1".repeat(n));
                let ok = check_sql(&sql).is_ok();
                prop_assert_eq!(ok, n <= MAX_OPERATORS && d <= MAX_NESTING);
            }
        }
    }
}
