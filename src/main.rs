//! The `fleetlake` binary: the server (`serve`), the SQL client (`sql`), the
//! job diagnosis client (`diagnose`) and the fleet simulator (`gen`).

use clap::{Parser, Subcommand};

mod cli_ballista;
mod cli_bench;
mod cli_client;
mod cli_diagnose;
mod cli_gen;
mod cli_sql;
mod cli_token;
mod config;
mod demo;
mod serve;

/// mimalloc rather than glibc's malloc: the write path and the rules'
/// passes allocate and free many small objects from several threads, and
/// glibc kept what they freed: at 1,000 rules over 100,000 hosts the
/// server's RSS was 3.9 GiB under glibc and 2.2 GiB under mimalloc, for
/// the same 0.6 GiB of rule state (benches/README, rules at fleet scale).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (libmimalloc-sys
/// names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc hands freed pages back to the OS 50 ms after they fall free
/// (arenas 10x later) instead of its default 1 s: the write path frees a
/// request's batches, a merged buffer tail and a flush's slices within
/// seconds, and a second's worth of them kept resident was ~80 MiB of the
/// 4,000-host ingest's peak RSS (benches/README, "Ingest memory"). An
/// explicit `MIMALLOC_PURGE_DELAY` wins.
#[allow(unsafe_code)]
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an integer option; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 50) };
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "fleetlake",
    version,
    about = "Time-series telemetry store and warehouse for machine fleets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: HTTP write and query APIs over the local or S3 store.
    Serve(Box<config::ServeArgs>),
    /// Run a SQL query against a running server and print the result.
    Sql(cli_sql::SqlArgs),
    /// Diagnose a job on a running server: where its time went and the
    /// ranked likely causes (data skew, stragglers, failures, hardware).
    Diagnose(cli_diagnose::DiagnoseArgs),
    /// Generate a simulated fleet's telemetry as line protocol: TSBS
    /// cpu-only or devops, or a big-data fleet with injected faults.
    Gen(cli_gen::GenArgs),
    /// Benchmark: load line protocol into any InfluxDB-compatible write API
    /// (`bench ingest`), or time and check the TSBS queries (`bench query`).
    Bench(cli_bench::BenchArgs),
    /// Create, list and revoke API tokens on the store.
    Token(cli_token::TokenArgs),
    /// Distributed SQL on Apache Ballista: a scheduler, an executor, or a
    /// query over the tables' Delta snapshots.
    Ballista(cli_ballista::BallistaArgs),
}

fn main() -> anyhow::Result<()> {
    tune_allocator();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // PromQL evaluates on blocking threads of this runtime and recurses
        // once per expression level (bounded by its front door).
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::serve(*args)),
        Command::Sql(args) => runtime.block_on(cli_sql::run(args)),
        Command::Diagnose(args) => runtime.block_on(cli_diagnose::run(args)),
        Command::Gen(args) => cli_gen::run(args, &runtime),
        Command::Bench(args) => cli_bench::run(args, &runtime),
        Command::Token(args) => runtime.block_on(cli_token::run(args)),
        Command::Ballista(args) => runtime.block_on(cli_ballista::run(args)),
    }
}
