//! End-to-end benchmark driver: TSBS `cpu-only` ingest and the "one host, one
//! hour" query against a real `fleetlake serve` process, over HTTP.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/e2e --fleetlake target/release/fleetlake \
//!     --hosts 1000 --hours 24 --concurrency 4 --batch 5000 --seed 1 --queries 20
//! ```
//!
//! Steps:
//! 1. Dry run of the generator alone (bodies built, then dropped): its own rate.
//! 2. Start the server on a fresh directory; a generator thread fills a bounded
//!    channel with bodies of `--batch` lines; `--concurrency` writers POST them
//!    to `/api/v3/write_lp`, retrying 503s after `Retry-After`.
//! 3. Flush; check the row count; run the single-groupby-1-1-1 query
//!    `--queries` times (random host and 1 h window, seeded) and compare every
//!    answer with the per-minute max recomputed here from the generator.
//! 4. `EXPLAIN ANALYZE` of one host's hour: bytes_scanned / persisted bytes.
//! 5. With `--compact` (issue 4; the server then runs with
//!    `--compaction-interval 0`, so nothing compacts in the background;
//!    replaced files go once no query reads them, the default): six TSBS
//!    queries (`tsbs.rs`), `--query-runs`
//!    each; a restart, so that the compaction runs in a fresh process whose
//!    memory is its own (`--no-restart` skips it); `POST
//!    /api/v1/admin/compact`, timed, with the server's RSS sampled; bytes per
//!    sample of what is left; steps 3 and 4 again; the six queries again,
//!    every answer compared with its run before.
//! 6. With `--victoria-metrics PATH`, after fleetlake has stopped: the same
//!    lines into VictoriaMetrics (`victoria.rs`) through the same loader;
//!    its data directory once flushed and settled, and after a forced merge.
//!
//! ```text
//! target/release/e2e --fleetlake target/release/fleetlake --hosts 4000 --hours 3 \
//!     --compact --victoria-metrics /usr/bin/victoria-metrics
//! ```
//!
//! Exit status: 0 when every step succeeded and every check held; 1 on an
//! HTTP error (other than 503s, which are retried) or a failed start; 2 when
//! only a check failed (row counts, a wrong query answer). Missing the
//! pruning target is reported, not a failure.
//!
//! The data follow /work/shared/tsbs-devops.md: per-host tags drawn once, ten
//! integer random walks (uniform start in [0,100), Normal(0,1) steps, clamped to
//! [0,100]), 10 s interval from 2016-01-01T00:00:00Z, epoch-major order. Every
//! host has its own PRNG stream (splitmix64 + Box-Muller), so one host can be
//! regenerated on its own for checking answers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use clap::Parser;
use serde_json::Value;

mod compaction;
mod tsbs;

use fleetlake_benches::victoria;

const START_NS: i64 = 1_451_606_400_000_000_000; // 2016-01-01T00:00:00Z
const INTERVAL_NS: i64 = 10_000_000_000;
const MINUTE_NS: i64 = 60_000_000_000;
const HOUR_NS: i64 = 3_600_000_000_000;
const EPOCHS_PER_HOUR: u64 = (HOUR_NS / INTERVAL_NS) as u64;
const DB: &str = "fleet";

/// `key=` prefixes of the ten cpu fields, with the separating commas.
const FIELD_KEYS: [&str; 10] = [
    "usage_user=",
    ",usage_system=",
    ",usage_idle=",
    ",usage_nice=",
    ",usage_iowait=",
    ",usage_irq=",
    ",usage_softirq=",
    ",usage_steal=",
    ",usage_guest=",
    ",usage_guest_nice=",
];

const REGIONS: [(&str, &[&str]); 9] = [
    (
        "us-east-1",
        &["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1e"],
    ),
    ("us-west-1", &["us-west-1a", "us-west-1b"]),
    ("us-west-2", &["us-west-2a", "us-west-2b", "us-west-2c"]),
    ("eu-west-1", &["eu-west-1a", "eu-west-1b", "eu-west-1c"]),
    ("eu-central-1", &["eu-central-1a", "eu-central-1b"]),
    ("ap-southeast-1", &["ap-southeast-1a", "ap-southeast-1b"]),
    ("ap-southeast-2", &["ap-southeast-2a", "ap-southeast-2b"]),
    ("ap-northeast-1", &["ap-northeast-1a", "ap-northeast-1c"]),
    ("sa-east-1", &["sa-east-1a", "sa-east-1b", "sa-east-1c"]),
];
const OS: [&str; 3] = ["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"];
const ARCH: [&str; 2] = ["x64", "x86"];
const TEAM: [&str; 4] = ["SF", "NYC", "LON", "CHI"];
const SERVICE_ENV: [&str; 3] = ["production", "staging", "test"];

#[derive(Debug, Clone, Parser)]
#[command(
    name = "e2e",
    about = "End-to-end TSBS cpu-only benchmark of a fleetlake server (ingest, one-host query, pruning)"
)]
struct Args {
    /// Path of the fleetlake binary (default: `fleetlake` next to this executable).
    #[arg(long)]
    fleetlake: Option<PathBuf>,
    /// Number of simulated hosts.
    #[arg(long, default_value_t = 1000)]
    hosts: u64,
    /// Hours of data (8,640 rows per host per day at 10 s).
    #[arg(long, default_value_t = 24)]
    hours: u64,
    /// Concurrent HTTP writers.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Lines per write request.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Seed of the data and of the query choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of one-host-one-hour queries.
    #[arg(long, default_value_t = 20)]
    queries: usize,
    /// Server data directory (must be empty or absent); default: a fresh temp dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Passed to `fleetlake serve --flush-bytes`.
    #[arg(long)]
    flush_bytes: Option<u64>,
    /// Passed to `fleetlake serve --memory-budget`.
    #[arg(long)]
    memory_budget: Option<u64>,
    /// Keep the temp data directory (it is always kept on failure).
    #[arg(long)]
    keep: bool,
    /// Skip the generator-only dry run.
    #[arg(long)]
    no_dry_run: bool,
    /// Print the first N generated lines and exit (no server).
    #[arg(long, value_name = "N")]
    print_lines: Option<usize>,
    /// Measure compaction: TSBS queries, a forced compaction (time, rows/s,
    /// peak RSS), bytes per sample, the queries again with answers compared.
    #[arg(long)]
    compact: bool,
    /// Runs of each TSBS query of the `--compact` suite (median reported).
    #[arg(long, default_value_t = 10)]
    query_runs: usize,
    /// Compact in the server that loaded and queried the data, instead of
    /// restarting it first (its allocator then hides part of the peak).
    #[arg(long)]
    no_restart: bool,
    /// Passed to `fleetlake serve --compaction-memory-limit`.
    #[arg(long)]
    compaction_memory_limit: Option<u64>,
    /// Passed to `fleetlake serve --compaction-target-rows`.
    #[arg(long)]
    compaction_target_rows: Option<u64>,
    /// VictoriaMetrics binary (e.g. /usr/bin/victoria-metrics): after
    /// fleetlake, load the same lines into it and report its disk size.
    #[arg(long, value_name = "PATH")]
    victoria_metrics: Option<PathBuf>,
}

// ---------------------------------------------------------------- PRNG

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// splitmix64 with a cached second Box-Muller normal.
#[derive(Clone)]
struct Rng {
    state: u64,
    spare: Option<f64>,
}

