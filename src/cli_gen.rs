//! `fleetlake gen`: stream a simulated fleet's telemetry as line protocol to
//! stdout, a file, or a server's write API.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use fleetlake_sim::{
    CpuOnly, Devops, FaultKind, Fleet, FleetOptions, GroundTruth, LineSource, SimConfig,
    time::HOUR_NS,
};
use tokio::task::JoinSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UseCase {
    /// TSBS cpu-only: one `cpu` row per host per epoch.
    CpuOnly,
    /// TSBS devops: nine tables, 101 fields per host per epoch.
    Devops,
    /// A big-data fleet: hardware health and job telemetry, with --faults.
    Fleet,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// What to simulate.
    #[arg(value_enum)]
    pub use_case: UseCase,

    /// Number of hosts (host_0 … host_{N-1}).
    #[arg(long, env = "FLEETLAKE_GEN_HOSTS", default_value_t = 100)]
    pub hosts: u64,

    /// Time of the first epoch (RFC 3339).
    #[arg(long, env = "FLEETLAKE_GEN_START", default_value = "2026-01-01T00:00:00Z", value_parser = parse_time)]
    pub start: i64,

    /// End of the range, exclusive (RFC 3339). Default: --start plus --hours.
    #[arg(long, env = "FLEETLAKE_GEN_END", value_parser = parse_time, conflicts_with = "hours")]
    pub end: Option<i64>,

    /// Hours of data, when --end is not given (fractions allowed).
    #[arg(long, env = "FLEETLAKE_GEN_HOURS", default_value_t = 1.0)]
    pub hours: f64,

    /// Time between epochs (e.g. 10s, 1m).
    #[arg(long, env = "FLEETLAKE_GEN_INTERVAL", default_value = "10s", value_parser = fleetlake_time::parse_duration)]
    pub interval: Duration,

    /// Seed: the same seed and flags give the same bytes.
    #[arg(long, env = "FLEETLAKE_GEN_SEED", default_value_t = 1)]
    pub seed: u64,

    /// fleet only: number of faults to inject (0: a healthy fleet).
    #[arg(long, env = "FLEETLAKE_GEN_FAULTS", default_value_t = 0)]
    pub faults: u32,

    /// fleet only: the kinds of the faults, in turn (comma-separated):
    /// failing_disk, bad_dimm, thermal_throttling, flapping_nic, data_skew,
    /// straggler_host, flaky_host, queueing. Default: the first five.
    #[arg(long, env = "FLEETLAKE_GEN_FAULT_KINDS", value_delimiter = ',', value_parser = parse_fault_kind)]
    pub fault_kinds: Vec<FaultKind>,

    /// fleet only: write the ground truth of the injected faults (JSON) here.
    #[arg(long, env = "FLEETLAKE_GEN_TRUTH")]
    pub truth: Option<PathBuf>,

    /// Write to this file instead of stdout.
    #[arg(long, env = "FLEETLAKE_GEN_OUT", conflicts_with = "url")]
    pub out: Option<PathBuf>,

    /// Send to a server instead: POST <URL>/write?db=<DB> (InfluxDB v1 API;
    /// fleetlake, VictoriaMetrics and InfluxDB accept it).
    #[arg(long, env = "FLEETLAKE_GEN_URL")]
    pub url: Option<String>,

    /// Database to write to (with --url).
    #[arg(long, env = "FLEETLAKE_GEN_DB", default_value = "fleet")]
    pub db: String,

    /// Lines per request (with --url), or per chunk written.
    #[arg(long, env = "FLEETLAKE_GEN_BATCH", default_value_t = 5000)]
    pub batch: usize,

    /// Concurrent requests (with --url).
    #[arg(long, env = "FLEETLAKE_GEN_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
}

fn parse_fault_kind(s: &str) -> Result<FaultKind, String> {
    FaultKind::from_name(s.trim()).ok_or_else(|| {
        let names: Vec<&str> = FaultKind::EVERY.iter().map(|k| k.name()).collect();
        format!(
            "unknown fault kind {s:?}: expected one of {}",
            names.join(", ")
        )
    })
}

