//! The query engine: SQL text in, a stream of Arrow batches out, under a
//! per-query memory limit and timeout.
//!
//! # Invariants
//! - SQL passes [`crate::front_door::check_sql`] before it is parsed.
//! - With [`QueryConfig::executor`] set, planning and execution run on that
//!   runtime and only finished batches cross to the caller's: a query that
//!   burns every core of its runtime leaves the one answering `/ping` and
//!   writes free. Dropping the [`QueryStream`] stops the query.
//! - No single batch larger than the memory limit reaches the caller.

use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::TableFunctionImpl;
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::datasource::provider_as_source;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::TaskContext;
use datafusion::execution::context::{SQLOptions, SessionState};
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{LogicalPlan, LogicalTableSource};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use fleetlake_ingest::Ingester;
use fleetlake_storage::memory_budget::{Consumer, MemoryBudget};
use futures::{Stream, StreamExt};
use object_store::ObjectStore;
use tokio::time::Instant;

use crate::budget_pool::BudgetPool;
use crate::catalog::{CATALOG_NAME, FleetCatalog};
use crate::error::{Error, Result};
use crate::last_value::{LastValueCaches, LastValueRule};
use crate::plan_cache::{self, Cached, PlanCache, PlanCacheStats, PlanUse};
use crate::rollup_rewrite::{self, RollupRegistry};
use crate::scan_predicate::DedupScanPredicate;
use crate::scan_size;
use crate::shared_scan::ScanShare;
use crate::system::SystemTable;

/// Limits every query runs under.
#[derive(Debug, Clone)]
pub struct QueryConfig {
    pub timeout: Duration,
    pub memory_limit: usize,
    /// DataFusion's target partitions (threads per query).
    pub target_partitions: usize,
    /// Parquet footers and page indexes kept in memory, in bytes (shared
    /// by every query of the engine; least recently used go first).
    pub metadata_cache_bytes: usize,
    /// The runtime queries plan and run on; `None` runs them on the
    /// caller's (tests, tools).
    pub executor: Option<tokio::runtime::Handle>,
    /// Query shapes whose optimized plans are kept (0: plan every query
    /// from its SQL). See [`crate::plan_cache`].
    pub plan_cache_entries: usize,
    /// The server's memory budget, which every query's pool also takes
    /// its bytes from (beside its own `memory_limit`).
    pub budget: Arc<MemoryBudget>,
    /// Whose bytes this engine's queries are in the budget: `Query`, or
    /// `Compaction` for the rollups' engine.
    pub budget_consumer: Consumer,
    /// Rollups whose tables may answer aggregations of their sources (see
    /// [`crate::rollup_rewrite`]); never the rollups' own engine's.
    pub rollups: Option<Arc<RollupRegistry>>,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            memory_limit: 1 << 30,
            target_partitions: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            metadata_cache_bytes: 256 << 20,
            executor: None,
            plan_cache_entries: 256,
            budget: MemoryBudget::unlimited(),
            budget_consumer: Consumer::Query,
            rollups: None,
        }
    }
}

pub struct QueryEngine {
    ingester: Arc<Ingester>,
    /// Every session starts as a copy of this one: the catalog, our
    /// functions, and the table functions registered since (they may query
    /// the engine: diagnosis's bulk forms).
    base: std::sync::RwLock<SessionState>,
    runtime: Arc<RuntimeEnv>,
    config: QueryConfig,
    /// The newest row of each series, per table (`DISTINCT ON` queries).
    last_values: Arc<LastValueCaches>,
    /// Optimized plans by query shape.
    plans: PlanCache,
    /// Each database's session state, as [`QueryEngine::session_state`]
    /// builds it.
    states: std::sync::Mutex<std::collections::HashMap<String, Arc<States>>>,
}

/// Session states kept at most (one per database queried).
const MAX_KEPT_STATES: usize = 1024;

/// A database's session states, built once and cloned per query.
struct States {
    full: SessionState,
    /// With only the physical optimizer rules a small scan-bounded plan
    /// needs (see [`LEAN_PHYSICAL_RULES`]).
    lean: SessionState,
}

/// The physical optimizer rules a plan of one partition with no join,
/// window or unnest needs: the sorts and partition merges its operators
/// require (and the output order kept meanwhile), limits pushed into
/// sorts, cooperative yielding (it runs on the caller's runtime) and the
/// sanity check. The others rewrite joins and windows, push filters and
/// projections the table's scan already has, or combine aggregation
/// stages: about a tenth of a one-host hour's time, for nothing there.
const LEAN_PHYSICAL_RULES: [&str; 6] = [
    "OutputRequirements",
    "EnsureRequirements",
    "LimitPushdown",
    "EnsureCooperative",
    "SanityCheckPlan",
    "dedup_scan_predicate",
];

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("config", &self.config)
            .finish()
    }
}

