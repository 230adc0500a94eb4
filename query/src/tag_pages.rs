//! Row groups and pages pruned by a string column's equality filters —
//! `c = 'v'`, `c IN ('v', …)` and ORs of them — read straight from the
//! Parquet statistics and page index.
//!
//! DataFusion's pruning evaluates each conjunct over arrays it builds from
//! the statistics of every row group and page, for every query. TSBS's
//! eight-host `hostname IN (…)` over one 4.3M-row file (527 pages per
//! column) spent ~1 ms there, a sixth of the query (perf of
//! single-groupby-1-8-1, `benches/fixed_cost.py`). A string column's bounds
//! are bytes that Parquet orders bytewise, as Rust orders `[u8]`: whether a
//! page's `[min, max]` holds one of the sorted values is one binary search,
//! and the answer is the same.
//!
//! The result only narrows what is read: the scan's row filter still tests
//! every row it decodes, so a bound this module cannot read (no statistics,
//! no page index, another physical type) keeps the row group or page.

use std::ops::Range;

use arrow::datatypes::{DataType, Schema};
use datafusion::common::ScalarValue;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Cast, Expr, Operator, TryCast};
use parquet::arrow::arrow_reader::RowSelection;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::statistics::Statistics;

/// The values a string column must equal one of (sorted, distinct).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnValues {
    pub column: String,
    values: Vec<Vec<u8>>,
}

impl ColumnValues {
    fn new(column: String, mut values: Vec<Vec<u8>>) -> Self {
        values.sort_unstable();
        values.dedup();
        Self { column, values }
    }

    /// Whether one of the values lies in `[min, max]` (bytewise).
    pub fn any_within(&self, min: &[u8], max: &[u8]) -> bool {
        let first = self.values.partition_point(|v| v.as_slice() < min);
        self.values.get(first).is_some_and(|v| v.as_slice() <= max)
    }
}

/// Splits `filters`' conjuncts into the equality filters on string columns
/// of `schema` this module prunes by, and the rest.
pub fn split(filters: &[Expr], schema: &Schema) -> (Vec<ColumnValues>, Vec<Expr>) {
    let mut equal = Vec::new();
    let mut rest = Vec::new();
    for conjunct in filters.iter().flat_map(|f| split_conjunction(f)) {
        match column_values(conjunct, schema) {
            Some(v) => equal.push(v),
            None => rest.push(conjunct.clone()),
        }
    }
    (equal, rest)
}

fn column_values(e: &Expr, schema: &Schema) -> Option<ColumnValues> {
    let (column, values) = match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (string_column(left, schema), string_literal(right)) {
            (Some(c), Some(v)) => (c, vec![v]),
            _ => (string_column(right, schema)?, vec![string_literal(left)?]),
        },
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let l = column_values(left, schema)?;
            let r = column_values(right, schema)?;
            if l.column != r.column {
                return None;
            }
            (l.column, l.values.into_iter().chain(r.values).collect())
        }
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) => (
            string_column(expr, schema)?,
            list.iter().map(string_literal).collect::<Option<_>>()?,
        ),
        _ => return None,
    };
    Some(ColumnValues::new(column, values))
}

/// The column `e` reads, if it is a string column of `schema` (possibly
/// cast to another string type, which keeps its values).
fn string_column(e: &Expr, schema: &Schema) -> Option<String> {
    match e {
        Expr::Column(c) => {
            let field = schema.field_with_name(&c.name).ok()?;
            is_string(field.data_type()).then(|| c.name.clone())
        }
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field })
            if is_string(field.data_type()) =>
        {
            string_column(expr, schema)
        }
        _ => None,
    }
}

fn is_string(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_string(v),
        _ => false,
    }
}

/// A non-NULL string literal's bytes (`c = NULL` is left to DataFusion).
fn string_literal(e: &Expr) -> Option<Vec<u8>> {
    literal_str(e).map(|s| s.as_bytes().to_vec())
}

/// The text of a non-NULL string literal (of any string type, possibly
/// dictionary-encoded).
pub(crate) fn literal_str(e: &Expr) -> Option<&str> {
    let Expr::Literal(value, _) = e else {
        return None;
    };
    scalar_str(value)
}

