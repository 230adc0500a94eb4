//! `fleetlake bench rules`: what rules cost a fleet's store under its own
//! ingest. A real server is started; `hosts` machines report the `fleet`
//! tables `heartbeat` and `cpu_thermal` (tags `hostname`, `datacenter`,
//! `rack`, `sku`) every `interval` in real time, after a backfill of
//! `history` so every window is full from the start. Then:
//!
//! 1. **Without rules**, once the server is done with the backfill
//!    (flushes, compaction), for `rounds` rule intervals: ingest throughput
//!    (rows ÷ the seconds spent sending each tick's rows) and server CPU.
//! 2. `rules` rules are installed one by one through `POST /api/v1/rules`
//!    (each request timed), plus one `eval = "on_write"`, `for = 0` probe
//!    rule whose webhook is this process.
//! 3. **With rules**, once the new states are filled from the tables
//!    (the time this takes, and rounds that closed meanwhile or began
//!    before the last of those closed, are reported apart) and a round
//!    closed after, for `rounds` intervals: the same
//!    ingest figures and CPU; each round's duration (from its grid instant
//!    to the end of its last evaluation, from `/metrics`); the streaming
//!    state's bytes and the server's RSS;
//!    and every `probe_every`, one row that makes a new probe host hot:
//!    the time from that write's 204 to its alert reaching the webhook.
//! 4. **Without rules again**, once every rule is deleted and its state
//!    dropped, for `rounds` intervals: the two phases without rules
//!    bracket the one with them (the store holds more data by then and
//!    the machine's speed drifts), and the ratio is to their mean.
//!
//! The rules cycle through ten shapes a fleet's operators write — per-host
//! and per-rack/datacenter thresholds, standard deviation, the z-score,
//! robust z-score and EWMA detectors, counter increase and staleness —
//! each with its own threshold.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use axum::extract::State;
use axum::http::StatusCode;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Value, json};

use crate::load::retry_after;
use crate::server::{Server, cpu_seconds, proc_status_kb};
use crate::stats::{percentile, sorted};

#[derive(Debug, Clone)]
pub struct RulesBench {
    /// The fleetlake binary to start.
    pub bin: PathBuf,
    pub hosts: u64,
    pub rules: usize,
    /// Every rule's `every`.
    pub every: Duration,
    /// How often each host reports.
    pub interval: Duration,
    /// Data written before the clock starts.
    pub history: Duration,
    /// Rule intervals measured without rules, and again with them.
    pub rounds: u32,
    pub concurrency: usize,
    /// Lines per write request.
    pub batch: usize,
    /// How often a probe row is written (on_write latency).
    pub probe_every: Duration,
    /// Extra `fleetlake serve` arguments.
    pub serve_args: Vec<String>,
}

