//! The live rules engine: [`RulesEngine`], its configuration and its
//! start-up. The work is done in rooms of their own:
//!
//! - `registry`: which rules exist — rule files from `--rules-dir`
//!   (re-read when they change) and API rules (put, delete, validate).
//! - `scheduler`: the tick loop, the evaluation grid, and one evaluation
//!   under the concurrency permits.
//! - `dispatch`: running an action, what is in flight, its outcome.
//! - `journal`: the decision log (`system.actions`) and rule state on
//!   the object store.
//! - `approvals`: approving or denying an action, their expiry, the
//!   circuit breaker's reset.
//! - `views`: the JSON and `system.*` views of the rules and alerts.
//! - `record`: a record rule's rows as line protocol.
//!
//! # Invariants
//! - `inner` is a `parking_lot` mutex and is never held across an await;
//!   `persist` orders the decision log's objects, a per-rule lock each
//!   rule's state object.
//! - A rule's `next_eval` is on its grid (a multiple of `every`).

mod approvals;
mod dispatch;
mod journal;
mod record;
mod registry;
mod rounds;
mod scheduler;
mod views;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use fleetlake_ingest::Ingester;
use fleetlake_query::QueryEngine;
use object_store::ObjectStore;
use parking_lot::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::core::{ActionRow, RuleState};
use crate::definition::RuleDef;
use crate::error::{Error, Result};
use crate::persist::RuleStore;
use crate::safety::GlobalLimits;
use crate::stream::Hub;
use crate::validate::Mode;

pub use crate::clock::{Clock, SystemClock};
pub use record::record_lines;
pub use registry::{PutTimings, Source};
pub use rounds::{Phase, Phases, ROUND_BUCKETS, RoundStats};
pub(crate) use scheduler::gather_inventory;

#[derive(Debug, Clone)]
pub struct RulesConfig {
    /// Directory of `*.toml` rule files, re-read when they change.
    pub rules_dir: Option<PathBuf>,
    pub global: GlobalLimits,
    /// Base URL of this server, for Alertmanager's `generatorURL` (else
    /// the one given to [`RulesEngine::start`]).
    pub external_url: Option<String>,
    /// How often the rules directory is checked for changes.
    pub reload_interval: Duration,
    /// Rule queries running at once. Rules due at the same instant queue for
    /// a permit instead of all planning and scanning together (1,000 rules
    /// on a 30 s grid would otherwise hold 1,000 queries' memory at once).
    pub max_concurrent_evaluations: usize,
    pub clock: Arc<dyn Clock>,
    /// Bytes of streaming state (points kept for streaming rules) past which
    /// new streaming rules run as batch SQL instead.
    pub stream_memory_budget: usize,
    /// Programs and hosts actions may reach (nothing by default).
    pub action_policy: crate::policy::ActionPolicy,
    /// Every rule of the rules directory runs in this safety mode whatever
    /// its file says (`fleetlake serve --demo`: dry_run, so a rule pack
    /// pointed at a simulated fleet decides and records, and never acts).
    pub force_mode: Option<crate::definition::Mode>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            rules_dir: None,
            global: GlobalLimits::default(),
            external_url: None,
            reload_interval: Duration::from_secs(2),
            max_concurrent_evaluations: std::thread::available_parallelism().map_or(2, |n| n.get()),
            clock: Arc::new(SystemClock),
            stream_memory_budget: 1 << 30,
            action_policy: crate::policy::ActionPolicy::default(),
            force_mode: None,
        }
    }
}

/// One installed rule and what the engine knows of it.
#[derive(Debug)]
struct Loaded {
    def: Arc<RuleDef>,
    source: Source,
    state: RuleState,
    tables: Vec<String>,
    warnings: Vec<String>,
    /// Streaming or batch (see [`crate::stream`]).
    mode: Mode,
    /// The SQL's plan, run by batch evaluations until a schema changes.
    plan: Option<Arc<datafusion::logical_expr::LogicalPlan>>,
    last_error: Option<String>,
    last_duration_ms: f64,
    next_eval: i64,
    evaluating: bool,
    /// An `on_write` rule's state changed while it was being evaluated:
    /// evaluate it again when that evaluation ends.
    rerun: bool,
    /// The series writes touched that its next `on_write` evaluation reads.
    touched: scheduler::Touches,
    /// What was last written to the object store: the state's
    /// [`RuleState::durable_fingerprint`] and when.
    persisted: Option<(u64, i64)>,
}

