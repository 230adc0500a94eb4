//! A line-protocol loader for any InfluxDB-compatible write URL.
//!
//! The data (a generator or a file, both [`LineSource`]s) is cut into bodies
//! of `batch` lines **before the clock starts**. To keep memory bounded for
//! big runs, bodies are prepared in rounds of at most `prepare_bytes`: a
//! round is prepared (untimed), sent by `concurrency` writers (timed), and
//! dropped before the next round is prepared. The reported rate is rows over
//! the sum of the timed sending phases; with one round (the default budget
//! holds 4,000 hosts × 3 h of cpu-only) the server never idles while the
//! loader prepares.
//!
//! Samples are the fields of the lines, counted by fleetlake's line-protocol
//! parser while preparing. A 503 is retried after its `Retry-After`
//! (seconds; 1 s when absent), up to 1,000 times per body; any other non-2xx
//! answer stops the load with the server's message.

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use fleetlake_sim::LineSource;

use crate::stats::{percentile, sorted, thousands};

/// How to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The full write URL, query string included
    /// (`http://127.0.0.1:8086/api/v3/write_lp?db=fleet`).
    pub url: String,
    pub concurrency: usize,
    /// Lines per request.
    pub batch: usize,
    /// Most bytes of bodies held at once (one round).
    pub prepare_bytes: usize,
    /// Samples per second offered: bodies start no sooner than this rate
    /// allows (from each round's start); `None` sends as fast as answered.
    pub rate: Option<f64>,
}

/// One prepared request body.
struct Body {
    data: Bytes,
    lines: u64,
    /// When to send it, in seconds from the round's start (0 unpaced).
    due_s: f64,
}

/// What a load measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadReport {
    pub url: String,
    pub concurrency: usize,
    pub batch: usize,
    pub rows: u64,
    /// Fields written (rows × fields per row).
    pub samples: u64,
    pub bytes: u64,
    /// Lines the parser refused while counting (the server will too).
    pub unparsable_lines: u64,
    pub requests: u64,
    pub retries_503: u64,
    pub rounds: u32,
    /// Largest round, bytes of bodies held at once.
    pub peak_prepared_bytes: u64,
    /// Seconds spent preparing bodies (not timed in the rates).
    pub prepare_s: f64,
    /// Seconds of sending: the sum of the rounds' wall times.
    pub send_s: f64,
    pub rows_per_s: f64,
    pub samples_per_s: f64,
    pub mb_per_s: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// The offered rate (`--rate`), samples/s.
    pub offered_samples_per_s: Option<f64>,
    /// Most seconds a body started after it was due (paced loads): above a
    /// request's latency, the server did not keep up with the offered rate.
    pub max_lag_s: f64,
    /// CPU seconds of this process while sending (loader cost).
    pub loader_cpu_s: Option<f64>,
}

impl LoadReport {
    pub fn print(&self) {
        println!(
            "{} rows, {} samples, {:.1} MB in {} requests ({} × 503 retried), {} round(s) of at most {:.0} MB prepared in {:.2} s",
            thousands(self.rows),
            thousands(self.samples),
            self.bytes as f64 / 1e6,
            thousands(self.requests),
            self.retries_503,
            self.rounds,
            self.peak_prepared_bytes as f64 / 1e6,
            self.prepare_s
        );
        println!(
            "sent in {:.2} s: {} rows/s, {} samples/s, {:.0} MB/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms{}",
            self.send_s,
            thousands(self.rows_per_s as u64),
            thousands(self.samples_per_s as u64),
            self.mb_per_s,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.latency_max_ms,
            self.loader_cpu_s.map_or(String::new(), |c| format!(
                "; loader CPU {c:.2} s ({:.0}% of a core)",
                100.0 * c / self.send_s.max(1e-9)
            ))
        );
        if let Some(rate) = self.offered_samples_per_s {
            println!(
                "offered {} samples/s; a body started at most {:.2} s after it was due",
                thousands(rate as u64),
                self.max_lag_s
            );
        }
        if self.unparsable_lines > 0 {
            println!(
                "warning: {} lines did not parse as line protocol",
                self.unparsable_lines
            );
        }
    }
}

/// Lines of a file (or any reader) as a [`LineSource`]. Blank lines and
/// comments are passed through; the server skips them.
pub struct ReaderLines<R> {
    reader: R,
}

impl<R: BufRead> ReaderLines<R> {
    pub fn new(reader: R) -> Self {
        Self { reader }
    }
}

