//! The SQL front door: any text is answered, and what it lets through is
//! parsed and planned without overflowing the stack (run with the query
//! threads' 32 MiB stack: `RUST_MIN_STACK=33554432`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    if fleetlake_query::front_door::check_sql(sql).is_err() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let ctx = datafusion::prelude::SessionContext::new();
        if let Ok(df) = ctx.sql(sql).await {
            let _ = df.into_optimized_plan();
        }
    });
});
