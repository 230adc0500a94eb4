//! Building a system table's batch column by column from a slice of rows:
//! each column is a name, a type and how to read it off a row, so the
//! schema and the arrays cannot drift apart.
//!
//! ```
//! use fleetlake_query::system::Columns;
//! struct Run { table: String, rows: u64, error: Option<String> }
//! let runs = [Run { table: "cpu".into(), rows: 7, error: None }];
//! let batch = Columns::new(&runs)
//!     .str("table", |r| &r.table)
//!     .u64("rows", |r| r.rows)
//!     .opt_str("error", |r| r.error.as_deref())
//!     .finish()
//!     .unwrap();
//! assert_eq!((batch.num_rows(), batch.num_columns()), (1, 3));
//! ```

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampNanosecondArray,
    UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::common::Result;

/// Timestamps of system tables: nanoseconds, UTC, like `time` everywhere.
pub fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The columns of a batch over `rows`, added in order.
pub struct Columns<'a, T> {
    rows: &'a [T],
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
}

impl<'a, T> Columns<'a, T> {
    pub fn new(rows: &'a [T]) -> Self {
        Self {
            rows,
            fields: Vec::new(),
            arrays: Vec::new(),
        }
    }

    fn push(mut self, name: &str, nullable: bool, array: ArrayRef) -> Self {
        self.fields
            .push(Field::new(name, array.data_type().clone(), nullable));
        self.arrays.push(array);
        self
    }

    pub fn str(self, name: &str, f: impl Fn(&T) -> &str) -> Self {
        let a = StringArray::from_iter_values(self.rows.iter().map(f));
        self.push(name, false, Arc::new(a))
    }

    pub fn opt_str(self, name: &str, f: impl Fn(&T) -> Option<&str>) -> Self {
        let a = StringArray::from_iter(self.rows.iter().map(f));
        self.push(name, true, Arc::new(a))
    }

    /// A text column computed per row (formatted, serialized).
    pub fn string(self, name: &str, f: impl Fn(&T) -> String) -> Self {
        let a = StringArray::from_iter_values(self.rows.iter().map(f));
        self.push(name, false, Arc::new(a))
    }

    pub fn opt_string(self, name: &str, f: impl Fn(&T) -> Option<String>) -> Self {
        let a = StringArray::from_iter(self.rows.iter().map(f));
        self.push(name, true, Arc::new(a))
    }

    pub fn u64(self, name: &str, f: impl Fn(&T) -> u64) -> Self {
        let a = UInt64Array::from_iter_values(self.rows.iter().map(f));
        self.push(name, false, Arc::new(a))
    }

    pub fn opt_u64(self, name: &str, f: impl Fn(&T) -> Option<u64>) -> Self {
        let a = UInt64Array::from_iter(self.rows.iter().map(f));
        self.push(name, true, Arc::new(a))
    }

    pub fn i64(self, name: &str, f: impl Fn(&T) -> i64) -> Self {
        let a = Int64Array::from_iter_values(self.rows.iter().map(f));
        self.push(name, false, Arc::new(a))
    }

    pub fn opt_i64(self, name: &str, f: impl Fn(&T) -> Option<i64>) -> Self {
        let a = Int64Array::from_iter(self.rows.iter().map(f));
        self.push(name, true, Arc::new(a))
    }

    pub fn f64(self, name: &str, f: impl Fn(&T) -> f64) -> Self {
        let a = Float64Array::from_iter_values(self.rows.iter().map(f));
        self.push(name, false, Arc::new(a))
    }

    pub fn opt_f64(self, name: &str, f: impl Fn(&T) -> Option<f64>) -> Self {
        let a = Float64Array::from_iter(self.rows.iter().map(f));
        self.push(name, true, Arc::new(a))
    }

    pub fn bool(self, name: &str, f: impl Fn(&T) -> bool) -> Self {
        let a = BooleanArray::from_iter(self.rows.iter().map(|r| Some(f(r))));
        self.push(name, false, Arc::new(a))
    }

    /// Nanoseconds since the epoch, shown as UTC timestamps.
    pub fn time(self, name: &str, f: impl Fn(&T) -> i64) -> Self {
        let a = TimestampNanosecondArray::from_iter_values(self.rows.iter().map(f))
            .with_timezone("UTC");
        self.push(name, false, Arc::new(a))
    }

    pub fn opt_time(self, name: &str, f: impl Fn(&T) -> Option<i64>) -> Self {
        let a = TimestampNanosecondArray::from_iter(self.rows.iter().map(f)).with_timezone("UTC");
        self.push(name, true, Arc::new(a))
    }

    /// # Errors
    /// Never for columns built here (all have one value per row); the
    /// type is DataFusion's so table providers can return it as is.
    pub fn finish(self) -> Result<RecordBatch> {
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(self.fields)),
            self.arrays,
        )?)
    }
}