impl<R: BufRead> LineSource for ReaderLines<R> {
    /// # Panics
    ///
    /// On a read error (the caller has no way to see one through the trait;
    /// a truncated load would be a wrong figure).
    fn next_chunk(&mut self, out: &mut Vec<u8>, max_lines: usize) -> usize {
        let mut n = 0;
        while n < max_lines {
            let before = out.len();
            match self.reader.read_until(b'\n', out) {
                Ok(0) => break,
                Ok(_) => {
                    if out.last() != Some(&b'\n') {
                        out.push(b'\n');
                    }
                    n += 1;
                }
                Err(e) => {
                    out.truncate(before);
                    panic!("reading line protocol: {e}");
                }
            }
        }
        n
    }

    fn state_bytes(&self) -> usize {
        0
    }
}

/// Loads the whole of `source`; see the module documentation.
///
/// # Errors
///
/// Invalid options, a connection error, or a non-2xx answer other than 503
/// (with the server's message and how many rows were accepted before).
pub fn load(
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    source: &mut dyn LineSource,
    opts: &LoadOptions,
) -> Result<LoadReport> {
    if opts.batch == 0 || opts.concurrency == 0 {
        bail!("batch and concurrency must be positive");
    }
    let mut report = LoadReport {
        url: opts.url.clone(),
        concurrency: opts.concurrency,
        batch: opts.batch,
        offered_samples_per_s: opts.rate,
        ..Default::default()
    };
    if opts.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("the rate must be a positive number of samples per second");
    }
    let mut latencies = Vec::new();
    let mut cpu = Some(0.0);
    loop {
        let t = Instant::now();
        let (bodies, prepared) = prepare_round(source, opts, &mut report);
        report.prepare_s += t.elapsed().as_secs_f64();
        if bodies.is_empty() {
            break;
        }
        report.rounds += 1;
        report.peak_prepared_bytes = report.peak_prepared_bytes.max(prepared);
        let cpu0 = process_cpu_s();
        let t = Instant::now();
        let round = runtime.block_on(send_round(client, &opts.url, opts.concurrency, bodies));
        report.send_s += t.elapsed().as_secs_f64();
        cpu = cpu
            .zip(process_cpu_s().zip(cpu0).map(|(b, a)| b - a))
            .map(|(x, y)| x + y);
        let round =
            round.map_err(|e| e.context(format!("after {} rows were accepted", report.rows)))?;
        report.rows += round.rows;
        report.requests += round.requests;
        report.retries_503 += round.retries_503;
        report.max_lag_s = report.max_lag_s.max(round.max_lag_s);
        latencies.extend(round.latencies_ms);
    }
    let lat = sorted(&latencies);
    let secs = report.send_s.max(1e-9);
    report.rows_per_s = report.rows as f64 / secs;
    report.samples_per_s = report.samples as f64 / secs;
    report.mb_per_s = report.bytes as f64 / 1e6 / secs;
    report.latency_p50_ms = percentile(&lat, 50.0);
    report.latency_p99_ms = percentile(&lat, 99.0);
    report.latency_max_ms = lat.last().copied().unwrap_or(f64::NAN);
    report.loader_cpu_s = cpu;
    Ok(report)
}

/// Bodies until the round holds `prepare_bytes` (at least one body).
fn prepare_round(
    source: &mut dyn LineSource,
    opts: &LoadOptions,
    report: &mut LoadReport,
) -> (Vec<Body>, u64) {
    let mut bodies = Vec::new();
    let mut held = 0u64;
    let mut offered = 0u64;
    while held < opts.prepare_bytes as u64 {
        let mut buf = Vec::new();
        let n = source.next_chunk(&mut buf, opts.batch);
        if n == 0 {
            break;
        }
        let (samples, bad) = count_samples(&buf);
        let due_s = opts.rate.map_or(0.0, |r| offered as f64 / r);
        offered += samples;
        report.samples += samples;
        report.unparsable_lines += bad;
        report.bytes += buf.len() as u64;
        held += buf.len() as u64;
        bodies.push(Body {
            data: Bytes::from(buf),
            lines: n as u64,
            due_s,
        });
    }
    (bodies, held)
}

