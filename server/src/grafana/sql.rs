//! Quoting for the SQL the Grafana API builds. Every name or value that came
//! from a request goes through here before it is spliced into SQL.

/// A double-quoted identifier; embedded quotes doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A single-quoted string literal; embedded quotes doubled (DataFusion's
/// dialect treats backslashes literally, so nothing else needs escaping).
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A timestamp literal for nanoseconds since the epoch, as RFC 3339 UTC.
pub fn timestamp(ns: i64) -> String {
    format!("TIMESTAMP '{}'", fleetlake_time::rfc3339(ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(timestamp(0), "TIMESTAMP '1970-01-01T00:00:00Z'");
    }
}