/// What [`QueryEngine::check`] found.
#[derive(Debug, Clone)]
pub enum SqlCheck {
    /// The SQL plans: its output schema, the tables it reads, and the
    /// logical plan (as planned from the SQL, not optimized).
    Planned {
        schema: SchemaRef,
        tables: Vec<String>,
        plan: Arc<datafusion::logical_expr::LogicalPlan>,
    },
    /// It names tables that do not exist (yet); nothing was planned.
    MissingTables(Vec<String>),
}

/// `plan` with every table scan reading a schema-only source. A plan kept
/// for later runs (a rule's; [`QueryEngine::query_plan_at`] binds fresh
/// tables) must not hold the catalog snapshot it was planned against, or
/// the files in that snapshot could never be collected.
fn without_snapshots(plan: LogicalPlan) -> datafusion::common::Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|p| match p {
        LogicalPlan::TableScan(mut s) => {
            s.source = Arc::new(LogicalTableSource::new(s.source.schema()));
            Ok(Transformed::yes(LogicalPlan::TableScan(s)))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// The URL under which the data store is registered with DataFusion.
pub const STORE_URL: &str = "fleetlake://data";

/// `time_bucket(interval, time)`: InfluxDB 3 / TimescaleDB spelling of `date_bin`.
fn time_bucket() -> datafusion::logical_expr::ScalarUDF {
    (*datafusion::functions::datetime::date_bin())
        .clone()
        .with_aliases(["time_bucket"])
}

/// Registers fleetlake's SQL functions in `ctx`: `time_bucket`, the series
/// functions, and the growing string and array functions checked against
/// `memory_limit` bytes.
pub fn register_functions(ctx: &SessionContext, memory_limit: usize) {
    ctx.register_udf(time_bucket());
    crate::functions::register(ctx);
    crate::functions::bounded::register(ctx, memory_limit);
}

impl QueryEngine {
    pub fn new(
        ingester: Arc<Ingester>,
        store: Arc<dyn ObjectStore>,
        config: QueryConfig,
    ) -> Result<Self> {
        Self::with_system_tables(ingester, store, config, Vec::new())
    }

    /// Like [`QueryEngine::new`], with more tables in the `system` schema.
    pub fn with_system_tables(
        ingester: Arc<Ingester>,
        store: Arc<dyn ObjectStore>,
        config: QueryConfig,
        extra_system: Vec<Arc<dyn SystemTable>>,
    ) -> Result<Self> {
        let store_url = ObjectStoreUrl::parse(STORE_URL).expect("valid URL");
        let runtime = Arc::new(
            RuntimeEnvBuilder::new()
                .with_metadata_cache_limit(config.metadata_cache_bytes)
                .build()
                .map_err(|e| Error::Internal(e.to_string()))?,
        );
        runtime.register_object_store(store_url.as_ref(), store);
        let session_config = base_config(&config, "fleet");
        let state = SessionStateBuilder::new()
            .with_config(session_config)
            .with_runtime_env(runtime.clone())
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(DedupScanPredicate))
            .with_query_planner(Arc::new(FleetQueryPlanner))
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.register_catalog(
            CATALOG_NAME,
            Arc::new(FleetCatalog::new(ingester.clone(), store_url, extra_system)),
        );
        register_functions(&ctx, config.memory_limit);
        let last_values = Arc::new(LastValueCaches::default());
        ctx.add_analyzer_rule(Arc::new(LastValueRule::new(last_values.clone())));
        Ok(Self {
            ingester,
            base: std::sync::RwLock::new(ctx.state()),
            runtime,
            plans: PlanCache::new(config.plan_cache_entries),
            states: std::sync::Mutex::new(std::collections::HashMap::new()),
            config,
            last_values,
        })
    }

    pub fn ingester(&self) -> &Arc<Ingester> {
        &self.ingester
    }

    /// The last-value caches (for their metrics).
    pub fn last_value_caches(&self) -> &LastValueCaches {
        &self.last_values
    }

    pub fn config(&self) -> &QueryConfig {
        &self.config
    }

    /// How often queries' plans came from the plan cache.
    pub fn plan_cache_stats(&self) -> PlanCacheStats {
        self.plans.stats()
    }

    /// Adds table function `name` to every query from now on (`SELECT *
    /// FROM name(args)`); a second registration of a name replaces it.
    pub fn register_table_function(&self, name: &str, f: Arc<dyn TableFunctionImpl>) {
        self.base
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .register_udtf(name, f);
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// A session for planning against database `db` (its default schema);
    /// queries run on [`QueryEngine::query_runtime`].
    pub(crate) fn session(&self, db: &str) -> SessionContext {
        SessionContext::new_with_state(self.session_state(db))
    }

    /// [`QueryEngine::session`]'s state alone (what planning uses), without
    /// a context to clone it out of again. Built once per database
    /// (building re-registers every function) and cloned per query; it
    /// runs on [`QueryEngine::query_runtime`], not on its own runtime.
    fn session_state(&self, db: &str) -> SessionState {
        let mut state = self.states_of(db).full.clone();
        // `now()` is the query's start (what `SessionContext::state` stamps).
        state.mark_start_execution();
        state
    }

    /// `query`'s state (its config, partitions and start time) with the
    /// lean physical optimizer.
    fn lean_like(&self, query: &SessionState) -> SessionState {
        let db = &query.config_options().catalog.default_schema;
        let mut lean = self.states_of(db).lean.clone();
        *lean.execution_props_mut() = query.execution_props().clone();
        *lean.config_mut() = query.config().clone();
        lean
    }

    fn states_of(&self, db: &str) -> Arc<States> {
        let kept = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(db)
            .cloned();
        match kept {
            Some(states) => states,
            None => {
                let base = self
                    .base
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                let full = SessionStateBuilder::new_from_existing(base)
                    .with_config(base_config(&self.config, db))
                    .with_runtime_env(self.runtime.clone())
                    .build();
                let rules = full
                    .physical_optimizers()
                    .iter()
                    .filter(|r| LEAN_PHYSICAL_RULES.contains(&r.name()))
                    .cloned()
                    .collect();
                let lean = SessionStateBuilder::new_from_existing(full.clone())
                    .with_physical_optimizer_rules(rules)
                    .build();
                let state = Arc::new(States { full, lean });
                let mut states = self
                    .states
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // Databases exist before they are queried; the bound only
                // keeps a caller naming endless ones from growing this.
                if states.len() >= MAX_KEPT_STATES {
                    states.clear();
                }
                states.insert(db.to_string(), Arc::clone(&state));
                state
            }
        }
    }

    /// A query's runtime: the engine's stores and caches, and a memory
    /// pool of the query's own.
    fn query_runtime(&self) -> Arc<RuntimeEnv> {
        let pool = TrackConsumersPool::new(
            BudgetPool::new(
                FairSpillPool::new(self.config.memory_limit),
                Arc::clone(&self.config.budget),
                self.config.budget_consumer,
            ),
            NonZeroUsize::new(3).expect("non-zero"),
        );
        Arc::new(RuntimeEnv {
            memory_pool: Arc::new(pool),
            disk_manager: self.runtime.disk_manager.clone(),
            cache_manager: self.runtime.cache_manager.clone(),
            object_store_registry: self.runtime.object_store_registry.clone(),
        })
    }

    /// Plans `sql` against database `db` and starts executing it. The stream
    /// ends with [`Error::Timeout`] once the query's time is up.
    pub async fn query(&self, db: &str, sql: &str) -> Result<QueryStream> {
        self.query_at(db, sql, None).await
    }

    /// Like [`QueryEngine::query`], with `now()` (DataFusion's query start
    /// time) fixed at `now` when given: rules evaluate at their scheduled
    /// time, and backtests at past times.
    pub async fn query_at(
        &self,
        db: &str,
        sql: &str,
        now: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<QueryStream> {
        crate::front_door::check_sql(sql)?;
        let started = std::time::Instant::now();
        let state = self.session_state(db);
        let session = started.elapsed();
        let (input, used) = match self.reuse(&state, db, sql).await {
            Reuse::Plan(plan, used) => (Input::Optimized(plan), used),
            Reuse::Parsed(statement) => (Input::Statement(statement), PlanUse::Planned),
            Reuse::Unparsed => (Input::Sql(sql.to_string()), PlanUse::Planned),
        };
        self.plans.count(used);
        let reused = started.elapsed() - session;
        let mut stream = self.run_at(state, input, now).await?;
        stream.timings.session = session;
        stream.timings.plan_cache = used;
        if used != PlanUse::Planned {
            // Shaping, binding and (on a miss) planning and optimizing.
            stream.timings.plan = reused;
        }
        Ok(stream)
    }

    /// `sql`'s optimized plan from its shape's, with its literals and the
    /// tables as they are now bound in; `None` when the SQL must be
    /// planned as it is (see [`crate::plan_cache`]).
    async fn reuse(&self, state: &SessionState, db: &str, sql: &str) -> Reuse {
        if !self.plans.enabled() || sql.len() > plan_cache::MAX_SQL_BYTES {
            return Reuse::Unparsed;
        }
        let dialect = state.config_options().sql_parser.dialect;
        // A parse error is reported by the planner's own path.
        let Ok(statement) = state.sql_to_statement(sql, &dialect) else {
            return Reuse::Unparsed;
        };
        match self.reuse_parsed(state, db, &statement).await {
            Some((plan, used)) => Reuse::Plan(plan, used),
            None => Reuse::Parsed(statement),
        }
    }

    /// [`QueryEngine::reuse`] once the SQL is parsed.
    async fn reuse_parsed(
        &self,
        state: &SessionState,
        db: &str,
        statement: &DfStatement,
    ) -> Option<(LogicalPlan, PlanUse)> {
        let shaped = plan_cache::shape(db, statement)?;
        if let Some(cached) = self.plans.get(&shaped.key) {
            let Cached::Reusable { plan, types } = &*cached else {
                return None;
            };
            let values = plan_cache::bind(&shaped.literals, types)?;
            let plan = plan.clone().with_param_values(values).ok()?;
            match bind_tables(state, db, plan, None).await {
                Ok(Some(plan)) => return Some((plan, PlanUse::Hit)),
                // A table changed its schema or went: plan the shape anew.
                Ok(None) => self.plans.remove(&shaped.key),
                Err(_) => return None,
            }
        }
        let n = shaped.literals.len();
        // Errors (unknown columns, wrong types) are the planner's to report
        // on the SQL as written.
        let plan = state.statement_to_plan(shaped.statement).await.ok()?;
        read_only().verify_plan(&plan).ok()?;
        if !plan_cache::immutable(&plan) || plan_cache::names_a_parameter(&plan) {
            self.plans.insert(shaped.key, Cached::Unfit);
            return None;
        }
        let optimized = state.optimize(&plan).ok()?;
        let types = match plan_cache::parameter_types(&optimized, n) {
            Some(t) if plan_cache::only_fleet_scans(&optimized) => t,
            _ => {
                self.plans.insert(shaped.key, Cached::Unfit);
                return None;
            }
        };
        let values = plan_cache::bind(&shaped.literals, &types)?;
        let kept = without_snapshots(optimized.clone()).ok()?;
        self.plans
            .insert(shaped.key, Cached::Reusable { plan: kept, types });
        let plan = optimized.with_param_values(values).ok()?;
        Some((plan, PlanUse::Miss))
    }

    /// Runs a plan [`QueryEngine::check`] made (a rule's, planned once)
    /// with `now()` at `now`, against the tables as they are now: each scan
    /// reads its table afresh. `None` when a table's schema changed since
    /// the plan was made (or the table is gone): plan the SQL again. The
    /// tables `share` covers are read through it (one scan of a window for
    /// the plans that share it).
    ///
    /// # Errors
    /// As [`QueryEngine::query_at`].
    pub async fn query_plan_at(
        &self,
        db: &str,
        plan: &LogicalPlan,
        now: chrono::DateTime<chrono::Utc>,
        share: Option<&Arc<ScanShare>>,
    ) -> Result<Option<QueryStream>> {
        let mem = self.config.memory_limit;
        let state = self.session_state(db);
        match bind_tables(&state, db, plan.clone(), share).await {
            Ok(Some(plan)) => self
                .run_at(state, Input::Plan(plan), Some(now))
                .await
                .map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(Error::from_datafusion(e, mem)),
        }
    }

    async fn run_at(
        &self,
        mut ctx: SessionState,
        input: Input,
        now: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<QueryStream> {
        let runtime = self.query_runtime();
        let rollups = self.config.rollups.clone();
        let deadline = Instant::now() + self.config.timeout;
        let limit_ms = self.config.timeout.as_millis() as u64;
        let mem = self.config.memory_limit;
        // A plan the cache bound is optimized already: decided here whether
        // it is small enough to run on the caller's runtime. Handing a
        // one-host hour to the query runtime and its batches back cost more
        // thread wake-ups than its scan takes.
        let (input, inline) = match (input, &self.config.executor) {
            (Input::Optimized(plan), Some(_)) => {
                let started = std::time::Instant::now();
                if let Some(now) = now {
                    ctx.execution_props_mut().query_execution_start_time = Some(now);
                }
                let (plan, small) = rewrite_and_size(&mut ctx, plan, rollups.as_deref())
                    .await
                    .map_err(|e| Error::from_datafusion(e, mem))?;
                let inline = small && bounded_by_its_scans(&plan);
                if inline {
                    ctx = self.lean_like(&ctx);
                }
                let optimize = started.elapsed();
                (Input::Ready { plan, optimize }, inline)
            }
            (input, _) => (input, false),
        };
        let executor = self.config.executor.as_ref().filter(|_| !inline);
        let (inner, schema, task, timings) = match executor {
            None => {
                let (stream, timings) = match tokio::time::timeout_at(
                    deadline,
                    plan_and_run(ctx, runtime, input, now, rollups),
                )
                .await
                {
                    Err(_) => return Err(Error::Timeout { limit_ms }),
                    Ok(Err(e)) => return Err(Error::from_datafusion(e, mem)),
                    Ok(Ok(s)) => s,
                };
                let schema = stream.schema();
                (stream.boxed(), schema, None, timings)
            }
            Some(executor) => {
                let (schema_tx, schema_rx) = tokio::sync::oneshot::channel();
                let (tx, rx) = tokio::sync::mpsc::channel(2);
                let task = executor.spawn(async move {
                    let (mut stream, timings) =
                        match plan_and_run(ctx, runtime, input, now, rollups).await {
                            Ok(s) => s,
                            Err(e) => {
                                let _ = schema_tx.send(Err(e));
                                return;
                            }
                        };
                    if schema_tx.send(Ok((stream.schema(), timings))).is_err() {
                        return;
                    }
                    while let Some(b) = stream.next().await {
                        let end = b.is_err();
                        // A closed channel: the caller dropped the query.
                        if tx.send(b).await.is_err() || end {
                            return;
                        }
                    }
                });
                let abort = AbortOnDrop(task);
                let (schema, timings) = match tokio::time::timeout_at(deadline, schema_rx).await {
                    Err(_) => return Err(Error::Timeout { limit_ms }),
                    Ok(Err(_)) => return Err(Error::Internal("the query task ended early".into())),
                    Ok(Ok(Err(e))) => return Err(Error::from_datafusion(e, mem)),
                    Ok(Ok(Ok(started))) => started,
                };
                let batches = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|b| (b, rx))
                });
                (batches.boxed(), schema, Some(abort), timings)
            }
        };
        Ok(QueryStream {
            schema,
            inner,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            limit_ms,
            memory_limit: mem,
            done: false,
            timings,
            _task: task,
        })
    }

    /// Parses and plans `sql` against database `db` without running it (rule
    /// validation). A statement naming tables that do not exist yet is not
    /// planned: the answer lists them instead.
    ///
    /// # Errors
    /// [`Error::User`] with DataFusion's message when the SQL is wrong.
    pub async fn check(&self, db: &str, sql: &str) -> Result<SqlCheck> {
        crate::front_door::check_sql(sql)?;
        let mem = self.config.memory_limit;
        let err = |e| Error::from_datafusion(e, mem);
        let ctx = self.session(db);
        let state = ctx.state();
        let dialect = state.config_options().sql_parser.dialect;
        let statement = state.sql_to_statement(sql, &dialect).map_err(err)?;
        // `FROM f(args)` is a reference too; a table function is no table.
        let tables: Vec<_> = state
            .resolve_table_references(&statement)
            .map_err(err)?
            .into_iter()
            .filter(|t| !(t.schema().is_none() && state.table_functions().contains_key(t.table())))
            .collect();
        let mut missing = Vec::new();
        for t in &tables {
            if !ctx.table_exist(t.clone()).map_err(err)? {
                missing.push(t.to_string());
            }
        }
        if !missing.is_empty() {
            return Ok(SqlCheck::MissingTables(missing));
        }
        let plan = state.statement_to_plan(statement).await.map_err(err)?;
        read_only().verify_plan(&plan).map_err(err)?;
        Ok(SqlCheck::Planned {
            schema: Arc::new(plan.schema().as_arrow().clone()),
            tables: tables.iter().map(|t| t.table().to_string()).collect(),
            plan: Arc::new(without_snapshots(plan).map_err(err)?),
        })
    }

    /// Runs `sql` and collects every batch (for small results and tests).
    pub async fn query_collect(
        &self,
        db: &str,
        sql: &str,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        self.query_collect_at(db, sql, None).await
    }

    /// [`QueryEngine::query_collect`] with `now()` fixed (see [`QueryEngine::query_at`]).
    pub async fn query_collect_at(
        &self,
        db: &str,
        sql: &str,
        now: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let mut s = self.query_at(db, sql, now).await?;
        let schema = s.schema();
        let mut out = Vec::new();
        while let Some(b) = s.next().await {
            out.push(b?);
        }
        Ok((schema, out))
    }
}

fn base_config(config: &QueryConfig, db: &str) -> SessionConfig {
    let mut c = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG_NAME, db)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true)
        .with_target_partitions(config.target_partitions);
    c.options_mut().execution.parquet.pushdown_filters = true;
    c.options_mut().execution.parquet.reorder_filters = true;
    c.options_mut().execution.time_zone = Some("UTC".to_string());
    without_aggregate_dynamic_filters(&mut c);
    // A sort reserves this much up front for merging its spills; with the
    // default (10 MB) a small per-query limit, or a small server budget,
    // would refuse every sort.
    let reserve = &mut c.options_mut().execution.sort_spill_reservation_bytes;
    *reserve = (*reserve).min(config.memory_limit.min(config.budget.others_limit()) / 8);
    c
}