impl Rng {
    fn new(seed: u64) -> Self {
        Self {
            state: seed,
            spare: None,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in 0..n.
    fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        self.spare = Some(r * theta.sin());
        r * theta.cos()
    }
}

// ---------------------------------------------------------------- data

/// One simulated host: its line-protocol prefix (measurement and tags) and
/// its ten random walks, driven by its own PRNG stream.
struct Host {
    prefix: Vec<u8>,
    rng: Rng,
    values: [f64; 10],
}

impl Host {
    fn new(seed: u64, id: u64) -> Self {
        let mut rng = Rng::new(mix64(
            seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ mix64(id.wrapping_add(0x6A09_E667)),
        ));
        let (region, zones) = REGIONS[rng.below(REGIONS.len() as u64) as usize];
        let datacenter = rng.pick(zones);
        let rack = rng.below(100);
        let os = rng.pick(&OS);
        let arch = rng.pick(&ARCH);
        let team = rng.pick(&TEAM);
        let service = rng.below(20);
        let service_version = rng.below(2);
        let env = rng.pick(&SERVICE_ENV);
        let prefix = format!(
            "cpu,hostname=host_{id},region={region},datacenter={datacenter},rack={rack},os={os},arch={arch},team={team},service={service},service_version={service_version},service_environment={env} "
        )
        .into_bytes();
        let mut values = [0.0; 10];
        for v in &mut values {
            *v = rng.uniform() * 100.0;
        }
        Self {
            prefix,
            rng,
            values,
        }
    }

    /// Advances every walk one tick.
    fn step(&mut self) {
        for v in &mut self.values {
            *v = (*v + self.rng.normal()).clamp(0.0, 100.0);
        }
    }

    /// The emitted (integer part) value of field `i`.
    fn int(&self, i: usize) -> u8 {
        self.values[i] as u8
    }
}

/// Streams the dataset in bodies of `batch` lines to `sink(body, lines)`;
/// stops early when the sink returns false. Returns (lines, bytes) produced.
fn generate(
    seed: u64,
    hosts: u64,
    epochs: u64,
    batch: usize,
    mut sink: impl FnMut(Vec<u8>, usize) -> bool,
) -> (u64, u64) {
    let nums: Vec<Vec<u8>> = (0..=100).map(|i: u32| i.to_string().into_bytes()).collect();
    let mut all: Vec<Host> = (0..hosts).map(|h| Host::new(seed, h)).collect();
    let line_estimate = all.iter().map(|h| h.prefix.len()).max().unwrap_or(0) + 200;
    let capacity = batch * line_estimate;
    let mut buf = Vec::with_capacity(capacity);
    let (mut in_buf, mut lines, mut bytes) = (0usize, 0u64, 0u64);
    for e in 0..epochs {
        let ts = (START_NS + e as i64 * INTERVAL_NS).to_string();
        for h in &mut all {
            if e > 0 {
                h.step();
            }
            buf.extend_from_slice(&h.prefix);
            for (i, key) in FIELD_KEYS.iter().enumerate() {
                buf.extend_from_slice(key.as_bytes());
                buf.extend_from_slice(&nums[h.int(i) as usize]);
                buf.push(b'i');
            }
            buf.push(b' ');
            buf.extend_from_slice(ts.as_bytes());
            buf.push(b'\n');
            in_buf += 1;
            if in_buf == batch {
                let body = std::mem::replace(&mut buf, Vec::with_capacity(capacity));
                lines += in_buf as u64;
                bytes += body.len() as u64;
                in_buf = 0;
                if !sink(body, batch) {
                    return (lines, bytes);
                }
            }
        }
    }
    if in_buf > 0 {
        lines += in_buf as u64;
        bytes += buf.len() as u64;
        sink(buf, in_buf);
    }
    (lines, bytes)
}

/// Independent answer of the one-host query: regenerates host `id` alone and
/// returns (minute start ns, max usage_user) for rows in [t0, t1).
fn expected_minute_max(seed: u64, id: u64, total_epochs: u64, t0: i64, t1: i64) -> Vec<(i64, i64)> {
    let mut host = Host::new(seed, id);
    let mut bins: BTreeMap<i64, i64> = BTreeMap::new();
    for e in 0..total_epochs {
        let t = START_NS + e as i64 * INTERVAL_NS;
        if t >= t1 {
            break;
        }
        if e > 0 {
            host.step();
        }
        if t >= t0 {
            let minute = t.div_euclid(MINUTE_NS) * MINUTE_NS; // date_bin origin: the Unix epoch
            let v = host.int(0) as i64;
            let m = bins.entry(minute).or_insert(v);
            *m = (*m).max(v);
        }
    }
    bins.into_iter().collect()
}

// ---------------------------------------------------------------- time

use fleetlake_benches::stats::{median, percentile, thousands, truncate};
use fleetlake_time::{parse_rfc3339, rfc3339};

// ---------------------------------------------------------------- stats

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Parses the value of a DataFusion metric as printed in plans: raw numbers
/// (`1234`), counts (`1.23 K`, `4.56 M`, `1.20 B` = billion) and sizes
/// (`1.2 MB`, `512.0 B`, `3 KiB`). Returns (value, was_formatted).
fn parse_metric_value(s: &str) -> Option<(f64, bool)> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let num_text = &s[..end];
    let num: f64 = num_text.parse().ok()?;
    let decimals = num_text.split_once('.').map(|(_, f)| f.len()).unwrap_or(0);
    let rest = &s[end..];
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let unit_len = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let unit = &rest[..unit_len];
    let scale = match unit {
        "" => 1.0,
        "K" | "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "KB" | "KiB" => 1024.0,
        "MB" | "MiB" => 1024.0 * 1024.0,
        "GB" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TB" | "TiB" => 1024.0f64.powi(4),
        // human_readable_count writes billions as "1.23 B"; human_readable_size
        // writes small sizes as "123.0 B" (whole bytes).
        "B" if decimals == 2 || num.fract() != 0.0 => 1e9,
        "B" => 1.0,
        _ => 1.0, // a following word, not a unit
    };
    Some((num * scale, !unit.is_empty() || decimals > 0))
}

// ---------------------------------------------------------------- process

