//! Label listing from the series index (issue 6, point 4): with 100,000
//! hosts in `cpu`, `label/hostname/values` and Grafana's
//! `tag_values(cpu, hostname)` must answer in under 50 ms end to end.
//!
//! ```text
//! cargo build --bin fleetlake --bin label_index     # or --release for both
//! target/debug/label_index --fleetlake target/debug/fleetlake --hosts 100000 --runs 20
//! ```
//!
//! Steps: start `fleetlake serve` on a temporary directory; write TSBS
//! cpu-only for `--hosts` hosts, two epochs (`fleetlake gen cpu-only
//! --hours 0.005 --url …`); then time, over HTTP, `--runs` times each:
//! - `GET /prometheus/api/v1/label/hostname/values` (the index),
//! - `POST /grafana/variable` with `tag_values(cpu, hostname)` (the index),
//! - `SELECT DISTINCT hostname FROM cpu ORDER BY 1` (the scan both used to be),
//!
//! with the data buffered, after a flush (Parquet plus series files), and in
//! a restarted server (the first request loads the series files). Each
//! answer's count is checked against `--hosts`.
//!
//! `--cpu` instead measures, in process, what the index adds to the write
//! path: per TSBS cpu row, validation (what every write did before) against
//! the indexing thread's work on the validated batches, over `--hosts` hosts
//! and two epochs in requests of 5,000 lines.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use clap::Parser;
use fleetlake_benches::server::Server;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
struct Args {
    /// The fleetlake binary.
    #[arg(long, default_value = "target/debug/fleetlake")]
    fleetlake: PathBuf,
    #[arg(long, default_value_t = 100_000)]
    hosts: usize,
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Measure the index's cost on the write path instead (no server).
    #[arg(long)]
    cpu: bool,
}

struct NoSchemas;

impl fleetlake_ingest::validate::SchemaSource for NoSchemas {
    fn table_schema(
        &self,
        _db: &str,
        _table: &str,
    ) -> Option<std::sync::Arc<fleetlake_storage::schema::TableSchema>> {
        None
    }
}

/// Validation vs indexing per row, on TSBS cpu-only lines.
fn cpu_cost(args: &Args) -> Result<()> {
    use fleetlake_ingest::Precision;
    use fleetlake_ingest::series_index::index_write;
    use fleetlake_ingest::validate::validate;
    use fleetlake_storage::series_index::SeriesIndex;
    let regions = ["us-east-1", "eu-west-1", "ap-southeast-2"];
    let mut bodies = Vec::new();
    let mut body = String::new();
    for epoch in 0..2i64 {
        for h in 0..args.hosts {
            let r = regions[h % 3];
            body.push_str(&format!(
                "cpu,hostname=host_{h},region={r},datacenter={r}a,rack={},os=Ubuntu16.04LTS,arch=x64,team=SF,service={},service_version=1,service_environment=production usage_user=58i,usage_system=2i,usage_idle=24i,usage_nice=61i,usage_iowait=22i,usage_irq=63i,usage_softirq=6i,usage_steal=44i,usage_guest=80i,usage_guest_nice=38i {}\n",
                h % 100,
                h % 20,
                1_451_606_400_000_000_000 + epoch * 10_000_000_000
            ));
            if (h + 1) % 5000 == 0 {
                bodies.push(std::mem::take(&mut body));
            }
        }
    }
    if !body.is_empty() {
        bodies.push(body);
    }
    let rows = 2 * args.hosts;
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..args.runs.max(1) {
        let t = Instant::now();
        let validated: Vec<_> = bodies
            .iter()
            .map(|b| validate(&NoSchemas, "fleet", b, Precision::Nanosecond, 0, usize::MAX))
            .collect::<Result<_, _>>()?;
        let v_ns = t.elapsed().as_nanos() as f64 / rows as f64;
        let mut idx = SeriesIndex::default();
        let t = Instant::now();
        for v in &validated {
            for w in &v.tables {
                index_write(&mut idx, &w.batch);
            }
        }
        let i_ns = t.elapsed().as_nanos() as f64 / rows as f64;
        ensure!(idx.len() == args.hosts, "{} series", idx.len());
        best = (best.0.min(v_ns), best.1.min(i_ns));
    }
    println!(
        "rows {rows}: validate {:.0} ns/row, index {:.0} ns/row (+{:.1}%), best of {}",
        best.0,
        best.1,
        100.0 * best.1 / best.0,
        args.runs.max(1)
    );
    Ok(())
}

