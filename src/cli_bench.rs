//! `fleetlake bench`: load line protocol into any InfluxDB-compatible write
//! API and time the TSBS queries against a fleetlake server. The pieces live
//! in the `fleetlake-benches` crate (shared with the end-to-end driver and
//! `benches/peers.sh`); this is the command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use fleetlake_benches::data::DataArgs;
use fleetlake_benches::load::{LoadOptions, LoadReport, ReaderLines, load};
use fleetlake_benches::query::{QueryOptions, print_results, run_fleetlake};
use fleetlake_benches::sink::Sink;
use fleetlake_benches::tsbs::NAMES;
use fleetlake_sim::{CpuOnly, Devops, LineSource};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Send line protocol to a write URL and report rows/s, samples/s and
    /// request latency. Bodies are prepared before the clock starts.
    Ingest(IngestArgs),
    /// Time the 15 TSBS queries against a fleetlake server (median, p95)
    /// and check a sample of answers against the generator.
    Query(QueryArgs),
    /// Start a server, feed it a fleet's heartbeat and thermal rows in real
    /// time, and measure N rules over it: round durations, CPU, ingest with
    /// and without the rules, state memory, install and on_write alert
    /// latency (see benches/README.md, "Rules at fleet scale").
    Rules(RulesArgs),
}

#[derive(Debug, Args)]
pub struct RulesArgs {
    /// Machines reporting.
    #[arg(long, default_value_t = 100_000)]
    pub hosts: u64,
    /// Rules installed (a mix of ten shapes).
    #[arg(long, default_value_t = 1000)]
    pub rules: usize,
    /// Every rule's evaluation interval.
    #[arg(long, default_value = "30s", value_parser = fleetlake_time::parse_duration)]
    pub every: Duration,
    /// How often each machine reports.
    #[arg(long, default_value = "10s", value_parser = fleetlake_time::parse_duration)]
    pub interval: Duration,
    /// Data written before measuring (so every window is full).
    #[arg(long, default_value = "10m", value_parser = fleetlake_time::parse_duration)]
    pub history: Duration,
    /// Rule intervals measured without the rules, then with them.
    #[arg(long, default_value_t = 4)]
    pub rounds: u32,
    /// Concurrent write requests.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Lines per write request.
    #[arg(long, default_value_t = 10_000)]
    pub batch: usize,
    /// How often a probe row makes a new host hot (on_write alert latency).
    #[arg(long, default_value = "2s", value_parser = fleetlake_time::parse_duration)]
    pub probe_every: Duration,
    /// The fleetlake binary to start (default: this one).
    #[arg(long)]
    pub fleetlake: Option<PathBuf>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub report_json: Option<PathBuf>,
    /// Extra `fleetlake serve` arguments, after `--`.
    #[arg(last = true)]
    pub serve_args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GenCase {
    /// TSBS cpu-only.
    CpuOnly,
    /// TSBS devops (nine tables).
    Devops,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The full write URL, e.g. http://127.0.0.1:8086/api/v3/write_lp?db=fleet,
    /// http://127.0.0.1:8428/write (VictoriaMetrics) or
    /// http://127.0.0.1:8087/write?db=fleet (InfluxDB 1.x); `discard` sends
    /// to an in-process server that drops the bodies (the loader's ceiling).
    #[arg(long, env = "FLEETLAKE_BENCH_URL")]
    pub url: String,

    /// Read line protocol from this file instead of generating it.
    #[arg(long, env = "FLEETLAKE_BENCH_FILE", conflicts_with = "generate")]
    pub file: Option<PathBuf>,

    /// Generate this TSBS use case (with the data flags).
    #[arg(long = "gen", env = "FLEETLAKE_BENCH_GEN", value_enum)]
    pub generate: Option<GenCase>,

    #[command(flatten)]
    pub data: DataArgs,

    /// Concurrent requests.
    #[arg(long, env = "FLEETLAKE_BENCH_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,

    /// Lines per request.
    #[arg(long, env = "FLEETLAKE_BENCH_BATCH", default_value_t = 5000)]
    pub batch: usize,

    /// Most bytes of request bodies held at once. Bodies are prepared in
    /// rounds of this size; only sending is timed.
    #[arg(long, env = "FLEETLAKE_BENCH_PREPARE_BYTES", default_value_t = 2 << 30)]
    pub prepare_bytes: usize,

    /// Offer at most this many samples per second (bodies are paced from
    /// the start of each round); by default bodies go as fast as answered.
    #[arg(long, env = "FLEETLAKE_BENCH_RATE")]
    pub rate: Option<f64>,

    /// Also write the figures as JSON to this file.
    #[arg(long, env = "FLEETLAKE_BENCH_REPORT_JSON")]
    pub report_json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Base URL of the fleetlake server.
    #[arg(
        long,
        env = "FLEETLAKE_BENCH_URL",
        default_value = "http://127.0.0.1:8086"
    )]
    pub url: String,

    /// Database holding the `cpu` table.
    #[arg(long, env = "FLEETLAKE_BENCH_DB", default_value = "fleet")]
    pub db: String,

    /// The data that was loaded (for windows, hosts and the answer checks).
    #[command(flatten)]
    pub data: DataArgs,

    /// Runs of each query type (each with its own seeded parameters).
    #[arg(long, env = "FLEETLAKE_BENCH_RUNS", default_value_t = 10)]
    pub runs: usize,

    /// Check the answers of the first N runs of each type against the
    /// generator.
    #[arg(long, env = "FLEETLAKE_BENCH_CHECK", default_value_t = 2)]
    pub check: usize,

    /// Seed of the query parameters.
    #[arg(long, env = "FLEETLAKE_BENCH_QUERY_SEED", default_value_t = 1)]
    pub query_seed: u64,

    /// Query types to run (comma-separated); default all fifteen.
    #[arg(long, env = "FLEETLAKE_BENCH_QUERIES", value_delimiter = ',')]
    pub queries: Vec<String>,

    /// Also write the figures as JSON to this file.
    #[arg(long, env = "FLEETLAKE_BENCH_REPORT_JSON")]
    pub report_json: Option<PathBuf>,
}