#[derive(Debug, Default)]
struct Inner {
    rules: BTreeMap<String, Loaded>,
    /// API rules hidden by a file rule of the same name.
    shadowed: BTreeMap<String, Arc<RuleDef>>,
    file_errors: BTreeMap<PathBuf, String>,
    file_sig: Vec<(PathBuf, SystemTime, u64)>,
    actions: VecDeque<ActionRow>,
    in_flight: dispatch::InFlight,
    rounds: rounds::Rounds,
}

/// What `/metrics` shows of the rules engine.
#[derive(Debug, Clone)]
pub struct RulesMetrics {
    pub rules: usize,
    /// Rules answered from streaming state.
    pub streaming: usize,
    /// Bytes of streaming state.
    pub state_bytes: usize,
    /// Streaming states not filled yet.
    pub states_filling: usize,
    pub rounds: RoundStats,
    /// Seconds of evaluations' wall time per phase.
    pub phases: Vec<(Phase, f64)>,
    /// Windows batch rules of a round read once for several of them.
    pub shared_scans: u64,
    /// Batch rules' reads of a window another rule of the round read.
    pub shared_scan_reuses: u64,
}

pub struct RulesEngine {
    config: RulesConfig,
    store: RuleStore,
    ingester: Arc<Ingester>,
    query: OnceLock<Arc<QueryEngine>>,
    external_url: OnceLock<String>,
    /// Diagnoses jobs for `diagnose` actions and `attach = ["diagnosis"]`.
    diagnoser: OnceLock<Arc<dyn crate::attach::Diagnoser>>,
    inner: Mutex<Inner>,
    /// Orders the decision log's objects (their sequence number).
    persist: tokio::sync::Mutex<u64>,
    /// One writer per rule's state object at a time (a snapshot is taken
    /// under it, so a later snapshot is never overwritten by an earlier).
    state_locks: Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Rules whose state changed in what a restart needs, not written yet
    /// (the persister writes them, several at once).
    dirty: Mutex<std::collections::BTreeSet<String>>,
    dirty_notify: tokio::sync::Notify,
    http: reqwest::Client,
    tasks: Mutex<JoinSet<()>>,
    /// Streaming rules' state, fed by the write path.
    hub: Arc<Hub>,
    /// Where evaluations' wall time goes.
    phases: Arc<Phases>,
    /// Batch answers by (database, SQL, instant): batch rules with the same
    /// SQL evaluated at the same instant share one query.
    batch_answers: Mutex<BatchAnswers>,
    /// Windows of tables that several batch rules of a round read, read
    /// once for them ([`fleetlake_query::ScanShare`]).
    scan_stats: Arc<fleetlake_query::ScanShareStats>,
    /// Streaming states to fill (with the table's tag columns), queued
    /// when a rule attaches: they fill in the background, so a rule's
    /// first round finds its state ready instead of filling it.
    fills: Mutex<std::collections::HashMap<crate::stream::StateKey, Vec<String>>>,
    fills_queued: tokio::sync::Notify,
}

type BatchAnswers = std::collections::HashMap<
    (String, String, i64),
    Arc<tokio::sync::OnceCell<Vec<arrow::record_batch::RecordBatch>>>,
>;

impl std::fmt::Debug for RulesEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulesEngine")
            .field("config", &self.config)
            .finish()
    }
}

