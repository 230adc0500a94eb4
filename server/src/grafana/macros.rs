//! Grafana's SQL macros, expanded into DataFusion SQL before planning.
//!
//! Grafana interpolates its own template variables (`$host`, and
//! `$__interval` / `$__interval_ms` from `scopedVars`) before the request
//! reaches us; what is left for the server are the function-like macros of
//! Grafana's SQL datasources, plus `$__interval`/`$__interval_ms` for
//! requests that did not interpolate them.

use super::sql::{literal, timestamp};

/// What the macros expand against: the request's time range and interval.
#[derive(Debug, Clone)]
pub struct MacroContext {
    /// Inclusive range, nanoseconds since the epoch; `None` when the request
    /// carried no range (then only range-free macros work).
    pub range: Option<(i64, i64)>,
    /// Bucket width in milliseconds (the request's `intervalMs`).
    pub interval_ms: i64,
    /// The `adhocFilters` of the request as one SQL condition (`TRUE` if none).
    pub adhoc_condition: String,
}

/// Expands every `$__macro` in `sql`.
///
/// # Errors
/// A message for the user (answered as 400): an unknown macro, a wrong
/// argument count, a bad duration, or a range macro without a range.
pub fn expand(sql: &str, ctx: &MacroContext) -> Result<String, String> {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut rest = sql;
    while let Some(pos) = rest.find("$__") {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 3..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_len];
        let mut tail = &after[name_len..];
        let args = if tail.trim_start().starts_with('(') && takes_args(name) {
            let open = tail.find('(').expect("checked");
            let (args, consumed) = split_args(&tail[open + 1..])
                .ok_or_else(|| format!("$__{name}(: missing closing parenthesis"))?;
            tail = &tail[open + 1 + consumed..];
            args
        } else {
            Vec::new()
        };
        out.push_str(&expand_one(name, &args, ctx)?);
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

fn takes_args(name: &str) -> bool {
    !matches!(name, "interval" | "interval_ms" | "adhocFilters")
}

fn expand_one(name: &str, args: &[String], ctx: &MacroContext) -> Result<String, String> {
    let want = |n: std::ops::RangeInclusive<usize>| {
        if n.contains(&args.len()) {
            Ok(())
        } else {
            Err(format!(
                "$__{name} takes {} argument(s), got {}",
                if n.start() == n.end() {
                    n.start().to_string()
                } else {
                    format!("{} to {}", n.start(), n.end())
                },
                args.len()
            ))
        }
    };
    let range = || {
        ctx.range
            .ok_or_else(|| format!("$__{name} needs the request's time range (\"range\")"))
    };
    Ok(match name {
        "interval" => format_duration_ms(ctx.interval_ms),
        "interval_ms" => ctx.interval_ms.to_string(),
        "adhocFilters" => ctx.adhoc_condition.clone(),
        "timeFilter" => {
            want(1..=1)?;
            let col = column(name, &args[0])?;
            let (from, to) = range()?;
            format!("({col} BETWEEN {} AND {})", timestamp(from), timestamp(to))
        }
        "timeFrom" => {
            want(0..=0)?;
            timestamp(range()?.0)
        }
        "timeTo" => {
            want(0..=0)?;
            timestamp(range()?.1)
        }
        "timeGroup" | "timeGroupAlias" => {
            want(2..=3)?;
            if args.len() == 3 {
                return Err(format!(
                    "$__{name}: gap filling (third argument {}) is not supported",
                    args[2]
                ));
            }
            let col = column(name, &args[0])?;
            let width = parse_duration_arg(&args[1], ctx.interval_ms)
                .map_err(|e| format!("$__{name}: {e}"))?;
            let bin = date_bin(&col, width);
            if name == "timeGroupAlias" {
                format!("{bin} AS \"time\"")
            } else {
                bin
            }
        }
        "dateBin" | "dateBinAlias" => {
            want(1..=1)?;
            let col = column(name, &args[0])?;
            let bin = date_bin(&col, ctx.interval_ms);
            if name == "dateBinAlias" {
                format!("{bin} AS \"time\"")
            } else {
                bin
            }
        }
        "" => return Err("a lone \"$__\" is not a macro".to_string()),
        other => {
            return Err(format!(
                "unknown macro $__{other}: use $__timeFilter(col), $__timeFrom(), $__timeTo(), \
                 $__interval, $__interval_ms, $__timeGroup(col, '5m'), $__dateBin(col) or $__adhocFilters"
            ));
        }
    })
}

fn column(name: &str, arg: &str) -> Result<String, String> {
    let arg = arg.trim();
    if arg.is_empty() {
        return Err(format!("$__{name}: {arg:?} is not a column"));
    }
    Ok(arg.to_string())
}

/// `date_bin` at `width_ms`, aligned to the Unix epoch so that buckets of
/// different queries line up.
pub fn date_bin(col: &str, width_ms: i64) -> String {
    format!(
        "date_bin(INTERVAL {}, {col})",
        literal(&interval_text(width_ms))
    )
}

/// A width as DataFusion's `INTERVAL` understands it, in the largest exact unit.
pub fn interval_text(ms: i64) -> String {
    for (unit, per) in [
        ("days", 86_400_000),
        ("hours", 3_600_000),
        ("minutes", 60_000),
        ("seconds", 1_000),
    ] {
        if ms % per == 0 {
            return format!("{} {unit}", ms / per);
        }
    }
    format!("{ms} milliseconds")
}

/// As Grafana prints intervals (`30s`, `5m`, `1h`): what `$__interval` holds.
pub fn format_duration_ms(ms: i64) -> String {
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= per && ms % per == 0 {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

/// A duration (`500ms`, `30s`, `5m`, `1h30m`, `1d`, `1w`), optionally
/// quoted; `$__interval` (uninterpolated) means the request's interval.
fn parse_duration_arg(arg: &str, interval_ms: i64) -> Result<i64, String> {
    let a = arg.trim().trim_matches(|c| c == '\'' || c == '"').trim();
    if a == "$__interval" {
        return Ok(interval_ms);
    }
    parse_duration_ms(a)
}

/// A positive duration in the service's grammar
/// ([`fleetlake_time::parse_duration`]), in milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let d = fleetlake_time::parse_duration(s)?;
    match i64::try_from(d.as_millis()) {
        Ok(ms) if ms > 0 => Ok(ms),
        _ => Err(format!("duration {s:?} must be positive and not huge")),
    }
}

/// Splits `a, f(b, c), 'x,y')…` at top-level commas up to the closing
/// parenthesis; returns the arguments and the bytes consumed (with the `)`).
fn split_args(s: &str) -> Option<(Vec<String>, usize)> {
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '(' => depth += 1,
                ')' if depth == 0 => {
                    let last = s[start..i].trim();
                    if !(args.is_empty() && last.is_empty()) {
                        args.push(last.to_string());
                    }
                    return Some((args, i + 1));
                }
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    args.push(s[start..i].trim().to_string());
                    start = i + 1;
                }
                _ => {}
            },
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> MacroContext {
        MacroContext {
            range: Some((1_477_895_624_866_000_000, 1_477_917_224_866_000_000)),
            interval_ms: 30_000,
            adhoc_condition: "TRUE".to_string(),
        }
    }

    #[test]
    fn expands_each_macro() {
        let c = ctx();
        assert_eq!(
            expand("WHERE $__timeFilter(time)", &c).unwrap(),
            "WHERE (time BETWEEN TIMESTAMP '2016-10-31T06:33:44.866Z' AND TIMESTAMP '2016-10-31T12:33:44.866Z')"
        );
        assert_eq!(
            expand("$__timeFrom() $__timeTo()", &c).unwrap(),
            "TIMESTAMP '2016-10-31T06:33:44.866Z' TIMESTAMP '2016-10-31T12:33:44.866Z'"
        );
        assert_eq!(
            expand("INTERVAL '$__interval' $__interval_ms", &c).unwrap(),
            "INTERVAL '30s' 30000"
        );
        assert_eq!(
            expand("$__timeGroup(\"time\", '5m')", &c).unwrap(),
            "date_bin(INTERVAL '5 minutes', \"time\")"
        );
        assert_eq!(
            expand("$__timeGroup(time, 1h)", &c).unwrap(),
            "date_bin(INTERVAL '1 hours', time)"
        );
        assert_eq!(
            expand("$__dateBin(time)", &c).unwrap(),
            "date_bin(INTERVAL '30 seconds', time)"
        );
        assert_eq!(expand("$__adhocFilters", &c).unwrap(), "TRUE");
        assert_eq!(expand("no macros", &c).unwrap(), "no macros");
    }

    #[test]
    fn rejects_misuse() {
        let c = ctx();
        assert!(
            expand("$__nope(x)", &c)
                .unwrap_err()
                .contains("unknown macro")
        );
        assert!(expand("$__timeFilter(time", &c).is_err());
        assert!(expand("$__timeFilter()", &c).is_err());
        assert!(expand("$__timeGroup(time, '5 parsecs')", &c).is_err());
        assert!(expand("$__timeGroup(time, '5m', 0)", &c).is_err());
        assert!(expand("$__timeFilter(x); DROP", &c).is_ok());
        let no_range = MacroContext { range: None, ..c };
        assert!(expand("$__timeFrom()", &no_range).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        assert!(parse_duration_ms("0s").is_err());
        assert_eq!(parse_duration_ms("5"), Ok(5_000));
        assert_eq!(format_duration_ms(60_000), "1m");
        assert_eq!(format_duration_ms(1_500), "1500ms");
        assert_eq!(interval_text(90_000), "90 seconds");
    }
}