/// One request; returns (elapsed, number of values in the answer).
async fn timed(c: &reqwest::Client, s: &Server, what: &str) -> Result<(Duration, usize)> {
    let started = Instant::now();
    let (status, body) = match what {
        "prometheus" => {
            let r = c
                .get(format!(
                    "{}/prometheus/api/v1/label/hostname/values?db=fleet",
                    s.url
                ))
                .send()
                .await?;
            (r.status(), r.bytes().await?)
        }
        "grafana" => {
            let r = c
                .post(format!("{}/grafana/variable", s.url))
                .json(&json!({"payload": {"target": "tag_values(cpu, hostname)"}}))
                .send()
                .await?;
            (r.status(), r.bytes().await?)
        }
        _ => {
            let r = c
                .post(format!("{}/api/v1/sql", s.url))
                .json(&json!({"db": "fleet", "format": "json",
                    "sql": "SELECT DISTINCT hostname FROM cpu ORDER BY 1"}))
                .send()
                .await?;
            (r.status(), r.bytes().await?)
        }
    };
    // The server's answer, not this client's JSON parsing, is what is timed.
    let elapsed = started.elapsed();
    ensure!(status.is_success(), "{what}: {status}");
    let v: Value = serde_json::from_slice(&body)?;
    let n = match what {
        "prometheus" => v["data"].as_array().map_or(0, Vec::len),
        _ => v.as_array().map_or(0, Vec::len),
    };
    Ok((elapsed, n))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn measure(c: &reqwest::Client, s: &Server, phase: &str, args: &Args) -> Result<()> {
    for what in ["prometheus", "grafana", "sql-scan"] {
        let (first, n) = timed(c, s, what).await?;
        ensure!(
            n == args.hosts,
            "{phase}/{what}: {n} values, expected {}",
            args.hosts
        );
        let mut t = Vec::new();
        for _ in 0..args.runs {
            t.push(timed(c, s, what).await?.0);
        }
        t.sort();
        println!(
            "| {phase} | {what} | {:.1} | {:.1} | {:.1} | {:.1} |",
            ms(first),
            ms(t[t.len() / 2]),
            ms(t[t.len() * 9 / 10]),
            ms(t[t.len() - 1]),
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.cpu {
        return cpu_cost(&args);
    }
    let tmp = std::env::temp_dir().join(format!("label_index_{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let s = Server::start(&args.fleetlake, &tmp, &[])?;
    let started = Instant::now();
    let st = Command::new(&args.fleetlake)
        .args(["gen", "cpu-only", "--hours", "0.005", "--url", &s.url])
        .args(["--hosts", &args.hosts.to_string()])
        .status()?;
    ensure!(st.success(), "gen failed");
    println!(
        "wrote {} hosts x 2 epochs in {:.1} s",
        args.hosts,
        started.elapsed().as_secs_f64()
    );
    println!("| data | request | first ms | median ms | p90 ms | max ms |");
    println!("|---|---|---:|---:|---:|---:|");
    measure(&c, &s, "buffered", &args).await?;
    let r = c
        .post(format!("{}/api/v1/admin/flush", s.url))
        .send()
        .await?;
    ensure!(r.status().is_success(), "flush: {}", r.status());
    measure(&c, &s, "flushed", &args).await?;
    s.stop()?;
    let s = Server::start(&args.fleetlake, &tmp, &[])?;
    measure(&c, &s, "restarted", &args).await?;
    s.stop()?;
    std::fs::remove_dir_all(&tmp)?;
    Ok(())
}