fn read_proc_cpu_secs(pid: &str, ticks: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

fn read_proc_status_kb(pid: &str, key: &str) -> Option<u64> {
    fleetlake_benches::server::proc_status_kb(pid.parse().ok()?, key)
}

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn shell_quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// The last 20 lines of a server log.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The server child process; SIGKILLed on drop unless stopped gracefully.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(bin: &Path, data_dir: &Path, log: &Path, args: &Args) -> Result<Self> {
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut extra: Vec<String> = Vec::new();
        if let Some(n) = args.flush_bytes {
            extra.extend(["--flush-bytes".into(), n.to_string()]);
        }
        if let Some(n) = args.memory_budget {
            extra.extend(["--memory-budget".into(), n.to_string()]);
        }
        if args.compact {
            // Compaction only when asked; garbage collection as configured
            // by default (replaced files go once no query reads them).
            extra.extend(["--compaction-interval", "0"].map(String::from));
        }
        if let Some(n) = args.compaction_memory_limit {
            extra.extend(["--compaction-memory-limit".into(), n.to_string()]);
        }
        if let Some(n) = args.compaction_target_rows {
            extra.extend(["--compaction-target-rows".into(), n.to_string()]);
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let (child, url) =
            fleetlake_benches::server::spawn(bin, data_dir, &extra, &[], Stdio::from(log_file))
                .map_err(|e| anyhow!("{e:#}; log:\n{}", log_tail(log)))?;
        Ok(Self { child, url })
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// SIGTERM, then wait (the server flushes on shutdown); SIGKILL after 120 s.
    fn stop(&mut self) -> Result<std::process::ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.pid()).status();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Ok(self.child.wait()?);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------- HTTP

async fn sql(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    format: &str,
) -> Result<(String, Duration)> {
    let body = serde_json::json!({"sql": query, "db": DB, "format": format});
    let t = Instant::now();
    let resp = client
        .post(format!("{base}/api/v1/sql"))
        .json(&body)
        .send()
        .await
        .with_context(|| format!("sending SQL: {query}"))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .with_context(|| format!("reading the answer of: {query}"))?;
    let elapsed = t.elapsed();
    if status != reqwest::StatusCode::OK {
        bail!(
            "SQL answered HTTP {status}: {}\n  query: {query}",
            truncate(&text, 2000)
        );
    }
    Ok((text, elapsed))
}

async fn sql_rows(
    client: &reqwest::Client,
    base: &str,
    query: &str,
) -> Result<(Vec<serde_json::Map<String, Value>>, Duration)> {
    let (text, elapsed) = sql(client, base, query, "json").await?;
    let rows: Vec<serde_json::Map<String, Value>> =
        serde_json::from_str(&text).with_context(|| {
            format!(
                "the answer is not a JSON array of objects: {}\n  query: {query}",
                truncate(&text, 500)
            )
        })?;
    Ok((rows, elapsed))
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| u as i64))
            .or_else(|| {
                let f = n.as_f64()?;
                (f.fract() == 0.0).then_some(f as i64)
            }),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[derive(Default)]
struct WriterStats {
    rows: u64,
    requests: u64,
    retries_503: u64,
    latencies_ms: Vec<f64>,
    waited_for_body: Duration,
}

struct LoadResult {
    wall: Duration,
    stats: WriterStats,
    generator_busy: Duration,
    generator_blocked: Duration,
    server_cpu: Option<f64>,
    client_cpu: Option<f64>,
}

/// Sends the dataset to `url` (a line-protocol write endpoint) and measures
/// the process `pid` that serves it.
async fn load(
    args: &Args,
    client: &reqwest::Client,
    url: String,
    pid: String,
    epochs: u64,
    ticks: f64,
) -> Result<LoadResult> {
    let (tx, rx) = tokio::sync::mpsc::channel::<(Bytes, usize)>(args.concurrency * 2);
    let (seed, hosts, batch) = (args.seed, args.hosts, args.batch);
    let failed = Arc::new(AtomicBool::new(false));
    let server_cpu0 = read_proc_cpu_secs(&pid, ticks);
    let client_cpu0 = read_proc_cpu_secs("self", ticks);
    let started = Instant::now();
    let generator = std::thread::spawn(move || {
        let t = Instant::now();
        let mut blocked = Duration::ZERO;
        generate(seed, hosts, epochs, batch, |body, lines| {
            let t = Instant::now();
            let ok = tx.blocking_send((Bytes::from(body), lines)).is_ok();
            blocked += t.elapsed();
            ok
        });
        (t.elapsed(), blocked)
    });
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (rx, client, url, failed) = (rx.clone(), client.clone(), url.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut st = WriterStats::default();
            loop {
                if failed.load(Ordering::Relaxed) {
                    return Ok(st);
                }
                let t = Instant::now();
                let item = rx.lock().await.recv().await;
                st.waited_for_body += t.elapsed();
                let Some((body, lines)) = item else {
                    return Ok(st);
                };
                let mut attempts = 0u32;
                loop {
                    attempts += 1;
                    let t = Instant::now();
                    let resp = client
                        .post(&url)
                        .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                        .body(body.clone())
                        .send()
                        .await;
                    let resp = match resp {
                        Ok(r) => r,
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            return Err(anyhow!("write request failed: {e}"));
                        }
                    };
                    let status = resp.status();
                    if status.is_success() {
                        // Drain the (empty) body so the connection is reused.
                        let _ = resp.bytes().await;
                        st.latencies_ms.push(ms(t.elapsed()));
                        st.rows += lines as u64;
                        st.requests += 1;
                        break;
                    }
                    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && attempts < 1000 {
                        let wait = fleetlake_benches::load::retry_after(&resp);
                        let _ = resp.bytes().await;
                        st.retries_503 += 1;
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    let text = resp.text().await.unwrap_or_default();
                    failed.store(true, Ordering::Relaxed);
                    return Err(anyhow!(
                        "write answered HTTP {status} (attempt {attempts}): {}",
                        truncate(&text, 1000)
                    ));
                }
            }
        }));
    }
    let mut total = WriterStats::default();
    let mut first_error = None;
    for task in tasks {
        match task.await.context("writer task panicked")? {
            Ok(st) => {
                total.rows += st.rows;
                total.requests += st.requests;
                total.retries_503 += st.retries_503;
                total.latencies_ms.extend(st.latencies_ms);
                total.waited_for_body += st.waited_for_body;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let wall = started.elapsed();
    drop(rx); // unblocks the generator if the writers stopped early
    let (generator_busy, generator_blocked) = generator
        .join()
        .map_err(|_| anyhow!("generator thread panicked"))?;
    if let Some(e) = first_error {
        return Err(e);
    }
    let server_cpu = read_proc_cpu_secs(&pid, ticks)
        .zip(server_cpu0)
        .map(|(b, a)| b - a);
    let client_cpu = read_proc_cpu_secs("self", ticks)
        .zip(client_cpu0)
        .map(|(b, a)| b - a);
    Ok(LoadResult {
        wall,
        stats: total,
        generator_busy,
        generator_blocked,
        server_cpu,
        client_cpu,
    })
}

/// A random window start: uniform in [start, end − 1 h), whole seconds (TSBS style).
fn random_window(rng: &mut Rng, hours: u64) -> i64 {
    let span_s = hours.saturating_sub(1) * 3600;
    if span_s == 0 {
        return START_NS;
    }
    START_NS + rng.below(span_s) as i64 * 1_000_000_000
}

fn one_host_query(host: u64, t0: i64) -> String {
    format!(
        "SELECT date_bin(INTERVAL '1 minute', time) AS minute, max(usage_user) FROM cpu WHERE hostname = 'host_{host}' AND time >= '{}' AND time < '{}' GROUP BY minute ORDER BY minute",
        rfc3339(t0),
        rfc3339(t0 + HOUR_NS)
    )
}

/// The pruning-related metrics of a scan line of an `EXPLAIN ANALYZE` plan.
fn scan_summary(line: &str) -> String {
    let Some(start) = line.find("metrics=[") else {
        return truncate(line.trim(), 300);
    };
    let inner = &line[start + "metrics=[".len()..];
    let inner = inner.rfind(']').map(|e| &inner[..e]).unwrap_or(inner);
    let keep = |name: &str| {
        name == "output_rows"
            || name == "bytes_scanned"
            || name == "files_opened"
            || name.starts_with("files_ranges_pruned")
            || name.starts_with("row_groups_pruned_statistics")
            || name.starts_with("page_index_rows_pruned")
    };
    inner
        .split(", ")
        .filter(|m| m.split_once('=').is_some_and(|(k, _)| keep(k.trim())))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Compares the server's rows with the recomputed answer; None when equal.
fn compare_answer(
    rows: &[serde_json::Map<String, Value>],
    expected: &[(i64, i64)],
) -> Option<String> {
    let mut got = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let minute = row
            .get("minute")
            .and_then(Value::as_str)
            .and_then(parse_rfc3339);
        let value = row
            .iter()
            .find(|(k, _)| k.as_str() != "minute")
            .and_then(|(_, v)| as_i64(v));
        match (minute, value) {
            (Some(m), Some(v)) => got.push((m, v)),
            _ => {
                return Some(format!(
                    "row {i} is not (minute, integer max): {}",
                    Value::Object(row.clone())
                ));
            }
        }
    }
    if got.len() != expected.len() {
        return Some(format!("{} rows, expected {}", got.len(), expected.len()));
    }
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        if g != e {
            return Some(format!(
                "row {i}: got ({}, {}), expected ({}, {})",
                rfc3339(g.0),
                g.1,
                rfc3339(e.0),
                e.1
            ));
        }
    }
    None
}

// ---------------------------------------------------------------- main

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("e2e: FAILED: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run(args: Args) -> Result<i32> {
    if args.hosts == 0 || args.hours == 0 || args.concurrency == 0 || args.batch == 0 {
        bail!("--hosts, --hours, --concurrency and --batch must be positive");
    }
    let command_line = std::env::args()
        .map(|a| shell_quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    let nproc = command_output("nproc", &[]).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into())
    });
    let arch =
        command_output("uname", &["-m"]).unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let ticks: f64 = command_output("getconf", &["CLK_TCK"])
        .and_then(|s| s.parse().ok())
        .unwrap_or(100.0);
    if let Some(n) = args.print_lines {
        let epochs = args.hours * EPOCHS_PER_HOUR;
        let mut left = n;
        generate(args.seed, args.hosts, epochs, args.batch, |body, _| {
            for line in body.split_inclusive(|&b| b == b'\n').take(left) {
                print!("{}", String::from_utf8_lossy(line));
                left -= 1;
            }
            left > 0
        });
        return Ok(0);
    }
    let bin = match &args.fleetlake {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("fleetlake"),
    };
    if !bin.is_file() {
        bail!(
            "fleetlake binary not found at {} (pass --fleetlake PATH)",
            bin.display()
        );
    }

    let epochs = args.hours * EPOCHS_PER_HOUR;
    let total_rows = epochs * args.hosts;
    println!("fleetlake e2e benchmark (TSBS cpu-only)");
    println!("command:  {command_line}");
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loadavg: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    println!(
        "machine:  nproc={nproc} arch={arch} loadavg(1/5/15 min)={}",
        loadavg.join(" ")
    );
    println!("server:   {}", bin.display());
    println!(
        "dataset:  {} hosts x {} h at 10 s = {} rows, {} samples; seed {}; {} lines/request, {} writers",
        args.hosts,
        args.hours,
        thousands(total_rows),
        thousands(total_rows * 10),
        args.seed,
        args.batch,
        args.concurrency
    );

    // 1. The generator alone.
    let mut gen_rate = None;
    if !args.no_dry_run {
        let t = Instant::now();
        let (lines, bytes) = generate(args.seed, args.hosts, epochs, args.batch, |body, _| {
            std::hint::black_box(&body);
            true
        });
        let secs = t.elapsed().as_secs_f64();
        gen_rate = Some(lines as f64 / secs);
        println!();
        println!("[generator dry run]");
        println!(
            "  {} lines, {:.1} MB in {secs:.2} s: {} lines/s, {:.0} MB/s, {:.0} bytes/line",
            thousands(lines),
            bytes as f64 / 1e6,
            thousands((lines as f64 / secs) as u64),
            bytes as f64 / 1e6 / secs,
            bytes as f64 / lines.max(1) as f64
        );
    }

    // 2. Server and load.
    let (data_dir, temp) = match &args.data_dir {
        Some(d) => {
            if d.exists() && std::fs::read_dir(d)?.next().is_some() {
                bail!(
                    "--data-dir {} is not empty; the benchmark needs a fresh directory",
                    d.display()
                );
            }
            (d.clone(), false)
        }
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos();
            (
                std::env::temp_dir().join(format!("fleetlake-e2e-{}-{nanos}", std::process::id())),
                true,
            )
        }
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let log = data_dir.join("server.log");
    let result = bench(
        &args, &bin, &data_dir, &log, epochs, total_rows, gen_rate, ticks,
    )
    .await;
    match &result {
        Ok(0) if temp && !args.keep => {
            let _ = std::fs::remove_dir_all(&data_dir);
        }
        _ => println!(
            "data dir kept: {} (server log: {})",
            data_dir.display(),
            log.display()
        ),
    }
    result
}

