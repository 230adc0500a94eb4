//! Scores job diagnosis (`GET /api/v1/diagnosis/jobs/{job_id}`) against the
//! simulator's injected faults, job by job, over several seeds.
//!
//! For each seed: start a fresh `fleetlake serve`, load `fleetlake gen fleet
//! --faults K --seed S --truth …` into it, flush, then diagnose every job of
//! `job_runs` (finished jobs) one request at a time, as a client would.
//!
//! - A job a fault *harmed* (the truth's `harmed_jobs`: an attempt the fault
//!   slowed, i.e. started on the host inside the window, or failed) should
//!   have the injected cause first among its reported causes (top-1) or
//!   among the first three (top-3). Fault kind → cause kind: failing_disk →
//!   failing_disk, thermal_throttling → thermal_throttling, bad_dimm →
//!   bad_memory or host_lost, flapping_nic → flapping_nic, data_skew →
//!   data_skew, and the opt-in kinds (`--fault-kinds`) straggler_host →
//!   slow_host or straggler, flaky_host → host_errors, queueing →
//!   queueing_delay; a cause of a host fault must name the faulty host. When two faults
//!   harmed one job, naming either counts for both. The same figures over
//!   the wider `affected_jobs` (any attempt overlapping the window) are
//!   printed too.
//! - A healthy job (in no fault's `affected_jobs`) should report nothing:
//!   no cause at or above the report's `confidence_cut`.
//! - Latency: each request's time as the client sees it, and the server's
//!   CPU seconds over the diagnosis loop.
//!
//! The truth is also computed in process by `fleetlake_sim` (this build's
//! simulator) and must equal the file's, apart from `harmed_jobs`, which a
//! `--bin` built before that field existed does not write: the in-process
//! one is used then. The row count must match too, so the data served is
//! the data scored.
//!
//! ```sh
//! cargo build --release --bin fleetlake -p fleetlake-benches --bin diagnosis_eval
//! target/release/diagnosis_eval --bin target/release/fleetlake \
//!     --hosts 100 --hours 4 --faults 10 --seeds 1,2,3
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use fleetlake_benches::server::{Server, cpu_seconds};
use fleetlake_benches::stats::{percentile, sorted};
use fleetlake_sim::time::HOUR_NS;
use fleetlake_sim::{FaultKind, Fleet, FleetOptions, LineSource, SimConfig};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Parser)]
struct Args {
    /// The fleetlake binary (server and generator).
    #[arg(long, default_value = "target/release/fleetlake")]
    bin: PathBuf,
    #[arg(long, default_value_t = 100)]
    hosts: u64,
    #[arg(long, default_value_t = 4.0)]
    hours: f64,
    /// Faults per run (kinds cycle through --fault-kinds).
    #[arg(long, default_value_t = 10)]
    faults: u32,
    /// The fault kinds, in turn (as `fleetlake gen --fault-kinds`; default:
    /// the five classic ones).
    #[arg(long, value_delimiter = ',', value_parser = parse_fault_kind)]
    fault_kinds: Vec<FaultKind>,
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    seeds: Vec<u64>,
    /// Print every scored job's verdict (stderr).
    #[arg(long)]
    verbose: bool,
    /// Instead of scoring: load a healthy fleet (--hosts, --hours, the
    /// first seed) plus one job of this many tasks, and time its diagnosis.
    #[arg(long)]
    big_job: Option<usize>,
    /// With --big-job: diagnoses to time.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
}

fn parse_fault_kind(s: &str) -> Result<FaultKind, String> {
    FaultKind::from_name(s.trim()).ok_or_else(|| format!("unknown fault kind {s:?}"))
}

const S: i64 = 1_000_000_000;
const START: &str = "2026-01-01T00:00:00Z";
const INTERVAL_NS: i64 = 10 * S;

