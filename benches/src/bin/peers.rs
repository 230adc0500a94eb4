//! The query half of `benches/peers.sh`: the fifteen TSBS queries against
//! fleetlake (SQL over HTTP), VictoriaMetrics (MetricsQL), InfluxDB 1.x
//! (InfluxQL) and DuckDB (the same SQL over fleetlake's Parquet files, via
//! `peers_duckdb.py`), with the same seeded parameters; the first `--check`
//! runs of every query on every system are compared with the answer
//! recomputed from the generator, so agreement with it is agreement across
//! systems. Then one table: the ingest, disk and memory figures `peers.sh`
//! measured (`--facts`) and the query medians, each peer with its ratio to
//! fleetlake.
//!
//! ```text
//! target/release/peers --hosts 4000 --hours 3 --start 2016-01-01T00:00:00Z \
//!     --fleetlake http://127.0.0.1:8086 --victoria http://127.0.0.1:8428 \
//!     --influx http://127.0.0.1:8087 --duckdb-glob 'DATA/store/fleet/cpu/**/*.parquet' \
//!     --facts facts.txt --out table.md
//! ```
//!
//! Exit status 2 when an answer disagrees or a run fails.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, Result, bail};
use clap::Parser;
use fleetlake_benches::answer::{Columns, Table};
use fleetlake_benches::data::DataArgs;
use fleetlake_benches::peers::{influx, influx_table, victoria, victoria_table};
use fleetlake_benches::query::{QueryResult, fleetlake_sql};
use fleetlake_benches::stats::thousands;
use fleetlake_benches::tsbs::{NAMES, Params, draw};
use fleetlake_sim::SimConfig;
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(
    name = "peers",
    about = "TSBS queries on fleetlake and its peers, answers checked, one table"
)]
struct Args {
    #[command(flatten)]
    data: DataArgs,
    /// Runs of each query type on each system.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Answers of the first N runs are checked.
    #[arg(long, default_value_t = 2)]
    check: usize,
    #[arg(long, default_value_t = 1)]
    query_seed: u64,
    /// Query types (comma-separated); default all fifteen.
    #[arg(long, value_delimiter = ',')]
    queries: Vec<String>,
    /// fleetlake base URL.
    #[arg(long)]
    fleetlake: String,
    #[arg(long, default_value = "fleet")]
    db: String,
    /// VictoriaMetrics base URL.
    #[arg(long)]
    victoria: Option<String>,
    /// InfluxDB 1.x base URL (database --db).
    #[arg(long)]
    influx: Option<String>,
    /// Glob of the Parquet files DuckDB reads.
    #[arg(long)]
    duckdb_glob: Option<String>,
    /// The DuckDB helper script.
    #[arg(long, default_value = "benches/peers_duckdb.py")]
    duckdb_helper: PathBuf,
    #[arg(long, default_value = "python3")]
    python: String,
    /// Lines `SYSTEM KEY VALUE` from peers.sh (ingest_json, bytes_flush,
    /// bytes_compacted, rss_kb, note).
    #[arg(long)]
    facts: Option<PathBuf>,
    /// Also write the table (markdown) here.
    #[arg(long)]
    out: Option<PathBuf>,
}

const SYSTEMS: [(&str, &str); 4] = [
    ("fleetlake", "fleetlake"),
    ("victoria", "VictoriaMetrics"),
    ("influx", "InfluxDB 1.x"),
    ("duckdb", "DuckDB"),
];

struct DuckDb {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl DuckDb {
    fn start(python: &str, helper: &PathBuf, glob: &str) -> Result<Self> {
        let mut child = Command::new(python)
            .arg(helper)
            .arg(glob)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {python} {}", helper.display()))?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("stdout")?);
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    /// (ms, answer with rows when asked).
    fn run(&mut self, sql: &str, rows: bool) -> Result<(f64, Value)> {
        writeln!(
            self.stdin,
            "{}",
            serde_json::json!({"sql": sql, "rows": rows})
        )?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the DuckDB helper exited");
        }
        let v: Value = serde_json::from_str(&line)?;
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            bail!("DuckDB: {e}\n  query: {sql}");
        }
        Ok((v.get("ms").and_then(Value::as_f64).unwrap_or(f64::NAN), v))
    }
}

impl Drop for DuckDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn duck_table(v: &Value, cols: &Columns) -> Result<Table> {
    let names: Vec<&str> = v
        .get("columns")
        .and_then(Value::as_array)
        .context("no columns")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let rows: Vec<Vec<Value>> = v
        .get("rows")
        .and_then(Value::as_array)
        .context("no rows")?
        .iter()
        .map(|r| r.as_array().cloned().unwrap_or_default())
        .collect();
    Table::from_json_rows(&names, &rows, cols)
}

