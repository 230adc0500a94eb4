//! Scores the shipped rule pack (`rules/examples/*.toml`) against the
//! simulator's injected faults: precision, recall and detection delay per
//! rule and per fault kind, and the alerts a healthy fleet raises.
//!
//! For each seed: start a fresh `fleetlake serve`, load `fleetlake gen fleet
//! --faults K --truth …` into it, flush, then backtest every rule — its SQL
//! run at each step of the range with `now()` replaced by the step's time —
//! applying the rule's `for` (an instance fires once it has been returned
//! at every step for that long) and `keep_firing_for` (an instance returned
//! again within that long of its last return is the same alert). The same
//! again with `--faults 0`: its alerts are false ones, reported per 1,000
//! host-hours.
//!
//! ```sh
//! cargo build --bin fleetlake && cargo run -p fleetlake-benches --bin anomaly_eval -- \
//!     --hosts 200 --hours 4 --faults 10 --seeds 1,2,3
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use fleetlake_benches::server::Server;
use fleetlake_time::{duration_ns, parse_duration, rfc3339};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Parser)]
struct Args {
    /// The fleetlake binary.
    #[arg(long, default_value = "target/debug/fleetlake")]
    bin: PathBuf,
    /// Directory of the rule pack.
    #[arg(long, default_value = "rules/examples")]
    rules_dir: PathBuf,
    #[arg(long, default_value_t = 200)]
    hosts: u64,
    #[arg(long, default_value_t = 4.0)]
    hours: f64,
    /// Faults per faulty run (kinds cycle through the five).
    #[arg(long, default_value_t = 10)]
    faults: u32,
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    seeds: Vec<u64>,
    /// Backtest step in seconds.
    #[arg(long, default_value_t = 60)]
    step: i64,
    /// Skip the healthy (`--faults 0`) runs.
    #[arg(long)]
    no_healthy: bool,
}

const S: i64 = 1_000_000_000;
const START: &str = "2026-01-01T00:00:00Z";

#[derive(Debug, Deserialize)]
struct PackFile {
    rule: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    name: String,
    sql: String,
    #[serde(rename = "for", default)]
    for_: Option<String>,
    #[serde(default)]
    keep_firing_for: Option<String>,
}

fn load_pack(dir: &Path) -> Result<Vec<Rule>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut rules = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        let file: PackFile = toml::from_str(&text).with_context(|| f.display().to_string())?;
        rules.extend(file.rule);
    }
    Ok(rules)
}

/// The fault kind a rule is there to catch; its delay counts from the
/// fault's start (`onset` also gives it from when the signature can show).
fn target(rule: &str) -> Option<&'static str> {
    Some(match rule {
        "smart_sectors_rising" | "disk_stuck" => "failing_disk",
        "ecc_storm" | "host_down" => "bad_dimm",
        "thermal_throttling" | "cpu_temp_anomaly" => "thermal_throttling",
        "nic_flapping" => "flapping_nic",
        "disk_latency_anomaly" => "failing_disk",
        _ => return None,
    })
}

/// When the rule's signature starts to show in the data: the disk goes
/// busy a fifth into its window (and must stay so 10 minutes); a bad DIMM's
/// host dies at the window's end.
fn onset(rule: &str, start: i64, end: i64) -> i64 {
    match rule {
        "disk_stuck" | "disk_latency_anomaly" => start + (end - start) / 5,
        "host_down" => end,
        _ => start,
    }
}

fn ts_literal(ns: i64) -> String {
    format!("CAST('{}' AS TIMESTAMP WITH TIME ZONE)", rfc3339(ns))
}

async fn sql(client: &reqwest::Client, url: &str, q: &str) -> Result<Vec<Value>> {
    let (text, _) =
        fleetlake_benches::query::fleetlake_sql(client, url, "fleet", q, "json").await?;
    Ok(serde_json::from_str(&text)?)
}

/// One alert: rule, host, the time it started firing.
#[derive(Debug, Clone)]
struct Firing {
    rule: String,
    host: String,
    at: i64,
}

#[derive(Debug, Clone, Deserialize)]
struct Fault {
    kind: String,
    host: Option<String>,
    start_ns: i64,
    end_ns: i64,
}

#[derive(Debug, Deserialize)]
struct Truth {
    faults: Vec<Fault>,
}

struct Run {
    seed: u64,
    faults: Vec<Fault>,
    firings: Vec<Firing>,
    /// Per rule: evaluations and the seconds they took.
    evals: BTreeMap<String, (usize, f64)>,
}

