//! Functions whose output can dwarf their input — `repeat('x', 2e9)`,
//! `lpad('', 1e9)`, `range(1, 1e9)`, `array_repeat(0, 1e9)` — checked
//! against the query's memory limit *before* they allocate. DataFusion's
//! memory pool only sees operators' buffers, not a function's result, so a
//! single call could otherwise take the whole process down.
//!
//! Each wrapped function keeps its name, signature and results; it only
//! fails first, with a message naming the function and the size, when the
//! output it would build (an upper bound from its arguments) passes the
//! limit.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type, IntervalMonthDayNanoType};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(s, n)`: |s| × n bytes.
    Repeat,
    /// `lpad(s, n [, fill])`: up to 4 × n bytes (UTF-8).
    Pad,
    /// `array_repeat(e, n)`: n elements of e's size.
    ArrayRepeat,
    /// `array_resize(a, n [, v])`: n elements.
    ArrayResize,
    /// `range(start, stop [, step])`: (stop − start) / step elements of 8 bytes.
    Range,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    growth: Growth,
    limit_bytes: usize,
}

/// The largest value of argument `i` over the batch, as i64.
fn max_i64(args: &[ColumnarValue], i: usize) -> Option<i64> {
    extreme_i64(args, i, arrow::compute::max)
}

/// The smallest value of argument `i` over the batch, as i64.
fn min_i64(args: &[ColumnarValue], i: usize) -> Option<i64> {
    extreme_i64(args, i, arrow::compute::min)
}

fn extreme_i64(
    args: &[ColumnarValue],
    i: usize,
    pick: impl Fn(&arrow::array::Int64Array) -> Option<i64>,
) -> Option<i64> {
    match args.get(i)? {
        ColumnarValue::Scalar(s) => scalar_i64(s),
        ColumnarValue::Array(a) => {
            let a = arrow::compute::cast(a, &DataType::Int64).ok()?;
            pick(a.as_primitive::<Int64Type>())
        }
    }
}

fn scalar_i64(s: &ScalarValue) -> Option<i64> {
    match s.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(v) => v,
        _ => None,
    }
}

/// The longest value of argument `i` in bytes (strings, binaries), else 8.
fn max_len(args: &[ColumnarValue], i: usize) -> u128 {
    let Some(arg) = args.get(i) else { return 8 };
    let arr = match arg {
        ColumnarValue::Scalar(s) => match s.to_array() {
            Ok(a) => a,
            Err(_) => return 8,
        },
        ColumnarValue::Array(a) => a.clone(),
    };
    match arr.data_type() {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
            let Ok(a) = arrow::compute::cast(&arr, &DataType::LargeUtf8) else {
                return 8;
            };
            a.as_string::<i64>()
                .iter()
                .map(|s| s.map_or(0, str::len) as u128)
                .max()
                .unwrap_or(0)
        }
        // Nested values: their buffers' size per row, roughly.
        _ if !arr.is_empty() => (arr.get_array_memory_size() / arr.len()).max(1) as u128,
        _ => 8,
    }
}

/// Elements `range`/`generate_series` yields for the largest span of the batch.
fn range_len(args: &[ColumnarValue]) -> Option<u128> {
    let span = |from: i64, to: i64| (i128::from(to) - i128::from(from)).unsigned_abs();
    let step_of = |i: usize| -> Option<u128> {
        match args.get(i) {
            None => Some(1),
            Some(ColumnarValue::Scalar(ScalarValue::IntervalMonthDayNano(Some(v)))) => {
                let ns = i128::from(v.months) * 30 * 86_400_000_000_000
                    + i128::from(v.days) * 86_400_000_000_000
                    + i128::from(v.nanoseconds);
                Some(ns.unsigned_abs().max(1))
            }
            Some(ColumnarValue::Array(a)) if matches!(a.data_type(), DataType::Interval(_)) => {
                // The smallest step of the batch gives the most elements.
                let a = arrow::compute::cast(
                    a,
                    &DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano),
                )
                .ok()?;
                a.as_primitive::<IntervalMonthDayNanoType>()
                    .iter()
                    .flatten()
                    .map(|v| {
                        (i128::from(v.months) * 30 * 86_400_000_000_000
                            + i128::from(v.days) * 86_400_000_000_000
                            + i128::from(v.nanoseconds))
                        .unsigned_abs()
                        .max(1)
                    })
                    .min()
            }
            Some(_) => Some(u128::from(
                max_i64(args, i).unwrap_or(1).unsigned_abs().max(1),
            )),
        }
    };
    // One argument: range(stop) from 0.
    let (from, to) = if args.len() == 1 {
        (Some(0), max_i64(args, 0))
    } else {
        (min_i64(args, 0), max_i64(args, 1))
    };
    Some(span(from?, to?) / step_of(2)?)
}

