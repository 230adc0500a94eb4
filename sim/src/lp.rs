//! Allocation-free line-protocol formatting into a byte buffer.
//!
//! Numbers go through `itoa` and `ryu` (stack buffers); nothing here touches
//! the heap beyond growing the output `Vec`.

/// Appends `v` in decimal.
#[inline]
pub fn push_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends `v` in decimal.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends an integer field value: `v` with the `i` suffix.
#[inline]
pub fn push_int(out: &mut Vec<u8>, v: i64) {
    push_i64(out, v);
    out.push(b'i');
}

/// Appends a float field value in the shortest form that reads back exactly.
///
/// `ryu` switches to exponent notation outside about [1e-5, 1e16); both
/// fleetlake's and InfluxDB's line-protocol parsers read that.
#[inline]
pub fn push_float(out: &mut Vec<u8>, v: f64) {
    debug_assert!(v.is_finite());
    out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
}

/// Appends a float rounded to `decimals` (at most 9) places, without an
/// exponent: for measured quantities (temperatures, percentages) whose noise
/// makes more digits meaningless, and which compress better short.
#[inline]
pub fn push_fixed(out: &mut Vec<u8>, v: f64, decimals: u32) {
    debug_assert!(decimals <= 9 && v.is_finite());
    let scale = 10i64.pow(decimals);
    let scaled = (v * scale as f64).round() as i64;
    if scaled < 0 {
        out.push(b'-');
    }
    let magnitude = scaled.unsigned_abs();
    push_u64(out, magnitude / scale as u64);
    out.push(b'.');
    if decimals == 0 {
        out.push(b'0');
        return;
    }
    let frac = magnitude % scale as u64;
    let mut digits = [b'0'; 9];
    let mut buf = itoa::Buffer::new();
    let text = buf.format(frac).as_bytes();
    let pad = decimals as usize - text.len();
    digits[pad..decimals as usize].copy_from_slice(text);
    out.extend_from_slice(&digits[..decimals as usize]);
}

/// Appends a string field value, quoted, escaping `"` and `\`.
#[inline]
pub fn push_str_field(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Appends a boolean field value.
#[inline]
pub fn push_bool(out: &mut Vec<u8>, v: bool) {
    out.push(if v { b't' } else { b'f' });
}

/// A timestamp formatted once and copied into every line of its epoch.
#[derive(Debug, Clone, Default)]
pub struct Timestamp {
    bytes: [u8; 24],
    len: u8,
}

impl Timestamp {
    pub fn new(ns: i64) -> Self {
        let mut buf = itoa::Buffer::new();
        let text = buf.format(ns).as_bytes();
        let mut bytes = [0; 24];
        bytes[..text.len()].copy_from_slice(text);
        Self {
            bytes,
            len: text.len() as u8,
        }
    }

    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers() {
        assert_eq!(s(|o| push_int(o, -42)), "-42i");
        assert_eq!(s(|o| push_u64(o, u64::MAX)), "18446744073709551615");
        assert_eq!(s(|o| push_float(o, 12.5)), "12.5");
        assert_eq!(s(|o| push_float(o, 3.0)), "3.0");
        assert_eq!(s(|o| push_fixed(o, 12.345, 2)), "12.35");
        assert_eq!(s(|o| push_fixed(o, 0.05, 1)), "0.1");
        assert_eq!(s(|o| push_fixed(o, 7.0, 3)), "7.000");
        assert_eq!(s(|o| push_fixed(o, -1.25, 1)), "-1.3");
        assert_eq!(s(|o| push_fixed(o, -0.004, 2)), "0.00");
        assert_eq!(s(|o| push_fixed(o, 9.0, 0)), "9.0");
        assert_eq!(s(|o| push_fixed(o, 1.000_000_001, 9)), "1.000000001");
        assert_eq!(
            Timestamp::new(1_451_606_400_000_000_000).as_bytes(),
            b"1451606400000000000"
        );
        assert_eq!(Timestamp::new(-5).as_bytes(), b"-5");
    }

    #[test]
    fn strings() {
        assert_eq!(s(|o| push_str_field(o, r#"a "b" \c"#)), r#""a \"b\" \\c""#);
        assert_eq!(s(|o| push_bool(o, false)), "f");
    }
}