/// Failed checks and HTTP errors; from the flush on, an HTTP error is
/// recorded and the remaining steps still run.
#[derive(Default)]
struct Outcome {
    failures: Vec<String>,
    http_errors: Vec<String>,
}

/// Storage figures of table `cpu` at one point of the run.
#[derive(Default, Clone)]
struct Storage {
    files: Option<i64>,
    /// Bytes of the live files, as the catalog records them.
    bytes: Option<i64>,
    /// Bytes of every `.parquet` object under the store directory.
    on_disk_parquet: u64,
    on_disk_files: u64,
    /// `du -sb` of the store directory (Parquet and catalog).
    du_store: Option<u64>,
    /// `du -sb` of the store and the WAL: the data directory without logs.
    du_data: Option<u64>,
}

/// Everything the closing summary quotes.
#[derive(Default)]
struct Figures {
    samples: u64,
    ingest_rows_s: f64,
    before: Storage,
    after: Option<Storage>,
    one_host_before: f64,
    one_host_after: Option<f64>,
    compaction: Option<compaction::Measured>,
    suite_before: Vec<tsbs::Timed>,
    suite_after: Vec<tsbs::Timed>,
    answers_compared: usize,
    answer_diffs: Vec<String>,
    vm: Option<VmFigures>,
}

struct VmFigures {
    ingest_rows_s: f64,
    settled: (u64, u64, u64),
    merged: Option<(u64, u64, u64)>,
    peak_rss_mb: Option<f64>,
}

/// (files, bytes) of the `.parquet` files under `dir`, recursively.
fn parquet_on_disk(dir: &Path) -> (u64, u64) {
    let (mut n, mut bytes) = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        let path = e.path();
        if meta.is_dir() {
            let (a, b) = parquet_on_disk(&path);
            n += a;
            bytes += b;
        } else if path.extension().is_some_and(|x| x == "parquet") {
            n += 1;
            bytes += meta.len();
        }
    }
    (n, bytes)
}