fn parse_time(s: &str) -> Result<i64, String> {
    fleetlake_time::parse_rfc3339(s)
        .ok_or_else(|| format!("invalid time {s:?}: expected RFC 3339 like 2026-01-01T00:00:00Z"))
}

/// The chosen generator; only the fleet has a ground truth.
enum Generator {
    CpuOnly(CpuOnly),
    Devops(Devops),
    Fleet(Box<Fleet>),
}

impl Generator {
    fn source(&mut self) -> &mut dyn LineSource {
        match self {
            Generator::CpuOnly(g) => g,
            Generator::Devops(g) => g,
            Generator::Fleet(g) => g.as_mut(),
        }
    }

    fn truth(&self) -> Option<GroundTruth> {
        match self {
            Generator::Fleet(g) => Some(g.ground_truth()),
            _ => None,
        }
    }
}

fn generator(args: &GenArgs) -> anyhow::Result<Generator> {
    if args.use_case != UseCase::Fleet
        && (args.faults > 0 || args.truth.is_some() || !args.fault_kinds.is_empty())
    {
        bail!("--faults, --fault-kinds and --truth apply to the fleet use case only");
    }
    if args.batch == 0 || args.concurrency == 0 {
        bail!("--batch and --concurrency must be positive");
    }
    if !(args.hours.is_finite() && args.hours > 0.0) {
        bail!("--hours must be positive");
    }
    let end = args
        .end
        .unwrap_or(args.start + (args.hours * HOUR_NS as f64) as i64);
    let interval_ns = i64::try_from(args.interval.as_nanos()).context("--interval too long")?;
    let config = SimConfig::new(args.hosts, args.start, end, interval_ns, args.seed)?;
    Ok(match args.use_case {
        UseCase::CpuOnly => Generator::CpuOnly(CpuOnly::new(&config)),
        UseCase::Devops => Generator::Devops(Devops::new(&config)),
        UseCase::Fleet => Generator::Fleet(Box::new(Fleet::new(
            &config,
            &FleetOptions {
                faults: args.faults,
                fault_kinds: args.fault_kinds.clone(),
                ..FleetOptions::default()
            },
        )?)),
    })
}

pub fn run(args: GenArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let mut generator = generator(&args)?;
    let started = Instant::now();
    let (lines, bytes) = match &args.url {
        Some(url) => {
            let (lines, bytes, g) = runtime.block_on(send(&args, url, generator))?;
            generator = g;
            (lines, bytes)
        }
        None => match write_local(&args, generator.source())? {
            Some(counts) => counts,
            // The reader went away (`fleetlake gen … | head`): nothing to report.
            None => return Ok(()),
        },
    };
    let secs = started.elapsed().as_secs_f64();
    let summary = format!(
        "{lines} rows, {:.1} MB in {secs:.2} s: {:.0} rows/s",
        bytes as f64 / 1e6,
        lines as f64 / secs.max(1e-9)
    );
    if args.url.is_some() {
        println!("{summary}");
    } else {
        eprintln!("{summary}");
    }
    if let Some(truth) = generator.truth() {
        match &args.truth {
            Some(path) => std::fs::write(path, truth.to_json())
                .with_context(|| format!("writing the ground truth to {}", path.display()))?,
            None if !truth.faults.is_empty() => {
                eprintln!(
                    "{} faults injected; pass --truth FILE to keep their ground truth",
                    truth.faults.len()
                );
            }
            None => {}
        }
    }
    Ok(())
}

/// To stdout or `--out`, through one reused chunk buffer. `None` when the
/// reader closed the pipe.
fn write_local(args: &GenArgs, source: &mut dyn LineSource) -> anyhow::Result<Option<(u64, u64)>> {
    let result = match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            fleetlake_sim::write_all(source, &mut w, args.batch).and_then(|r| w.flush().map(|_| r))
        }
        None => {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            fleetlake_sim::write_all(source, &mut w, args.batch).and_then(|r| w.flush().map(|_| r))
        }
    };
    match result {
        Ok(counts) => Ok(Some(counts)),
        // `fleetlake gen … | head` is a normal way to look at the data.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(None),
        Err(e) => Err(e).context("writing line protocol"),
    }
}