/// Turns off DataFusion's dynamic filter for `min`/`max` without GROUP BY.
///
/// DataFusion 55 builds it as `a < min(a) OR b < min(b) OR ...` from the
/// bounds found so far, leaving out every aggregate that has no bound yet:
/// while `min(c)` has seen only NULLs, rows whose `a` and `b` are inside
/// their bounds are filtered out of the scan — and with them the first
/// non-NULL `c`, so `min(c)` came back NULL (found with a sparse field,
/// depending on which partition ran first).
pub fn without_aggregate_dynamic_filters(config: &mut SessionConfig) {
    config
        .options_mut()
        .optimizer
        .enable_aggregate_dynamic_filter_pushdown = false;
}

/// What a query runs: SQL, a plan made from SQL before, or one already
/// optimized (from the plan cache).
enum Input {
    Sql(String),
    /// SQL parsed already (by the plan cache, which did not keep it).
    Statement(DfStatement),
    Plan(LogicalPlan),
    Optimized(LogicalPlan),
    /// Optimized and rewritten, the state's partitions set for its size
    /// (`optimize` is what that took).
    Ready {
        plan: LogicalPlan,
        optimize: Duration,
    },
}

/// What the plan cache made of a query's SQL.
enum Reuse {
    /// The optimized plan, bound.
    Plan(LogicalPlan, PlanUse),
    /// Not reusable; parsed, for the planner.
    Parsed(DfStatement),
    /// Not looked at, or not parsable (the planner reports why).
    Unparsed,
}

