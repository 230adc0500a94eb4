//! What rule evaluation costs (issue 5, "Measured"): `--rules` alert rules
//! over `--hosts` hosts, every `--every` seconds, in a real server.
//!
//! ```text
//! cargo build --release --bin fleetlake --bin rules_cost
//! target/release/rules_cost --fleetlake target/release/fleetlake --hosts 100000 --rules 1000
//! ```
//!
//! Steps: start `fleetlake serve`; write TSBS cpu-only for `--hosts` hosts at
//! a 10 s interval from 5 minutes ago to `--ahead-minutes` from now (so every
//! rule's 5-minute window stays full while it runs); flush; measure the
//! server's CPU over `--rounds` evaluation intervals with no rules (the
//! baseline); install the rules through `POST /api/v1/rules`; skip one round
//! (the first evaluation plans cold); then, over `--rounds` intervals, take
//! the server's CPU time from `/proc` and poll `GET /api/v1/rules` every
//! 250 ms: each change of a rule's `last_evaluation` is one finished
//! evaluation, with its `evaluation_ms`.
//!
//! Reported: CPU share of the rules (CPU seconds above the baseline ÷ wall
//! seconds ÷ cores), evaluations finished per second and so how long a round
//! of every rule takes (which is more than `--every` when the machine cannot
//! keep up: rules then run late, never concurrently with themselves), per
//! grid instant how many evaluations finished and when the last was seen,
//! and the per-rule evaluation time percentiles.
//!
//! The rules cycle through four shapes, each over one of the ten cpu fields
//! with its own threshold: a per-host 5-minute average, a per-host 1-minute
//! maximum, a per-host 5-minute standard deviation, and a per-datacenter
//! 5-minute average — the kinds of rule a fleet's operators write.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use fleetlake_benches::server::{Server, cpu_seconds};
use fleetlake_benches::stats::{percentile, sorted};
use fleetlake_sim::tsbs::CPU_FIELDS;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
struct Args {
    /// The fleetlake binary.
    #[arg(long, default_value = "target/release/fleetlake")]
    fleetlake: PathBuf,
    #[arg(long, default_value_t = 100_000)]
    hosts: u64,
    #[arg(long, default_value_t = 1000)]
    rules: usize,
    /// Evaluation interval of every rule, seconds.
    #[arg(long, default_value_t = 30)]
    every: u64,
    /// Measured rounds (and baseline rounds).
    #[arg(long, default_value_t = 4)]
    rounds: u64,
    /// Minutes of data past now, so that the windows stay full while measuring.
    #[arg(long, default_value_t = 8.0)]
    ahead_minutes: f64,
}

/// Rule `i`: shape `i % 4`, field `(i / 4) % 10`, a threshold that varies with `i`.
fn rule(i: usize, every: u64) -> Value {
    let f = CPU_FIELDS[(i / 4) % CPU_FIELDS.len()];
    let th = 50 + (i * 7) % 50;
    // Bounded above too: the data runs ahead of now (see the module doc).
    let recent =
        |minutes: u32| format!("time > now() - INTERVAL '{minutes} minutes' AND time <= now()");
    let sql = match i % 4 {
        0 => format!(
            "SELECT hostname, avg({f}) AS value FROM cpu WHERE {} \
             GROUP BY hostname HAVING avg({f}) > {th}",
            recent(5)
        ),
        1 => format!(
            "SELECT hostname, max({f}) AS value FROM cpu WHERE {} \
             GROUP BY hostname HAVING max({f}) > {th}",
            recent(1)
        ),
        2 => format!(
            "SELECT hostname, stddev({f}) AS value FROM cpu WHERE {} \
             GROUP BY hostname HAVING stddev({f}) > {}",
            recent(5),
            th / 2
        ),
        _ => format!(
            "SELECT datacenter, avg({f}) AS value FROM cpu WHERE {} \
             GROUP BY datacenter HAVING avg({f}) > {th}",
            recent(5)
        ),
    };
    json!({
        "name": format!("cost_{i:04}"),
        "kind": "alert",
        "every": format!("{every}s"),
        "for": "1m",
        "sql": sql,
        "annotations": {"summary": "{{ value }}"},
    })
}