/// One phase's ingest and CPU.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub seconds: f64,
    pub ticks: usize,
    pub rows: u64,
    /// Rows ÷ seconds spent sending them (the ingest path's throughput).
    pub rows_per_s: f64,
    /// Server CPU seconds ÷ wall seconds (1.0 = one core busy).
    pub cpu_cores: f64,
    /// Server CPU µs per row written (the rules' work included).
    pub cpu_us_per_row: f64,
    /// Ticks whose rows took longer to send than the interval.
    pub late_ticks: usize,
    /// Each tick's sending time (s) with its start, in seconds since the
    /// Unix epoch (the rule rounds fall on multiples of `every`).
    pub tick_secs: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RulesReport {
    pub hosts: u64,
    pub rules: usize,
    pub every_s: f64,
    pub cores: usize,
    pub without_rules: Phase,
    pub with_rules: Phase,
    /// Once the rules are deleted again.
    pub without_rules_after: Phase,
    /// with ÷ the mean of the two phases without.
    pub ingest_ratio: f64,
    /// CPU cores the rules added (over the mean of the phases without).
    pub rules_cpu_cores: f64,
    pub install_ms_p50: f64,
    pub install_ms_p99: f64,
    pub install_ms_max: f64,
    /// The server's own part of an install (planning, compiling,
    /// registering; `Server-Timing` check + install), without the
    /// definition's durable write.
    pub install_engine_ms_p50: f64,
    pub install_engine_ms_p99: f64,
    /// The definition's durable write (fsync'd object).
    pub install_store_ms_p50: f64,
    pub install_store_ms_p99: f64,
    pub streaming_rules: u64,
    /// Seconds from the last install until no state was left to fill.
    pub fill_s: f64,
    /// Rounds that closed from the last install until the first round
    /// after the fill (their rules waited for it), and rounds whose grid
    /// instant came before the last of those closed (they queued behind
    /// it).
    pub rounds_while_filling: Vec<f64>,
    pub rounds: Vec<f64>,
    pub round_s_p50: f64,
    pub round_s_p99: f64,
    pub round_s_max: f64,
    pub state_bytes: u64,
    pub rss_kb_without_rules: u64,
    pub rss_kb_with_rules: u64,
    pub probes_sent: usize,
    pub probes_alerted: usize,
    pub alert_latency_ms_p50: f64,
    pub alert_latency_ms_p99: f64,
    pub alert_latency_ms_max: f64,
    /// Evaluations finished while measuring with rules.
    pub evaluations: u64,
    /// Per phase of an evaluation (`/metrics`:
    /// `fleetlake_rules_evaluation_seconds_total`): milliseconds per
    /// evaluation, averaged over the phase with rules.
    pub evaluation_ms: Vec<(String, f64)>,
}

/// The evaluation phases `/metrics` reports.
const PHASES: [&str; 8] = [
    "queued", "drain", "lock", "pass", "answer", "sql", "apply", "record",
];

/// Seconds per evaluation phase and evaluations so far, from `/metrics`.
fn phase_seconds(text: &str) -> (Vec<f64>, f64) {
    let secs = PHASES
        .iter()
        .map(|p| {
            metric(
                text,
                &format!("fleetlake_rules_evaluation_seconds_total{{phase=\"{p}\"}}"),
            )
            .unwrap_or(0.0)
        })
        .collect();
    (
        secs,
        metric(text, "fleetlake_rules_evaluations_total").unwrap_or(0.0),
    )
}

