//! `fleetlake ballista`: a Ballista scheduler, an executor, or a SQL query
//! on such a cluster over a store's tables.

use std::net::SocketAddr;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct BallistaArgs {
    #[command(subcommand)]
    command: BallistaCommand,
}

#[derive(Debug, Subcommand)]
enum BallistaCommand {
    /// Run a Ballista scheduler.
    Scheduler {
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: SocketAddr,
        /// The store the queries read (as for `sql`).
        #[arg(long)]
        store: String,
    },
    /// Run a Ballista executor that serves a scheduler.
    Executor {
        /// The scheduler's address.
        #[arg(long, default_value = "127.0.0.1:50050")]
        scheduler: SocketAddr,
        #[arg(long, default_value = "127.0.0.1")]
        bind_host: String,
        /// Arrow Flight port (other executors read shuffle data from it).
        #[arg(long, default_value_t = 50051)]
        port: u16,
        /// gRPC port (the scheduler pushes tasks to it).
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Tasks at once; 0: one per core.
        #[arg(long, default_value_t = 0)]
        concurrent_tasks: usize,
        /// Where shuffle files go (default: a temporary directory).
        #[arg(long)]
        work_dir: Option<String>,
        /// The store the queries read (as for `sql`).
        #[arg(long)]
        store: String,
    },
    /// Run SQL on the cluster over a store's tables as its catalog has them
    /// now (every flushed row; not the writer's buffer); prints JSON rows.
    Sql {
        /// The scheduler, `df://host:port`.
        #[arg(long, default_value = "df://127.0.0.1:50050")]
        scheduler: String,
        /// The writing server's store: its directory (`<data-dir>/store`)
        /// or `s3://bucket/prefix` (with the `AWS_*` variables, as the
        /// server).
        #[arg(long)]
        store: String,
        #[arg(long, default_value = "fleet")]
        db: String,
        sql: String,
    },
}

pub async fn run(args: BallistaArgs) -> anyhow::Result<()> {
    let to_anyhow = |e: fleetlake_distributed::Error| anyhow::anyhow!(e);
    match args.command {
        BallistaCommand::Scheduler { bind, store } => {
            fleetlake_distributed::run_scheduler(bind, &store)
                .await
                .map_err(to_anyhow)
        }
        BallistaCommand::Executor {
            scheduler,
            bind_host,
            port,
            grpc_port,
            concurrent_tasks,
            work_dir,
            store,
        } => fleetlake_distributed::run_executor(fleetlake_distributed::ExecutorOptions {
            scheduler,
            bind_host,
            port,
            grpc_port,
            concurrent_tasks,
            work_dir,
            store,
        })
        .await
        .map_err(to_anyhow),
        BallistaCommand::Sql {
            scheduler,
            store,
            db,
            sql,
        } => {
            let batches = fleetlake_distributed::query(&scheduler, &store, &db, &sql)
                .await
                .map_err(to_anyhow)?;
            let mut out = Vec::new();
            let mut writer = arrow_json_writer(&mut out);
            for b in &batches {
                writer.write(b)?;
            }
            writer.finish()?;
            drop(writer);
            println!("{}", String::from_utf8(out)?);
            Ok(())
        }
    }
}

fn arrow_json_writer(out: &mut Vec<u8>) -> datafusion::arrow::json::ArrayWriter<&mut Vec<u8>> {
    datafusion::arrow::json::ArrayWriter::new(out)
}
