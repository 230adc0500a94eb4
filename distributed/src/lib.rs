//! Distributed SQL on Apache Ballista over the published tables.
//!
//! A Ballista scheduler and its executors are started from the `fleetlake`
//! binary ([`run_scheduler`], [`run_executor`]); [`query`] registers every
//! table of a database as the files its Delta log lists now — each day as
//! of its last compacted state, each row once (see
//! `fleetlake_storage::delta::policy`) — and runs SQL on the cluster. The
//! plans are DataFusion's own (a Parquet listing table), which Ballista's
//! default codecs carry, so executors need no code of ours; they read the
//! files straight from the store. Rows not yet compacted, and the writer's
//! buffer, are not seen: this is the Delta readers' view, not the server's.
//!
//! The store is a local directory (executors open the files by their local
//! paths, so it must be at the same path on each) or `s3://bucket/prefix`:
//! the scheduler, the executors and the client then reach the bucket with
//! Ballista's S3 object-store registry, configured from the standard
//! `AWS_*` environment variables of each process.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista::prelude::SessionContextExt;
use ballista_core::object_store::{
    runtime_env_with_s3_support, session_config_with_s3_support, session_state_with_s3_support,
    state_with_s3_support,
};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;
use fleetlake_storage::catalog::Catalog;
use fleetlake_storage::delta::log;
use fleetlake_storage::layout::table_dir;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Runs a Ballista scheduler on `bind` until the process ends.
///
/// # Errors
/// The address cannot be bound or the scheduler fails to start.
pub async fn run_scheduler(bind: SocketAddr) -> Result<(), Error> {
    let config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        ..SchedulerConfig::default()
    };
    let config = SchedulerConfig {
        override_config_producer: Some(Arc::new(session_config_with_s3_support)),
        override_session_builder: Some(Arc::new(session_state_with_s3_support)),
        ..config
    };
    let cluster = BallistaCluster::new_from_config(&config).await?;
    start_server(cluster, bind, Arc::new(config)).await?;
    Ok(())
}

/// Where an executor listens and whom it serves.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub scheduler: SocketAddr,
    pub bind_host: String,
    /// Arrow Flight (shuffle reads) and gRPC ports.
    pub port: u16,
    pub grpc_port: u16,
    /// Tasks run at once (0: the machine's cores).
    pub concurrent_tasks: usize,
    /// Shuffle files.
    pub work_dir: Option<String>,
}

/// Runs a Ballista executor until the process ends.
///
/// # Errors
/// The executor cannot start or reach its scheduler.
pub async fn run_executor(o: ExecutorOptions) -> Result<(), Error> {
    let config = ExecutorProcessConfig {
        bind_host: o.bind_host.clone(),
        external_host: Some(o.bind_host),
        port: o.port,
        grpc_port: o.grpc_port,
        scheduler_host: o.scheduler.ip().to_string(),
        scheduler_port: o.scheduler.port(),
        vcores: o.concurrent_tasks,
        work_dir: o.work_dir,
        override_config_producer: Some(Arc::new(session_config_with_s3_support)),
        override_runtime_producer: Some(Arc::new(runtime_env_with_s3_support)),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config)).await?;
    Ok(())
}

/// `schema` with its dictionary-encoded strings (our tags) as plain
/// strings: Ballista's shuffle hands dictionaries on as plain strings, and
/// a later stage would find a type it did not plan for. The files keep
/// their dictionaries; the scan casts.
fn plain_strings(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Dictionary(_, v) => f.as_ref().clone().with_data_type(v.as_ref().clone()),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Runs `sql` on the Ballista cluster at `scheduler` (`df://host:port`)
/// over database `db` of the store at `store` (a local directory or
/// `s3://bucket/prefix`).
///
/// # Errors
/// The store, the cluster or the query fails.
pub async fn query(
    scheduler: &str,
    store_url: &str,
    db: &str,
    sql: &str,
) -> Result<Vec<RecordBatch>, Error> {
    // Where a file is, as executors open it: the store's URL, then the
    // file's path in the store.
    let base = if store_url.starts_with("s3://") {
        store_url.trim_end_matches('/').to_string()
    } else {
        let dir = std::fs::canonicalize(store_url.strip_prefix("file://").unwrap_or(store_url))?;
        format!("file://{}", dir.display())
    };
    let store = fleetlake_storage::store::open(store_url)?;
    let catalog = Catalog::load(store.clone(), u64::MAX).await?;
    let state = catalog.state();
    let ctx = SessionContext::remote_with_state(scheduler, state_with_s3_support()?).await?;
    let Some(dbs) = state.databases.get(db) else {
        return Err(format!("database {db:?} does not exist").into());
    };
    for (name, ts) in &dbs.tables {
        let root = table_dir(db, name);
        let snapshot = log::replay(&store, &root).await?;
        if snapshot.files.is_empty() {
            continue;
        }
        let urls = snapshot
            .files
            .keys()
            .map(|rel| ListingTableUrl::parse(format!("{base}/{root}/{rel}")))
            .collect::<Result<Vec<_>, _>>()?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(plain_strings(&ts.schema.arrow_schema()));
        ctx.register_table(name.as_str(), Arc::new(ListingTable::try_new(config)?))?;
    }
    Ok(ctx.sql(sql).await?.collect().await?)
}