/// A number in `[0, 1)` from `(a, b)`: the same every run.
fn unit(a: u64, b: u64) -> f64 {
    let mut z = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn tags(h: u64) -> String {
    let sku = ["g9", "g10", "g11"][(h % 3) as usize];
    format!(
        "hostname=host_{h},datacenter=dc{},rack=r{:05},sku={sku}",
        h / 2000,
        h / 40
    )
}

/// The rows host `h` reports at `tick` (a multiple of the interval, ns):
/// one `heartbeat` and one `cpu_thermal`. One host in a thousand runs hot.
fn host_lines(out: &mut String, h: u64, tick: u64, t_ns: i64) {
    use std::fmt::Write;
    let hot = h % 1000 == 7;
    let u = unit(h, tick);
    let temp = if hot { 86.0 } else { 48.0 } + 12.0 * u;
    let util = 30.0 + 40.0 * unit(h ^ 0x55, tick);
    let load = 4.0 + 8.0 * unit(h ^ 0xaa, tick);
    let throttles = if hot { tick } else { tick / 100 };
    let t = tags(h);
    let _ = writeln!(
        out,
        "heartbeat,{t} uptime_s={}i,load1={load:.3},cores=64i {t_ns}",
        tick * 10
    );
    let _ = writeln!(
        out,
        "cpu_thermal,{t} temp_c={temp:.3},freq_mhz={}i,base_mhz=2400i,throttle_count={throttles}i,util_pct={util:.3} {t_ns}",
        3000 - (u * 600.0) as i64
    );
}

/// Rule `i` of the mix (see the module docs).
fn rule(i: usize, every: &str) -> Value {
    let k = (i / 10) as f64;
    let w = |m: u32| format!("time > now() - INTERVAL '{m} minutes'");
    let sql = match i % 10 {
        0 => format!(
            "SELECT hostname, avg(temp_c) AS value FROM cpu_thermal WHERE {} GROUP BY hostname HAVING avg(temp_c) > {}",
            w(5),
            80.0 + k % 15.0
        ),
        1 => format!(
            "SELECT hostname, max(temp_c) AS value FROM cpu_thermal WHERE {} GROUP BY hostname HAVING max(temp_c) > {}",
            w(1),
            85.0 + k % 10.0
        ),
        2 => format!(
            "SELECT rack, avg(util_pct) AS value FROM cpu_thermal WHERE {} GROUP BY rack HAVING avg(util_pct) > {}",
            w(5),
            60.0 + k % 30.0
        ),
        3 => format!(
            "SELECT hostname, stddev(util_pct) AS value FROM cpu_thermal WHERE {} GROUP BY hostname HAVING stddev(util_pct) > {}",
            w(5),
            20.0 + k % 10.0
        ),
        4 => format!(
            "SELECT hostname, zscore(temp_c, time) AS value FROM cpu_thermal WHERE {} GROUP BY hostname HAVING zscore(temp_c, time) > {}",
            w(10),
            4.0 + (k % 10.0) / 10.0
        ),
        5 => format!(
            "SELECT hostname, staleness(time, now()) AS value FROM heartbeat WHERE {} GROUP BY hostname HAVING staleness(time, now()) > {}",
            w(5),
            60.0 + k % 60.0
        ),
        6 => format!(
            "SELECT datacenter, avg(load1) AS value FROM heartbeat WHERE {} GROUP BY datacenter HAVING avg(load1) > {}",
            w(5),
            10.0 + k % 5.0
        ),
        7 => format!(
            "SELECT hostname, increase(throttle_count, time) AS value FROM cpu_thermal WHERE {} GROUP BY hostname HAVING increase(throttle_count, time) > {}",
            w(10),
            30.0 + k % 20.0
        ),
        8 => format!(
            "SELECT hostname, ewma_deviation(util_pct, time, 0.3) AS value FROM cpu_thermal WHERE {} GROUP BY hostname HAVING ewma_deviation(util_pct, time, 0.3) > {}",
            w(5),
            5.0 + k % 5.0
        ),
        _ => format!(
            "SELECT hostname, robust_zscore(load1, time) AS value FROM heartbeat WHERE {} AND sku = '{}' GROUP BY hostname HAVING robust_zscore(load1, time) > {}",
            w(5),
            ["g9", "g10", "g11"][(i / 10) % 3],
            6.0 + k % 4.0
        ),
    };
    json!({
        "name": format!("fleet_{i:04}"),
        "kind": "alert",
        "every": every,
        "for": "1m",
        "sql": sql,
        "annotations": {"summary": "{{ value }}"},
    })
}

/// Webhook arrivals: probe host → when its firing alert arrived.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn hook(State(seen): State<Arrivals>, body: axum::body::Bytes) -> StatusCode {
    let now = Instant::now();
    if let Ok(v) = serde_json::from_slice::<Value>(&body)
        && v["status"] == "firing"
        && let Some(h) = v["labels"]["hostname"].as_str()
    {
        seen.lock().entry(h.to_string()).or_insert(now);
    }
    StatusCode::NO_CONTENT
}

/// One tick's ingest: when it started, rows, seconds spent sending.
#[derive(Debug, Clone, Copy)]
struct Tick {
    at: Instant,
    /// Unix seconds at the start.
    unix: f64,
    rows: u64,
    secs: f64,
}

async fn post_lines(c: &reqwest::Client, url: &str, body: String) -> Result<()> {
    loop {
        let r = c.post(url).body(body.clone()).send().await?;
        match r.status().as_u16() {
            204 => return Ok(()),
            503 | 429 => tokio::time::sleep(retry_after(&r)).await,
            s => bail!("write: {s} {}", r.text().await.unwrap_or_default()),
        }
    }
}

