//! Distributed SQL on Apache Ballista over fleetlake's own tables.
//!
//! A Ballista scheduler and its executors are started from the `fleetlake`
//! binary ([`run_scheduler`], [`run_executor`]), each given the store. The
//! client ([`query`]) reads the catalog and registers every table of a
//! database as a [`FleetTable`] of its persisted files — the server's view
//! without its write buffer: every flushed row, each row once (overlapping
//! flushes are de-duplicated by `DedupExec`), deletes and retention applied.
//! The table and `DedupExec` travel through our extension codecs
//! ([`codec`]); the scans, filters and sorts they plan are DataFusion's.
//!
//! The store is a local directory (at the same path on every machine) or
//! `s3://bucket/prefix`, reached as the server reaches it, with the
//! standard `AWS_*` variables of each process.

pub mod codec;

use std::net::SocketAddr;
use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::config::BALLISTA_ADAPTIVE_PLANNER_ENABLED;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::utils::default_session_builder;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::object_store::{ObjectStoreRegistry, ObjectStoreUrl};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};
use fleetlake_query::engine::{STORE_URL, register_functions, without_aggregate_dynamic_filters};
use fleetlake_query::table::FleetTable;
use fleetlake_storage::catalog::Catalog;
use fleetlake_storage::store::ReadOnly;
use object_store::ObjectStore;

use crate::codec::{FleetLogicalCodec, FleetPhysicalCodec};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// What the growing string and array functions may allocate per call.
const FUNCTION_LIMIT_BYTES: usize = 1 << 30;

/// The object stores of a cluster process: the fleetlake store, read-only,
/// under [`STORE_URL`], and nothing else. The scheduler and executors run
/// whatever plan a client sends; a plan that names another location (a
/// `file://` path on an executor, another bucket) or writes (`COPY ... TO`)
/// fails instead of reading or changing what is not the cluster's.
#[derive(Debug)]
struct OnlyTheStore(Arc<dyn ObjectStore>);

impl ObjectStoreRegistry for OnlyTheStore {
    /// Refused: the one store is fixed when the process starts.
    fn register_store(
        &self,
        _url: &url::Url,
        _store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        None
    }

    fn get_store(&self, url: &url::Url) -> datafusion::common::Result<Arc<dyn ObjectStore>> {
        let ours = ObjectStoreUrl::parse(STORE_URL)?;
        let ours: &url::Url = ours.as_ref();
        if url.scheme() == ours.scheme() && url.host_str() == ours.host_str() {
            return Ok(Arc::clone(&self.0));
        }
        datafusion::common::plan_err!(
            "{url}: a fleetlake Ballista cluster reads only the fleetlake store"
        )
    }
}

/// A runtime that reaches `store`, read-only, under [`STORE_URL`] (the URL
/// our scans name it by), and no other store.
///
/// # Errors
/// The runtime cannot be built.
pub fn runtime_with_store(
    store: Arc<dyn ObjectStore>,
) -> datafusion::common::Result<Arc<RuntimeEnv>> {
    let store: Arc<dyn ObjectStore> = Arc::new(ReadOnly(store));
    Ok(Arc::new(
        RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::new(OnlyTheStore(store)))
            .build()?,
    ))
}

/// Ballista's session for `config`, on a runtime that reaches `store`, with
/// fleetlake's SQL functions.
fn session_state(
    mut config: SessionConfig,
    store: Arc<dyn ObjectStore>,
) -> datafusion::common::Result<SessionState> {
    without_aggregate_dynamic_filters(&mut config);
    let state = SessionStateBuilder::new_from_existing(default_session_builder(config)?)
        .with_runtime_env(runtime_with_store(store)?)
        .build();
    let ctx = SessionContext::new_with_state(state);
    register_functions(&ctx, FUNCTION_LIMIT_BYTES);
    Ok(ctx.state())
}

fn open_store(url: &str) -> Result<Arc<dyn ObjectStore>, Error> {
    Ok(fleetlake_storage::store::open(url)?)
}

