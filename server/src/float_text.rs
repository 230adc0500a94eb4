//! Floats in text results: JSON has no literal for Infinity or NaN, and
//! Arrow's writers print them as `null` (JSON) or `inf` (CSV). Results
//! spell them as PostgreSQL does — `Infinity`, `-Infinity`, `NaN` — as
//! JSON strings and CSV fields, so a client tells them from SQL NULL
//! (which JSON results write as `null`).

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, FieldRef, Float32Type, Float64Type};
use arrow::error::ArrowError;
use arrow::json::writer::{Encoder, EncoderFactory, EncoderOptions, NullableEncoder};

/// The text of a float that has no JSON or CSV number.
pub(crate) fn non_finite(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("NaN")
    } else if v == f64::INFINITY {
        Some("Infinity")
    } else if v == f64::NEG_INFINITY {
        Some("-Infinity")
    } else {
        None
    }
}

/// JSON float columns with non-finite values as strings.
#[derive(Debug)]
pub struct JsonFloats;

enum Floats<'a> {
    F32(&'a arrow::array::Float32Array),
    F64(&'a arrow::array::Float64Array),
}

impl Encoder for Floats<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let mut buf = ryu::Buffer::new();
        let (wide, text) = match self {
            Floats::F32(a) => {
                let v = a.value(idx);
                (f64::from(v), v.is_finite().then(|| buf.format_finite(v)))
            }
            Floats::F64(a) => {
                let v = a.value(idx);
                (v, v.is_finite().then(|| buf.format_finite(v)))
            }
        };
        match (text, non_finite(wide)) {
            (Some(t), _) => out.extend_from_slice(t.as_bytes()),
            (None, Some(word)) => {
                out.push(b'"');
                out.extend_from_slice(word.as_bytes());
                out.push(b'"');
            }
            (None, None) => unreachable!("a float is finite or not"),
        }
    }
}

impl EncoderFactory for JsonFloats {
    fn make_default_encoder<'a>(
        &self,
        _field: &'a FieldRef,
        array: &'a dyn Array,
        _options: &'a EncoderOptions,
    ) -> Result<Option<NullableEncoder<'a>>, ArrowError> {
        let floats = match array.data_type() {
            DataType::Float32 => Floats::F32(array.as_primitive::<Float32Type>()),
            DataType::Float64 => Floats::F64(array.as_primitive::<Float64Type>()),
            _ => return Ok(None),
        };
        Ok(Some(NullableEncoder::new(
            Box::new(floats),
            array.nulls().cloned(),
        )))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::array::{ArrayRef, Float32Array, Float64Array, Int64Array};
    use arrow::record_batch::RecordBatch;

    /// Floats with every non-finite value and a NULL, and an integer column.
    pub(crate) fn batch() -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "x",
                Arc::new(Float64Array::from(vec![
                    Some(1.5),
                    Some(f64::INFINITY),
                    Some(f64::NEG_INFINITY),
                    Some(f64::NAN),
                    None,
                    Some(1e300),
                ])) as ArrayRef,
            ),
            (
                "y",
                Arc::new(Float32Array::from(vec![
                    Some(0.1),
                    None,
                    Some(f32::INFINITY),
                    Some(2.0),
                    Some(3.0),
                    Some(4.0),
                ])) as ArrayRef,
            ),
            (
                "n",
                Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5, 6])) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    #[test]
    fn json_spells_non_finite_floats_and_keeps_nulls() {
        let mut out = Vec::new();
        let mut w = arrow::json::writer::WriterBuilder::new()
            .with_explicit_nulls(true)
            .with_encoder_factory(Arc::new(JsonFloats))
            .build::<_, arrow::json::writer::LineDelimited>(&mut out);
        w.write(&batch()).unwrap();
        w.finish().unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.lines().nth(5).unwrap().starts_with(r#"{"x":1e300,"#),
            "{text}"
        );
        let rows: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let xs: Vec<String> = rows.iter().map(|r| r["x"].to_string()).collect();
        assert_eq!(
            xs,
            [
                "1.5",
                "\"Infinity\"",
                "\"-Infinity\"",
                "\"NaN\"",
                "null",
                // serde_json's own spelling of the 1e300 checked above.
                "1e+300"
            ]
        );
        assert_eq!(rows[0]["y"], 0.1);
        assert!(
            rows[1].as_object().unwrap().contains_key("y"),
            "{}",
            rows[1]
        );
        assert_eq!(rows[2]["y"], "Infinity");
    }
}
