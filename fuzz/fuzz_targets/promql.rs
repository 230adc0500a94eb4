//! PromQL: any text is parsed or refused (size, nesting, syntax) without a
//! panic or a stack overflow, and what parses formats back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(expr) = fleetlake_promql::query::parse(q) {
        let _ = expr.prettify();
    }
});
