//! `fleetlake serve`: wires the store, catalog, write path and query engine
//! to the HTTP API, and shuts down cleanly on SIGTERM / Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use fleetlake_compaction::rollup::{RollupSpec, parse_rollups};
use fleetlake_compaction::{CompactionsTable, Compactor, Rollups, RollupsTable};
use fleetlake_ingest::{IngestConfig, Ingester};
use fleetlake_query::rollup_rewrite::RollupRegistry;
use fleetlake_query::system::SystemTable;
use fleetlake_query::{QueryConfig, QueryEngine};
use fleetlake_storage::catalog::Catalog;
use fleetlake_storage::delta::Publisher;
use fleetlake_storage::memory_budget::{Consumer, MemoryBudget};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Role, ServeArgs};
use fleetlake_server::auth::TokenStore;
use fleetlake_server::{AppState, AuditLog, Auth, Limits};

/// Stack of the query threads: planning and optimizing recurse once per
/// expression level (the front door bounds the levels; this bounds the
/// stack they may take).
const QUERY_STACK_BYTES: usize = 32 << 20;

/// The query runtime, shut down without waiting when serving ends on any
/// path (a runtime may not be dropped, only shut down, inside another).
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // Queries still running are abandoned: their answers have no reader.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Rules and rollups that name no database use the one every API does.
    fleetlake_rules::definition::set_default_db(&args.default_db);
    fleetlake_compaction::rollup::config::set_default_db(&args.default_db);
    // A bad rollup file stops start-up before anything is opened or written.
    let rollup_specs = read_rollups(&args)?;
    // A read replica changes nothing in the store: no retention, no
    // compaction, no garbage collection, no Delta commits, no rules.
    let writer = args.role == Role::All;
    if !writer && args.demo.demo {
        anyhow::bail!("--demo writes a fleet: it needs --role all");
    }
    if args.memory_limit < args.memory_budget {
        anyhow::bail!(
            "--memory-limit ({} bytes) is below --memory-budget ({} bytes): the write buffer \
             alone may hold that much; raise --memory-limit or lower --memory-budget",
            args.memory_limit,
            args.memory_budget
        );
    }
    // The buffer's own budget is kept for it: queries never refuse writes.
    let budget = MemoryBudget::with_write_reserve(args.memory_limit, args.memory_budget);
    if args.compaction_memory_limit > budget.others_limit() {
        warn!(
            memory_limit = args.memory_limit,
            memory_budget = args.memory_budget,
            compaction_memory_limit = args.compaction_memory_limit,
            "a merge may take more than --memory-limit leaves beside a full write buffer; \
             such merges wait until the buffer has flushed"
        );
    }
    // Held until the process exits (the OS releases it on a crash too).
    let _lock = lock_wal_dir(&args.wal_dir())?;
    let mut rules_config = args.rules_config();
    // The demo plans its fleet and points the rules at the example pack.
    let mut demo = if args.demo.demo {
        Some(crate::demo::Demo::plan(
            &args.demo,
            &args.data_dir(),
            &mut rules_config,
        )?)
    } else {
        None
    };
    let store_url = args.object_store_url();
    let store = fleetlake_storage::store::open(&store_url)
        .with_context(|| format!("opening object store {store_url}"))?;
    let catalog = Arc::new(
        Catalog::load(store.clone(), args.checkpoint_every)
            .await
            .context("loading the catalog")?,
    );
    if writer {
        apply_retention(&catalog, &args.retention)
            .await
            .context("applying --retention")?;
    } else if !args.retention.is_empty() {
        warn!("--retention is the writing server's to set; a read replica ignores it");
    }
    let delta = (writer && !args.without_delta).then(|| {
        Publisher::new(
            catalog.clone(),
            args.delta_checkpoint_every,
            args.delta_log_retention,
        )
    });
    // Before garbage collection: a Delta log that a crash left behind its
    // catalog is brought in line first, and the files it lists are kept.
    if let Some(p) = &delta
        && let Err(e) = p.sync(&catalog.state()).await
    {
        error!(error = %e, "publishing the Delta logs at start-up failed; retrying in the background");
    }
    let compactor = Compactor::new(catalog.clone(), args.compaction_config(budget.clone()));
    if let Some(p) = &delta {
        compactor.set_delta(p.clone());
    }
    // Before anything writes: orphans of a crash are safe to delete now.
    // (A replica's store is another server's: never.)
    if writer {
        match compactor.collect_garbage_at_startup().await {
            Ok(r) if r.orphans_deleted > 0 => {
                info!(
                    orphans = r.orphans_deleted,
                    "deleted files of an interrupted flush or compaction"
                )
            }
            Ok(_) => {}
            Err(e) => error!(error = %e, "start-up garbage collection failed"),
        }
    }
    let mut ingest_config = IngestConfig::new(args.wal_dir());
    ingest_config.memory_budget = args.memory_budget;
    ingest_config.budget = budget.clone();
    ingest_config.flush_bytes = args.flush_bytes;
    ingest_config.flush_interval = args.flush_interval;
    ingest_config.max_columns_per_table = args.max_columns_per_table;
    let ingester = Ingester::open(catalog.clone(), ingest_config)
        .await
        .context("opening the write path")?;
    // Queries (SQL, PromQL, Grafana, rules) plan and run on a runtime of
    // their own: one that saturates every core still leaves this runtime,
    // which answers /ping and acknowledges writes, free to run.
    let query_runtime = QueryRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("query")
            .thread_stack_size(QUERY_STACK_BYTES)
            .enable_all()
            .build()
            .context("starting the query runtime")?,
    ));
    // Rollups publish their progress here; user queries read rollups
    // through it where they answer exactly.
    let rollup_registry = Arc::new(RollupRegistry::default());
    let query_config = QueryConfig {
        timeout: args.query_timeout,
        memory_limit: args.query_memory_limit,
        metadata_cache_bytes: args.query_metadata_cache,
        plan_cache_entries: args.query_plan_cache,
        executor: query_runtime.0.as_ref().map(|rt| rt.handle().clone()),
        budget: budget.clone(),
        rollups: Some(rollup_registry.clone()),
        ..QueryConfig::default()
    };
    // Rollups aggregate with an engine of their own: background limits (the
    // compaction memory budget, one partition, a long timeout), not a user's.
    let rollup_engine = Arc::new(QueryEngine::new(
        ingester.clone(),
        store.clone(),
        QueryConfig {
            timeout: Duration::from_secs(3600),
            memory_limit: args.compaction_memory_limit,
            target_partitions: 1,
            budget: budget.clone(),
            budget_consumer: Consumer::Compaction,
            ..QueryConfig::default()
        },
    )?);
    let rollups = Rollups::new(
        rollup_specs,
        ingester.clone(),
        rollup_engine,
        args.compaction_target_rows,
        rollup_registry,
    );
    compactor.set_rollups(rollups.clone());
    let rules = fleetlake_rules::RulesEngine::new(rules_config, store.clone(), ingester.clone());
    let audit = Arc::new(AuditLog::new(store.clone()));
    if let Err(e) = audit.load().await {
        error!(error = %e, "reading the audit trail failed; system.audit starts empty");
    }
    let auth = Auth {
        tokens: Arc::new(TokenStore::new(store.clone())),
        enabled: args.auth_enabled(),
    };
    if !auth.enabled {
        warn!(
            bind = %args.http_bind,
            "authentication is off: anyone who reaches the port may write, read, delete and define rules"
        );
    } else if auth.tokens.is_empty().await.unwrap_or(false) {
        warn!(
            "authentication is on and no token exists: create one with \
             `fleetlake token create --name admin --scope admin` (same --data-dir/--object-store)"
        );
    }
    let mut system: Vec<Arc<dyn SystemTable>> = vec![
        Arc::new(CompactionsTable(compactor.clone())),
        Arc::new(RollupsTable(rollups.clone())),
        audit.clone(),
    ];
    system.extend(fleetlake_rules::system::tables(&rules));
    let engine = Arc::new(QueryEngine::with_system_tables(
        ingester.clone(),
        store,
        query_config,
        system,
    )?);
    // `job_diagnoses(start, end)` and `host_impact(start, end)` in SQL.
    fleetlake_diagnosis::table_functions::register(&engine);
    let mut state = AppState::new(
        ingester.clone(),
        engine,
        compactor.clone(),
        rollups,
        Limits {
            max_body_bytes: args.max_body_bytes,
            max_request_bytes: args.max_request_bytes,
        },
        args.default_db.clone(),
        rules.clone(),
        auth,
        audit,
    );
    state.delta = delta.clone();
    state.read_only = !writer;
    let rules_query = state.engine.clone();
    rules.set_diagnoser(Arc::new(fleetlake_server::RuleDiagnoser::new(
        state.engine.clone(),
    )));

    let shutdown = CancellationToken::new();
    let flusher = writer.then(|| tokio::spawn(ingester.clone().run_flusher(shutdown.clone())));
    let compaction = (writer && !args.compaction_interval.is_zero())
        .then(|| compactor.clone().start(shutdown.clone()));
    let follower = (!writer).then(|| {
        tokio::spawn(follow_catalog(
            ingester.clone(),
            args.follow_interval,
            shutdown.clone(),
        ))
    });
    let delta_task = delta.clone().map(|p| tokio::spawn(p.run(shutdown.clone())));

    let listener = tokio::net::TcpListener::bind(&args.http_bind)
        .await
        .with_context(|| format!("binding {}", args.http_bind))?;
    let addr = listener.local_addr()?;
    info!(%addr, store = %store_url, wal = %args.wal_dir().display(), "fleetlake listening");
    // The demo's history is in before the rules first look: an evaluation
    // in the middle of the backfill would see every host silent.
    if let Some(d) = demo.as_mut() {
        d.backfill(&ingester)
            .await
            .context("writing the demo's backfill")?;
    }
    // Tests and scripts read this line to learn the port when binding to :0.
    // Rules start once the address is known (their generatorURL); a bad
    // rule file stops start-up here, before the server answers.
    let rules_task = if writer {
        Some(
            rules
                .start(rules_query, format!("http://{addr}"), shutdown.clone())
                .await
                .context("loading rules")?,
        )
    } else {
        None
    };
    println!("fleetlake listening on http://{addr}");
    // Stopped by `shutdown`, awaited before the final flush.
    let demo_task = demo.map(|d| {
        d.log_rules(&rules);
        println!("{}", d.banner(&format!("http://{addr}")));
        tokio::spawn(d.run(ingester.clone(), shutdown.clone()))
    });
    let journal = (writer && !args.diagnosis_journal_interval.is_zero()).then(|| {
        let journal = fleetlake_server::DiagnosisJournal {
            engine: state.engine.clone(),
            clock: Arc::new(fleetlake_rules::clock::SystemClock),
            options: fleetlake_diagnosis::journal::JournalOptions {
                backfill_ns: fleetlake_time::duration_ns(args.diagnosis_backfill),
                ..Default::default()
            },
            interval: args.diagnosis_journal_interval,
        };
        tokio::spawn(journal.run(shutdown.clone()))
    });
    let warm = tokio::spawn(fleetlake_server::warm_last_values(
        state.engine.clone(),
        args.warm_last_value
            .iter()
            .filter(|t| !t.is_empty())
            .cloned()
            .collect(),
    ));

    let app = fleetlake_server::router(state);
    let stop = shutdown.clone();
    // Nagle's algorithm would hold a response's last small segment until
    // the client acknowledges the one before, which a client delays up to
    // 40 ms: every small query would pay it. axum 0.8 no longer sets this.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            wait_for_signal().await;
            info!("shutdown requested");
            stop.cancel();
        })
        .await?;
    shutdown.cancel();
    warm.abort();
    if let Some(j) = journal {
        let _ = j.await;
    }
    if let Some(t) = demo_task {
        let _ = t.await;
    }
    for task in [flusher, follower].into_iter().flatten() {
        let _ = task.await;
    }
    if let Some(t) = rules_task {
        let _ = t.await;
    }
    if let Some(c) = compaction {
        // A merge in progress finishes or is abandoned: both are safe.
        let _ = tokio::task::spawn_blocking(move || c.join()).await;
    }
    if let Some(t) = delta_task {
        let _ = t.await;
    }
    if !writer {
        drop(query_runtime);
        info!("bye");
        return Ok(());
    }
    info!("flushing the write buffer before exit");
    if let Err(e) = ingester.shutdown().await {
        error!(error = %e, "final flush failed; the WAL keeps the data for the next start");
        return Err(e.into());
    }
    if let Some(p) = &delta
        && let Err(e) = p.sync(&catalog.state()).await
    {
        warn!(error = %e, "publishing the Delta logs at exit failed; the next start does it");
    }
    drop(query_runtime);
    info!("bye");
    Ok(())
}

