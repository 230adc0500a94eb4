//! Query answers as tables that two systems' answers can be compared in:
//! named columns, typed cells, rows compared as sorted multisets, floats
//! within a relative tolerance.
//!
//! The expected side ([`crate::tsbs::Params::expected`]) names the columns
//! it checks and their kinds; an actual answer is read by those names
//! (extra columns, such as the tags of `SELECT *`, are ignored) and each cell
//! is parsed as the expected kind.

use std::cmp::Ordering;

use anyhow::{Context, Result, bail};

use fleetlake_time::parse_rfc3339;

/// Relative tolerance of float comparisons (averages differ in the last bits
/// between engines that sum in a different order).
pub const TOLERANCE: f64 = 1e-9;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Unix nanoseconds; read from RFC 3339 text or from integers (ns).
    Time,
    Num,
    Str,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Time(i64),
    Num(f64),
    Str(String),
    Null,
}

impl Cell {
    fn rank(&self) -> u8 {
        match self {
            Cell::Null => 0,
            Cell::Time(_) => 1,
            Cell::Num(_) => 2,
            Cell::Str(_) => 3,
        }
    }

    fn cmp_total(&self, other: &Cell) -> Ordering {
        match (self, other) {
            (Cell::Time(a), Cell::Time(b)) => a.cmp(b),
            (Cell::Num(a), Cell::Num(b)) => a.total_cmp(b),
            (Cell::Str(a), Cell::Str(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }

    fn close(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::Num(a), Cell::Num(b)) => {
                (a - b).abs() <= TOLERANCE * a.abs().max(b.abs()).max(1.0)
            }
            _ => self == other,
        }
    }

    /// Parses text (CSV cell, JSON string or number) as `kind`.
    pub fn parse(text: &str, kind: Kind) -> Result<Cell> {
        if text.is_empty() || text == "null" {
            return Ok(Cell::Null);
        }
        Ok(match kind {
            Kind::Time => Cell::Time(match parse_rfc3339(text) {
                Some(t) => t,
                None => text
                    .parse::<i64>()
                    .ok()
                    .with_context(|| format!("not a time: {text:?}"))?,
            }),
            Kind::Num => Cell::Num(
                text.parse::<f64>()
                    .ok()
                    .with_context(|| format!("not a number: {text:?}"))?,
            ),
            Kind::Str => Cell::Str(text.to_string()),
        })
    }

    /// From a JSON value, as `kind`.
    pub fn from_json(v: &serde_json::Value, kind: Kind) -> Result<Cell> {
        match v {
            serde_json::Value::Null => Ok(Cell::Null),
            serde_json::Value::String(s) => Cell::parse(s, kind),
            serde_json::Value::Number(n) => match kind {
                Kind::Time => Ok(Cell::Time(
                    n.as_i64()
                        .or_else(|| n.as_f64().map(|f| f as i64))
                        .context("time out of range")?,
                )),
                Kind::Num => Ok(Cell::Num(n.as_f64().context("number out of range")?)),
                Kind::Str => Ok(Cell::Str(n.to_string())),
            },
            serde_json::Value::Bool(b) => Cell::parse(&b.to_string(), kind),
            other => bail!("unexpected JSON value {other}"),
        }
    }
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Time(t) => f.write_str(&fleetlake_time::rfc3339(*t)),
            Cell::Num(x) => write!(f, "{x}"),
            Cell::Str(s) => f.write_str(s),
            Cell::Null => f.write_str("null"),
        }
    }
}

/// The columns a check looks at: names and kinds.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns(pub Vec<(String, Kind)>);

impl Columns {
    pub fn new(cols: &[(&str, Kind)]) -> Self {
        Self(cols.iter().map(|(n, k)| (n.to_string(), *k)).collect())
    }

    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|(n, _)| n.as_str()).collect()
    }
}

