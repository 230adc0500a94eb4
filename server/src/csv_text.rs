//! CSV rows of a result batch, column by column.
//!
//! The text is Arrow's CSV writer's with its default options (RFC 4180
//! quoting where a field needs it, SQL NULL as an empty field, timestamps
//! with a time zone in RFC 3339), except that non-finite floats are spelled
//! as PostgreSQL does ([`crate::float_text`]). Arrow's writer formats every
//! cell through `fmt::Write` into a string and copies it into a record; a
//! result of a few hundred thousand rows spent more time there than in its
//! scan. Here the common column types write their bytes straight into the
//! output, and the others go through Arrow's own formatter.

use arrow::array::{Array, AsArray, BooleanArray, PrimitiveArray};
use arrow::datatypes::{
    ArrowNativeType, ArrowPrimitiveType, DataType, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::float_text::non_finite;

/// Appends `b`'s rows (no header) to `out`.
pub fn write_rows(b: &RecordBatch, out: &mut Vec<u8>) -> Result<(), ArrowError> {
    let options = FormatOptions::default().with_null("");
    let mut cells = b
        .columns()
        .iter()
        .map(|c| Cells::new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    for row in 0..b.num_rows() {
        let start = out.len();
        for (i, cells) in cells.iter_mut().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            cells.write(row, out)?;
        }
        // As the csv crate does: a record of one empty field is `""`, or
        // it would read back as no record at all.
        if out.len() == start {
            out.extend_from_slice(b"\"\"");
        }
        out.push(b'\n');
    }
    Ok(())
}

/// Writes one row's integer.
type IntText<'a> = Box<dyn Fn(usize, &mut Vec<u8>) + 'a>;

/// One column's cells.
enum Cells<'a> {
    I64(&'a PrimitiveArray<Int64Type>),
    Int(IntText<'a>, &'a dyn Array),
    F64(&'a PrimitiveArray<Float64Type>),
    F32(&'a PrimitiveArray<Float32Type>),
    Bool(&'a BooleanArray),
    Text(&'a dyn Array),
    Dictionary {
        keys: Box<dyn Fn(usize) -> usize + 'a>,
        values: &'a dyn Array,
        array: &'a dyn Array,
        /// Every value's field, written once, when the dictionary is no
        /// larger than the batch (a tag's values repeat row after row).
        fields: Option<Fields>,
    },
    Time(UtcTimes<'a>),
    Other(ArrayFormatter<'a>, String),
}

impl<'a> Cells<'a> {
    fn new(array: &'a dyn Array, options: &FormatOptions<'a>) -> Result<Self, ArrowError> {
        Ok(match array.data_type() {
            DataType::Int8 => int::<Int8Type>(array),
            DataType::Int16 => int::<Int16Type>(array),
            DataType::Int32 => int::<Int32Type>(array),
            DataType::Int64 => Cells::I64(array.as_primitive()),
            DataType::UInt8 => int::<UInt8Type>(array),
            DataType::UInt16 => int::<UInt16Type>(array),
            DataType::UInt32 => int::<UInt32Type>(array),
            DataType::UInt64 => int::<UInt64Type>(array),
            DataType::Float64 => Cells::F64(array.as_primitive()),
            DataType::Float32 => Cells::F32(array.as_primitive()),
            DataType::Boolean => Cells::Bool(array.as_boolean()),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Cells::Text(array),
            DataType::Dictionary(key, value) if is_text(value) => {
                let keys: Box<dyn Fn(usize) -> usize + 'a> = match key.as_ref() {
                    DataType::Int8 => dictionary_keys::<Int8Type>(array),
                    DataType::Int16 => dictionary_keys::<Int16Type>(array),
                    DataType::Int32 => dictionary_keys::<Int32Type>(array),
                    DataType::Int64 => dictionary_keys::<Int64Type>(array),
                    DataType::UInt8 => dictionary_keys::<UInt8Type>(array),
                    DataType::UInt16 => dictionary_keys::<UInt16Type>(array),
                    DataType::UInt32 => dictionary_keys::<UInt32Type>(array),
                    DataType::UInt64 => dictionary_keys::<UInt64Type>(array),
                    _ => return other(array, options),
                };
                let values = array.as_any_dictionary().values().as_ref();
                Cells::Dictionary {
                    keys,
                    values,
                    array,
                    fields: (values.len() <= array.len().max(1024)).then(|| Fields::of(values)),
                }
            }
            DataType::Timestamp(unit, Some(tz)) if matches!(tz.as_ref(), "UTC" | "+00:00") => {
                match UtcTimes::new(array, *unit) {
                    Some(t) => Cells::Time(t),
                    None => other(array, options)?,
                }
            }
            dt if dt.is_nested() => {
                return Err(ArrowError::CsvError(format!(
                    "Nested type {dt} is not supported in CSV"
                )));
            }
            _ => other(array, options)?,
        })
    }

    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), ArrowError> {
        match self {
            Cells::I64(a) => {
                if a.is_valid(row) {
                    out.extend_from_slice(itoa::Buffer::new().format(a.value(row)).as_bytes());
                }
            }
            Cells::Int(write, array) => {
                if array.is_valid(row) {
                    write(row, out);
                }
            }
            Cells::F64(a) => {
                if a.is_valid(row) {
                    float(a.value(row), out);
                }
            }
            Cells::F32(a) => {
                if a.is_valid(row) {
                    let v = a.value(row);
                    match non_finite(f64::from(v)) {
                        Some(word) => out.extend_from_slice(word.as_bytes()),
                        None => out.extend_from_slice(ryu::Buffer::new().format(v).as_bytes()),
                    }
                }
            }
            Cells::Bool(a) => {
                if a.is_valid(row) {
                    out.extend_from_slice(if a.value(row) { b"true" } else { b"false" });
                }
            }
            Cells::Text(a) => {
                if a.is_valid(row) {
                    field(text_at(*a, row), out);
                }
            }
            Cells::Dictionary {
                keys,
                values,
                array,
                fields,
            } => {
                // A null key, or a key pointing at a null value, is NULL.
                if array.is_valid(row) {
                    let i = keys(row);
                    match fields {
                        Some(f) => f.write(i, out),
                        None if values.is_valid(i) => field(text_at(*values, i), out),
                        None => {}
                    }
                }
            }
            Cells::Time(t) => t.write(row, out)?,
            Cells::Other(format, buf) => {
                buf.clear();
                format.value(row).write(buf)?;
                field(buf.as_bytes(), out);
            }
        }
        Ok(())
    }
}

/// The fields of a string array's values, quoted where needed, end to end.
struct Fields {
    bytes: Vec<u8>,
    /// Each value's range of `bytes`; `None` for a null value.
    ranges: Vec<Option<(usize, usize)>>,
}

impl Fields {
    fn of(values: &dyn Array) -> Self {
        let mut bytes = Vec::new();
        let ranges = (0..values.len())
            .map(|i| {
                values.is_valid(i).then(|| {
                    let start = bytes.len();
                    field(text_at(values, i), &mut bytes);
                    (start, bytes.len())
                })
            })
            .collect();
        Self { bytes, ranges }
    }

    fn write(&self, i: usize, out: &mut Vec<u8>) {
        if let Some(Some((start, end))) = self.ranges.get(i) {
            out.extend_from_slice(&self.bytes[*start..*end]);
        }
    }
}

fn int<'a, T>(array: &'a dyn Array) -> Cells<'a>
where
    T: ArrowPrimitiveType,
    T::Native: itoa::Integer,
{
    let a: &'a PrimitiveArray<T> = array.as_primitive();
    Cells::Int(
        Box::new(move |row, out| {
            out.extend_from_slice(itoa::Buffer::new().format(a.value(row)).as_bytes())
        }),
        array,
    )
}

fn dictionary_keys<'a, K>(array: &'a dyn Array) -> Box<dyn Fn(usize) -> usize + 'a>
where
    K: arrow::datatypes::ArrowDictionaryKeyType,
{
    let keys = array.as_dictionary::<K>().keys();
    Box::new(move |row| keys.value(row).as_usize())
}

fn other<'a>(array: &'a dyn Array, options: &FormatOptions<'a>) -> Result<Cells<'a>, ArrowError> {
    Ok(Cells::Other(
        ArrayFormatter::try_new(array, options)?,
        String::new(),
    ))
}

fn is_text(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// The bytes of a string array's value (`Utf8`, `LargeUtf8` or `Utf8View`).
fn text_at(a: &dyn Array, i: usize) -> &[u8] {
    match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().value(i).as_bytes(),
        DataType::LargeUtf8 => a.as_string::<i64>().value(i).as_bytes(),
        DataType::Utf8View => a.as_string_view().value(i).as_bytes(),
        other => unreachable!("text_at over {other}"),
    }
}

fn float(v: f64, out: &mut Vec<u8>) {
    match non_finite(v) {
        Some(word) => out.extend_from_slice(word.as_bytes()),
        None => out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes()),
    }
}

/// A field as RFC 4180 wants it: quoted, with quotes doubled, when it holds
/// a delimiter, a quote or a line break (the csv crate's "necessary" style).
pub(crate) fn field(bytes: &[u8], out: &mut Vec<u8>) {
    if !bytes
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        out.extend_from_slice(bytes);
        return;
    }
    out.push(b'"');
    for &b in bytes {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Timestamps in UTC as chrono's `to_rfc3339_opts(SecondsFormat::AutoSi,
/// true)` writes them (what Arrow's formatter calls): no fraction, or 3, 6
/// or 9 digits as the value needs, and `Z`. Only from 1970 to 9999: other
/// years go through Arrow's formatter.
struct UtcTimes<'a> {
    array: &'a dyn Array,
    value: Box<dyn Fn(usize) -> i64 + 'a>,
    per_second: i64,
    /// The day last written and its `YYYY-MM-DDT`.
    day: Option<(i64, [u8; 11])>,
    fallback: ArrayFormatter<'a>,
    buf: String,
}

/// 9999-12-31T23:59:59 UTC, in seconds since the epoch.
const LAST_SECOND: i64 = 253_402_300_799;
const SECONDS_PER_DAY: i64 = 86_400;

impl<'a> UtcTimes<'a> {
    fn new(array: &'a dyn Array, unit: TimeUnit) -> Option<Self> {
        fn values<'a, T: ArrowPrimitiveType<Native = i64>>(
            array: &'a dyn Array,
        ) -> Box<dyn Fn(usize) -> i64 + 'a> {
            let a: &'a PrimitiveArray<T> = array.as_primitive();
            Box::new(move |i| a.value(i))
        }
        let (value, per_second) = match unit {
            TimeUnit::Second => (values::<TimestampSecondType>(array), 1),
            TimeUnit::Millisecond => (values::<TimestampMillisecondType>(array), 1_000),
            TimeUnit::Microsecond => (values::<TimestampMicrosecondType>(array), 1_000_000),
            TimeUnit::Nanosecond => (values::<TimestampNanosecondType>(array), 1_000_000_000),
        };
        Some(Self {
            array,
            value,
            per_second,
            day: None,
            fallback: ArrayFormatter::try_new(array, &FormatOptions::default()).ok()?,
            buf: String::new(),
        })
    }

    fn write(&mut self, row: usize, out: &mut Vec<u8>) -> Result<(), ArrowError> {
        if self.array.is_null(row) {
            return Ok(());
        }
        let v = (self.value)(row);
        let seconds = v.div_euclid(self.per_second);
        if !(0..=LAST_SECOND).contains(&seconds) {
            self.buf.clear();
            self.fallback.value(row).write(&mut self.buf)?;
            out.extend_from_slice(self.buf.as_bytes());
            return Ok(());
        }
        let nanos = v.rem_euclid(self.per_second) * (1_000_000_000 / self.per_second);
        let day = seconds.div_euclid(SECONDS_PER_DAY);
        let date = match self.day {
            Some((d, text)) if d == day => text,
            _ => {
                let text = date_text(day);
                self.day = Some((day, text));
                text
            }
        };
        out.extend_from_slice(&date);
        let s = seconds.rem_euclid(SECONDS_PER_DAY);
        two_digits(s / 3600, out);
        out.push(b':');
        two_digits(s / 60 % 60, out);
        out.push(b':');
        two_digits(s % 60, out);
        let (digits, frac) = if nanos == 0 {
            (0, 0)
        } else if nanos % 1_000_000 == 0 {
            (3, nanos / 1_000_000)
        } else if nanos % 1_000 == 0 {
            (6, nanos / 1_000)
        } else {
            (9, nanos)
        };
        if digits > 0 {
            out.push(b'.');
            let mut text = [b'0'; 9];
            let mut f = frac;
            for slot in text[..digits].iter_mut().rev() {
                *slot = b'0' + (f % 10) as u8;
                f /= 10;
            }
            out.extend_from_slice(&text[..digits]);
        }
        out.push(b'Z');
        Ok(())
    }
}

