//! Line protocol: any body is split into lines, each parsed or rejected
//! with a reason, and validation into Arrow batches never panics.
#![no_main]

use std::sync::Arc;

use fleetlake_ingest::Precision;
use fleetlake_ingest::line_protocol::parse_lines;
use fleetlake_ingest::validate::{DEFAULT_MAX_COLUMNS_PER_TABLE, SchemaSource, validate};
use libfuzzer_sys::fuzz_target;

struct NoSchemas;

impl SchemaSource for NoSchemas {
    fn table_schema(&self, _: &str, _: &str) -> Option<Arc<fleetlake_storage::schema::TableSchema>> {
        None
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    for line in parse_lines(body) {
        if let Err(e) = line.parsed {
            assert!(!e.to_string().is_empty());
        }
    }
    let v = validate(&NoSchemas, "fuzz", body, Precision::Nanosecond, 0, DEFAULT_MAX_COLUMNS_PER_TABLE)
        .expect("validation answers");
    assert_eq!(v.rows + v.rejected_total, parse_lines(body).count());
});