/// One run on one system: (ms, the answer as a table when it is checked).
async fn run_one(
    system: &str,
    p: &Params,
    args: &Args,
    data: &SimConfig,
    client: &reqwest::Client,
    duck: &mut Option<DuckDb>,
    checked: bool,
) -> Result<(f64, Option<(Table, Table)>)> {
    let expect = |p: &Params, cols: &Columns| -> Table {
        let mut e = p.expected(data);
        let names = cols.names();
        let idx: Vec<usize> = names
            .iter()
            .map(|n| {
                e.columns
                    .names()
                    .iter()
                    .position(|m| m == n)
                    .expect("a checked column")
            })
            .collect();
        e.rows = e
            .rows
            .iter()
            .map(|r| idx.iter().map(|&i| r[i].clone()).collect())
            .collect();
        e.columns = cols.clone();
        e
    };
    let time_col = p.columns().0[0].0.clone();
    match system {
        "fleetlake" => {
            let (text, d) =
                fleetlake_sql(client, &args.fleetlake, &args.db, &p.sql(), "csv").await?;
            let t = if checked {
                Some((p.expected(data), Table::from_csv(&text, &p.columns())?))
            } else {
                None
            };
            Ok((d.as_secs_f64() * 1e3, t))
        }
        "victoria" => {
            let base = args.victoria.as_deref().context("no --victoria")?;
            let (aligned, q, cols) = p.metricsql(i64::from(args.data.interval_s) * 1_000_000_000);
            let (v, d) = victoria(client, base, &q).await?;
            let t = if checked {
                Some((
                    expect(&aligned, &cols),
                    victoria_table(&v, &cols, q.column_prefix)?,
                ))
            } else {
                None
            };
            Ok((d.as_secs_f64() * 1e3, t))
        }
        "influx" => {
            let base = args.influx.as_deref().context("no --influx")?;
            let (v, d) = influx(client, base, &args.db, &p.influxql()).await?;
            let t = if checked {
                Some((p.expected(data), influx_table(&v, &p.columns(), &time_col)?))
            } else {
                None
            };
            Ok((d.as_secs_f64() * 1e3, t))
        }
        "duckdb" => {
            let duck = duck.as_mut().context("no --duckdb-glob")?;
            let (ms, v) = duck.run(&p.sql(), checked)?;
            let t = if checked {
                Some((p.expected(data), duck_table(&v, &p.columns())?))
            } else {
                None
            };
            Ok((ms, t))
        }
        other => bail!("unknown system {other}"),
    }
}

fn facts(path: &Option<PathBuf>) -> Result<BTreeMap<(String, String), String>> {
    let mut out = BTreeMap::new();
    let Some(path) = path else { return Ok(out) };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.splitn(3, ' ');
        let (Some(s), Some(k), Some(v)) = (it.next(), it.next(), it.next()) else {
            bail!("a facts line is not `SYSTEM KEY VALUE`: {line}");
        };
        out.insert((s.to_string(), k.to_string()), v.to_string());
    }
    Ok(out)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("peers: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run(args: Args) -> Result<i32> {
    let data = args.data.config()?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let names: Vec<&str> = if args.queries.is_empty() {
        NAMES.to_vec()
    } else {
        args.queries.iter().map(String::as_str).collect()
    };
    let mut duck = match &args.duckdb_glob {
        Some(g) => Some(DuckDb::start(&args.python, &args.duckdb_helper, g)?),
        None => None,
    };
    let systems: Vec<&str> = SYSTEMS
        .iter()
        .map(|(s, _)| *s)
        .filter(|s| match *s {
            "victoria" => args.victoria.is_some(),
            "influx" => args.influx.is_some(),
            "duckdb" => args.duckdb_glob.is_some(),
            _ => true,
        })
        .collect();
    // results[system][query]
    let mut results: BTreeMap<&str, Vec<QueryResult>> = BTreeMap::new();
    let mut problems = Vec::new();
    for name in &names {
        let draws = draw(name, &data, args.query_seed, args.runs)?;
        for system in &systems {
            let mut times = Vec::new();
            let (mut checked, mut correct) = (0, 0);
            let mut errors = Vec::new();
            for (i, p) in draws.iter().enumerate() {
                let check = i < args.check;
                match run_one(system, p, &args, &data, &client, &mut duck, check).await {
                    Ok((ms, t)) => {
                        times.push(ms);
                        if let Some((expected, actual)) = t {
                            checked += 1;
                            match expected.diff(&actual) {
                                None => correct += 1,
                                Some(d) => errors
                                    .push(format!("run {i}: disagrees with the generator: {d}")),
                            }
                        }
                    }
                    Err(e) => errors.push(format!("run {i}: {e:#}")),
                }
            }
            let mut r = QueryResult::new(name, times);
            r.checked = checked;
            r.correct = correct;
            eprintln!(
                "{name:<24} {system:<10} median {:>10.2} ms  p95 {:>10.2} ms  answers {correct}/{checked}{}",
                r.median_ms,
                r.p95_ms,
                if errors.is_empty() {
                    String::new()
                } else {
                    format!("  {} problem(s)", errors.len())
                }
            );
            for e in &errors {
                problems.push(format!("{name} on {system}: {e}"));
            }
            r.errors = errors;
            results.entry(system).or_default().push(r);
        }
    }
    let table = render(&args, &names, &systems, &results, &facts(&args.facts)?);
    println!("{table}");
    if let Some(out) = &args.out {
        std::fs::write(out, &table).with_context(|| format!("writing {}", out.display()))?;
    }
    for p in &problems {
        println!("PROBLEM: {}", p.chars().take(3000).collect::<String>());
    }
    Ok(if problems.is_empty() { 0 } else { 2 })
}