/// Where a query's time went before its first batch was asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct PhaseTimings {
    /// The query's own session (config, memory pool, catalog view).
    pub session: Duration,
    /// SQL to a logical plan (parse, resolve tables and types).
    pub plan: Duration,
    /// The logical optimizer.
    pub optimize: Duration,
    /// The physical plan: planning, the physical optimizer, starting it.
    pub physical: Duration,
    /// Whether the logical plan came from the plan cache. On a hit or a
    /// miss, `plan` covers shaping, binding and (on a miss) planning and
    /// optimizing, and `optimize` is zero.
    pub plan_cache: PlanUse,
    /// The plan is an `EXPLAIN ANALYZE`: its answer ends with a row of
    /// these timings (`plan_type` "Query Phases").
    pub analyze: bool,
}

impl PhaseTimings {
    /// As an HTTP `Server-Timing` header value (milliseconds).
    pub fn server_timing(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "session;dur={:.3}, plan;dur={:.3};desc={}, optimize;dur={:.3}, physical;dur={:.3}",
            ms(self.session),
            ms(self.plan),
            self.plan_cache.as_str(),
            ms(self.optimize),
            ms(self.physical)
        )
    }
}

async fn plan_and_run(
    mut state: SessionState,
    runtime: Arc<RuntimeEnv>,
    input: Input,
    now: Option<chrono::DateTime<chrono::Utc>>,
    rollups: Option<Arc<RollupRegistry>>,
) -> datafusion::common::Result<(SendableRecordBatchStream, PhaseTimings)> {
    let started = std::time::Instant::now();
    // `SessionContext::sql` stamps the start time itself; planning on a
    // state of our own keeps the one set here.
    if let Some(now) = now {
        state.execution_props_mut().query_execution_start_time = Some(now);
    }
    let (plan, optimized) = match input {
        Input::Ready { plan, optimize } => {
            return run_physical(state, runtime, plan, optimize).await;
        }
        Input::Sql(sql) => {
            let plan = state.create_logical_plan(&sql).await?;
            read_only().verify_plan(&plan)?;
            (plan, false)
        }
        Input::Statement(statement) => {
            let plan = state.statement_to_plan(statement).await?;
            read_only().verify_plan(&plan)?;
            (plan, false)
        }
        Input::Plan(plan) => (plan, false),
        Input::Optimized(plan) => (plan, true),
    };
    let planned = std::time::Instant::now();
    // What `SessionState::create_physical_plan` does, in two timed steps.
    let optimized = if optimized {
        plan
    } else {
        state.optimize(&plan)?
    };
    let (optimized, _) = rewrite_and_size(&mut state, optimized, rollups.as_deref()).await?;
    let optimized_at = std::time::Instant::now();
    let (stream, mut timings) =
        run_physical(state, runtime, optimized, optimized_at - planned).await?;
    timings.plan = planned - started;
    Ok((stream, timings))
}