/// Writes every host's rows at `tick` (`concurrency` requests of `batch`
/// lines in flight); returns the rows.
async fn write_tick(c: &reqwest::Client, url: &str, o: &RulesBench, tick: u64) -> Result<u64> {
    let t_ns = (tick as i128 * o.interval.as_nanos() as i128) as i64;
    let per_req = (o.batch / 2).max(1) as u64;
    let mut starts = (0..o.hosts).step_by(per_req as usize);
    let mut inflight = tokio::task::JoinSet::new();
    loop {
        while inflight.len() < o.concurrency {
            let Some(s) = starts.next() else { break };
            let end = (s + per_req).min(o.hosts);
            let mut body = String::with_capacity((end - s) as usize * 320);
            for h in s..end {
                host_lines(&mut body, h, tick, t_ns);
            }
            let (c, url) = (c.clone(), url.to_string());
            inflight.spawn(async move { post_lines(&c, &url, body).await });
        }
        match inflight.join_next().await {
            Some(r) => r??,
            None => break,
        }
    }
    Ok(o.hosts * 2)
}

/// The grid instant (a multiple of `every_ns` since the Unix epoch) of a
/// round seen closed at `seen_ns` after lasting `duration_s` from it: the
/// poll sees a close late by far less than an interval.
fn grid_instant(seen_ns: i64, duration_s: f64, every_ns: i64) -> i64 {
    let (began, every) = (seen_ns - (duration_s * 1e9) as i64, every_ns.max(1));
    began.div_euclid(every) * every
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// From a rule's `Server-Timing` header: the engine's part (checking and
/// installing the rule) and the durable write of its definition, in ms.
fn server_timing(h: &str) -> Option<(f64, f64)> {
    let dur = |name: &str| -> Option<f64> {
        h.split(',').find_map(|part| {
            let (n, rest) = part.trim().split_once(';')?;
            (n == name).then_some(())?;
            rest.trim().strip_prefix("dur=")?.parse().ok()
        })
    };
    Some((dur("check")? + dur("install")?, dur("store")?))
}

/// A metric's value in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn phase(ticks: &[Tick], from: Instant, to: Instant, cpu: f64, interval: Duration) -> Phase {
    let mine: Vec<&Tick> = ticks.iter().filter(|t| t.at >= from && t.at < to).collect();
    let rows: u64 = mine.iter().map(|t| t.rows).sum();
    let busy: f64 = mine.iter().map(|t| t.secs).sum();
    let seconds = (to - from).as_secs_f64();
    Phase {
        seconds,
        ticks: mine.len(),
        rows,
        rows_per_s: if busy > 0.0 { rows as f64 / busy } else { 0.0 },
        cpu_cores: cpu / seconds,
        cpu_us_per_row: if rows > 0 {
            cpu * 1e6 / rows as f64
        } else {
            0.0
        },
        late_ticks: mine
            .iter()
            .filter(|t| t.secs > interval.as_secs_f64())
            .count(),
        tick_secs: mine.iter().map(|t| (t.unix, t.secs)).collect(),
    }
}

