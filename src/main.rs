//! The `fleetlake` binary: the server (`serve`) and the SQL client (`sql`).

use clap::{Parser, Subcommand};

mod cli_sql;
mod config;
mod http;
mod server;

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
    Serve(config::ServeArgs),
    /// Run a SQL query against a running server and print the result.
    Sql(cli_sql::SqlArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(server::serve(args)),
        Command::Sql(args) => runtime.block_on(cli_sql::run(args)),
    }
}