#[derive(Debug, Clone, Deserialize)]
struct Fault {
    kind: String,
    host: Option<String>,
    affected_jobs: Vec<String>,
    #[serde(default)]
    harmed_jobs: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct Truth {
    faults: Vec<Fault>,
}

/// The cause kinds that name a fault kind's injected cause.
fn expected(kind: &str) -> &'static [&'static str] {
    match kind {
        "failing_disk" => &["failing_disk"],
        "thermal_throttling" => &["thermal_throttling"],
        "bad_dimm" => &["bad_memory", "host_lost"],
        "flapping_nic" => &["flapping_nic"],
        "data_skew" => &["data_skew"],
        // No hardware signal: the job's own tasks show the host.
        "straggler_host" => &["slow_host", "straggler"],
        "flaky_host" => &["host_errors"],
        "queueing" => &["queueing_delay"],
        _ => &[],
    }
}

/// One cause of a report, as scored.
#[derive(Debug, Clone)]
struct Cause {
    kind: String,
    hosts: Vec<String>,
    reported: bool,
    confidence: f64,
}

impl Cause {
    fn names(&self, fault: &Fault) -> bool {
        expected(&fault.kind).contains(&self.kind.as_str())
            && fault
                .host
                .as_ref()
                .is_none_or(|h| self.hosts.iter().any(|x| x == h))
    }

    fn label(&self, faults: &[&Fault]) -> String {
        let host_off = faults.iter().any(|f| {
            expected(&f.kind).contains(&self.kind.as_str()) && f.host.is_some() && !self.names(f)
        });
        if host_off {
            format!("{} (other host)", self.kind)
        } else {
            self.kind.clone()
        }
    }
}

struct Job {
    id: String,
    /// Causes in report order (reported first, by score).
    causes: Vec<Cause>,
    client_ms: f64,
}

impl Job {
    fn reported(&self) -> impl Iterator<Item = &Cause> {
        self.causes.iter().filter(|c| c.reported)
    }
}

struct Run {
    seed: u64,
    faults: Vec<Fault>,
    jobs: Vec<Job>,
    /// Jobs with a task row but no `job_runs` row (running at the end).
    running: usize,
    confidence_cut: f64,
    server_cpu_s: f64,
    diagnose_wall_s: f64,
    load_s: f64,
    rows: u64,
}

async fn sql(client: &reqwest::Client, url: &str, q: &str) -> Result<Vec<Value>> {
    let (text, _) =
        fleetlake_benches::query::fleetlake_sql(client, url, "fleet", q, "json").await?;
    Ok(serde_json::from_str(&text)?)
}

/// The truth of this build's simulator for the same flags, and its row count.
fn truth_in_process(args: &Args, seed: u64, start: i64) -> Result<(Value, u64)> {
    let end = start + (args.hours * HOUR_NS as f64) as i64;
    let config = SimConfig::new(args.hosts, start, end, INTERVAL_NS, seed)?;
    let mut fleet = Fleet::new(
        &config,
        &FleetOptions {
            faults: args.faults,
            fault_kinds: args.fault_kinds.clone(),
            ..Default::default()
        },
    )?;
    let mut buf = Vec::new();
    let mut rows = 0u64;
    loop {
        buf.clear();
        let n = fleet.next_chunk(&mut buf, 20_000);
        if n == 0 {
            break;
        }
        rows += n as u64;
    }
    Ok((serde_json::to_value(fleet.ground_truth())?, rows))
}

/// The file's truth, checked against the in-process one; `harmed_jobs` from
/// the latter when the binary does not write it.
fn reconcile(file: Value, mine: &Value) -> Result<Truth> {
    let mut without = mine.clone();
    let mut harmed = Vec::new();
    for f in without["faults"].as_array_mut().context("faults")? {
        harmed.push(f.as_object_mut().context("fault")?.remove("harmed_jobs"));
    }
    let mut file = file;
    let from_file = file["faults"]
        .as_array()
        .context("faults")?
        .iter()
        .all(|f| f.get("harmed_jobs").is_some());
    if from_file {
        if &file != mine {
            bail!("--bin's ground truth differs from this build's simulator");
        }
    } else {
        if file != without {
            bail!("--bin's ground truth differs from this build's simulator");
        }
        for (f, h) in file["faults"]
            .as_array_mut()
            .context("faults")?
            .iter_mut()
            .zip(harmed)
        {
            f["harmed_jobs"] = h.context("harmed_jobs")?;
        }
    }
    Ok(serde_json::from_value(file)?)
}

