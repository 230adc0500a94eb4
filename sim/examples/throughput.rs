//! Generator throughput on one core, without criterion (and without building
//! the benches crate, which links DataFusion):
//!
//! ```text
//! cargo run --release -p fleetlake-sim --example throughput -- [hosts] [hours] [cpu-only|devops|fleet]
//! ```
//!
//! Sources are built (hosts drawn) before the clock starts. Peak memory:
//! run it under `/usr/bin/time -v`.

use std::time::Instant;

use fleetlake_sim::time::{HOUR_NS, SECOND_NS, TSBS_START_NS};
use fleetlake_sim::{CpuOnly, Devops, Fleet, FleetOptions, LineSource, SimConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let hosts: u64 = args.next().map_or(1000, |a| a.parse().expect("hosts"));
    let hours: f64 = args.next().map_or(3.0, |a| a.parse().expect("hours"));
    let only = args.next();
    let config = SimConfig::new(
        hosts,
        TSBS_START_NS,
        TSBS_START_NS + (hours * HOUR_NS as f64) as i64,
        10 * SECOND_NS,
        1,
    )
    .expect("config");
    println!("{hosts} hosts x {hours} h");
    for name in ["cpu-only", "devops", "fleet"] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let mut source: Box<dyn LineSource> = match name {
            "cpu-only" => Box::new(CpuOnly::new(&config)),
            "devops" => Box::new(Devops::new(&config)),
            _ => Box::new(
                Fleet::new(
                    &config,
                    &FleetOptions {
                        faults: 5,
                        ..Default::default()
                    },
                )
                .expect("fleet"),
            ),
        };
        let mut buf = Vec::with_capacity(5000 * 400);
        let (mut lines, mut bytes) = (0u64, 0u64);
        let t = Instant::now();
        loop {
            buf.clear();
            let n = source.next_chunk(&mut buf, 5000);
            if n == 0 {
                break;
            }
            lines += n as u64;
            bytes += buf.len() as u64;
            std::hint::black_box(&buf);
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{name:>17}: {lines} lines, {:.0} MB in {secs:.2} s = {:.2}M lines/s, {:.0} MB/s, {:.0} bytes/line",
            bytes as f64 / 1e6,
            lines as f64 / secs / 1e6,
            bytes as f64 / 1e6 / secs,
            bytes as f64 / lines.max(1) as f64
        );
    }
}