/// Plans `optimized` physically and starts it (`optimize` is the time the
/// logical optimizer took).
async fn run_physical(
    state: SessionState,
    runtime: Arc<RuntimeEnv>,
    optimized: LogicalPlan,
    optimize: Duration,
) -> datafusion::common::Result<(SendableRecordBatchStream, PhaseTimings)> {
    let optimized_at = std::time::Instant::now();
    let analyze = matches!(optimized, LogicalPlan::Analyze(_));
    let physical = state
        .query_planner()
        .create_physical_plan(&optimized, &state)
        .await?;
    let task = TaskContext::from(&state).with_runtime(runtime);
    let stream = datafusion::physical_plan::execute_stream(physical, Arc::new(task))?;
    let timings = PhaseTimings {
        optimize,
        physical: optimized_at.elapsed(),
        analyze,
        ..PhaseTimings::default()
    };
    Ok((stream, timings))
}

/// The last logical steps, after binding: integer comparisons without
/// their cast to float and the newest buckets narrowed (both depend on the
/// query's literals), the rollup rewrite (whether a
/// rollup answers exactly depends on the values), then the scans' size,
/// which plans a query of a few pages (see [`crate::scan_size`]) with one
/// partition. Whether it is that small.
async fn rewrite_and_size(
    state: &mut SessionState,
    plan: LogicalPlan,
    rollups: Option<&RollupRegistry>,
) -> datafusion::common::Result<(LogicalPlan, bool)> {
    let explained = match &plan {
        LogicalPlan::Explain(e) => Some(Arc::clone(&e.plan)),
        _ => None,
    };
    let plan = crate::integer_compare::unwrap_casts(plan)?;
    let plan = crate::newest_buckets::narrow(plan)?;
    let mut plan = match rollups {
        Some(r) => rollup_rewrite::answer_from_rollups(plan, state, r).await?,
        None => plan,
    };
    // EXPLAIN's logical plan is the one that runs.
    if let (LogicalPlan::Explain(e), Some(before)) = (&mut plan, explained)
        && e.plan != before
    {
        show_final_plan(e);
    }
    let small = scan_size::is_small(&plan, state, scan_size::SMALL_SCAN_ROWS);
    if small && state.config().target_partitions() > 1 {
        state.config_mut().options_mut().execution.target_partitions = 1;
    }
    Ok((plan, small))
}

