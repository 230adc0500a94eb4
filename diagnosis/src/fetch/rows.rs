//! Reading query results by column name, whatever the stored type: tags
//! are dictionaries of strings, counters may be integers or floats, `time`
//! is a timestamp. A column the table lacks reads as NULL, so an optional
//! field (e.g. `error`, only written on failures) needs no special SQL.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

/// One batch's columns, cast on first use.
pub(crate) struct Rows<'a> {
    batch: &'a RecordBatch,
}

impl<'a> Rows<'a> {
    pub(crate) fn new(batch: &'a RecordBatch) -> Self {
        Rows { batch }
    }

    pub(crate) fn len(&self) -> usize {
        self.batch.num_rows()
    }

    fn column(&self, name: &str, to: &DataType) -> Option<ArrayRef> {
        let c = self.batch.column_by_name(name)?;
        if c.data_type() == to {
            return Some(Arc::clone(c));
        }
        // A value that does not convert (e.g. "x" as a number) reads as NULL.
        cast(c, to).ok()
    }

    pub(crate) fn strings(&self, name: &str) -> Strings {
        Strings(
            self.column(name, &DataType::Utf8)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned()),
        )
    }

    /// Integers; timestamps read as Unix nanoseconds.
    pub(crate) fn ints(&self, name: &str) -> Ints {
        let c = self.batch.column_by_name(name);
        let c = match c.map(|c| c.data_type()) {
            Some(DataType::Timestamp(_, _)) => c
                .and_then(|c| {
                    cast(
                        c,
                        &DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, None),
                    )
                    .ok()
                })
                .and_then(|c| cast(&c, &DataType::Int64).ok()),
            Some(DataType::Float32 | DataType::Float64) => {
                c.and_then(|c| cast(c, &DataType::Float64).ok()).map(|f| {
                    let f = f.as_any().downcast_ref::<Float64Array>().cloned();
                    let ints: Int64Array = f
                        .iter()
                        .flat_map(|a| a.iter())
                        .map(|v| v.filter(|v| v.is_finite()).map(|v| v.round() as i64))
                        .collect();
                    Arc::new(ints) as ArrayRef
                })
            }
            Some(_) => self.column(name, &DataType::Int64),
            None => None,
        };
        Ints(c.and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned()))
    }

    pub(crate) fn floats(&self, name: &str) -> Floats {
        Floats(
            self.column(name, &DataType::Float64)
                .and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned()),
        )
    }
}

pub(crate) struct Strings(Option<StringArray>);

impl Strings {
    pub(crate) fn get(&self, i: usize) -> Option<&str> {
        self.0
            .as_ref()
            .filter(|a| a.is_valid(i))
            .map(|a| a.value(i))
    }
}

pub(crate) struct Ints(Option<Int64Array>);

impl Ints {
    pub(crate) fn get(&self, i: usize) -> Option<i64> {
        self.0
            .as_ref()
            .filter(|a| a.is_valid(i))
            .map(|a| a.value(i))
    }
}

pub(crate) struct Floats(Option<Float64Array>);

impl Floats {
    pub(crate) fn get(&self, i: usize) -> Option<f64> {
        self.0
            .as_ref()
            .filter(|a| a.is_valid(i))
            .map(|a| a.value(i))
            .filter(|v| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, TimestampNanosecondArray};
    use arrow::datatypes::Int32Type;

    #[test]
    fn reads_tags_times_and_missing_columns() {
        let tags: DictionaryArray<Int32Type> = vec!["3", "x"].into_iter().collect();
        let time = TimestampNanosecondArray::from(vec![5, 6]).with_timezone("UTC");
        let f = Float64Array::from(vec![Some(2.6), None]);
        let batch = RecordBatch::try_from_iter([
            ("stage_id", Arc::new(tags) as ArrayRef),
            ("time", Arc::new(time) as ArrayRef),
            ("bytes", Arc::new(f) as ArrayRef),
        ])
        .unwrap();
        let rows = Rows::new(&batch);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.strings("stage_id").get(0), Some("3"));
        assert_eq!(rows.ints("stage_id").get(0), Some(3));
        assert_eq!(rows.ints("stage_id").get(1), None);
        assert_eq!(rows.ints("time").get(1), Some(6));
        assert_eq!(rows.ints("bytes").get(0), Some(3));
        assert_eq!(rows.ints("bytes").get(1), None);
        assert_eq!(rows.floats("bytes").get(0), Some(2.6));
        assert_eq!(rows.strings("error").get(0), None);
    }
}