impl RulesEngine {
    pub fn new(
        config: RulesConfig,
        store: Arc<dyn ObjectStore>,
        ingester: Arc<Ingester>,
    ) -> Arc<Self> {
        let hub = Hub::new(config.stream_memory_budget);
        ingester.observe(hub.clone());
        Arc::new(Self {
            hub,
            phases: Arc::default(),
            config,
            store: RuleStore::new(store),
            ingester,
            query: OnceLock::new(),
            external_url: OnceLock::new(),
            diagnoser: OnceLock::new(),
            inner: Mutex::new(Inner::default()),
            persist: tokio::sync::Mutex::new(0),
            state_locks: Mutex::new(std::collections::HashMap::new()),
            dirty: Mutex::new(std::collections::BTreeSet::new()),
            dirty_notify: tokio::sync::Notify::new(),
            http: reqwest::Client::new(),
            tasks: Mutex::new(JoinSet::new()),
            batch_answers: Mutex::new(BatchAnswers::new()),
            scan_stats: Arc::default(),
            fills: Mutex::new(std::collections::HashMap::new()),
            fills_queued: tokio::sync::Notify::new(),
        })
    }

    fn query(&self) -> Result<&Arc<QueryEngine>> {
        self.query
            .get()
            .ok_or_else(|| Error::Internal("the rules engine has not started".into()))
    }

    /// Gives the engine its job diagnoser (the first call wins).
    pub fn set_diagnoser(&self, d: Arc<dyn crate::attach::Diagnoser>) {
        let _ = self.diagnoser.set(d);
    }

    fn external_url(&self) -> &str {
        self.external_url.get().map_or("", String::as_str)
    }

    /// The `generatorURL` of a rule's notifications.
    fn generator_url(&self, rule: &str) -> String {
        format!(
            "{}/api/v1/rules/{rule}",
            self.external_url().trim_end_matches('/')
        )
    }

    pub fn now(&self) -> i64 {
        self.config.clock.now_ns()
    }

    /// Loads persisted state, API rules and rule files, then starts the
    /// scheduler. A rules file that does not parse or validate stops start-up.
    pub async fn start(
        self: &Arc<Self>,
        query: Arc<QueryEngine>,
        external_url: String,
        shutdown: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let _ = self
            .external_url
            .set(self.config.external_url.clone().unwrap_or(external_url));
        self.query
            .set(query)
            .map_err(|_| Error::Internal("started twice".into()))?;
        let mut states: BTreeMap<String, RuleState> = self
            .store
            .list_readable("state")
            .await?
            .into_iter()
            .collect();
        self.restore_action_log().await?;
        self.load_api_rules(&mut states).await?;
        self.load_rule_files(&mut states).await?;
        // States of rules that no longer exist are dropped.
        for name in states.keys() {
            self.store.delete("state", name).await?;
        }
        let names: Vec<String> = self.inner.lock().rules.keys().cloned().collect();
        for n in &names {
            self.persist_state(n).await;
        }
        info!(rules = names.len(), "rules loaded");
        tokio::spawn(self.hub.clone().run());
        tokio::spawn(self.clone().run_on_write(shutdown.clone()));
        tokio::spawn(self.clone().run_fills(shutdown.clone()));
        tokio::spawn(self.clone().run_persister(shutdown.clone()));
        let me = self.clone();
        Ok(tokio::spawn(async move { me.run(shutdown).await }))
    }

    pub fn query_engine(&self) -> Result<Arc<QueryEngine>> {
        self.query().cloned()
    }

    pub fn global_limits(&self) -> GlobalLimits {
        self.config.global
    }

    pub fn metrics(&self) -> RulesMetrics {
        let state_bytes = self.hub.bytes();
        let inner = self.inner.lock();
        RulesMetrics {
            rules: inner.rules.len(),
            streaming: inner
                .rules
                .values()
                .filter(|l| matches!(l.mode, Mode::Streaming(_)))
                .count(),
            state_bytes,
            states_filling: self.hub.unfilled(),
            rounds: inner.rounds.stats.clone(),
            phases: self.phases.seconds(),
            shared_scans: self.scan_stats.scans.load(Ordering::Relaxed),
            shared_scan_reuses: self.scan_stats.reused.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests;