async fn storage(
    client: &reqwest::Client,
    base: &str,
    data_dir: &Path,
    samples: u64,
    out: &mut Outcome,
) -> Storage {
    let mut s = Storage::default();
    match sql_rows(
        client,
        base,
        "SELECT sum(files) AS files, sum(persisted_rows) AS persisted_rows, sum(persisted_bytes) AS b, sum(buffered_rows) AS buffered_rows FROM system.tables WHERE \"table\" = 'cpu'",
    )
    .await
    {
        Ok((rows, _)) => {
            let get = |k: &str| rows.first().and_then(|r| r.get(k)).and_then(as_i64);
            s.files = get("files");
            s.bytes = get("b");
            let show = |v: Option<i64>| v.map(|v| thousands(v as u64)).unwrap_or("?".into());
            println!(
                "  cpu: {} files, {} persisted rows, {} buffered rows, {} Parquet bytes = {:.3} bytes/sample",
                show(s.files),
                show(get("persisted_rows")),
                show(get("buffered_rows")),
                show(s.bytes),
                s.bytes.unwrap_or(0) as f64 / samples as f64
            );
        }
        Err(e) => {
            println!("  system.tables: ERROR {}", one_line(&e));
            out.http_errors
                .push(format!("system.tables: {}", one_line(&e)));
        }
    }
    let store = data_dir.join("store");
    (s.on_disk_files, s.on_disk_parquet) = parquet_on_disk(&store);
    s.du_store = victoria::du_sb(&store);
    let wal = data_dir.join("wal");
    s.du_data = s.du_store.zip(victoria::du_sb(&wal)).map(|(a, b)| a + b);
    println!(
        "  data directory: du -sb store + wal = {} bytes = {:.3} bytes/sample = {:.3}x the live Parquet",
        s.du_data.map(thousands).unwrap_or("?".into()),
        s.du_data.unwrap_or(0) as f64 / samples as f64,
        s.du_data.unwrap_or(0) as f64 / s.bytes.unwrap_or(0).max(1) as f64
    );
    println!(
        "  on disk: {} .parquet files, {} bytes = {:.3} bytes/sample; du -sb {} (Parquet + catalog) = {} bytes = {:.3} bytes/sample",
        s.on_disk_files,
        thousands(s.on_disk_parquet),
        s.on_disk_parquet as f64 / samples as f64,
        store.display(),
        s.du_store.map(thousands).unwrap_or("?".into()),
        s.du_store.unwrap_or(0) as f64 / samples as f64
    );
    s
}

async fn count_rows(client: &reqwest::Client, base: &str, total_rows: u64, out: &mut Outcome) {
    match sql_rows(client, base, "SELECT count(*) AS n FROM cpu").await {
        Ok((rows, elapsed)) => {
            let count = rows.first().and_then(|r| r.get("n")).and_then(as_i64);
            let ok = count == Some(total_rows as i64);
            println!(
                "  SELECT count(*) FROM cpu = {} ({:.1} ms){}",
                count.map(|n| thousands(n as u64)).unwrap_or("?".into()),
                ms(elapsed),
                if ok { ", as expected" } else { ", WRONG" }
            );
            if !ok {
                out.failures
                    .push(format!("count(*) = {count:?}, expected {total_rows}"));
            }
        }
        Err(e) => {
            println!("  SELECT count(*) FROM cpu: ERROR {}", one_line(&e));
            out.http_errors.push(format!("count(*): {}", one_line(&e)));
        }
    }
}

/// single-groupby-1-1-1 `--queries` times, every answer checked against the
/// generator. Returns the median time.
async fn one_host_queries(
    args: &Args,
    client: &reqwest::Client,
    base: &str,
    epochs: u64,
    out: &mut Outcome,
) -> f64 {
    println!("[query] single-groupby-1-1-1: one host, one hour, max(usage_user) per minute");
    let mut qrng = Rng::new(mix64(args.seed ^ 0x7175_6572_7900_0001));
    let mut times = Vec::new();
    let mut wrong: Vec<String> = Vec::new();
    let mut example = None;
    for i in 0..args.queries {
        let host = qrng.below(args.hosts);
        let t0 = random_window(&mut qrng, args.hours);
        let q = one_host_query(host, t0);
        let rows = match sql(client, base, &q, "json")
            .await
            .and_then(|(text, elapsed)| {
                times.push(ms(elapsed));
                serde_json::from_str::<Vec<serde_json::Map<String, Value>>>(&text).with_context(
                    || {
                        format!(
                            "the answer is not a JSON array of objects: {}",
                            truncate(&text, 500)
                        )
                    },
                )
            }) {
            Ok(rows) => rows,
            Err(e) => {
                println!("  query {i}: ERROR {}", one_line(&e));
                out.http_errors.push(format!("query {i}: {}", one_line(&e)));
                break;
            }
        };
        let expected = expected_minute_max(args.seed, host, epochs, t0, t0 + HOUR_NS);
        if let Some(diff) = compare_answer(&rows, &expected) {
            wrong.push(format!("query {i} (host_{host}, {}): {diff}", rfc3339(t0)));
        }
        if example.is_none() {
            example = Some((q, rows.len(), rows.first().cloned()));
        }
    }
    let checked = times.len();
    let first = times.first().copied();
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    if let Some((q, n, row)) = &example {
        println!("  e.g. {q}");
        println!(
            "       -> {n} rows, first {}",
            row.clone().map(Value::Object).unwrap_or(Value::Null)
        );
    }
    println!(
        "  {} queries: median {:.2} ms, p95 {:.2} ms, min {:.2} ms, max {:.2} ms, first {:.2} ms (client-measured, JSON)",
        times.len(),
        median(&sorted),
        percentile(&sorted, 95.0),
        sorted.first().copied().unwrap_or(f64::NAN),
        sorted.last().copied().unwrap_or(f64::NAN),
        first.unwrap_or(f64::NAN)
    );
    if wrong.is_empty() {
        println!("  answers checked against the regenerated host data: {checked}/{checked} exact");
    } else {
        println!("  WRONG ANSWERS: {} of {checked}", wrong.len());
        for w in wrong.iter().take(5) {
            println!("    {w}");
        }
        out.failures
            .push(format!("{} wrong query answers", wrong.len()));
    }
    median(&sorted)
}

/// `EXPLAIN ANALYZE` of one host's hour: bytes scanned of `persisted_bytes`.
async fn pruning(
    args: &Args,
    client: &reqwest::Client,
    base: &str,
    epochs: u64,
    persisted_bytes: Option<i64>,
    out: &mut Outcome,
) {
    let phost = 7.min(args.hosts - 1);
    let pt0 = if args.hours >= 7 {
        START_NS + 6 * HOUR_NS
    } else {
        START_NS
    };
    let pq = format!(
        "SELECT * FROM cpu WHERE hostname = 'host_{phost}' AND time >= '{}' AND time < '{}'",
        rfc3339(pt0),
        rfc3339(pt0 + HOUR_NS)
    );
    println!("[pruning] EXPLAIN ANALYZE {pq}");
    match sql_rows(client, base, &format!("EXPLAIN ANALYZE {pq}")).await {
        Ok((plan_rows, explain_time)) => {
            let mut scanned = 0.0;
            let mut occurrences = 0;
            let mut approximate = false;
            let mut scan_metrics = Vec::new();
            for row in &plan_rows {
                let plan = row.get("plan").and_then(Value::as_str).unwrap_or("");
                for line in plan.lines() {
                    let mut rest = line;
                    while let Some(pos) = rest.find("bytes_scanned=") {
                        rest = &rest[pos + "bytes_scanned=".len()..];
                        if let Some((v, formatted)) = parse_metric_value(rest) {
                            scanned += v;
                            occurrences += 1;
                            approximate |= formatted;
                        }
                    }
                    if line.contains("DataSourceExec") || line.contains("ParquetExec") {
                        scan_metrics.push(scan_summary(line));
                    }
                }
            }
            println!("  explain analyze took {:.1} ms", ms(explain_time));
            for m in &scan_metrics {
                println!("  scan: {m}");
            }
            if occurrences == 0 {
                println!(
                    "  no bytes_scanned metric in the plan (plan types: {:?})",
                    plan_rows
                        .iter()
                        .filter_map(|r| r.get("plan_type"))
                        .collect::<Vec<_>>()
                );
                out.failures
                    .push("no bytes_scanned metric in EXPLAIN ANALYZE".into());
            } else if let Some(pb) = persisted_bytes {
                let pct = scanned / pb.max(1) as f64 * 100.0;
                println!(
                    "  bytes_scanned {}{} over {occurrences} metric(s) / {} persisted bytes = {pct:.3}% (target < 2%: {})",
                    if approximate { "≈" } else { "" },
                    thousands(scanned as u64),
                    thousands(pb as u64),
                    if pct < 2.0 { "met" } else { "MISSED" }
                );
            }
        }
        Err(e) => {
            println!("  ERROR {}", one_line(&e));
            out.http_errors
                .push(format!("explain analyze: {}", one_line(&e)));
        }
    }
    let expected_pcount = EPOCHS_PER_HOUR.min(epochs) as i64;
    match sql_rows(
        client,
        base,
        &pq.replacen("SELECT *", "SELECT count(*) AS n", 1),
    )
    .await
    {
        Ok((rows, _)) => {
            let pcount = rows.first().and_then(|r| r.get("n")).and_then(as_i64);
            println!(
                "  rows matching: {} (expected {expected_pcount})",
                pcount.map(|n| n.to_string()).unwrap_or("?".into()),
            );
            if pcount != Some(expected_pcount) {
                out.failures.push(format!(
                    "pruning query matched {pcount:?} rows, expected {expected_pcount}"
                ));
            }
        }
        Err(e) => {
            println!("  rows matching: ERROR {}", one_line(&e));
            out.http_errors
                .push(format!("count of the pruning query: {}", one_line(&e)));
        }
    }
}