async fn run_one(args: &Args, rules: &[Rule], seed: u64, faults: u32) -> Result<Run> {
    let tmp = std::env::temp_dir().join(format!(
        "anomaly_eval-{}-{seed}-{faults}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let server = Server::start(&args.bin, &tmp.join("data"), &[])?;
    let truth_path = tmp.join("truth.json");
    let t = Instant::now();
    let status = Command::new(&args.bin)
        .args(["gen", "fleet", "--start", START, "--url", &server.url])
        .args(["--hosts", &args.hosts.to_string()])
        .args(["--hours", &args.hours.to_string()])
        .args(["--faults", &faults.to_string()])
        .args(["--seed", &seed.to_string()])
        .arg("--truth")
        .arg(&truth_path)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("fleetlake gen failed: {status}");
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    client
        .post(format!("{}/api/v1/admin/flush", server.url))
        .send()
        .await?
        .error_for_status()?;
    eprintln!(
        "seed {seed}, {faults} faults: loaded in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let truth: Truth = serde_json::from_str(&std::fs::read_to_string(&truth_path)?)?;
    let start = chrono::DateTime::parse_from_rfc3339(START)?
        .timestamp_nanos_opt()
        .expect("in range");
    let end = start + (args.hours * 3600.0) as i64 * S;
    let mut firings = Vec::new();
    let mut evals = BTreeMap::new();
    for rule in rules {
        let ns = |d: &Option<String>| -> Result<i64> {
            d.as_deref().map_or(Ok(0), |d| {
                parse_duration(d)
                    .map(duration_ns)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", rule.name))
            })
        };
        let for_ns = ns(&rule.for_)?;
        let keep_ns = ns(&rule.keep_firing_for)?;
        // Host → since when it has been returned at every step.
        let mut pending: HashMap<String, i64> = HashMap::new();
        // Host → the last step at which it was firing.
        let mut firing: HashMap<String, i64> = HashMap::new();
        let (evals, eval_secs) = evals.entry(rule.name.clone()).or_insert((0, 0.0));
        let mut t = start + args.step * S;
        while t <= end {
            let q = rule.sql.replace("now()", &ts_literal(t));
            let e = Instant::now();
            let rows = sql(&client, &server.url, &q).await?;
            *eval_secs += e.elapsed().as_secs_f64();
            *evals += 1;
            let mut now_present: HashMap<String, i64> = HashMap::new();
            for r in rows {
                let host = r["hostname"]
                    .as_str()
                    .with_context(|| format!("{}: row without hostname", rule.name))?
                    .to_string();
                let since = pending.get(&host).copied().unwrap_or(t);
                if t - since >= for_ns {
                    let last = firing.insert(host.clone(), t);
                    if last.is_none_or(|l| t - l > keep_ns) {
                        firings.push(Firing {
                            rule: rule.name.clone(),
                            host: host.clone(),
                            at: t,
                        });
                    }
                }
                now_present.insert(host, since);
            }
            pending = now_present;
            t += args.step * S;
        }
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(Run {
        seed,
        faults: truth.faults,
        firings,
        evals,
    })
}

#[derive(Default)]
struct Score {
    tp: usize,
    fp: usize,
    caught: usize,
    total: usize,
    delays: Vec<f64>,
    onset_delays: Vec<f64>,
    fp_hosts: Vec<String>,
    missed: Vec<String>,
}

fn minutes(v: &[f64]) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let med = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    format!("{:.1} / {:.1}", med / 60.0, s[s.len() - 1] / 60.0)
}

fn pct(a: usize, b: usize) -> String {
    if b == 0 {
        "–".into()
    } else {
        format!("{:.0} % ({a}/{b})", 100.0 * a as f64 / b as f64)
    }
}

/// A firing is a true positive when its host has a fault of the rule's
/// kind and it fired between the fault's start and 30 minutes after its
/// end (detection through keep_firing_for and windows that trail).
fn score(runs: &[Run], rules: &[Rule]) -> (BTreeMap<String, Score>, BTreeMap<String, Score>) {
    const GRACE: i64 = 30 * 60 * S;
    let mut by_rule: BTreeMap<String, Score> = BTreeMap::new();
    let mut by_kind: BTreeMap<String, Score> = BTreeMap::new();
    for run in runs {
        for rule in rules {
            let kind = target(&rule.name);
            let sc = by_rule.entry(rule.name.clone()).or_default();
            let mine: Vec<&Firing> = run.firings.iter().filter(|f| f.rule == rule.name).collect();
            for f in &mine {
                let ok = run.faults.iter().any(|x| {
                    Some(x.kind.as_str()) == kind
                        && x.host.as_deref() == Some(&f.host)
                        && x.start_ns <= f.at
                        && f.at <= x.end_ns + GRACE
                });
                if ok {
                    sc.tp += 1;
                } else {
                    sc.fp += 1;
                    sc.fp_hosts.push(format!("seed {} {}", run.seed, f.host));
                }
            }
            for x in run.faults.iter().filter(|x| Some(x.kind.as_str()) == kind) {
                sc.total += 1;
                let first = mine
                    .iter()
                    .filter(|f| x.host.as_deref() == Some(&f.host) && x.start_ns <= f.at)
                    .map(|f| f.at)
                    .min();
                match first {
                    Some(at) if at <= x.end_ns + GRACE => {
                        sc.caught += 1;
                        sc.delays.push((at - x.start_ns) as f64 / S as f64);
                        let o = onset(&rule.name, x.start_ns, x.end_ns);
                        sc.onset_delays.push((at - o) as f64 / S as f64);
                    }
                    _ => sc.missed.push(format!(
                        "seed {} {} {}",
                        run.seed,
                        x.host.as_deref().unwrap_or("-"),
                        rfc3339(x.start_ns)
                    )),
                }
            }
        }
        // Per fault kind: caught by any rule aimed at it.
        for x in &run.faults {
            let sc = by_kind.entry(x.kind.clone()).or_default();
            sc.total += 1;
            let first = run
                .firings
                .iter()
                .filter(|f| {
                    target(&f.rule) == Some(x.kind.as_str())
                        && x.host.as_deref() == Some(&f.host)
                        && x.start_ns <= f.at
                        && f.at <= x.end_ns + GRACE
                })
                .map(|f| f.at)
                .min();
            match first {
                Some(at) => {
                    sc.caught += 1;
                    sc.delays.push((at - x.start_ns) as f64 / S as f64);
                }
                None => sc.missed.push(format!(
                    "seed {} {}",
                    run.seed,
                    x.host.as_deref().unwrap_or("(job)")
                )),
            }
        }
    }
    (by_rule, by_kind)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let rules = load_pack(&args.rules_dir)?;
    eprintln!(
        "{} rules: {}",
        rules.len(),
        rules
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut faulty = Vec::new();
    let mut healthy = Vec::new();
    for &seed in &args.seeds {
        faulty.push(run_one(&args, &rules, seed, args.faults).await?);
        if !args.no_healthy {
            healthy.push(run_one(&args, &rules, seed, 0).await?);
        }
    }
    let (by_rule, by_kind) = score(&faulty, &rules);
    println!(
        "{} hosts × {} h at 10 s, {} faults a run, seeds {:?}, rules evaluated every {} s\n",
        args.hosts, args.hours, args.faults, args.seeds, args.step
    );
    println!(
        "| rule | target fault | precision | recall | delay from fault start, median / max (min) | from signature onset | healthy-fleet alerts (per 1,000 host-hours) | mean evaluation (ms) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let host_hours = args.hosts as f64 * args.hours * healthy.len() as f64;
    for rule in &rules {
        let sc = &by_rule[&rule.name];
        let healthy_fp: usize = healthy
            .iter()
            .map(|r| r.firings.iter().filter(|f| f.rule == rule.name).count())
            .sum();
        println!(
            "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
            rule.name,
            target(&rule.name).unwrap_or("-"),
            pct(sc.tp, sc.tp + sc.fp),
            pct(sc.caught, sc.total),
            minutes(&sc.delays),
            minutes(&sc.onset_delays),
            if args.no_healthy {
                "not run".to_string()
            } else {
                format!(
                    "{healthy_fp} ({:.2})",
                    1000.0 * healthy_fp as f64 / host_hours
                )
            },
            {
                let (n, secs) = faulty.iter().chain(&healthy).fold((0, 0.0), |(n, s), r| {
                    let (rn, rs) = r.evals.get(&rule.name).copied().unwrap_or_default();
                    (n + rn, s + rs)
                });
                format!("{:.1}", 1e3 * secs / n.max(1) as f64)
            }
        );
    }
    println!("\n| fault kind | faults | caught by the pack | delay, median / max (min) |");
    println!("|---|---|---|---|");
    for (kind, sc) in &by_kind {
        println!(
            "| {kind} | {} | {} | {} |",
            sc.total,
            pct(sc.caught, sc.total),
            minutes(&sc.delays)
        );
    }
    for (name, sc) in &by_rule {
        if !sc.fp_hosts.is_empty() {
            println!("\n{name}: false positives: {}", sc.fp_hosts.join(", "));
        }
        if !sc.missed.is_empty() {
            println!("\n{name}: missed: {}", sc.missed.join(", "));
        }
    }
    for r in &healthy {
        for f in &r.firings {
            println!(
                "\nhealthy seed {}: {} fired on {} at {}",
                r.seed,
                f.rule,
                f.host,
                rfc3339(f.at)
            );
        }
    }
    let (evals, secs): (usize, f64) = faulty
        .iter()
        .chain(&healthy)
        .flat_map(|r| r.evals.values())
        .fold((0, 0.0), |(n, s), (rn, rs)| (n + rn, s + rs));
    println!(
        "\n{evals} rule evaluations, mean {:.1} ms each (this binary's build, with the other work on the machine)",
        1e3 * secs / evals.max(1) as f64
    );
    Ok(())
}
