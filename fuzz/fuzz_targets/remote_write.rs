//! Remote write: any body is decoded or refused; every line a decoded
//! request becomes parses as line protocol.
#![no_main]

use fleetlake_ingest::line_protocol::parse_line;
use fleetlake_ingest::remote_write::{Limits, decode, snappy, to_line_protocol};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::new(1 << 20);
    // As sent (snappy framing and all), and as a protobuf behind valid framing.
    for body in [data.to_vec(), snappy(data)] {
        if let Ok(req) = decode(&body, &limits) {
            let converted = to_line_protocol(&req);
            for line in converted.lines.lines() {
                parse_line(line).expect("a converted line parses");
            }
        }
    }
});