/// Prints what the load achieved.
fn report_load(args: &Args, lr: &LoadResult, gen_rate: Option<f64>, server: &str) {
    let st = &lr.stats;
    let secs = lr.wall.as_secs_f64();
    let mut lat = st.latencies_ms.clone();
    lat.sort_by(f64::total_cmp);
    println!(
        "  {} rows in {secs:.2} s: {} rows/s, {} samples/s",
        thousands(st.rows),
        thousands((st.rows as f64 / secs) as u64),
        thousands((st.rows as f64 * 10.0 / secs) as u64)
    );
    println!(
        "  {} requests; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; 503 retries: {}",
        st.requests,
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(f64::NAN),
        st.retries_503
    );
    let idle = st.waited_for_body.as_secs_f64() / (secs * args.concurrency as f64) * 100.0;
    println!(
        "  generator: busy {:.2} s ({:.0}% of wall), blocked on a full channel {:.2} s; writers idle waiting for a body: {idle:.1}%{}",
        (lr.generator_busy - lr.generator_blocked).as_secs_f64(),
        (lr.generator_busy - lr.generator_blocked).as_secs_f64() / secs * 100.0,
        lr.generator_blocked.as_secs_f64(),
        gen_rate
            .map(|r| format!(
                " (dry-run rate {:.1}x the achieved ingest rate)",
                r / (st.rows as f64 / secs)
            ))
            .unwrap_or_default()
    );
    if let (Some(s), Some(c)) = (lr.server_cpu, lr.client_cpu) {
        println!(
            "  CPU during load: {server} {s:.1} s ({:.2} cores avg), e2e process {c:.1} s ({:.2} cores avg)",
            s / secs,
            c / secs
        );
    }
}

#[allow(clippy::too_many_arguments)]
async fn bench(
    args: &Args,
    bin: &Path,
    data_dir: &Path,
    log: &Path,
    epochs: u64,
    total_rows: u64,
    gen_rate: Option<f64>,
    ticks: f64,
) -> Result<i32> {
    let mut server = Server::start(bin, data_dir, log, args)?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(args.concurrency + 2)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(600))
        .build()?;
    let base = server.url.clone();
    let samples = total_rows * 10;
    let mut out = Outcome::default();
    let mut fig = Figures {
        samples,
        ..Figures::default()
    };

    println!();
    println!("[ingest] {base}, data dir {}", data_dir.display());
    let lr = load(
        args,
        &client,
        format!("{base}/api/v3/write_lp?db={DB}&precision=nanosecond"),
        server.pid(),
        epochs,
        ticks,
    )
    .await?;
    report_load(args, &lr, gen_rate, "server");
    let (rows, secs) = (lr.stats.rows, lr.wall.as_secs_f64());
    fig.ingest_rows_s = rows as f64 / secs;
    if rows != total_rows {
        out.failures
            .push(format!("ingested {rows} rows, expected {total_rows}"));
    }

    // 3. Flush, counts, the one-host query.
    let t = Instant::now();
    let resp = client
        .post(format!("{base}/api/v1/admin/flush"))
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status != reqwest::StatusCode::OK {
        bail!("flush answered HTTP {status}: {}", truncate(&text, 1000));
    }
    let flush_secs = t.elapsed().as_secs_f64();
    println!("  flush: {flush_secs:.2} s ({})", text.trim());
    println!(
        "  ingest + final flush: {:.2} s: {} rows/s, {} samples/s (acked and persisted)",
        secs + flush_secs,
        thousands((rows as f64 / (secs + flush_secs)) as u64),
        thousands((rows as f64 * 10.0 / (secs + flush_secs)) as u64)
    );
    if let Some(kb) = read_proc_status_kb(&server.pid(), "VmHWM:") {
        println!("  server peak RSS: {:.0} MB", kb as f64 / 1024.0);
    }

    println!();
    println!("[storage]");
    fig.before = storage(&client, &base, data_dir, samples, &mut out).await;
    count_rows(&client, &base, total_rows, &mut out).await;
    println!();
    fig.one_host_before = one_host_queries(args, &client, &base, epochs, &mut out).await;
    // 4. Pruning.
    println!();
    pruning(args, &client, &base, epochs, fig.before.bytes, &mut out).await;

    // 5. Compaction.
    if args.compact {
        let run = Run {
            args,
            bin,
            data_dir,
            epochs,
            total_rows,
            ticks,
        };
        compaction_steps(&run, &client, &mut server, &mut fig, &mut out).await?;
    }

    // Shut down.
    let t = Instant::now();
    let status = server.stop()?;
    println!();
    println!(
        "[shutdown] server exited {status} after {:.2} s",
        t.elapsed().as_secs_f64()
    );
    if !status.success() {
        out.failures.push(format!("server exit status {status}"));
    }

    // 6. The peer.
    if let Some(vm_bin) = &args.victoria_metrics {
        match victoria_steps(
            args, vm_bin, &client, data_dir, epochs, total_rows, ticks, gen_rate,
        )
        .await
        {
            Ok(vm) => fig.vm = Some(vm),
            Err(e) => {
                println!("  VictoriaMetrics: ERROR {}", one_line(&e));
                out.http_errors
                    .push(format!("VictoriaMetrics: {}", one_line(&e)));
            }
        }
    }

    if args.compact || args.victoria_metrics.is_some() {
        summary(&fig);
    }

    println!();
    if out.failures.is_empty() && out.http_errors.is_empty() {
        println!("RESULT: ok");
        return Ok(0);
    }
    println!("RESULT: FAILED");
    for f in out.http_errors.iter().chain(&out.failures) {
        println!("  - {}", truncate(f, 400));
    }
    Ok(if out.http_errors.is_empty() { 2 } else { 1 })
}

