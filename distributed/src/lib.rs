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
//! Only a local store is supported: executors open the files by their
//! local paths (`file://`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use ballista::prelude::SessionContextExt;
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
/// over database `db` of the local store at `store_dir`.
///
/// # Errors
/// The store, the cluster or the query fails.
pub async fn query(
    scheduler: &str,
    store_dir: &Path,
    db: &str,
    sql: &str,
) -> Result<Vec<RecordBatch>, Error> {
    let store_dir = std::fs::canonicalize(store_dir)?;
    let store = fleetlake_storage::store::open_local(&store_dir)?;
    let catalog = Catalog::load(store.clone(), u64::MAX).await?;
    let state = catalog.state();
    let ctx = SessionContext::remote(scheduler).await?;
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
            .map(|rel| {
                let path = store_dir.join(root.as_ref()).join(rel);
                ListingTableUrl::parse(format!("file://{}", path.display()))
            })
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