pub fn run(args: BenchArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Ingest(a) => ingest(a, runtime),
        BenchCommand::Query(a) => runtime.block_on(query(a)),
        BenchCommand::Rules(a) => runtime.block_on(rules(a)),
    }
}

async fn rules(a: RulesArgs) -> anyhow::Result<()> {
    let bin = match a.fleetlake {
        Some(b) => b,
        None => fleetlake_benches::rules::this_binary()?,
    };
    let report = fleetlake_benches::rules::run(&fleetlake_benches::rules::RulesBench {
        bin,
        hosts: a.hosts,
        rules: a.rules,
        every: a.every,
        interval: a.interval,
        history: a.history,
        rounds: a.rounds,
        concurrency: a.concurrency,
        batch: a.batch,
        probe_every: a.probe_every,
        serve_args: a.serve_args,
    })
    .await?;
    report.print();
    if let Some(path) = &a.report_json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(600))
        .build()?)
}

fn ingest(args: IngestArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let mut source: Box<dyn LineSource> = match (&args.file, args.generate) {
        (Some(path), _) => {
            let file =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            Box::new(ReaderLines::new(std::io::BufReader::with_capacity(
                1 << 20,
                file,
            )))
        }
        (None, Some(GenCase::CpuOnly)) => Box::new(CpuOnly::new(&args.data.config()?)),
        (None, Some(GenCase::Devops)) => Box::new(Devops::new(&args.data.config()?)),
        (None, None) => bail!("give --file FILE or --gen cpu-only|devops"),
    };
    let sink = if args.url == "discard" {
        Some(runtime.block_on(Sink::start())?)
    } else {
        None
    };
    let url = sink.as_ref().map_or(args.url.clone(), |s| s.url.clone());
    let opts = LoadOptions {
        url,
        concurrency: args.concurrency,
        batch: args.batch,
        prepare_bytes: args.prepare_bytes,
        rate: args.rate,
    };
    let report: LoadReport = load(runtime, &client(args.concurrency)?, source.as_mut(), &opts)?;
    if let Some(sink) = sink {
        if sink.received() != report.bytes {
            bail!(
                "the discard sink read {} bytes of the {} sent",
                sink.received(),
                report.bytes
            );
        }
        println!("discard sink: the loader's own ceiling (bodies read and dropped)");
        sink.stop();
    }
    report.print();
    if let Some(path) = &args.report_json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn query(args: QueryArgs) -> anyhow::Result<()> {
    let data = args.data.config()?;
    let names: Vec<&str> = if args.queries.is_empty() {
        NAMES.to_vec()
    } else {
        args.queries.iter().map(String::as_str).collect()
    };
    if args.runs == 0 {
        bail!("--runs must be positive");
    }
    let opts = QueryOptions {
        base: args.url.clone(),
        db: args.db.clone(),
        runs: args.runs,
        check: args.check,
        seed: args.query_seed,
    };
    let results = run_fleetlake(&client(1)?, &data, &names, &opts).await?;
    print_results(&results);
    if let Some(path) = &args.report_json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let failed: usize = results.iter().map(|r| r.errors.len()).sum();
    if failed > 0 {
        bail!("{failed} runs failed or answered wrongly (see above)");
    }
    Ok(())
}