/// A read replica's loop: applies the commits the writing server made
/// since, and makes tables and columns they created visible to queries
/// (which list the write path's schemas).
async fn follow_catalog(
    ingester: Arc<fleetlake_ingest::Ingester>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let catalog = ingester.catalog().clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match catalog.refresh().await {
            Ok(0) => continue,
            Ok(n) => tracing::debug!(commits = n, "followed the catalog"),
            Err(e) => {
                warn!(error = %e, "reading the writer's catalog failed; retrying");
                continue;
            }
        }
        let state = catalog.state();
        for (db, dbs) in &state.databases {
            for (table, ts) in &dbs.tables {
                if let Err(e) = ingester.adopt_table_schema(db, table, &ts.schema) {
                    warn!(db, table, error = %e, "a table's schema could not be followed");
                }
            }
        }
    }
}

/// One server per write-ahead log (and so per local data directory): a
/// second one would take the first's unfinished flush files for a crash's
/// orphans and delete them at start-up, and both would commit to one
/// catalog. An exclusive lock on `<wal>/LOCK`, which names the holder's pid.
fn lock_wal_dir(wal_dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(wal_dir)
        .with_context(|| format!("creating the WAL directory {}", wal_dir.display()))?;
    let path = wal_dir.join("LOCK");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            anyhow::bail!(
                "another fleetlake server (pid {}) is using {}: stop it first, or give this \
                 one its own --data-dir (or --wal-dir)",
                holder.trim(),
                wal_dir.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Commits the configured retentions that differ from the catalog's.
async fn apply_retention(
    catalog: &Catalog,
    entries: &[crate::config::Retention],
) -> anyhow::Result<()> {
    let state = catalog.state();
    let mut actions = Vec::new();
    for r in entries {
        let ttl = r.ttl.as_nanos().min(i64::MAX as u128) as i64;
        let d = state.databases.get(&r.db);
        let current = match &r.table {
            Some(t) => d.and_then(|d| d.table_retention_ns.get(t).copied()),
            None => d.and_then(|d| d.retention_ns),
        };
        if current != Some(ttl) {
            actions.push(fleetlake_storage::catalog::Action::SetRetention {
                db: r.db.clone(),
                table: r.table.clone(),
                ttl_ns: Some(ttl),
            });
        }
    }
    if !actions.is_empty() {
        catalog.commit(actions).await?;
    }
    Ok(())
}

fn read_rollups(args: &ServeArgs) -> anyhow::Result<Vec<RollupSpec>> {
    let Some(path) = &args.rollups else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the rollup file {}", path.display()))?;
    let specs =
        parse_rollups(&text).with_context(|| format!("in the rollup file {}", path.display()))?;
    for s in &specs {
        info!(rollup = %s.describe(), every_ns = s.every_ns, "rollup configured");
    }
    Ok(specs)
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