fn render(
    args: &Args,
    names: &[&str],
    systems: &[&str],
    results: &BTreeMap<&str, Vec<QueryResult>>,
    facts: &BTreeMap<(String, String), String>,
) -> String {
    let label = |s: &str| {
        SYSTEMS
            .iter()
            .find(|(k, _)| *k == s)
            .map_or(s, |(_, l)| *l)
            .to_string()
    };
    let ingest = |s: &str| -> Option<Value> {
        let path = facts.get(&(s.to_string(), "ingest_json".to_string()))?;
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    };
    let samples = ingest("fleetlake").and_then(|v| v.get("samples")?.as_f64());
    let num = |s: &str, k: &str| -> Option<f64> {
        facts.get(&(s.to_string(), k.to_string()))?.parse().ok()
    };
    // (value, text) per system for one row; the ratio is value / fleetlake's.
    let mut out = String::new();
    let header: Vec<String> = systems.iter().map(|s| label(s)).collect();
    out.push_str(&format!(
        "| {} hosts × {} h, {} runs per query | {} |\n",
        args.data.hosts,
        args.data.hours,
        args.runs,
        header.join(" | ")
    ));
    out.push_str(&format!("|---|{}\n", "---|".repeat(systems.len())));
    let mut row = |title: &str, f: &dyn Fn(&str) -> Option<(f64, String)>| {
        let base = f("fleetlake").map(|(v, _)| v);
        let cells: Vec<String> = systems
            .iter()
            .map(|s| match f(s) {
                None => "–".to_string(),
                Some((v, text)) if *s != "fleetlake" => match base {
                    Some(b) if b > 0.0 && v.is_finite() => format!("{text} ({:.2}×)", v / b),
                    _ => text,
                },
                Some((_, text)) => text,
            })
            .collect();
        out.push_str(&format!("| {title} | {} |\n", cells.join(" | ")));
    };
    row("ingest rows/s", &|s| {
        let v = ingest(s)?.get("rows_per_s")?.as_f64()?;
        Some((v, thousands(v as u64)))
    });
    row("ingest samples/s", &|s| {
        let v = ingest(s)?.get("samples_per_s")?.as_f64()?;
        Some((v, format!("{:.2}M", v / 1e6)))
    });
    row("write latency p50 / p99 (ms)", &|s| {
        let j = ingest(s)?;
        let (a, b) = (
            j.get("latency_p50_ms")?.as_f64()?,
            j.get("latency_p99_ms")?.as_f64()?,
        );
        Some((a, format!("{a:.1} / {b:.1}")))
    });
    row("bytes/sample after flush", &|s| {
        let v = num(s, "bytes_flush")? / samples?;
        Some((v, format!("{v:.3}")))
    });
    row("bytes/sample after compaction", &|s| {
        let v = num(s, "bytes_compacted")? / samples?;
        Some((v, format!("{v:.3}")))
    });
    row("peak RSS (MiB)", &|s| {
        let v = num(s, "rss_kb")? / 1024.0;
        Some((v, format!("{v:.0}")))
    });
    for (qi, name) in names.iter().enumerate() {
        row(&format!("{name} median ms"), &|s| {
            let r = results.get(s)?.get(qi)?;
            if r.median_ms.is_nan() {
                return None;
            }
            let mark = if r.errors.is_empty() { "" } else { " ✗" };
            Some((r.median_ms, format!("{:.2}{mark}", r.median_ms)))
        });
    }
    let checks: Vec<String> = systems
        .iter()
        .map(|s| {
            let rs = results.get(s).map(Vec::as_slice).unwrap_or_default();
            let c: usize = rs.iter().map(|r| r.correct).sum();
            let n: usize = rs.iter().map(|r| r.checked).sum();
            format!("{}: {c}/{n}", label(s))
        })
        .collect();
    out.push_str(&format!(
        "\nAnswers equal to the generator's (first {} runs of each query): {}. Ratio = peer ÷ fleetlake. ✗: a run failed or disagreed.\n",
        args.check,
        checks.join(", ")
    ));
    for ((s, k), v) in facts {
        if k == "note" {
            out.push_str(&format!("- {}: {v}\n", label(s)));
        }
    }
    out
}