/// CPU seconds the server used over `secs` of wall time.
async fn cpu_over(pid: u32, secs: f64) -> Result<f64> {
    let before = cpu_seconds(pid)?;
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    Ok(cpu_seconds(pid)? - before)
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let tmp = std::env::temp_dir().join(format!("rules_cost_{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let s = Server::start(&args.fleetlake, &tmp, &[])?;

    // Data from 5 minutes ago to `ahead_minutes` from now.
    let start = chrono::Utc::now() - chrono::Duration::minutes(5);
    let hours = (5.0 + args.ahead_minutes) / 60.0;
    let loaded = Instant::now();
    let st = Command::new(&args.fleetlake)
        .args(["gen", "cpu-only", "--url", &s.url])
        .args(["--hosts", &args.hosts.to_string()])
        .args(["--start", &start.to_rfc3339()])
        .args(["--hours", &format!("{hours}")])
        .status()?;
    ensure!(st.success(), "gen failed");
    let r = c
        .post(format!("{}/api/v1/admin/flush", s.url))
        .send()
        .await?;
    ensure!(r.status().is_success(), "flush: {}", r.status());
    println!(
        "loaded {} hosts × {:.0} min at 10 s in {:.1} s",
        args.hosts,
        hours * 60.0,
        loaded.elapsed().as_secs_f64()
    );

    let window = (args.every * args.rounds) as f64;
    let baseline = cpu_over(s.pid(), window).await?;
    println!(
        "baseline: {baseline:.2} CPU s over {window:.0} s ({:.1}% of {cores} cores)",
        100.0 * baseline / window / cores
    );

    let installed = Instant::now();
    for i in 0..args.rules {
        let r = c
            .post(format!("{}/api/v1/rules", s.url))
            .json(&rule(i, args.every))
            .send()
            .await?;
        let status = r.status();
        ensure!(
            status.is_success(),
            "rule {i}: {status} {}",
            r.text().await?
        );
    }
    println!(
        "installed {} rules in {:.1} s",
        args.rules,
        installed.elapsed().as_secs_f64()
    );

    // Skip to the grid instant after next: the first evaluation plans cold.
    let every = args.every as f64;
    let first = ((now_s() / every).floor() + 2.0) * every;
    tokio::time::sleep(Duration::from_secs_f64(first - now_s())).await;

    let cpu_start = cpu_seconds(s.pid())?;
    let wall_start = Instant::now();
    let end = first + window;
    // Each change of a rule's last_evaluation is one finished evaluation.
    let mut last: HashMap<String, String> = HashMap::new();
    let mut durations: Vec<f64> = Vec::new();
    // grid second → rules evaluated at it, and when the last of them was seen.
    let mut rounds: BTreeMap<i64, (usize, f64)> = BTreeMap::new();
    let mut polls = 0;
    while now_s() < end {
        let v: Value = c
            .get(format!("{}/api/v1/rules", s.url))
            .send()
            .await?
            .json()
            .await?;
        let seen = now_s();
        for r in v["rules"].as_array().context("rules")? {
            let (Some(name), Some(at), Some(ms)) = (
                r["name"].as_str(),
                r["last_evaluation"].as_str(),
                r["evaluation_ms"].as_f64(),
            ) else {
                continue;
            };
            if let Some(e) = r["last_error"].as_str() {
                anyhow::bail!("rule {name}: {e}");
            }
            let changed = last.insert(name.to_string(), at.to_string()).as_deref() != Some(at);
            // The first poll only learns where each rule stands.
            if changed && polls > 0 {
                durations.push(ms);
                let at = chrono::DateTime::parse_from_rfc3339(at)?.timestamp();
                let round = rounds.entry(at).or_insert((0, 0.0));
                round.0 += 1;
                round.1 = seen - at as f64;
            }
        }
        polls += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let cpu = cpu_seconds(s.pid())? - cpu_start;
    let wall = wall_start.elapsed().as_secs_f64();
    let share = (cpu / wall - baseline / window) / cores;

    println!("| evaluated at (grid) | evaluations seen finishing | last seen after s |");
    println!("|---|---:|---:|");
    for (at, (n, after)) in &rounds {
        println!(
            "| {} | {n} | {after:.1} |",
            chrono::DateTime::from_timestamp(*at, 0).map_or(at.to_string(), |t| t.to_rfc3339()),
        );
    }
    let per_s = durations.len() as f64 / wall;
    let all = sorted(&durations);
    println!(
        "{} rules × {} hosts every {} s: {} evaluations in {wall:.0} s ({per_s:.1}/s: a round of \
         all rules takes {:.1} s); CPU {cpu:.1} s = {:.1}% of {cores} cores above the baseline; \
         per-rule evaluation p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms",
        args.rules,
        args.hosts,
        args.every,
        durations.len(),
        args.rules as f64 / per_s,
        100.0 * share,
        percentile(&all, 50.0),
        percentile(&all, 90.0),
        percentile(&all, 99.0),
    );
    s.stop()?;
    std::fs::remove_dir_all(&tmp)?;
    Ok(())
}