/// Whether `plan`'s work is bounded by what its scans read: no join,
/// window, unnest or recursion that could multiply rows, so small scans
/// make a small query. (A scan that is not a fleetlake table's, e.g.
/// `generate_series`, is never small: [`scan_size::is_small`].)
fn bounded_by_its_scans(plan: &LogicalPlan) -> bool {
    let mut bounded = true;
    let _ = plan.apply_with_subqueries(|node| {
        bounded = matches!(
            node,
            LogicalPlan::TableScan(_)
                | LogicalPlan::Filter(_)
                | LogicalPlan::Projection(_)
                | LogicalPlan::Aggregate(_)
                | LogicalPlan::Sort(_)
                | LogicalPlan::Limit(_)
                | LogicalPlan::SubqueryAlias(_)
                | LogicalPlan::Union(_)
                | LogicalPlan::EmptyRelation(_)
        );
        Ok(if bounded {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    bounded
}

/// `EXPLAIN ANALYZE`'s last row: where the time before execution went, in
/// the `Server-Timing` header's words (`schema` is `plan_type, plan`).
fn phases_row(schema: &SchemaRef, timings: &PhaseTimings) -> Option<RecordBatch> {
    let text = |s: String| Arc::new(arrow::array::StringArray::from(vec![s])) as _;
    RecordBatch::try_new(
        schema.clone(),
        vec![
            text("Query Phases".to_string()),
            text(timings.server_timing()),
        ],
    )
    .ok()
}

/// `EXPLAIN`'s final logical plan as `e.plan` is now: the rewrites after
/// the optimizer change the plan that runs.
fn show_final_plan(e: &mut datafusion::logical_expr::Explain) {
    let text = Arc::new(e.plan.display_indent().to_string());
    for s in &mut e.stringified_plans {
        if s.plan_type == datafusion::common::display::PlanType::FinalLogicalPlan {
            s.plan = Arc::clone(&text);
        }
    }
}

/// DataFusion's physical planner, with the plans of fleetlake's own
/// logical nodes.
#[derive(Debug)]
struct FleetQueryPlanner;

#[async_trait::async_trait]
impl datafusion::execution::context::QueryPlanner for FleetQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn datafusion::catalog::Session,
    ) -> datafusion::common::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(
            crate::newest_buckets::NewestBucketsPlanner,
        )])
        .create_physical_plan(logical_plan, session)
        .await
    }
}