fn two_digits(v: i64, out: &mut Vec<u8>) {
    out.push(b'0' + (v / 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

/// `YYYY-MM-DDT` of a day since 1970-01-01 (within 1970..=9999).
fn date_text(day: i64) -> [u8; 11] {
    let (y, m, d) = fleetlake_time::civil_from_days(day);
    let mut text = [0u8; 11];
    text.copy_from_slice(format!("{y:04}-{m:02}-{d:02}T").as_bytes());
    text
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, BooleanArray, DictionaryArray, Float32Array, Float64Array, Int8Array, Int64Array,
        LargeStringArray, StringArray, StringViewArray, TimestampMicrosecondArray,
        TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray, UInt64Array,
    };
    use arrow::datatypes::{Field, Schema};

    use super::*;

    /// What Arrow's CSV writer writes for `b` once its non-finite floats are
    /// spelled out as text: the reference the encoder must equal.
    fn arrow_text(b: &RecordBatch) -> String {
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (f, c) in b.schema().fields().iter().zip(b.columns()) {
            let wide: Option<Vec<Option<f64>>> = match c.data_type() {
                DataType::Float64 => Some(c.as_primitive::<Float64Type>().iter().collect()),
                DataType::Float32 => Some(
                    c.as_primitive::<Float32Type>()
                        .iter()
                        .map(|v| v.map(f64::from))
                        .collect(),
                ),
                _ => None,
            };
            match wide {
                Some(values) if values.iter().flatten().any(|v| !v.is_finite()) => {
                    let fmt =
                        ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default()).unwrap();
                    let text: StringArray = values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            v.map(|v| {
                                non_finite(v)
                                    .map_or_else(|| fmt.value(i).to_string(), str::to_string)
                            })
                        })
                        .collect();
                    fields.push(Arc::new(Field::new(f.name(), DataType::Utf8, true)));
                    columns.push(Arc::new(text));
                }
                _ => {
                    fields.push(f.clone());
                    columns.push(c.clone());
                }
            }
        }
        let b = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let mut out = Vec::new();
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(false)
            .build(&mut out);
        w.write(&b).unwrap();
        drop(w);
        String::from_utf8(out).unwrap()
    }

    fn ours(b: &RecordBatch) -> String {
        let mut out = Vec::new();
        write_rows(b, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn strings() -> Vec<Option<&'static str>> {
        vec![
            Some("plain"),
            Some("a,b"),
            Some("say \"hi\""),
            Some("two\nlines"),
            Some("cr\rhere"),
            None,
            Some(""),
            Some(" spaced "),
            Some("ünïcode"),
        ]
    }

    fn times_ns() -> Vec<Option<i64>> {
        vec![
            Some(0),
            Some(1_451_606_400_000_000_000),
            Some(1_451_606_410_123_000_000),
            Some(1_451_606_410_123_456_000),
            Some(1_451_606_410_123_456_789),
            None,
            Some(-1),
            Some(-86_400_000_000_001),
            Some(i64::MAX),
        ]
    }

    /// [`times_ns`] in a coarser unit (`per` nanoseconds).
    fn scaled(per: i64, tz: &str) -> ArrayRef {
        let values: Vec<Option<i64>> = times_ns().iter().map(|v| v.map(|v| v / per)).collect();
        match per {
            1_000 => Arc::new(TimestampMicrosecondArray::from(values).with_timezone(tz)),
            1_000_000 => Arc::new(TimestampMillisecondArray::from(values).with_timezone(tz)),
            _ => unreachable!("microseconds or milliseconds"),
        }
    }

    #[test]
    fn rows_equal_arrows_writer_for_every_column_kind() {
        let n = 9;
        let dict: DictionaryArray<Int32Type> = strings().into_iter().collect();
        let dict8: DictionaryArray<Int8Type> = strings().into_iter().collect();
        let b = RecordBatch::try_from_iter([
            ("s", Arc::new(StringArray::from(strings())) as ArrayRef),
            (
                "ls",
                Arc::new(LargeStringArray::from(strings())) as ArrayRef,
            ),
            ("sv", Arc::new(StringViewArray::from(strings())) as ArrayRef),
            ("d", Arc::new(dict) as ArrayRef),
            ("d8", Arc::new(dict8) as ArrayRef),
            (
                "i",
                Arc::new(Int64Array::from(vec![
                    Some(0),
                    Some(-1),
                    Some(i64::MIN),
                    Some(i64::MAX),
                    None,
                    Some(42),
                    Some(7),
                    Some(-90),
                    Some(1),
                ])) as ArrayRef,
            ),
            (
                "i8",
                Arc::new(Int8Array::from(vec![
                    Some(-128),
                    Some(127),
                    None,
                    Some(0),
                    Some(1),
                    Some(2),
                    Some(3),
                    Some(4),
                    Some(5),
                ])) as ArrayRef,
            ),
            (
                "u",
                Arc::new(UInt64Array::from(vec![
                    Some(u64::MAX),
                    Some(0),
                    None,
                    Some(1),
                    Some(2),
                    Some(3),
                    Some(4),
                    Some(5),
                    Some(6),
                ])) as ArrayRef,
            ),
            (
                "f",
                Arc::new(Float64Array::from(vec![
                    Some(1.5),
                    Some(-0.0),
                    Some(1e300),
                    Some(1e-7),
                    None,
                    Some(90.0),
                    Some(0.1 + 0.2),
                    Some(123456789.125),
                    Some(-2.5e-300),
                ])) as ArrayRef,
            ),
            (
                "f32",
                Arc::new(Float32Array::from(vec![
                    Some(0.1),
                    None,
                    Some(3.0),
                    Some(1e30),
                    Some(-1.25),
                    Some(0.0),
                    Some(7.0),
                    Some(8.5),
                    Some(1e-8),
                ])) as ArrayRef,
            ),
            (
                "b",
                Arc::new(BooleanArray::from(vec![
                    Some(true),
                    Some(false),
                    None,
                    Some(true),
                    Some(true),
                    Some(false),
                    None,
                    Some(true),
                    Some(false),
                ])) as ArrayRef,
            ),
            (
                "t",
                Arc::new(TimestampNanosecondArray::from(times_ns()).with_timezone("UTC"))
                    as ArrayRef,
            ),
            (
                "t_offset",
                Arc::new(TimestampNanosecondArray::from(times_ns()).with_timezone("+00:00"))
                    as ArrayRef,
            ),
            (
                "t_paris",
                Arc::new(TimestampNanosecondArray::from(times_ns()).with_timezone("Europe/Paris"))
                    as ArrayRef,
            ),
            (
                "t_naive",
                Arc::new(TimestampNanosecondArray::from(times_ns())) as ArrayRef,
            ),
            ("t_us", scaled(1_000, "UTC")),
            ("t_ms", scaled(1_000_000, "UTC")),
            (
                "t_s",
                Arc::new(
                    TimestampSecondArray::from(vec![
                        Some(0),
                        Some(LAST_SECOND),
                        Some(LAST_SECOND + 1),
                        Some(-1),
                        None,
                        Some(1_451_606_399),
                        Some(951_782_400),   // 2000-02-29
                        Some(4_107_542_400), // 2100-03-01
                        Some(86_399),
                    ])
                    .with_timezone("UTC"),
                ) as ArrayRef,
            ),
            (
                "date",
                Arc::new(arrow::array::Date32Array::from(vec![
                    Some(0),
                    Some(16801),
                    None,
                    Some(-1),
                    Some(1),
                    Some(2),
                    Some(3),
                    Some(4),
                    Some(5),
                ])) as ArrayRef,
            ),
        ])
        .unwrap();
        assert_eq!(b.num_rows(), n);
        let expected = arrow_text(&b);
        let got = ours(&b);
        for (e, g) in expected.lines().zip(got.lines()) {
            assert_eq!(g, e);
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn non_finite_floats_are_spelled_out_and_nulls_left_empty() {
        let b = crate::float_text::tests::batch();
        let text = ours(&b);
        assert_eq!(
            text,
            "1.5,0.1,1\nInfinity,,2\n-Infinity,Infinity,3\nNaN,2.0,4\n,3.0,5\n1e300,4.0,6\n"
        );
        assert_eq!(text, arrow_text(&b));
    }

    #[test]
    fn a_dictionary_larger_than_its_batch_is_read_value_by_value() {
        let values: StringArray = (0..2000)
            .map(|i| (i % 7 != 3).then(|| format!("v,{i}")))
            .collect();
        let keys =
            arrow::array::Int32Array::from(vec![Some(0), Some(3), None, Some(1999), Some(11)]);
        let dict = DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values)).unwrap();
        let b = RecordBatch::try_from_iter([("d", Arc::new(dict) as ArrayRef)]).unwrap();
        assert_eq!(ours(&b), "\"v,0\"\n\"\"\n\"\"\n\"v,1999\"\n\"v,11\"\n");
        assert_eq!(ours(&b), arrow_text(&b));
    }

    #[test]
    fn a_row_of_one_empty_field_is_quoted_as_the_csv_crate_does() {
        let one = RecordBatch::try_from_iter([(
            "s",
            Arc::new(StringArray::from(vec![Some(""), None, Some("x")])) as ArrayRef,
        )])
        .unwrap();
        assert_eq!(ours(&one), "\"\"\n\"\"\nx\n");
        assert_eq!(ours(&one), arrow_text(&one));
        let two = RecordBatch::try_from_iter([
            (
                "a",
                Arc::new(StringArray::from(vec![None::<&str>])) as ArrayRef,
            ),
            ("b", Arc::new(Int64Array::from(vec![None])) as ArrayRef),
        ])
        .unwrap();
        assert_eq!(ours(&two), ",\n");
        assert_eq!(ours(&two), arrow_text(&two));
    }

    #[test]
    fn nested_columns_are_refused_as_arrows_writer_does() {
        let list =
            arrow::array::ListArray::from_iter_primitive::<Int64Type, _, _>(vec![Some(vec![
                Some(1),
            ])]);
        let b = RecordBatch::try_from_iter([("l", Arc::new(list) as ArrayRef)]).unwrap();
        let err = write_rows(&b, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("not supported in CSV"), "{err}");
    }
}