#[derive(Debug, Default)]
struct SendStats {
    rows: u64,
    requests: u64,
    retries_503: u64,
}

/// POSTs bodies of `--batch` lines with `--concurrency` requests in flight.
/// A generator thread fills a small bounded channel, so memory stays at a
/// few bodies whatever the dataset's size.
async fn send(
    args: &GenArgs,
    url: &str,
    mut generator: Generator,
) -> anyhow::Result<(u64, u64, Generator)> {
    let endpoint = format!("{}/write", url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(600))
        .build()?;
    let (tx, rx) = tokio::sync::mpsc::channel::<(Bytes, usize)>(args.concurrency * 2);
    let batch = args.batch;
    let producer = std::thread::spawn(move || {
        let mut bytes = 0u64;
        let mut buf = Vec::new();
        loop {
            let n = generator.source().next_chunk(&mut buf, batch);
            if n == 0 {
                break;
            }
            bytes += buf.len() as u64;
            let body = Bytes::from(std::mem::take(&mut buf));
            if tx.blocking_send((body, n)).is_err() {
                break; // the writers stopped on an error
            }
        }
        (bytes, generator)
    });

    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let failed = Arc::new(AtomicBool::new(false));
    let mut writers = JoinSet::new();
    for _ in 0..args.concurrency {
        let (rx, client, failed) = (rx.clone(), client.clone(), failed.clone());
        let (endpoint, db) = (endpoint.clone(), args.db.clone());
        writers.spawn(async move {
            let mut stats = SendStats::default();
            while !failed.load(Ordering::Relaxed) {
                let Some((body, lines)) = rx.lock().await.recv().await else {
                    break;
                };
                match post(&client, &endpoint, &db, body, &mut stats).await {
                    Ok(()) => stats.rows += lines as u64,
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            Ok(stats)
        });
    }
    let mut total = SendStats::default();
    let mut first_error = None;
    while let Some(joined) = writers.join_next().await {
        match joined.context("writer task panicked")? {
            Ok(s) => {
                total.rows += s.rows;
                total.requests += s.requests;
                total.retries_503 += s.retries_503;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    drop(rx); // unblocks the producer if the writers stopped early
    let (bytes, generator) = tokio::task::spawn_blocking(move || producer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("generator thread panicked"))?;
    if let Some(e) = first_error {
        return Err(e.context(format!("after {} rows were accepted", total.rows)));
    }
    println!(
        "{} requests to {endpoint}?db={}, {} retried after 503",
        total.requests, args.db, total.retries_503
    );
    Ok((total.rows, bytes, generator))
}

/// One write, retried while the server answers 503 (back-pressure), after
/// its `Retry-After`.
async fn post(
    client: &reqwest::Client,
    endpoint: &str,
    db: &str,
    body: Bytes,
    stats: &mut SendStats,
) -> anyhow::Result<()> {
    const MAX_503: u32 = 1000;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let resp = client
            .post(endpoint)
            .query(&[("db", db)])
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body.clone())
            .send()
            .await
            .with_context(|| format!("POST {endpoint}"))?;
        let status = resp.status();
        if status.is_success() {
            let _ = resp.bytes().await; // drained, so the connection is reused
            stats.requests += 1;
            return Ok(());
        }
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && attempts < MAX_503 {
            let wait = fleetlake_benches::load::retry_after(&resp);
            let _ = resp.bytes().await;
            stats.retries_503 += 1;
            tokio::time::sleep(wait).await;
            continue;
        }
        let text = resp.text().await.unwrap_or_default();
        bail!(
            "POST {endpoint} answered {status} (attempt {attempts}): {}",
            text.chars().take(1000).collect::<String>()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(
            parse_time("2016-01-01T00:00:00Z"),
            Ok(1_451_606_400_000_000_000)
        );
        assert_eq!(
            parse_time("2016-01-01T01:00:00+01:00"),
            Ok(1_451_606_400_000_000_000)
        );
        assert!(parse_time("yesterday").is_err());
    }
}