/// Runs the benchmark (see the module docs).
///
/// # Errors
/// The server does not start, a write or a rule is refused, or no round
/// closes.
pub async fn run(o: &RulesBench) -> Result<RulesReport> {
    ensure!(
        o.hosts > 0 && o.rules > 0 && o.rounds > 0,
        "hosts, rules and rounds must be positive"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tmp = tempfile::tempdir()?;
    let arrivals: Arrivals = Arc::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/hook", listener.local_addr()?);
    let hook_task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut args: Vec<&str> = vec!["--rules-webhook-allow", "127.0.0.1"];
    args.extend(o.serve_args.iter().map(String::as_str));
    let s = Server::start(&o.bin, tmp.path(), &args)?;
    let c = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(o.concurrency + 2)
        .timeout(Duration::from_secs(600))
        .build()?;
    let write_url = format!("{}/api/v3/write_lp?db=fleet&precision=ns", s.url);
    let interval_ns = o.interval.as_nanos() as i64;

    // Backfill.
    let t = Instant::now();
    let now_tick = (now_ns() / interval_ns) as u64;
    let history_ticks = (o.history.as_nanos() as i64 / interval_ns) as u64;
    for tick in now_tick.saturating_sub(history_ticks)..now_tick {
        write_tick(&c, &write_url, o, tick).await?;
    }
    println!(
        "backfilled {} hosts × {} ticks ({} rows) in {:.1} s",
        o.hosts,
        history_ticks,
        o.hosts * 2 * history_ticks,
        t.elapsed().as_secs_f64()
    );

    // Real-time ingest, in the background from here on.
    let ticks: Arc<Mutex<Vec<Tick>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ingest = {
        let (c, url, o, ticks, stop) = (
            c.clone(),
            write_url.clone(),
            o.clone(),
            ticks.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut tick = now_tick;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let due = tick as i64 * interval_ns;
                let wait = due - now_ns();
                if wait > 0 {
                    tokio::time::sleep(Duration::from_nanos(wait as u64)).await;
                }
                let at = Instant::now();
                let unix = now_ns() as f64 / 1e9;
                let rows = write_tick(&c, &url, &o, tick).await?;
                ticks.lock().push(Tick {
                    at,
                    unix,
                    rows,
                    secs: at.elapsed().as_secs_f64(),
                });
                // A tick that overran skips to the current one.
                tick = (tick + 1).max((now_ns() / interval_ns) as u64);
            }
            anyhow::Ok(())
        })
    };

    // The backfill leaves the server flushing and compacting for a while:
    // the first phase starts once that is over (the server's CPU over 10 s
    // back near the real-time ingest's), or after five minutes.
    let quiet_by = Instant::now() + Duration::from_secs(300);
    loop {
        let c0 = cpu_seconds(s.pid())?;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let cores = (cpu_seconds(s.pid())? - c0) / 10.0;
        if cores < 0.15 || Instant::now() >= quiet_by {
            println!("server quiet after the backfill ({cores:.2} cores over 10 s)");
            break;
        }
    }

    let window = o.every * o.rounds;
    let a0 = Instant::now();
    let cpu0 = cpu_seconds(s.pid())?;
    tokio::time::sleep(window).await;
    let a1 = Instant::now();
    let cpu_a = cpu_seconds(s.pid())? - cpu0;
    let rss_without = proc_status_kb(s.pid(), "VmRSS").unwrap_or(0);

    // Install.
    let every = format!("{}s", o.every.as_secs_f64());
    let mut install_ms = Vec::with_capacity(o.rules);
    let (mut engine_ms, mut store_ms) = (Vec::new(), Vec::new());
    for i in 0..o.rules {
        let t = Instant::now();
        let r = c
            .post(format!("{}/api/v1/rules", s.url))
            .json(&rule(i, &every))
            .send()
            .await?;
        let took = t.elapsed().as_secs_f64() * 1e3;
        let status = r.status();
        if let Some((engine, store)) = r
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .and_then(server_timing)
        {
            engine_ms.push(engine);
            store_ms.push(store);
        }
        ensure!(
            status.is_success(),
            "rule {i}: {status} {}",
            r.text().await?
        );
        install_ms.push(took);
    }
    let probe = json!({
        "name": "probe_hot",
        "kind": "alert",
        "every": every,
        "eval": "on_write",
        "sql": "SELECT hostname, max(temp_c) AS value FROM cpu_thermal WHERE time > now() - INTERVAL '1 minute' GROUP BY hostname HAVING max(temp_c) > 1000",
        "action": {"type": "webhook", "url": hook_url},
    });
    let r = c
        .post(format!("{}/api/v1/rules", s.url))
        .json(&probe)
        .send()
        .await?;
    ensure!(r.status().is_success(), "probe rule: {}", r.text().await?);
    let installed: Value = c
        .get(format!("{}/api/v1/rules", s.url))
        .send()
        .await?
        .json()
        .await?;
    let streaming_rules = installed["rules"]
        .as_array()
        .context("rules")?
        .iter()
        .filter(|r| r["evaluation"]["mode"] == "streaming")
        .count() as u64;
    let inst = sorted(&install_ms);
    println!(
        "installed {} rules ({streaming_rules} streaming): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        o.rules + 1,
        percentile(&inst, 50.0),
        percentile(&inst, 99.0),
        inst.last().copied().unwrap_or(0.0)
    );

    // New states fill in the background once their rules attach; rounds
    // that close meanwhile wait for the fill and are reported apart. The
    // first round that closes after the fill may have begun before it
    // ended: measure from the one after.
    let metrics = || async {
        anyhow::Ok(
            c.get(format!("{}/metrics", s.url))
                .send()
                .await?
                .text()
                .await?,
        )
    };
    let count_of =
        |m: &str| metric(m, "fleetlake_rules_round_duration_seconds_count").unwrap_or(0.0);
    let installed_at = Instant::now();
    let deadline = installed_at + o.every * 10;
    let mut rounds_while_filling = Vec::new();
    let mut last_count = count_of(&metrics().await?);
    let mut fill_s = None;
    let every_ns = i64::try_from(o.every.as_nanos()).unwrap_or(i64::MAX);
    // When the last round that waited for the fill was seen closing: a
    // round whose grid instant came before it queued behind that round.
    let fill_round_closed_ns = loop {
        let m = metrics().await?;
        let n = count_of(&m);
        if n > last_count {
            rounds_while_filling
                .push(metric(&m, "fleetlake_rules_last_round_duration_seconds").unwrap_or(0.0));
            last_count = n;
            if fill_s.is_some() {
                break now_ns();
            }
        }
        if fill_s.is_none() && metric(&m, "fleetlake_rules_states_filling") == Some(0.0) {
            fill_s = Some(installed_at.elapsed().as_secs_f64());
        }
        ensure!(
            Instant::now() < deadline,
            "the states did not fill and a round close within ten intervals"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let fill_s = fill_s.unwrap_or_default();

    let b0 = Instant::now();
    let cpu1 = cpu_seconds(s.pid())?;
    let (phases0, evals0) = phase_seconds(&metrics().await?);
    let mut rounds = Vec::new();
    let mut state_bytes = 0u64;
    let mut probes: Vec<(String, Instant)> = Vec::new();
    let mut next_probe = Instant::now();
    let mut k = 0;
    while b0.elapsed() < window {
        if Instant::now() >= next_probe {
            next_probe += o.probe_every;
            let host = format!("probe_{k}");
            k += 1;
            let line = format!(
                "cpu_thermal,hostname={host},datacenter=dc_probe,rack=rprobe,sku=g11 temp_c=2000 {}\n",
                now_ns()
            );
            let r = c.post(&write_url).body(line).send().await?;
            let acked = Instant::now();
            ensure!(r.status().as_u16() == 204, "probe write: {}", r.status());
            probes.push((host, acked));
        }
        let m = metrics().await?;
        let n = count_of(&m);
        if n > last_count {
            // Rounds close every interval: one poll sees each.
            let d = metric(&m, "fleetlake_rules_last_round_duration_seconds").unwrap_or(0.0);
            if grid_instant(now_ns(), d, every_ns) < fill_round_closed_ns {
                rounds_while_filling.push(d);
            } else {
                rounds.push(d);
            }
            last_count = n;
        }
        state_bytes =
            state_bytes.max(metric(&m, "fleetlake_rules_state_bytes").unwrap_or(0.0) as u64);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let b1 = Instant::now();
    let cpu_b = cpu_seconds(s.pid())? - cpu1;
    let (phases1, evals1) = phase_seconds(&metrics().await?);
    let evaluations = (evals1 - evals0).max(0.0) as u64;
    let evaluation_ms = PHASES
        .iter()
        .zip(phases1.iter().zip(&phases0))
        .map(|(p, (b, a))| (p.to_string(), (b - a) * 1e3 / evaluations.max(1) as f64))
        .collect();
    let rss_with = proc_status_kb(s.pid(), "VmRSS").unwrap_or(0);
    // Late alerts get a moment.
    tokio::time::sleep(Duration::from_secs(3)).await;
    hook_task.abort();

    // Without rules again: the server now holds more data than in the
    // first phase, and this machine's speed drifts; the two phases
    // without rules bracket the one with them.
    let names = (0..o.rules)
        .map(|i| format!("fleet_{i:04}"))
        .chain(["probe_hot".to_string()]);
    for name in names {
        let r = c
            .delete(format!("{}/api/v1/rules/{name}", s.url))
            .send()
            .await?;
        ensure!(r.status().is_success(), "deleting {name}: {}", r.status());
    }
    let deadline = Instant::now() + o.every * 2;
    loop {
        let m = metrics().await?;
        if metric(&m, "fleetlake_rules") == Some(0.0)
            && metric(&m, "fleetlake_rules_state_bytes") == Some(0.0)
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the rules' states were not dropped within two intervals"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let c0 = Instant::now();
    let cpu2 = cpu_seconds(s.pid())?;
    tokio::time::sleep(window).await;
    let c1 = Instant::now();
    let cpu_c = cpu_seconds(s.pid())? - cpu2;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    ingest.await??;

    let seen = arrivals.lock().clone();
    let latencies: Vec<f64> = probes
        .iter()
        .filter_map(|(h, acked)| {
            seen.get(h)
                .map(|at| at.saturating_duration_since(*acked).as_secs_f64() * 1e3)
        })
        .collect();
    let ticks = ticks.lock().clone();
    let without = phase(&ticks, a0, a1, cpu_a, o.interval);
    let with = phase(&ticks, b0, b1, cpu_b, o.interval);
    let after = phase(&ticks, c0, c1, cpu_c, o.interval);
    let mean = |f: fn(&Phase) -> f64| (f(&without) + f(&after)) / 2.0;
    let (base_rate, base_cpu) = (mean(|p| p.rows_per_s), mean(|p| p.cpu_cores));
    let r = sorted(&rounds);
    let l = sorted(&latencies);
    let report = RulesReport {
        hosts: o.hosts,
        rules: o.rules,
        every_s: o.every.as_secs_f64(),
        cores,
        ingest_ratio: with.rows_per_s / base_rate.max(f64::MIN_POSITIVE),
        rules_cpu_cores: with.cpu_cores - base_cpu,
        without_rules: without,
        with_rules: with,
        without_rules_after: after,
        install_ms_p50: percentile(&inst, 50.0),
        install_ms_p99: percentile(&inst, 99.0),
        install_ms_max: inst.last().copied().unwrap_or(0.0),
        install_engine_ms_p50: percentile(&sorted(&engine_ms), 50.0),
        install_engine_ms_p99: percentile(&sorted(&engine_ms), 99.0),
        install_store_ms_p50: percentile(&sorted(&store_ms), 50.0),
        install_store_ms_p99: percentile(&sorted(&store_ms), 99.0),
        streaming_rules,
        fill_s,
        rounds_while_filling,
        round_s_p50: percentile(&r, 50.0),
        round_s_p99: percentile(&r, 99.0),
        round_s_max: r.last().copied().unwrap_or(0.0),
        rounds,
        state_bytes,
        rss_kb_without_rules: rss_without,
        rss_kb_with_rules: rss_with,
        probes_sent: probes.len(),
        probes_alerted: latencies.len(),
        alert_latency_ms_p50: percentile(&l, 50.0),
        alert_latency_ms_p99: percentile(&l, 99.0),
        alert_latency_ms_max: l.last().copied().unwrap_or(0.0),
        evaluations,
        evaluation_ms,
    };
    s.stop()?;
    Ok(report)
}

impl RulesReport {
    pub fn print(&self) {
        let p = |name: &str, ph: &Phase| {
            println!(
                "{name}: {} ticks, {} rows, {:.0} rows/s while sending, {} ticks over the interval, server CPU {:.2} cores ({:.1} µs a row)",
                ph.ticks, ph.rows, ph.rows_per_s, ph.late_ticks, ph.cpu_cores, ph.cpu_us_per_row
            );
        };
        println!(
            "{} rules × {} hosts, every {} s, {} cores",
            self.rules, self.hosts, self.every_s, self.cores
        );
        p("without rules", &self.without_rules);
        p("with rules", &self.with_rules);
        p("without rules again", &self.without_rules_after);
        println!(
            "ingest with rules ÷ without (the mean of both phases): {:.2}; the rules' CPU: {:.2} cores",
            self.ingest_ratio, self.rules_cpu_cores
        );
        println!(
            "install: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (the server's part p50 {:.2} ms, p99 {:.2} ms; the definition's fsync'd write p50 {:.1} ms, p99 {:.1} ms); {} of {} rules streaming",
            self.install_ms_p50,
            self.install_ms_p99,
            self.install_ms_max,
            self.install_engine_ms_p50,
            self.install_engine_ms_p99,
            self.install_store_ms_p50,
            self.install_store_ms_p99,
            self.streaming_rules,
            self.rules + 1
        );
        println!(
            "states filled {:.1} s after the last install; rounds that closed meanwhile or began before those closed: {:?}",
            self.fill_s, self.rounds_while_filling
        );
        println!(
            "rounds: {} closed, p50 {:.2} s, p99 {:.2} s, max {:.2} s ({:?})",
            self.rounds.len(),
            self.round_s_p50,
            self.round_s_p99,
            self.round_s_max,
            self.rounds
        );
        println!(
            "state: {:.1} MiB; server RSS {:.0} MiB without rules, {:.0} MiB with",
            self.state_bytes as f64 / 1048576.0,
            self.rss_kb_without_rules as f64 / 1024.0,
            self.rss_kb_with_rules as f64 / 1024.0
        );
        println!(
            "on_write alert latency (write's 204 → webhook): {} of {} probes alerted, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            self.probes_alerted,
            self.probes_sent,
            self.alert_latency_ms_p50,
            self.alert_latency_ms_p99,
            self.alert_latency_ms_max
        );
        let phases: Vec<String> = self
            .evaluation_ms
            .iter()
            .map(|(p, ms)| format!("{p} {ms:.2}"))
            .collect();
        println!(
            "per evaluation ({} evaluations), ms: {}",
            self.evaluations,
            phases.join(", ")
        );
    }
}

/// The binary running now (for `fleetlake bench rules`).
///
/// # Errors
/// The OS does not say.
pub fn this_binary() -> Result<PathBuf> {
    std::env::current_exe().context("the path of this binary")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_of_the_mix_is_distinct_and_named() {
        let rules: Vec<Value> = (0..40).map(|i| rule(i, "30s")).collect();
        let sqls: std::collections::HashSet<&str> =
            rules.iter().map(|r| r["sql"].as_str().unwrap()).collect();
        assert_eq!(sqls.len(), 40);
        assert_eq!(rules[7]["name"], "fleet_0007");
    }

    #[test]
    fn a_hot_host_runs_hot_and_others_do_not() {
        let mut hot = String::new();
        host_lines(&mut hot, 7, 3, 0);
        let mut cool = String::new();
        host_lines(&mut cool, 8, 3, 0);
        let temp = |s: &str| -> f64 {
            let f = s.split("temp_c=").nth(1).unwrap();
            f[..f.find(',').unwrap()].parse().unwrap()
        };
        assert!(temp(&hot) >= 86.0 && temp(&cool) < 60.0);
        assert_eq!(hot.lines().count(), 2);
    }

    #[test]
    fn a_round_is_placed_on_the_grid_instant_it_began_at() {
        let every = 30_000_000_000;
        // Began on the grid at 60 s, lasted 11.7 s, seen 0.2 s after.
        assert_eq!(grid_instant(71_900_000_000, 11.7, every), 60_000_000_000);
        // A round longer than an interval began two grid instants back.
        assert_eq!(grid_instant(120_100_000_000, 40.0, every), 60_000_000_000);
        assert_eq!(grid_instant(90_000_000_000, 0.0, every), 90_000_000_000);
    }

    #[test]
    fn server_timing_reads_the_parts() {
        assert_eq!(
            server_timing("check;dur=1.5, store;dur=7.25, install;dur=0.5"),
            Some((2.0, 7.25))
        );
        assert_eq!(server_timing("check;dur=1"), None);
    }

    #[test]
    fn metric_reads_a_sample() {
        let text = "# HELP x y\nfleetlake_rules_state_bytes 123\nfleetlake_rules_state_bytes_x 9\n";
        assert_eq!(metric(text, "fleetlake_rules_state_bytes"), Some(123.0));
        assert_eq!(metric(text, "fleetlake_rules"), None);
    }
}