fn parse_causes(report: &Value) -> Vec<Cause> {
    report["causes"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| Cause {
                    kind: c["kind"].as_str().unwrap_or("?").to_string(),
                    hosts: c["hosts"]
                        .as_array()
                        .map(|h| {
                            h.iter()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                    reported: c["reported"] == true,
                    confidence: c["confidence"].as_f64().unwrap_or(0.0),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A fresh scratch directory for one run.
fn scratch(name: &str) -> Result<PathBuf> {
    let tmp = std::env::temp_dir().join(format!("diagnosis_eval-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    Ok(tmp)
}

/// `fleetlake gen fleet` into `server` with `faults` faults of
/// `--fault-kinds`; the rows it sent.
fn gen_fleet(
    args: &Args,
    server: &Server,
    seed: u64,
    faults: u32,
    truth: Option<&std::path::Path>,
) -> Result<u64> {
    let mut cmd = Command::new(&args.bin);
    cmd.args(["gen", "fleet", "--start", START, "--url", &server.url])
        .args(["--hosts", &args.hosts.to_string()])
        .args(["--hours", &args.hours.to_string()])
        .args(["--faults", &faults.to_string()])
        .args(["--seed", &seed.to_string()])
        .stderr(Stdio::inherit());
    if faults > 0 {
        cmd.args(fault_kinds_arg(&args.fault_kinds));
    }
    if let Some(t) = truth {
        cmd.arg("--truth").arg(t);
    }
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("fleetlake gen failed: {}", out.status);
    }
    // "N rows, X MB in T s: R rows/s"
    let summary = String::from_utf8_lossy(&out.stdout);
    summary
        .lines()
        .find(|l| l.contains(" rows, "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("gen summary: {summary}"))
}

fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?)
}

async fn flush(client: &reqwest::Client, server: &Server) -> Result<()> {
    client
        .post(format!("{}/api/v1/admin/flush", server.url))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

async fn run_one(args: &Args, seed: u64) -> Result<Run> {
    let tmp = scratch(&seed.to_string())?;
    let server = Server::start(&args.bin, &tmp.join("data"), &[])?;
    let truth_path = tmp.join("truth.json");
    let t = Instant::now();
    let loaded = gen_fleet(args, &server, seed, args.faults, Some(&truth_path))?;
    let client = client()?;
    flush(&client, &server).await?;
    let load_s = t.elapsed().as_secs_f64();
    let start = fleetlake_time::parse_rfc3339(START).context("START")?;
    let (mine, rows) = truth_in_process(args, seed, start)?;
    if rows != loaded {
        bail!("seed {seed}: the server took {loaded} rows, this build's simulator makes {rows}");
    }
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&truth_path)?)?;
    let truth = reconcile(file, &mine)?;
    eprintln!("seed {seed}: {rows} rows loaded in {load_s:.0} s");

    let ids: Vec<String> = sql(
        &client,
        &server.url,
        "SELECT job_id FROM job_runs ORDER BY job_id",
    )
    .await?
    .iter()
    .filter_map(|r| r["job_id"].as_str().map(str::to_string))
    .collect();
    let running = sql(
        &client,
        &server.url,
        "SELECT count(DISTINCT job_id) AS n FROM job_tasks WHERE job_id NOT IN (SELECT job_id FROM job_runs)",
    )
    .await?
    .first()
    .and_then(|r| r["n"].as_u64())
    .unwrap_or(0) as usize;

    let cpu0 = cpu_seconds(server.pid())?;
    let wall = Instant::now();
    let mut jobs = Vec::with_capacity(ids.len());
    let mut confidence_cut = f64::NAN;
    for id in ids {
        let t = Instant::now();
        let r = client
            .get(format!(
                "{}/api/v1/diagnosis/jobs/{id}?db=fleet",
                server.url
            ))
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        let client_ms = t.elapsed().as_secs_f64() * 1e3;
        if !status.is_success() {
            bail!("{id}: {status}: {text}");
        }
        let report: Value = serde_json::from_str(&text)?;
        confidence_cut = report["confidence_cut"].as_f64().unwrap_or(f64::NAN);
        jobs.push(Job {
            causes: parse_causes(&report),
            id,
            client_ms,
        });
    }
    let diagnose_wall_s = wall.elapsed().as_secs_f64();
    let server_cpu_s = cpu_seconds(server.pid())? - cpu0;
    drop(server);
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(Run {
        seed,
        faults: truth.faults,
        jobs,
        running,
        confidence_cut,
        server_cpu_s,
        diagnose_wall_s,
        load_s,
        rows,
    })
}

/// `--fault-kinds a,b` for `fleetlake gen`, or nothing for the default.
fn fault_kinds_arg(kinds: &[FaultKind]) -> Vec<String> {
    if kinds.is_empty() {
        return Vec::new();
    }
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    vec!["--fault-kinds".into(), names.join(",")]
}

fn harmed(f: &Fault) -> &[String] {
    f.harmed_jobs.as_deref().unwrap_or(&[])
}

fn affected(f: &Fault) -> &[String] {
    &f.affected_jobs
}

#[derive(Default)]
struct Score {
    /// (fault, finished job) pairs.
    jobs: usize,
    /// Of which another fault harmed (or touched) the same job.
    shared: usize,
    top1: usize,
    top3: usize,
    /// The injected cause is found, but below the cut.
    below_cut: usize,
    /// What was first when top-1 missed.
    first_instead: BTreeMap<String, usize>,
    missed: Vec<String>,
}

/// Per fault kind, over the jobs `which` selects from each fault (harmed
/// or affected).
fn score(runs: &[Run], which: fn(&Fault) -> &[String], verbose: bool) -> BTreeMap<String, Score> {
    let mut by_kind: BTreeMap<String, Score> = BTreeMap::new();
    for run in runs {
        let jobs: BTreeMap<&str, &Job> = run.jobs.iter().map(|j| (j.id.as_str(), j)).collect();
        // Job → the faults that selected it.
        let mut faults_of: BTreeMap<&str, Vec<&Fault>> = BTreeMap::new();
        for f in &run.faults {
            for j in which(f) {
                faults_of.entry(j.as_str()).or_default().push(f);
            }
        }
        for f in &run.faults {
            let sc = by_kind.entry(f.kind.clone()).or_default();
            for j in which(f) {
                // A job still running at the end has no job_runs row.
                let Some(job) = jobs.get(j.as_str()) else {
                    continue;
                };
                let all = &faults_of[j.as_str()];
                sc.jobs += 1;
                sc.shared += usize::from(all.len() > 1);
                let names_any = |c: &Cause| all.iter().any(|f| c.names(f));
                let first = job.reported().next();
                let ok1 = first.is_some_and(names_any);
                let ok3 = job.reported().take(3).any(names_any);
                sc.top1 += usize::from(ok1);
                sc.top3 += usize::from(ok3);
                if !ok3 && job.causes.iter().any(|c| c.names(f)) {
                    sc.below_cut += 1;
                }
                if !ok1 {
                    let what = first.map_or("nothing reported".to_string(), |c| c.label(all));
                    *sc.first_instead.entry(what).or_default() += 1;
                    sc.missed.push(format!("seed {} {j}", run.seed));
                }
                if verbose {
                    eprintln!(
                        "seed {} {} {} {j}: top-1 {ok1} top-3 {ok3}: [{}]",
                        run.seed,
                        f.kind,
                        f.host.as_deref().unwrap_or("-"),
                        job.causes
                            .iter()
                            .filter(|c| c.reported)
                            .map(|c| format!("{} {:?} {:.2}", c.kind, c.hosts, c.confidence))
                            .collect::<Vec<_>>()
                            .join("; ")
                    );
                }
            }
        }
    }
    by_kind
}

fn pct(a: usize, b: usize) -> String {
    if b == 0 {
        "–".into()
    } else {
        format!("{:.1} % ({a}/{b})", 100.0 * a as f64 / b as f64)
    }
}

fn table(title: &str, by_kind: &BTreeMap<String, Score>) {
    println!("\n{title}\n");
    println!(
        "| fault kind | jobs | of which another fault also hit | top-1 | top-3 | found below the cut | ranked first when top-1 missed |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut total = Score::default();
    for (kind, sc) in by_kind {
        let instead = sc
            .first_instead
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "| {kind} | {} | {} | {} | {} | {} | {} |",
            sc.jobs,
            sc.shared,
            pct(sc.top1, sc.jobs),
            pct(sc.top3, sc.jobs),
            sc.below_cut,
            if instead.is_empty() { "–" } else { &instead }
        );
        total.jobs += sc.jobs;
        total.shared += sc.shared;
        total.top1 += sc.top1;
        total.top3 += sc.top3;
        total.below_cut += sc.below_cut;
    }
    println!(
        "| **all** | {} | {} | **{}** | **{}** | {} | |",
        total.jobs,
        total.shared,
        pct(total.top1, total.jobs),
        pct(total.top3, total.jobs),
        total.below_cut
    );
}

/// Task `STRAGGLER.1` of stage `STRAGGLER.0` of the big job runs 5× long.
const STRAGGLER: (usize, usize) = (2, 17);
const BIG_JOB: &str = "job_900000";
const BIG_STAGES: usize = 5;

/// Line protocol of one job of `tasks` tasks in 5 chained stages over
/// `hosts` hosts, starting at `t0`, shaped as the simulator's job rows
/// (see `fleetlake_sim::fleet`).
fn big_job_lines(tasks: usize, hosts: u64, t0: i64) -> Vec<String> {
    let mut rng = fleetlake_sim::rng::stream(42, 7, 7);
    let per_stage = tasks / BIG_STAGES;
    let mut lines = Vec::with_capacity(tasks + BIG_STAGES + 1);
    let mut stage_start = t0;
    let (mut job_read, mut job_written) = (0i64, 0i64);
    for stage in 0..BIG_STAGES {
        // The last stage takes the remainder.
        let n = if stage == BIG_STAGES - 1 {
            tasks - per_stage * (BIG_STAGES - 1)
        } else {
            per_stage
        };
        let (mut end_max, mut read, mut written) = (stage_start, 0i64, 0i64);
        for task in 0..n {
            let host = rng.below(hosts);
            let start = stage_start + (rng.range(0.0, 3.0) * S as f64) as i64;
            let bytes = (rng.range(200.0, 300.0) * 1048576.0) as i64;
            let mut dur = (rng.range(8.0, 12.0) * S as f64) as i64;
            if (stage, task) == STRAGGLER {
                dur *= 5;
            }
            let end = start + dur / 1_000_000 * 1_000_000;
            end_max = end_max.max(end);
            read += bytes;
            written += bytes / 2;
            lines.push(format!(
                "job_tasks,hostname=host_{host},job_id={BIG_JOB},stage_id={stage},task_id={task},attempt=0 status=\"SUCCEEDED\",start_ns={start}i,end_ns={end}i,duration_ms={}i,bytes_read={bytes}i,bytes_written={}i,records_read={}i,records_written={}i,shuffle_read_bytes={}i {end}",
                (end - start) / 1_000_000,
                bytes / 2,
                bytes / 200,
                bytes / 400,
                if stage == 0 { 0 } else { bytes },
            ));
        }
        let parents = if stage == 0 {
            String::new()
        } else {
            (stage - 1).to_string()
        };
        lines.push(format!(
            "job_stages,job_id={BIG_JOB},stage_id={stage} status=\"SUCCEEDED\",parents=\"{parents}\",tasks={n}i,attempts={n}i,failed_attempts=0i,start_ns={stage_start}i,end_ns={end_max}i,duration_ms={}i,bytes_read={read}i,bytes_written={written}i {end_max}",
            (end_max - stage_start) / 1_000_000
        ));
        job_read += read;
        job_written += written;
        stage_start = end_max + 2 * S;
    }
    let end = stage_start - 2 * S;
    let submit = t0 - 10 * S;
    lines.push(format!(
        "job_runs,job_id={BIG_JOB},user=alice,queue=etl status=\"SUCCEEDED\",submit_ns={submit}i,start_ns={t0}i,end_ns={end}i,duration_ms={}i,stages={BIG_STAGES}i,tasks={tasks}i,attempts={tasks}i,failed_attempts=0i,bytes_read={job_read}i,bytes_written={job_written}i {end}",
        (end - t0) / 1_000_000
    ));
    lines
}

/// `--big-job N`: one job of N tasks over a healthy fleet's telemetry,
/// diagnosed `--repeat` times.
async fn big_job(args: &Args, tasks: usize) -> Result<()> {
    if tasks < BIG_STAGES * (STRAGGLER.1 + 1) {
        bail!(
            "--big-job needs at least {} tasks",
            BIG_STAGES * (STRAGGLER.1 + 1)
        );
    }
    let seed = args.seeds.first().copied().unwrap_or(1);
    let tmp = scratch("big")?;
    let server = Server::start(&args.bin, &tmp.join("data"), &[])?;
    let t = Instant::now();
    let rows = gen_fleet(args, &server, seed, 0, None)?;
    let client = client()?;
    let start = fleetlake_time::parse_rfc3339(START).context("START")?;
    let t0 = start + (args.hours * HOUR_NS as f64 / 2.0) as i64;
    for chunk in big_job_lines(tasks, args.hosts, t0).chunks(20_000) {
        client
            .post(format!("{}/write?db=fleet", server.url))
            .body(chunk.join("\n"))
            .send()
            .await?
            .error_for_status()?;
    }
    flush(&client, &server).await?;
    eprintln!(
        "{rows} fleet rows + a job of {tasks} tasks loaded in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let cpu0 = cpu_seconds(server.pid())?;
    let mut ms = Vec::new();
    let mut first = None;
    for _ in 0..args.repeat.max(1) {
        let t = Instant::now();
        let r = client
            .get(format!(
                "{}/api/v1/diagnosis/jobs/{BIG_JOB}?db=fleet",
                server.url
            ))
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        if !status.is_success() {
            bail!("{BIG_JOB}: {status}: {text}");
        }
        first.get_or_insert(serde_json::from_str::<Value>(&text)?);
    }
    let cpu = cpu_seconds(server.pid())? - cpu0;
    drop(server);
    let _ = std::fs::remove_dir_all(&tmp);
    let report = first.context("no report")?;
    let counted: u64 = report["stages"]
        .as_array()
        .context("stages")?
        .iter()
        .filter_map(|s| s["tasks"].as_u64())
        .sum();
    if counted != tasks as u64 {
        bail!("the report counts {counted} tasks, the job has {tasks}");
    }
    let top = parse_causes(&report)
        .into_iter()
        .find(|c| c.reported)
        .map_or("nothing".to_string(), |c| {
            format!("{} {:?} {:.2}", c.kind, c.hosts, c.confidence)
        });
    let ms = sorted(&ms);
    println!(
        "one job of {tasks} tasks ({BIG_STAGES} stages) over {} hosts' telemetry ({rows} rows): {} diagnoses, p50 {:.0} ms, min {:.0} ms, max {:.0} ms as the client sees it; server CPU {:.0} ms a diagnosis; top cause: {top}",
        args.hosts,
        ms.len(),
        percentile(&ms, 50.0),
        ms[0],
        ms[ms.len() - 1],
        1e3 * cpu / ms.len() as f64
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(tasks) = args.big_job {
        return big_job(&args, tasks).await;
    }
    let mut runs = Vec::new();
    for &seed in &args.seeds {
        runs.push(run_one(&args, seed).await?);
    }
    let by_harmed = score(&runs, harmed, args.verbose);
    let by_affected = score(&runs, affected, false);

    let jobs: usize = runs.iter().map(|r| r.jobs.len()).sum();
    let running: usize = runs.iter().map(|r| r.running).sum();
    println!(
        "{} hosts × {} h at 10 s, {} faults a run, seeds {:?}: {jobs} finished jobs diagnosed ({running} still running at the end, not scored)",
        args.hosts, args.hours, args.faults, args.seeds
    );
    for r in &runs {
        println!(
            "seed {}: {} rows loaded in {:.0} s, {} jobs",
            r.seed,
            r.rows,
            r.load_s,
            r.jobs.len()
        );
    }
    table(
        "Jobs a fault harmed (`harmed_jobs`: an attempt it slowed or failed):",
        &by_harmed,
    );
    table(
        "The same over `affected_jobs` (any attempt overlapping the window, slowed or not):",
        &by_affected,
    );

    // Healthy: in no fault's affected_jobs.
    let (mut healthy, mut quiet) = (0, 0);
    let mut fired: BTreeMap<String, usize> = BTreeMap::new();
    let mut noisy = Vec::new();
    for run in &runs {
        let touched: BTreeSet<&str> = run
            .faults
            .iter()
            .flat_map(|f| f.affected_jobs.iter().map(String::as_str))
            .collect();
        for job in run.jobs.iter().filter(|j| !touched.contains(j.id.as_str())) {
            healthy += 1;
            let kinds: BTreeSet<&str> = job.reported().map(|c| c.kind.as_str()).collect();
            if kinds.is_empty() {
                quiet += 1;
            } else {
                for k in &kinds {
                    *fired.entry(k.to_string()).or_default() += 1;
                }
                noisy.push(format!(
                    "seed {} {}: {}",
                    run.seed,
                    job.id,
                    job.reported()
                        .map(|c| format!("{} {:?} {:.2}", c.kind, c.hosts, c.confidence))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
        }
    }
    let cut = runs.first().map_or(f64::NAN, |r| r.confidence_cut);
    println!(
        "\nHealthy jobs (in no fault's affected_jobs): {} with no cause at or above the cut ({cut})",
        pct(quiet, healthy)
    );
    if !fired.is_empty() {
        println!(
            "Kinds reported on healthy jobs (jobs): {}",
            fired
                .iter()
                .map(|(k, n)| format!("{k} ×{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for n in &noisy {
            println!("- {n}");
        }
    }

    let ms = sorted(
        &runs
            .iter()
            .flat_map(|r| r.jobs.iter().map(|j| j.client_ms))
            .collect::<Vec<_>>(),
    );
    let cpu: f64 = runs.iter().map(|r| r.server_cpu_s).sum();
    let wall: f64 = runs.iter().map(|r| r.diagnose_wall_s).sum();
    println!(
        "\nLatency, one request at a time ({jobs} jobs): p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms as the client sees it; server CPU {:.2} s over {:.1} s of diagnosis ({:.0} ms CPU a job)",
        percentile(&ms, 50.0),
        percentile(&ms, 95.0),
        ms.last().copied().unwrap_or(f64::NAN),
        cpu,
        wall,
        1e3 * cpu / jobs.max(1) as f64
    );
    for (kind, sc) in &by_harmed {
        if !sc.missed.is_empty() {
            println!("\n{kind}: top-1 missed: {}", sc.missed.join(", "));
        }
    }
    Ok(())
}