/// What the steps after the load share.
struct Run<'a> {
    args: &'a Args,
    bin: &'a Path,
    data_dir: &'a Path,
    epochs: u64,
    total_rows: u64,
    ticks: f64,
}

/// Step 5. Errors only when the server cannot be restarted; anything else
/// is recorded in `out` and the remaining steps run.
async fn compaction_steps(
    run: &Run<'_>,
    client: &reqwest::Client,
    server: &mut Server,
    fig: &mut Figures,
    out: &mut Outcome,
) -> Result<()> {
    let Run {
        args,
        bin,
        data_dir,
        epochs,
        total_rows,
        ticks,
    } = *run;
    let suite = tsbs::suite(args.seed, args.hosts, args.hours, args.query_runs);
    println!();
    println!(
        "[tsbs queries before compaction] {} runs each, CSV answers",
        args.query_runs
    );
    for q in &suite {
        println!("  {}: e.g. {}", q.name, q.sql[0]);
    }
    fig.suite_before = tsbs::run_suite(client, &server.url, &suite).await;
    tsbs::print_suite("before", &fig.suite_before);

    if !args.no_restart {
        println!();
        println!("[restart] so that the compaction's memory is its own");
        let t = Instant::now();
        let status = server.stop()?;
        *server = Server::start(bin, data_dir, &data_dir.join("server-restarted.log"), args)?;
        println!(
            "  stopped ({status}) and listening again after {:.2} s; idle RSS {:.0} MB",
            t.elapsed().as_secs_f64(),
            read_proc_status_kb(&server.pid(), "VmRSS:").unwrap_or(0) as f64 / 1024.0
        );
    }
    let base = server.url.as_str();

    println!();
    println!("[compaction] POST /api/v1/admin/compact");
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "  loadavg before: {}",
        loadavg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    match compaction::compact(client, base, &server.pid(), ticks).await {
        Ok(m) => {
            let input_rows = m.input_rows();
            let wall = m.wall.as_secs_f64();
            println!(
                "  {:.2} s wall: {} input files ({} rows, {} bytes) -> {} output files ({} rows); {} rows/s, {} samples/s",
                wall,
                m.sum("input_files"),
                thousands(input_rows),
                thousands(fig.before.bytes.unwrap_or(0) as u64),
                m.sum("output_files"),
                thousands(m.sum("output_rows")),
                thousands((input_rows as f64 / wall) as u64),
                thousands((input_rows as f64 * 10.0 / wall) as u64)
            );
            if let Some(c) = m.cpu_secs {
                println!(
                    "  server CPU during the request: {c:.1} s ({:.2} cores avg)",
                    c / wall
                );
            }
            println!(
                "  server RSS: {:.0} MB before, peak {:.0} MB during ({}; {} samples) = +{:.0} MB; compaction memory limit {} MB",
                m.rss_before_mb,
                m.rss_peak_mb,
                if m.peak_from_hwm {
                    "VmHWM after resetting it"
                } else {
                    "highest 20 ms sample"
                },
                m.samples,
                m.rss_peak_mb - m.rss_before_mb,
                args.compaction_memory_limit.unwrap_or(512 << 20) >> 20
            );
            println!("  answer: {}", truncate(&m.answer.to_string(), 2000));
            // A partition of one file is left alone: then nothing is read.
            if fig.before.files.unwrap_or(0) > 1 && input_rows != total_rows {
                out.failures.push(format!(
                    "compaction read {input_rows} rows, expected {total_rows}"
                ));
            }
            fig.compaction = Some(m);
        }
        Err(e) => {
            println!("  ERROR {}", one_line(&e));
            out.http_errors.push(format!("compact: {}", one_line(&e)));
        }
    }
    match sql(
        client,
        base,
        "SELECT * FROM system.compactions ORDER BY started",
        "csv",
    )
    .await
    {
        Ok((text, _)) => {
            println!("  system.compactions:");
            for line in text.lines() {
                println!("    {line}");
            }
        }
        Err(e) => out
            .http_errors
            .push(format!("system.compactions: {}", one_line(&e))),
    }

    println!();
    println!("[storage after compaction]");
    let after = storage(client, base, data_dir, total_rows * 10, out).await;
    if after
        .bytes
        .is_some_and(|b| b as u64 != after.on_disk_parquet)
    {
        println!(
            "  NOTE: live files hold {} bytes but {} are on disk (replaced files not deleted?)",
            thousands(after.bytes.unwrap_or(0) as u64),
            thousands(after.on_disk_parquet)
        );
    }
    if let Ok((text, _)) = sql(
        client,
        base,
        "SELECT day, path, rows, bytes, min_time, max_time FROM system.files WHERE \"table\" = 'cpu' ORDER BY path",
        "csv",
    )
    .await
    {
        for line in text.lines() {
            println!("    {line}");
        }
    }
    count_rows(client, base, total_rows, out).await;
    println!();
    fig.one_host_after = Some(one_host_queries(args, client, base, epochs, out).await);
    println!();
    pruning(args, client, base, epochs, after.bytes, out).await;
    fig.after = Some(after);

    println!();
    println!("[tsbs queries after compaction]");
    fig.suite_after = tsbs::run_suite(client, base, &suite).await;
    tsbs::print_suite("after", &fig.suite_after);
    fig.answers_compared = fig
        .suite_before
        .iter()
        .zip(&fig.suite_after)
        .map(|(b, a)| {
            b.answers
                .iter()
                .zip(&a.answers)
                .filter(|(x, y)| x.is_some() && y.is_some())
                .count()
        })
        .sum();
    fig.answer_diffs = tsbs::compare(&suite, &fig.suite_before, &fig.suite_after);
    if fig.answer_diffs.is_empty() {
        println!(
            "  answers before and after compaction: {} of {} compared, all identical",
            fig.answers_compared,
            suite.len() * args.query_runs
        );
    } else {
        println!(
            "  ANSWERS DIFFER before/after compaction: {} of {}",
            fig.answer_diffs.len(),
            fig.answers_compared
        );
        for d in fig.answer_diffs.iter().take(10) {
            println!("    {}", truncate(d, 1500));
        }
        out.failures.push(format!(
            "{} TSBS answers differ before/after compaction",
            fig.answer_diffs.len()
        ));
    }
    for t in fig.suite_before.iter().chain(&fig.suite_after) {
        for e in &t.errors {
            out.http_errors.push(format!("{}: {e}", t.name));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn victoria_steps(
    args: &Args,
    bin: &Path,
    client: &reqwest::Client,
    data_dir: &Path,
    epochs: u64,
    total_rows: u64,
    ticks: f64,
    gen_rate: Option<f64>,
) -> Result<VmFigures> {
    let samples = total_rows * 10;
    let vm_data = data_dir.join("victoria-metrics");
    let vm_log = data_dir.join("victoria-metrics.log");
    let version = command_output(
        "dpkg-query",
        &["-W", "-f", "${Version}", "victoria-metrics"],
    )
    .unwrap_or_else(|| "?".into());
    println!();
    println!(
        "[victoria-metrics] {} (Debian package {version}), data {}",
        bin.display(),
        vm_data.display()
    );
    let mut vm = victoria::Victoria::start(bin, &vm_data, &vm_log).await?;
    let lr = load(
        args,
        client,
        format!("{}/write", vm.url),
        vm.pid(),
        epochs,
        ticks,
    )
    .await?;
    report_load(args, &lr, gen_rate, "VictoriaMetrics");
    let ingest_rows_s = lr.stats.rows as f64 / lr.wall.as_secs_f64();
    if lr.stats.rows != total_rows {
        bail!(
            "VictoriaMetrics took {} rows, expected {total_rows}",
            lr.stats.rows
        );
    }
    vm.get(client, "/internal/force_flush").await?;
    let (_, waited, quiet) =
        victoria::settle(&vm_data, Duration::from_secs(20), Duration::from_secs(900)).await;
    println!(
        "  force_flush, then {:.0} s until du -sb was unchanged for 20 s{}",
        waited.as_secs_f64(),
        if quiet { "" } else { " (gave up waiting)" }
    );
    let settled = victoria::parts(&vm_data);
    victoria::describe("settled", settled, samples);
    match vm
        .count_samples(
            client,
            (START_NS + args.hours as i64 * HOUR_NS) / 1_000_000_000,
            args.hours,
        )
        .await
    {
        Ok(n) => {
            println!(
                "  samples counted by VictoriaMetrics: {}{}",
                thousands(n),
                if n == samples {
                    ", as expected"
                } else {
                    ", WRONG"
                }
            );
            if n != samples {
                bail!("VictoriaMetrics holds {n} samples, expected {samples}");
            }
        }
        Err(e) => println!("  sample count: ERROR {}", one_line(&e)),
    }
    // A forced merge is VictoriaMetrics's own "compaction": the fairest
    // counterpart of fleetlake's forced compaction.
    let merged = match vm
        .get(client, "/internal/force_merge?partition_prefix=2016_01")
        .await
    {
        Ok(_) => {
            let (_, waited, quiet) =
                victoria::settle(&vm_data, Duration::from_secs(20), Duration::from_secs(900)).await;
            println!(
                "  force_merge, then {:.0} s until du -sb was unchanged for 20 s{}",
                waited.as_secs_f64(),
                if quiet { "" } else { " (gave up waiting)" }
            );
            let p = victoria::parts(&vm_data);
            victoria::describe("after force_merge", p, samples);
            Some(p)
        }
        Err(e) => {
            println!("  force_merge: ERROR {}", one_line(&e));
            None
        }
    };
    let peak_rss_mb = vm.peak_rss_mb();
    if let Some(p) = peak_rss_mb {
        println!("  VictoriaMetrics peak RSS: {p:.0} MB");
    }
    let status = vm.stop()?;
    println!("  stopped: {status}");
    Ok(VmFigures {
        ingest_rows_s,
        settled,
        merged,
        peak_rss_mb,
    })
}

/// The figures of this run as a Markdown table (benches/README.md).
fn summary(fig: &Figures) {
    let per = |b: u64| b as f64 / fig.samples.max(1) as f64;
    println!();
    println!("[summary]");
    println!("| what | figure |");
    println!("|---|---|");
    println!(
        "| fleetlake durable HTTP ingest | {} rows/s ({} samples/s) |",
        thousands(fig.ingest_rows_s as u64),
        thousands(fig.ingest_rows_s as u64 * 10)
    );
    let b = &fig.before;
    println!(
        "| fleetlake before compaction: Parquet / du -sb store | {} files, {:.3} / {:.3} bytes/sample |",
        b.files.unwrap_or(0),
        per(b.bytes.unwrap_or(0) as u64),
        per(b.du_store.unwrap_or(0))
    );
    if let Some(a) = &fig.after {
        println!(
            "| fleetlake after compaction: Parquet / du -sb store | {} files, {:.3} / {:.3} bytes/sample |",
            a.files.unwrap_or(0),
            per(a.bytes.unwrap_or(0) as u64),
            per(a.du_store.unwrap_or(0))
        );
    }
    for (when, s) in [("before", Some(b)), ("after", fig.after.as_ref())] {
        let Some(s) = s else { continue };
        println!(
            "| fleetlake data directory {when} compaction: du -sb store + wal | {} bytes, {:.3} bytes/sample, {:.3}x the live Parquet |",
            thousands(s.du_data.unwrap_or(0)),
            per(s.du_data.unwrap_or(0)),
            s.du_data.unwrap_or(0) as f64 / s.bytes.unwrap_or(0).max(1) as f64
        );
    }
    if let Some(m) = &fig.compaction {
        let wall = m.wall.as_secs_f64();
        println!(
            "| compaction (forced, all files of the day) | {:.1} s, {} rows/s; server RSS {:.0} → peak {:.0} MB (+{:.0} MB) |",
            wall,
            thousands((m.input_rows() as f64 / wall) as u64),
            m.rss_before_mb,
            m.rss_peak_mb,
            m.rss_peak_mb - m.rss_before_mb
        );
    }
    if let Some(vm) = &fig.vm {
        println!(
            "| VictoriaMetrics ingest (acked in memory) | {} rows/s ({} samples/s) |",
            thousands(vm.ingest_rows_s as u64),
            thousands(vm.ingest_rows_s as u64 * 10)
        );
        let (t, d, i) = vm.settled;
        println!(
            "| VictoriaMetrics settled: du -sb (data / indexdb) | {:.3} ({:.3} / {:.3}) bytes/sample |",
            per(t),
            per(d),
            per(i)
        );
        if let Some((t, d, i)) = vm.merged {
            println!(
                "| VictoriaMetrics after force_merge | {:.3} ({:.3} / {:.3}) bytes/sample |",
                per(t),
                per(d),
                per(i)
            );
        }
        if let Some(a) = &fig.after {
            let ours = a.du_store.unwrap_or(0) as f64;
            let theirs = vm.merged.unwrap_or(vm.settled).0 as f64;
            println!(
                "| fleetlake after compaction / VictoriaMetrics (du -sb) | {:.2} |",
                ours / theirs
            );
        }
        if let Some(p) = vm.peak_rss_mb {
            println!("| VictoriaMetrics peak RSS | {p:.0} MB |");
        }
    }
    if !fig.suite_before.is_empty() {
        println!();
        println!("| query (median of runs) | before compaction | after | after / before |");
        println!("|---|---|---|---|");
        println!(
            "| single-groupby-1-1-1, JSON, checked | {:.2} ms | {} | {} |",
            fig.one_host_before,
            fig.one_host_after
                .map(|a| format!("{a:.2} ms"))
                .unwrap_or("-".into()),
            fig.one_host_after
                .map(|a| format!("{:.2}", a / fig.one_host_before))
                .unwrap_or("-".into())
        );
        for (b, a) in fig.suite_before.iter().zip(&fig.suite_after) {
            println!(
                "| {} | {:.2} ms | {:.2} ms | {:.2} |",
                b.name,
                b.median_ms(),
                a.median_ms(),
                a.median_ms() / b.median_ms()
            );
        }
        println!(
            "answers compared before/after: {}, differing: {}",
            fig.answers_compared,
            fig.answer_diffs.len()
        );
    }
}

/// An error chain on one line.
fn one_line(e: &anyhow::Error) -> String {
    truncate(&format!("{e:#}").replace('\n', " "), 600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values() {
        assert_eq!(parse_metric_value("1234, x"), Some((1234.0, false)));
        assert_eq!(parse_metric_value("1.23 K, x"), Some((1230.0, true)));
        assert_eq!(parse_metric_value("2.0 MB]"), Some((2.0 * 1048576.0, true)));
        assert_eq!(parse_metric_value("1.20 B"), Some((1.2e9, true)));
        assert_eq!(parse_metric_value("512.0 B"), Some((512.0, true)));
    }
}