/// (fields of the valid lines, invalid lines).
fn count_samples(body: &[u8]) -> (u64, u64) {
    let Ok(text) = std::str::from_utf8(body) else {
        return (0, body.iter().filter(|&&b| b == b'\n').count() as u64);
    };
    let (mut fields, mut bad) = (0u64, 0u64);
    for line in fleetlake_ingest::line_protocol::parse_lines(text) {
        match line.parsed {
            Ok(p) => fields += p.fields.len() as u64,
            Err(_) => bad += 1,
        }
    }
    (fields, bad)
}

#[derive(Default)]
struct RoundStats {
    rows: u64,
    requests: u64,
    retries_503: u64,
    latencies_ms: Vec<f64>,
    max_lag_s: f64,
}

async fn send_round(
    client: &reqwest::Client,
    url: &str,
    concurrency: usize,
    bodies: Vec<Body>,
) -> Result<RoundStats> {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    let start = tokio::time::Instant::now();
    for _ in 0..concurrency {
        let (bodies, next, failed) = (bodies.clone(), next.clone(), failed.clone());
        let (client, url) = (client.clone(), url.to_string());
        writers.spawn(async move {
            let mut st = RoundStats::default();
            while !failed.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let due = start + Duration::from_secs_f64(body.due_s);
                tokio::time::sleep_until(due).await;
                st.max_lag_s = st.max_lag_s.max(due.elapsed().as_secs_f64());
                if let Err(e) = post(&client, &url, body, &mut st).await {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
            Ok(st)
        });
    }
    let mut total = RoundStats::default();
    let mut first_error = None;
    while let Some(joined) = writers.join_next().await {
        match joined.context("writer task panicked")? {
            Ok(st) => {
                total.rows += st.rows;
                total.requests += st.requests;
                total.retries_503 += st.retries_503;
                total.max_lag_s = total.max_lag_s.max(st.max_lag_s);
                total.latencies_ms.extend(st.latencies_ms);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

async fn post(client: &reqwest::Client, url: &str, body: &Body, st: &mut RoundStats) -> Result<()> {
    const MAX_503: u32 = 1000;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let t = Instant::now();
        let resp = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body.data.clone())
            .send()
            .await
            .map_err(|e| anyhow!("POST {url}: {e}"))?;
        let status = resp.status();
        if status.is_success() {
            let _ = resp.bytes().await; // drained, so the connection is reused
            st.latencies_ms.push(t.elapsed().as_secs_f64() * 1e3);
            st.rows += body.lines;
            st.requests += 1;
            return Ok(());
        }
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && attempts < MAX_503 {
            let wait = retry_after(&resp);
            let _ = resp.bytes().await;
            st.retries_503 += 1;
            tokio::time::sleep(wait).await;
            continue;
        }
        let text = resp.text().await.unwrap_or_default();
        bail!(
            "POST {url} answered {status} (attempt {attempts}): {}",
            text.chars().take(1000).collect::<String>()
        );
    }
}

/// User + system CPU seconds of this process (Linux `/proc`, 100 ticks/s).
fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command (which may contain spaces) start after ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// How long a 503 asks the client to wait (`Retry-After`, seconds; 1 s when
/// absent or unreadable), kept within 10 ms .. 60 s.
pub fn retry_after(resp: &reqwest::Response) -> Duration {
    let secs = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(1.0);
    Duration::from_secs_f64(secs.clamp(0.01, 60.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_lines_and_samples() {
        let text = b"cpu,h=a u=1i,s=2i 1\ncpu,h=b u=3i 2\nnot line protocol\ncpu v=1";
        let mut src = ReaderLines::new(&text[..]);
        let mut out = Vec::new();
        assert_eq!(src.next_chunk(&mut out, 3), 3);
        assert_eq!(count_samples(&out), (3, 1));
        let mut rest = Vec::new();
        assert_eq!(src.next_chunk(&mut rest, 3), 1);
        assert_eq!(rest, b"cpu v=1\n");
        assert_eq!(src.next_chunk(&mut rest, 3), 0);
    }

    #[test]
    fn rounds_are_bounded() {
        let text = "cpu,h=a u=1i 1\n".repeat(100);
        let mut src = ReaderLines::new(text.as_bytes());
        let opts = LoadOptions {
            url: String::new(),
            concurrency: 1,
            batch: 10,
            prepare_bytes: 40,
            rate: None,
        };
        let mut report = LoadReport::default();
        let (bodies, held) = prepare_round(&mut src, &opts, &mut report);
        // 10 lines of 15 bytes per body: one body passes the 40-byte budget.
        assert_eq!(bodies.len(), 1);
        assert_eq!(held, 150);
        assert_eq!(report.samples, 10);
    }
}