/// Runs a Ballista scheduler on `bind`, planning over the store at
/// `store_url`, until the process ends.
///
/// # Errors
/// The store cannot be opened, the address cannot be bound or the
/// scheduler fails to start.
pub async fn run_scheduler(bind: SocketAddr, store_url: &str) -> Result<(), Error> {
    let store = open_store(store_url)?;
    let config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        override_session_builder: Some(Arc::new(move |config| {
            session_state(config, Arc::clone(&store))
        })),
        override_logical_codec: Some(Arc::new(FleetLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(FleetPhysicalCodec::default())),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config).await?;
    start_server(cluster, bind, Arc::new(config)).await?;
    Ok(())
}

/// Where an executor listens, whom it serves, and the store it reads.
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
    /// The store: a directory or `s3://bucket/prefix`.
    pub store: String,
}

/// Runs a Ballista executor until the process ends.
///
/// # Errors
/// The store cannot be opened, or the executor cannot start or reach its
/// scheduler.
pub async fn run_executor(o: ExecutorOptions) -> Result<(), Error> {
    let store = open_store(&o.store)?;
    let functions = session_state(SessionConfig::new_with_ballista(), Arc::clone(&store))?;
    let config = ExecutorProcessConfig {
        bind_host: o.bind_host.clone(),
        external_host: Some(o.bind_host),
        port: o.port,
        grpc_port: o.grpc_port,
        scheduler_host: o.scheduler.ip().to_string(),
        scheduler_port: o.scheduler.port(),
        vcores: o.concurrent_tasks,
        work_dir: o.work_dir,
        override_runtime_producer: Some(Arc::new(move |_| runtime_with_store(Arc::clone(&store)))),
        override_function_registry: Some(Arc::new(BallistaFunctionRegistry::from(&functions))),
        override_logical_codec: Some(Arc::new(FleetLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(FleetPhysicalCodec::default())),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config)).await?;
    Ok(())
}

/// Runs `sql` on the Ballista cluster at `scheduler` (`df://host:port`)
/// over database `db` of the store at `store_url` (a local directory or
/// `s3://bucket/prefix`), as of its catalog now.
///
/// # Errors
/// The store, the catalog, the cluster or the query fails.
pub async fn query(
    scheduler: &str,
    store_url: &str,
    db: &str,
    sql: &str,
) -> Result<Vec<RecordBatch>, Error> {
    let store = open_store(store_url)?;
    let catalog = Catalog::load(Arc::clone(&store), u64::MAX).await?;
    let state = catalog.state();
    let Some(dbs) = state.databases.get(db) else {
        return Err(format!("database {db:?} does not exist").into());
    };
    // Ballista 55's adaptive planner ran a scan's single-partition
    // de-duplicating branch once per task of the stage that unions it with
    // the plain scan (overlapping rows came back several times); the
    // static planner cuts a stage at it and answers exactly.
    let config = SessionConfig::new_with_ballista()
        .set_bool(BALLISTA_ADAPTIVE_PLANNER_ENABLED, false)
        .with_ballista_logical_extension_codec(Arc::new(FleetLogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(FleetPhysicalCodec::default()));
    let ctx =
        SessionContext::remote_with_state(scheduler, session_state(config, Arc::clone(&store))?)
            .await?;
    // Ballista's upgrade of the session replaces its functions with its own
    // lists: ours go in again.
    register_functions(&ctx, FUNCTION_LIMIT_BYTES);
    let store_url = ObjectStoreUrl::parse(STORE_URL)?;
    for (name, ts) in &dbs.tables {
        let table = FleetTable::from_catalog(
            &state,
            db,
            name,
            Arc::new(ts.schema.clone()),
            Vec::new(),
            store_url.clone(),
        )
        .with_plain_tags();
        ctx.register_table(name.as_str(), Arc::new(table))?;
    }
    Ok(ctx.sql(sql).await?.collect().await?)
}