/// What a query may do: read, nothing else.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// `plan` with every scan reading its table as it is now in `state`'s
/// catalog (the tables `share` covers read through it). `None` when a
/// table's schema changed since the plan was made, or the table is gone.
async fn bind_tables(
    state: &SessionState,
    db: &str,
    plan: LogicalPlan,
    share: Option<&Arc<ScanShare>>,
) -> datafusion::common::Result<Option<LogicalPlan>> {
    let mut scans = Vec::new();
    plan.apply_with_subqueries(|p| {
        if let LogicalPlan::TableScan(s) = p {
            scans.push((s.table_name.clone(), s.source.schema()));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let mut fresh = std::collections::HashMap::new();
    for (name, planned) in scans {
        let provider = match state.schema_for_ref(name.clone()) {
            Ok(schema) => schema.table(name.table()).await.ok().flatten(),
            Err(_) => None,
        };
        let Some(provider) = provider else {
            return Ok(None);
        };
        if provider.schema() != planned {
            return Ok(None);
        }
        let in_db = name.schema().unwrap_or(db);
        let provider = match share {
            Some(share) if share.covers(in_db, name.table()) => {
                share.wrap(in_db, name.table(), provider)
            }
            _ => provider,
        };
        fresh.insert(name, provider_as_source(provider));
    }
    let plan = plan.transform_up_with_subqueries(|p| match p {
        LogicalPlan::TableScan(mut s) => match fresh.get(&s.table_name) {
            Some(src) => {
                s.source = src.clone();
                Ok(Transformed::yes(LogicalPlan::TableScan(s)))
            }
            None => Ok(Transformed::no(LogicalPlan::TableScan(s))),
        },
        other => Ok(Transformed::no(other)),
    })?;
    Ok(Some(plan.data))
}

/// Aborts a query's task when its stream is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type BatchStream =
    Pin<Box<dyn Stream<Item = datafusion::common::Result<RecordBatch>> + Send + 'static>>;

/// The result stream of a query, cut off at its deadline.
pub struct QueryStream {
    schema: SchemaRef,
    inner: BatchStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit_ms: u64,
    memory_limit: usize,
    done: bool,
    timings: PhaseTimings,
    _task: Option<AbortOnDrop>,
}

impl QueryStream {
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// How long planning took, phase by phase.
    pub fn timings(&self) -> PhaseTimings {
        self.timings
    }
}

impl Stream for QueryStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.done = true;
            return Poll::Ready(Some(Err(Error::Timeout {
                limit_ms: self.limit_ms,
            })));
        }
        let mem = self.memory_limit;
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(Error::from_datafusion(e, mem))))
            }
            Poll::Ready(Some(Ok(b))) if b.get_array_memory_size() > mem => {
                self.done = true;
                Poll::Ready(Some(Err(Error::MemoryLimit {
                    limit_bytes: mem,
                    detail: format!(
                        "one batch of the result holds {} bytes",
                        b.get_array_memory_size()
                    ),
                })))
            }
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(b))),
            Poll::Ready(None) => {
                self.done = true;
                if self.timings.analyze
                    && let Some(b) = phases_row(&self.schema, &self.timings)
                {
                    return Poll::Ready(Some(Ok(b)));
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn optimized(ctx: &SessionContext, sql: &str) -> LogicalPlan {
        let state = ctx.state();
        state
            .optimize(&state.create_logical_plan(sql).await.unwrap())
            .unwrap()
    }

    #[tokio::test]
    async fn only_plans_bounded_by_their_scans_run_on_the_callers_runtime() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (v BIGINT) AS VALUES (1), (2), (3)")
            .await
            .unwrap();
        for sql in [
            "SELECT v, count(*) FROM t WHERE v > 1 GROUP BY v ORDER BY v LIMIT 2",
            "SELECT v FROM t UNION ALL SELECT v + 1 FROM t",
            "SELECT max(v) FROM (SELECT v FROM t WHERE v < 3) AS s",
        ] {
            assert!(bounded_by_its_scans(&optimized(&ctx, sql).await), "{sql}");
        }
        for sql in [
            "SELECT count(*) FROM t a, t b, t c",
            "SELECT v, sum(v) OVER (ORDER BY v) FROM t",
            "SELECT unnest(make_array(v, v, v)) FROM t",
            "SELECT v FROM t WHERE v IN (SELECT v + 1 FROM t)",
        ] {
            assert!(!bounded_by_its_scans(&optimized(&ctx, sql).await), "{sql}");
        }
    }
}