/// An answer restricted to some columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Columns,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(columns: Columns) -> Self {
        Self {
            columns,
            rows: Vec::new(),
        }
    }

    /// Reads `columns` from a CSV answer with a header line (fleetlake's
    /// `format=csv`: no quoting is needed for the TSBS answers, whose cells
    /// are numbers, times and tag values without commas; a quoted cell is
    /// refused rather than misread).
    pub fn from_csv(csv: &str, columns: &Columns) -> Result<Table> {
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
        let idx = indices(&header, columns)?;
        let mut t = Table::new(columns.clone());
        for (n, line) in lines.enumerate().filter(|(_, l)| !l.is_empty()) {
            if line.contains('"') {
                bail!(
                    "CSV line {} is quoted, which this reader does not handle: {line}",
                    n + 2
                );
            }
            let cells: Vec<&str> = line.split(',').collect();
            let row = idx
                .iter()
                .zip(&columns.0)
                .map(|(&i, (name, kind))| {
                    let text = cells
                        .get(i)
                        .with_context(|| format!("CSV line {} has no column {name}", n + 2))?;
                    Cell::parse(text, *kind)
                        .with_context(|| format!("column {name}, CSV line {}", n + 2))
                })
                .collect::<Result<Vec<Cell>>>()?;
            t.rows.push(row);
        }
        Ok(t)
    }

    /// Reads `columns` from `names` and rows of JSON values (InfluxDB's
    /// `series`, DuckDB's helper).
    pub fn from_json_rows(
        names: &[&str],
        rows: &[Vec<serde_json::Value>],
        columns: &Columns,
    ) -> Result<Table> {
        let idx = indices(names, columns)?;
        let mut t = Table::new(columns.clone());
        for row in rows {
            let cells = idx
                .iter()
                .zip(&columns.0)
                .map(|(&i, (name, kind))| {
                    let v = row
                        .get(i)
                        .with_context(|| format!("a row has no column {name}"))?;
                    Cell::from_json(v, *kind).with_context(|| format!("column {name}"))
                })
                .collect::<Result<Vec<Cell>>>()?;
            t.rows.push(cells);
        }
        Ok(t)
    }

    fn sort(&mut self) {
        self.rows.sort_by(|a, b| {
            a.iter()
                .zip(b)
                .map(|(x, y)| x.cmp_total(y))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        });
    }

    /// `None` when `self` (expected) and `actual` hold the same rows in any
    /// order, floats within [`TOLERANCE`]; otherwise the first difference.
    pub fn diff(&self, actual: &Table) -> Option<String> {
        let (mut e, mut a) = (self.clone(), actual.clone());
        e.sort();
        a.sort();
        if e.rows.len() != a.rows.len() {
            let first_missing = e.rows.iter().find(|r| !a.rows.contains(r));
            let first_extra = a.rows.iter().find(|r| !e.rows.contains(r));
            return Some(format!(
                "{} rows expected, {} returned; first expected row missing: {}; first unexpected row: {}",
                e.rows.len(),
                a.rows.len(),
                first_missing.map_or("none".into(), |r| show(r)),
                first_extra.map_or("none".into(), |r| show(r)),
            ));
        }
        for (i, (x, y)) in e.rows.iter().zip(&a.rows).enumerate() {
            if x.len() != y.len() || !x.iter().zip(y).all(|(p, q)| p.close(q)) {
                return Some(format!(
                    "sorted row {i} of {}: expected {}, returned {} (columns {})",
                    e.rows.len(),
                    show(x),
                    show(y),
                    e.columns.names().join(", ")
                ));
            }
        }
        None
    }
}

fn show(row: &[Cell]) -> String {
    let cells: Vec<String> = row.iter().map(Cell::to_string).collect();
    format!("({})", cells.join(", "))
}

fn indices(header: &[&str], columns: &Columns) -> Result<Vec<usize>> {
    columns
        .0
        .iter()
        .map(|(name, _)| {
            header
                .iter()
                .position(|h| h.trim() == name)
                .with_context(|| format!("the answer has no column {name:?} (it has {header:?})"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Columns {
        Columns::new(&[("minute", Kind::Time), ("max_usage_user", Kind::Num)])
    }

    #[test]
    fn csv_by_column_name_any_row_order() {
        let mut expected = Table::new(cols());
        expected
            .rows
            .push(vec![Cell::Time(60_000_000_000), Cell::Num(7.0)]);
        expected.rows.push(vec![Cell::Time(0), Cell::Num(3.0)]);
        let csv =
            "max_usage_user,extra,minute\n3,x,1970-01-01T00:00:00Z\n7,y,1970-01-01T00:01:00Z\n";
        let actual = Table::from_csv(csv, &cols()).unwrap();
        assert_eq!(expected.diff(&actual), None);

        let wrong = Table::from_csv(
            "minute,max_usage_user\n1970-01-01T00:00:00Z,3\n1970-01-01T00:01:00Z,8\n",
            &cols(),
        )
        .unwrap();
        let d = expected.diff(&wrong).unwrap();
        assert!(d.contains("expected (1970-01-01T00:01:00Z, 7)"), "{d}");

        let short =
            Table::from_csv("minute,max_usage_user\n1970-01-01T00:00:00Z,3\n", &cols()).unwrap();
        assert!(
            expected
                .diff(&short)
                .unwrap()
                .contains("2 rows expected, 1 returned")
        );
        assert!(Table::from_csv("minute\n", &cols()).is_err());
    }

    #[test]
    fn floats_within_tolerance_and_json() {
        let c = Columns::new(&[("t", Kind::Time), ("h", Kind::Str), ("v", Kind::Num)]);
        let mut e = Table::new(c.clone());
        e.rows.push(vec![
            Cell::Time(5),
            Cell::Str("host_1".into()),
            Cell::Num(1.0 / 3.0),
        ]);
        let rows = vec![vec![
            serde_json::json!("host_1"),
            serde_json::json!(0.333_333_333_333_333_4),
            serde_json::json!(5),
        ]];
        let a = Table::from_json_rows(&["h", "v", "t"], &rows, &c).unwrap();
        assert_eq!(e.diff(&a), None);
        let rows = vec![vec![
            serde_json::json!("host_1"),
            serde_json::json!(0.3334),
            serde_json::json!(5),
        ]];
        let a = Table::from_json_rows(&["h", "v", "t"], &rows, &c).unwrap();
        assert!(e.diff(&a).is_some());
    }
}