fn scalar_str(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s),
        ScalarValue::Dictionary(_, inner) => scalar_str(inner),
        _ => None,
    }
}

/// Narrows `plan` by `equal`: row groups whose statistics rule every value
/// out are skipped, and in the others only the pages whose page index
/// bounds may hold a value are selected.
pub fn prune(plan: &mut ParquetAccessPlan, equal: &[ColumnValues], metadata: &ParquetMetaData) {
    let schema = metadata.file_metadata().schema_descr();
    for values in equal {
        let Some(leaf) = schema
            .columns()
            .iter()
            .position(|c| c.path().parts() == [values.column.as_str()])
        else {
            continue;
        };
        for (rg, group) in metadata.row_groups().iter().enumerate() {
            if !plan.should_scan(rg) {
                continue;
            }
            if let Some(Statistics::ByteArray(s)) = group.column(leaf).statistics()
                && let (Some(min), Some(max)) = (s.min_bytes_opt(), s.max_bytes_opt())
                && !values.any_within(min, max)
            {
                plan.skip(rg);
                continue;
            }
            let index = metadata
                .column_index()
                .and_then(|i| i.get(rg))
                .and_then(|g| g.get(leaf));
            let pages = metadata
                .offset_index()
                .and_then(|i| i.get(rg))
                .and_then(|g| g.get(leaf));
            let (Some(ColumnIndexMetaData::BYTE_ARRAY(index)), Some(pages)) = (index, pages) else {
                continue;
            };
            let rows = group.num_rows() as usize;
            let locations = pages.page_locations();
            let mut kept: Vec<Range<usize>> = Vec::new();
            for (p, page) in locations.iter().enumerate() {
                let keep = !index.is_null_page(p)
                    && match (index.min_value(p), index.max_value(p)) {
                        (Some(min), Some(max)) => values.any_within(min, max),
                        _ => true,
                    };
                if !keep {
                    continue;
                }
                let start = page.first_row_index as usize;
                let end = locations
                    .get(p + 1)
                    .map_or(rows, |next| next.first_row_index as usize);
                match kept.last_mut() {
                    Some(last) if last.end == start => last.end = end,
                    _ => kept.push(start..end),
                }
            }
            if kept.is_empty() {
                plan.skip(rg);
            } else {
                plan.scan_selection(
                    rg,
                    RowSelection::from_consecutive_ranges(kept.into_iter(), rows),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};
    use std::sync::Arc;

    use arrow::array::{ArrayRef, DictionaryArray, Int64Array, RecordBatch};
    use arrow::datatypes::{Field, Int32Type};
    use datafusion::datasource::physical_plan::parquet::RowGroupAccess;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new(
                "hostname",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
            Field::new("usage", DataType::Int64, true),
        ])
    }

    #[test]
    fn equalities_ins_and_ors_of_one_string_column_are_split_out() {
        let s = schema();
        let filters = vec![
            col("hostname").in_list(vec![lit("b"), lit("a"), lit("b")], false),
            col("usage").gt(lit(3i64)),
            lit("c")
                .eq(col("hostname"))
                .or(col("hostname").eq(lit("d"))),
            // Not this module's: another column in the OR, a negated list,
            // a NULL, a number.
            col("hostname").eq(lit("e")).or(col("usage").eq(lit(1i64))),
            col("hostname").in_list(vec![lit("f")], true),
            col("hostname").eq(lit(ScalarValue::Utf8(None))),
            col("usage").eq(lit(5i64)),
        ];
        let (equal, rest) = split(&filters, &s);
        assert_eq!(
            equal,
            vec![
                ColumnValues::new("hostname".into(), vec![b"a".to_vec(), b"b".to_vec()]),
                ColumnValues::new("hostname".into(), vec![b"c".to_vec(), b"d".to_vec()]),
            ]
        );
        assert_eq!(rest.len(), 5, "{rest:?}");
        // A dictionary literal and a cast to a string type are still the
        // column's values.
        let dict = ScalarValue::Dictionary(
            Box::new(DataType::Int32),
            Box::new(ScalarValue::Utf8(Some("h".into()))),
        );
        let cast = Expr::Cast(Cast::new(Box::new(col("hostname")), DataType::Utf8));
        let (equal, rest) = split(&[cast.eq(lit(dict))], &s);
        assert_eq!(equal.len(), 1, "{equal:?} {rest:?}");
        assert!(equal[0].any_within(b"g", b"i"));
    }

    #[test]
    fn a_value_is_within_bounds_bytewise() {
        let v = ColumnValues::new("c".into(), vec![b"host_10".to_vec(), b"host_7".to_vec()]);
        assert!(v.any_within(b"host_1", b"host_100"));
        assert!(v.any_within(b"host_7", b"host_7"));
        assert!(!v.any_within(b"host_100", b"host_699"));
        assert!(!v.any_within(b"host_8", b"host_9"));
        assert!(!v.any_within(b"a", b"b"));
        assert!(ColumnValues::new("c".into(), vec![]).values.is_empty());
    }

    /// On a file written as fleetlake writes them, the pages kept hold every
    /// matching row, and a value in no page leaves nothing to read.
    #[test]
    fn the_pages_kept_hold_every_matching_row_and_no_page_without_one() {
        let s = Arc::new(schema());
        // 200 hosts × 300 rows, sorted by host name; every 7th row NULL.
        let mut names: Vec<String> = (0..200).map(|h| format!("host_{h}")).collect();
        names.sort();
        let hosts: Vec<Option<&str>> = names
            .iter()
            .flat_map(|n| std::iter::repeat_n(n.as_str(), 300))
            .enumerate()
            .map(|(i, n)| (i % 7 != 3).then_some(n))
            .collect();
        let n = hosts.len();
        let host: DictionaryArray<Int32Type> = hosts.iter().copied().collect();
        let usage = Int64Array::from_iter_values(0..n as i64);
        let batch = RecordBatch::try_new(
            Arc::clone(&s),
            vec![Arc::new(host) as ArrayRef, Arc::new(usage) as ArrayRef],
        )
        .expect("batch");
        let bytes =
            fleetlake_storage::parquet_file::encode(Arc::clone(&s), &[batch]).expect("encode");
        let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
            .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required);
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new_with_options(
                bytes::Bytes::from(bytes),
                options,
            )
            .expect("reader");
        let metadata = Arc::clone(reader.metadata());
        assert!(metadata.column_index().is_some());
        let pages = metadata.offset_index().expect("offset index")[0][0]
            .page_locations()
            .len();
        assert!(pages > 4, "{pages} pages");

        for wanted in [
            vec!["host_7"],
            vec!["host_0", "host_199", "host_42", "host_nope"],
            vec!["zzz"],
        ] {
            let filter = col("hostname").in_list(wanted.iter().map(|w| lit(*w)).collect(), false);
            let (equal, rest) = split(std::slice::from_ref(&filter), &s);
            assert!(rest.is_empty());
            let mut plan = ParquetAccessPlan::new_all(metadata.num_row_groups());
            prune(&mut plan, &equal, &metadata);
            // Every matching row is selected; no more than the pages of
            // the wanted hosts are.
            let matches: Vec<usize> = (0..n)
                .filter(|&i| hosts[i].is_some_and(|h| wanted.contains(&h)))
                .collect();
            let mut selected_rows = Vec::new();
            let mut at = 0;
            for (access, group) in plan.inner().iter().zip(metadata.row_groups()) {
                let rows = group.num_rows() as usize;
                match access {
                    RowGroupAccess::Skip => {}
                    RowGroupAccess::Scan => selected_rows.extend(at..at + rows),
                    RowGroupAccess::Selection(sel) => {
                        let mut r = at;
                        for s in sel.iter() {
                            if !s.skip {
                                selected_rows.extend(r..r + s.row_count);
                            }
                            r += s.row_count;
                        }
                    }
                }
                at += rows;
            }
            for m in &matches {
                assert!(
                    selected_rows.binary_search(m).is_ok(),
                    "{wanted:?}: row {m} pruned"
                );
            }
            // A host's 300 rows span at most two pages of 8,192.
            assert!(
                selected_rows.len() <= wanted.len() * 2 * 8192,
                "{wanted:?}: {} rows selected",
                selected_rows.len()
            );
            if matches.is_empty() {
                assert!(
                    selected_rows.is_empty(),
                    "{wanted:?}: {} rows",
                    selected_rows.len()
                );
            }
        }
    }
}