impl Bounded {
    /// An upper bound of the output's bytes, where the arguments tell one.
    fn estimate(&self, args: &ScalarFunctionArgs) -> Option<u128> {
        let a = &args.args;
        let all_scalar = a.iter().all(|v| matches!(v, ColumnarValue::Scalar(_)));
        let rows = if all_scalar {
            1
        } else {
            args.number_rows as u128
        };
        let n = || u128::from(max_i64(a, 1).unwrap_or(0).max(0).unsigned_abs());
        let per_row = match self.growth {
            Growth::Repeat => max_len(a, 0).checked_mul(n())?,
            Growth::Pad => n().checked_mul(4)?,
            Growth::ArrayRepeat => max_len(a, 0).checked_mul(n())?,
            Growth::ArrayResize => n().checked_mul(max_len(a, 2).max(8))?,
            Growth::Range => range_len(a)?.checked_mul(8)?,
        };
        per_row.checked_mul(rows).or(Some(u128::MAX))
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Some(bytes) = self.estimate(&args)
            && bytes > self.limit_bytes as u128
        {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}() would build about {bytes} bytes, more than the query memory limit of {} bytes",
                self.name(),
                self.limit_bytes
            )));
        }
        self.inner.invoke_with_args(args)
    }

    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.inner.documentation()
    }
}

/// Replaces the growing functions of `ctx` by checked ones.
pub fn register(ctx: &SessionContext, limit_bytes: usize) {
    let growth = [
        ("repeat", Growth::Repeat),
        ("lpad", Growth::Pad),
        ("rpad", Growth::Pad),
        ("array_repeat", Growth::ArrayRepeat),
        ("array_resize", Growth::ArrayResize),
        ("range", Growth::Range),
        ("generate_series", Growth::Range),
    ];
    for (name, growth) in growth {
        let Ok(inner) = ctx.udf(name) else { continue };
        ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
            inner,
            growth,
            limit_bytes,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(sql: &str) -> Result<usize> {
        let ctx = SessionContext::new();
        register(&ctx, 64 << 20);
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(batches.iter().map(|b| b.num_rows()).sum())
    }

    #[tokio::test]
    async fn small_calls_work_and_huge_ones_fail_before_allocating() {
        assert_eq!(run("SELECT repeat('ab', 3)").await.unwrap(), 1);
        assert_eq!(run("SELECT lpad('x', 10, '-')").await.unwrap(), 1);
        assert_eq!(run("SELECT range(1, 100)").await.unwrap(), 1);
        assert_eq!(run("SELECT array_repeat(1, 5)").await.unwrap(), 1);
        for sql in [
            "SELECT repeat('x', 2000000000)",
            "SELECT rpad('', 1000000000)",
            "SELECT range(1, 1000000000)",
            "SELECT generate_series(1, 1000000000)",
            "SELECT array_repeat(1, 1000000000)",
            "SELECT array_resize([1], 1000000000)",
            "SELECT repeat(s, 100000000) FROM (VALUES ('a'), ('bb')) t(s)",
        ] {
            let e = run(sql).await.unwrap_err().to_string();
            assert!(e.contains("memory limit"), "{sql}: {e}");
        }
    }
}
