//! The live rules engine: the registry (rule files + API rules), the
//! scheduler, persistence, actions, approvals and the circuit breaker.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use fleetlake_ingest::{Ingester, Precision};
use fleetlake_query::QueryEngine;
use object_store::ObjectStore;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::actions::{self, ActionRequest};
use crate::core::{self, ActionRow, Env, Live, RuleState};
use crate::definition::{self, Kind, RuleDef};
use crate::error::{Error, Result};
use crate::eval;
use crate::persist::RuleStore;
use crate::safety::{Decision, GlobalLimits, Inventory};
use crate::state::AlertState;
use crate::validate::{Validation, validate};

const HOUR_NS: i64 = 3600 * 1_000_000_000;
/// Rows of `system.actions` kept in memory (the newest).
const MAX_ACTION_ROWS: usize = 100_000;

/// The time source: the wall clock, or a test's.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ns(&self) -> i64;
}

#[derive(Debug)]
pub struct SystemClock;

/// One rule as `system.rules` shows it: definition, where it came from, its
/// state, its last error and its last evaluation's duration (ms).
pub(crate) type RuleSnapshot = (Arc<RuleDef>, Source, RuleState, Option<String>, f64);

impl Clock for SystemClock {
    fn now_ns(&self) -> i64 {
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
    }
}

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
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "path")]
pub enum Source {
    File(PathBuf),
    Api,
}

#[derive(Debug)]
struct Loaded {
    def: Arc<RuleDef>,
    source: Source,
    state: RuleState,
    tables: Vec<String>,
    warnings: Vec<String>,
    last_error: Option<String>,
    last_duration_ms: f64,
    next_eval: i64,
    evaluating: bool,
}

#[derive(Debug, Default)]
struct InFlight {
    per_rule: BTreeMap<String, u32>,
    total: u32,
    entities: BTreeSet<(String, String)>,
}

#[derive(Debug, Default)]
struct Inner {
    rules: BTreeMap<String, Loaded>,
    /// API rules hidden by a file rule of the same name.
    shadowed: BTreeMap<String, Arc<RuleDef>>,
    file_errors: BTreeMap<PathBuf, String>,
    file_sig: Vec<(PathBuf, SystemTime, u64)>,
    actions: VecDeque<ActionRow>,
    in_flight: InFlight,
}

pub struct RulesEngine {
    config: RulesConfig,
    store: RuleStore,
    ingester: Arc<Ingester>,
    query: OnceLock<Arc<QueryEngine>>,
    external_url: OnceLock<String>,
    inner: Mutex<Inner>,
    /// Orders writes to the object store (a snapshot is taken under it).
    persist: tokio::sync::Mutex<u64>,
    http: reqwest::Client,
    tasks: Mutex<JoinSet<()>>,
}

impl std::fmt::Debug for RulesEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulesEngine")
            .field("config", &self.config)
            .finish()
    }
}

fn def_hash(def: &RuleDef) -> String {
    let text = serde_json::to_string(def).unwrap_or_default();
    actions::idempotency_key("def", &text, 0)
}

fn grid(now: i64, every: i64) -> i64 {
    now - now.rem_euclid(every.max(1))
}

impl RulesEngine {
    pub fn new(
        config: RulesConfig,
        store: Arc<dyn ObjectStore>,
        ingester: Arc<Ingester>,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            store: RuleStore::new(store),
            ingester,
            query: OnceLock::new(),
            external_url: OnceLock::new(),
            inner: Mutex::new(Inner::default()),
            persist: tokio::sync::Mutex::new(0),
            http: reqwest::Client::new(),
            tasks: Mutex::new(JoinSet::new()),
        })
    }

    fn query(&self) -> Result<&Arc<QueryEngine>> {
        self.query
            .get()
            .ok_or_else(|| Error::Internal("the rules engine has not started".into()))
    }

    fn external_url(&self) -> &str {
        self.external_url.get().map_or("", String::as_str)
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
        let states: BTreeMap<String, RuleState> =
            self.store.list("state").await?.into_iter().collect();
        let api: Vec<(String, RuleDef)> = self.store.list("defs").await?;
        let mut rows: Vec<(String, Vec<ActionRow>)> = self.store.list("actions").await?;
        let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
        let mut log: Vec<ActionRow> = Vec::new();
        for (_, batch) in rows.drain(..) {
            for r in batch {
                match by_id.get(&r.id) {
                    Some(&i) => log[i] = r,
                    None => {
                        by_id.insert(r.id.clone(), log.len());
                        log.push(r);
                    }
                }
            }
        }
        let skip = log.len().saturating_sub(MAX_ACTION_ROWS);
        {
            let mut inner = self.inner.lock();
            inner.actions = log.into_iter().skip(skip).collect();
        }
        let mut states = states;
        for (_, def) in api {
            let v = match validate(self.query()?, &def).await {
                Ok(v) => v,
                Err(e) => {
                    warn!(rule = %def.name, error = %e, "stored API rule no longer validates; it runs and reports its errors");
                    Validation::default()
                }
            };
            let st = states.remove(&def.name).unwrap_or_default();
            self.install(def, Source::Api, v, Some(st));
        }
        if let Some(dir) = self.config.rules_dir.clone() {
            let sig = dir_signature(&dir)?;
            let files = read_dir_rules(&dir)?;
            for (path, defs) in files {
                let defs = defs.map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
                for def in defs {
                    let v = validate(self.query()?, &def)
                        .await
                        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
                    let st = states.remove(&def.name);
                    self.install(def, Source::File(path.clone()), v, st);
                }
            }
            self.inner.lock().file_sig = sig;
        }
        // States of rules that no longer exist are dropped.
        for name in states.keys() {
            self.store.delete("state", name).await?;
        }
        let names: Vec<String> = self.inner.lock().rules.keys().cloned().collect();
        for n in &names {
            self.persist_state(n).await;
        }
        info!(rules = names.len(), "rules loaded");
        let me = self.clone();
        Ok(tokio::spawn(async move { me.run(shutdown).await }))
    }

    /// Registers (or replaces) a rule; bumps its version when the definition changed.
    fn install(&self, def: RuleDef, source: Source, v: Validation, state: Option<RuleState>) {
        let mut inner = self.inner.lock();
        let now = self.now();
        if let (Source::Api, Some(existing)) = (&source, inner.rules.get(&def.name))
            && matches!(existing.source, Source::File(_))
        {
            warn!(rule = %def.name, "an API rule has the name of a file rule; the file rule wins");
            inner.shadowed.insert(def.name.clone(), Arc::new(def));
            return;
        }
        let previous = inner.rules.remove(&def.name);
        if let (Source::File(_), Some(p)) = (&source, &previous)
            && p.source == Source::Api
        {
            warn!(rule = %def.name, "a rule file defines the name of an API rule; the file rule wins");
            inner.shadowed.insert(def.name.clone(), p.def.clone());
        }
        let mut st = state
            .or_else(|| previous.as_ref().map(|p| p.state.clone()))
            .unwrap_or_default();
        let hash = def_hash(&def);
        if st.def_hash != hash {
            st.version += 1;
            st.def_hash = hash;
        }
        let every = def.every.ns();
        let next_eval = previous
            .as_ref()
            .filter(|p| p.def.every == def.every)
            .map_or(grid(now, every), |p| p.next_eval);
        inner.rules.insert(
            def.name.clone(),
            Loaded {
                def: Arc::new(def),
                source,
                state: st,
                tables: v.tables,
                warnings: v.warnings,
                last_error: None,
                last_duration_ms: 0.0,
                next_eval,
                evaluating: false,
            },
        );
    }

    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut last_reload = std::time::Instant::now();
        let mut evals: JoinSet<()> = JoinSet::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(
            self.config.max_concurrent_evaluations.max(1),
        ));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            while evals.try_join_next().is_some() {}
            while self.tasks.lock().try_join_next().is_some() {}
            if last_reload.elapsed() >= self.config.reload_interval {
                last_reload = std::time::Instant::now();
                if let Err(e) = self.reload_files().await {
                    error!(error = %e, "reloading rule files");
                }
            }
            self.expire_approvals().await;
            let now = self.now();
            let due: Vec<(String, i64)> = {
                let mut inner = self.inner.lock();
                inner
                    .rules
                    .iter_mut()
                    .filter(|(_, l)| !l.evaluating && l.next_eval <= now)
                    .map(|(n, l)| {
                        l.evaluating = true;
                        let every = l.def.every.ns();
                        let at = grid(now, every);
                        l.next_eval = at + every;
                        (n.clone(), at)
                    })
                    .collect()
            };
            for (name, at) in due {
                let me = self.clone();
                let permits = permits.clone();
                evals.spawn(async move {
                    // The semaphore is never closed.
                    let _permit = permits.acquire_owned().await;
                    me.evaluate(&name, at).await;
                    if let Some(l) = me.inner.lock().rules.get_mut(&name) {
                        l.evaluating = false;
                    }
                });
            }
        }
        evals.shutdown().await;
        let mut tasks = std::mem::take(&mut *self.tasks.lock());
        // Running actions get a moment to finish and record their outcome.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
    }

    /// Evaluates rule `name` at `at` and carries out what follows.
    pub async fn evaluate(self: &Arc<Self>, name: &str, at: i64) {
        let started = std::time::Instant::now();
        let Some((def, mut tables)) = ({
            let inner = self.inner.lock();
            inner
                .rules
                .get(name)
                .map(|l| (l.def.clone(), l.tables.clone()))
        }) else {
            return;
        };
        let result = self.gather(&def, &mut tables, at).await;
        let (samples, inventory) = match result {
            Ok(x) => x,
            Err(e) => {
                let mut inner = self.inner.lock();
                if let Some(l) = inner.rules.get_mut(name) {
                    warn!(rule = name, error = %e, "rule evaluation failed");
                    l.last_error = Some(e.to_string());
                    l.last_duration_ms = started.elapsed().as_secs_f64() * 1e3;
                }
                return;
            }
        };
        if def.kind == Kind::Record
            && let Err(e) = self.write_records(&def, &samples, at).await
        {
            let mut inner = self.inner.lock();
            if let Some(l) = inner.rules.get_mut(name) {
                l.last_error = Some(format!("writing into {:?}: {e}", def.into));
            }
            return;
        }
        let outcome = {
            let mut inner = self.inner.lock();
            let live = live_of(&inner, name, at);
            let Some(l) = inner.rules.get_mut(name) else {
                return;
            };
            if !Arc::ptr_eq(&l.def, &def) {
                return; // changed meanwhile; the next evaluation uses the new one
            }
            l.tables = tables;
            let mut new_id = || uuid::Uuid::new_v4().to_string();
            let env = Env {
                global: self.config.global,
                live,
                inventory,
                generator_url: format!(
                    "{}/api/v1/rules/{}",
                    self.external_url().trim_end_matches('/'),
                    def.name
                ),
                new_id: &mut new_id,
            };
            let out = core::apply(&def, &mut l.state, samples, at, env);
            l.last_error = (out.duplicate_rows > 0).then(|| {
                format!(
                    "{} rows repeat another row's labels; only the first of each counts",
                    out.duplicate_rows
                )
            });
            l.last_duration_ms = started.elapsed().as_secs_f64() * 1e3;
            let version = l.state.version;
            for (row, run) in &out.decisions {
                if run.is_some() {
                    inner.in_flight.total += 1;
                    *inner
                        .in_flight
                        .per_rule
                        .entry(name.to_string())
                        .or_default() += 1;
                    if let Some(e) = &row.entity {
                        inner
                            .in_flight
                            .entities
                            .insert((name.to_string(), e.clone()));
                    }
                }
            }
            let _ = version;
            out
        };
        for t in outcome
            .transitions
            .iter()
            .chain(&outcome.safety_transitions)
        {
            info!(rule = name, instance = %t.key, change = ?t.change, "alert transition");
        }
        let rows: Vec<ActionRow> = outcome.decisions.iter().map(|(r, _)| r.clone()).collect();
        self.record_rows(rows).await;
        self.persist_state(name).await;
        if let Some(action) = def.action.clone() {
            for (row, run) in outcome.decisions {
                if let Some(req) = run {
                    self.spawn_action(def.clone(), action.clone(), req, row);
                }
            }
            for req in outcome.resends {
                let client = self.http.clone();
                let action = action.clone();
                self.tasks.lock().spawn(async move {
                    if let Err(e) = actions::run(&client, &action, &req).await {
                        warn!(rule = %req.rule, error = %e, "alertmanager re-send failed");
                    }
                });
            }
        }
    }

    /// The rows of the rule's SQL at `at`, and the inventory when safety needs it.
    async fn gather(
        &self,
        def: &RuleDef,
        tables: &mut Vec<String>,
        at: i64,
    ) -> Result<(Vec<crate::state::Sample>, Option<Inventory>)> {
        let q = self.query()?;
        if tables.is_empty() {
            // Planned before its tables existed: plan again (cheap) to learn them.
            *tables = validate(q, def).await.map(|v| v.tables).unwrap_or_default();
        }
        let batches = eval::run_sql(q, &def.db, &def.sql, at).await?;
        let samples = eval::samples(def, &batches)?;
        let inventory = gather_inventory(q, def, tables, at, &samples).await?;
        Ok((samples, inventory))
    }

    async fn write_records(
        &self,
        def: &RuleDef,
        samples: &[crate::state::Sample],
        at: i64,
    ) -> Result<()> {
        let body = record_lines(def, samples, at);
        if body.is_empty() {
            return Ok(());
        }
        let out = self
            .ingester
            .write_lp(&def.db, body, Precision::Nanosecond, true)
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        if let Some(r) = out.rejected.first() {
            return Err(Error::invalid(format!(
                "{} rows rejected, e.g. {:?}",
                out.rejected.len(),
                r
            )));
        }
        Ok(())
    }

    fn spawn_action(
        self: &Arc<Self>,
        def: Arc<RuleDef>,
        action: definition::ActionDef,
        req: ActionRequest,
        mut row: ActionRow,
    ) {
        let me = self.clone();
        self.tasks.lock().spawn(async move {
            let result = actions::run(&me.http, &action, &req).await;
            let now = me.now();
            let ok = result.is_ok();
            row.outcome = Some(if ok { "success" } else { "failure" }.into());
            row.message = match &result {
                Ok(m) | Err(m) => m.clone(),
            };
            row.finished_at = Some(now);
            if !ok {
                warn!(rule = %def.name, action = %row.id, error = %row.message, "action failed");
            }
            let name = def.name.clone();
            {
                let mut inner = me.inner.lock();
                let f = &mut inner.in_flight;
                f.total = f.total.saturating_sub(1);
                if let Some(n) = f.per_rule.get_mut(&name) {
                    *n = n.saturating_sub(1);
                }
                if let Some(e) = &row.entity {
                    f.entities.remove(&(name.clone(), e.clone()));
                }
                if let Some(l) = inner.rules.get_mut(&name)
                    && let Some(reason) = core::finish(&l.def, &mut l.state, &row.id, ok, now)
                {
                    warn!(rule = %name, %reason, "circuit breaker tripped");
                }
            }
            me.record_rows(vec![row]).await;
            me.persist_state(&name).await;
        });
    }

    /// Appends rows to `system.actions` and to the log on the object store.
    async fn record_rows(&self, rows: Vec<ActionRow>) {
        if rows.is_empty() {
            return;
        }
        let mut seq = self.persist.lock().await;
        *seq += 1;
        {
            let mut inner = self.inner.lock();
            for r in &rows {
                if let Some(pos) = inner.actions.iter().rposition(|x| x.id == r.id) {
                    inner.actions[pos] = r.clone();
                } else {
                    inner.actions.push_back(r.clone());
                }
            }
            while inner.actions.len() > MAX_ACTION_ROWS {
                inner.actions.pop_front();
            }
        }
        let name = format!("{:020}-{:08}", self.now().max(0), *seq);
        if let Err(e) = self.store.put("actions", &name, &rows).await {
            error!(error = %e, "persisting rule decisions failed");
        }
    }

    async fn persist_state(&self, name: &str) {
        let _g = self.persist.lock().await;
        let st = self.inner.lock().rules.get(name).map(|l| l.state.clone());
        if let Some(st) = st
            && let Err(e) = self.store.put("state", name, &st).await
        {
            error!(rule = name, error = %e, "persisting rule state failed");
        }
    }

    async fn expire_approvals(self: &Arc<Self>) {
        let now = self.now();
        let mut rows = Vec::new();
        let mut changed = Vec::new();
        {
            let mut inner = self.inner.lock();
            for (name, l) in inner.rules.iter_mut() {
                if l.state.approvals.values().any(|a| a.expires_at <= now) {
                    let mut out = core::Outcome::default();
                    core::expire_approvals(&l.def, &mut l.state, now, &mut out);
                    rows.extend(out.decisions.into_iter().map(|(r, _)| r));
                    changed.push(name.clone());
                }
            }
        }
        self.record_rows(rows).await;
        for n in changed {
            self.persist_state(&n).await;
        }
    }

    // ---- rule files -------------------------------------------------------

    /// Re-reads the rules directory when a file changed. A file that fails
    /// keeps its previous rules and reports its error.
    async fn reload_files(self: &Arc<Self>) -> Result<()> {
        let Some(dir) = self.config.rules_dir.clone() else {
            return Ok(());
        };
        let sig = dir_signature(&dir)?;
        if self.inner.lock().file_sig == sig {
            return Ok(());
        }
        let files = read_dir_rules(&dir)?;
        let mut keep: BTreeSet<String> = BTreeSet::new();
        let mut errors = BTreeMap::new();
        let mut installs = Vec::new();
        for (path, defs) in files {
            let defs = match defs {
                Ok(d) => d,
                Err(e) => {
                    errors.insert(path.clone(), e.to_string());
                    keep.extend(self.rules_of_file(&path));
                    continue;
                }
            };
            let mut validated = Vec::new();
            let mut failed = None;
            for def in defs {
                match validate(self.query()?, &def).await {
                    Ok(v) => validated.push((def, v)),
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            match failed {
                Some(e) => {
                    errors.insert(path.clone(), e);
                    keep.extend(self.rules_of_file(&path));
                }
                None => {
                    for (def, v) in validated {
                        keep.insert(def.name.clone());
                        installs.push((def, path.clone(), v));
                    }
                }
            }
        }
        for (def, path, v) in installs {
            let same = {
                let inner = self.inner.lock();
                inner
                    .rules
                    .get(&def.name)
                    .is_some_and(|l| *l.def == def && l.source == Source::File(path.clone()))
            };
            if !same {
                info!(rule = %def.name, file = %path.display(), "rule loaded from file");
                let name = def.name.clone();
                self.install(def, Source::File(path), v, None);
                self.persist_state(&name).await;
            }
        }
        let removed: Vec<String> = {
            let inner = self.inner.lock();
            inner
                .rules
                .iter()
                .filter(|(n, l)| matches!(l.source, Source::File(_)) && !keep.contains(*n))
                .map(|(n, _)| n.clone())
                .collect()
        };
        for n in removed {
            info!(rule = %n, "rule removed from its file");
            let restored = {
                let mut inner = self.inner.lock();
                inner.rules.remove(&n);
                inner.shadowed.remove(&n)
            };
            match restored {
                Some(def) => {
                    let v = validate(self.query()?, &def).await.unwrap_or_default();
                    self.install((*def).clone(), Source::Api, v, None);
                    self.persist_state(&n).await;
                }
                None => self.store.delete("state", &n).await?,
            }
        }
        for (p, e) in &errors {
            error!(file = %p.display(), error = %e, "rule file refused; its previous rules stay");
        }
        let mut inner = self.inner.lock();
        inner.file_errors = errors;
        inner.file_sig = sig;
        Ok(())
    }

    fn rules_of_file(&self, path: &Path) -> Vec<String> {
        let inner = self.inner.lock();
        inner
            .rules
            .iter()
            .filter(|(_, l)| l.source == Source::File(path.to_path_buf()))
            .map(|(n, _)| n.clone())
            .collect()
    }

    // ---- API --------------------------------------------------------------

    /// Parses and validates a rule body without installing it.
    pub async fn check_body(&self, body: &[u8]) -> Result<(RuleDef, Validation)> {
        let def = definition::parse_body(body)?;
        let v = validate(self.query()?, &def).await?;
        Ok((def, v))
    }

    /// Creates (`replace = false`) or replaces an API rule; effective at
    /// the next scheduler tick and persisted on the object store.
    pub async fn put_rule(
        &self,
        path_name: Option<&str>,
        body: &[u8],
        replace: bool,
    ) -> Result<Value> {
        let (def, v) = self.check_body(body).await?;
        if let Some(n) = path_name
            && n != def.name
        {
            return Err(Error::invalid(format!(
                "the URL names rule {n:?} but the body names {:?}",
                def.name
            )));
        }
        {
            let inner = self.inner.lock();
            match inner.rules.get(&def.name) {
                Some(l) => {
                    if let Source::File(p) = &l.source {
                        return Err(Error::Conflict(format!(
                            "rule {:?} is defined in {}; edit the file instead",
                            def.name,
                            p.display()
                        )));
                    }
                    if !replace {
                        return Err(Error::Conflict(format!(
                            "rule {:?} exists; PUT /api/v1/rules/{} replaces it",
                            def.name, def.name
                        )));
                    }
                }
                None if replace => return Err(Error::NotFound(def.name.clone())),
                None => {}
            }
        }
        self.store.put("defs", &def.name, &def).await?;
        let name = def.name.clone();
        self.install(def, Source::Api, v, None);
        self.persist_state(&name).await;
        self.rule_json(&name).ok_or_else(|| Error::NotFound(name))
    }

    pub async fn delete_rule(&self, name: &str) -> Result<()> {
        {
            let inner = self.inner.lock();
            match inner.rules.get(name) {
                None => return Err(Error::NotFound(name.to_string())),
                Some(l) => {
                    if let Source::File(p) = &l.source {
                        return Err(Error::Conflict(format!(
                            "rule {name:?} is defined in {}; remove it from the file instead",
                            p.display()
                        )));
                    }
                }
            }
        }
        self.store.delete("defs", name).await?;
        self.store.delete("state", name).await?;
        self.inner.lock().rules.remove(name);
        Ok(())
    }

    pub fn rule_def(&self, name: &str) -> Option<Arc<RuleDef>> {
        self.inner.lock().rules.get(name).map(|l| l.def.clone())
    }

    pub fn rule_json(&self, name: &str) -> Option<Value> {
        let inner = self.inner.lock();
        inner.rules.get(name).map(loaded_json)
    }

    pub fn rules_json(&self) -> Value {
        let inner = self.inner.lock();
        json!({
            "rules": inner.rules.values().map(loaded_json).collect::<Vec<_>>(),
            "file_errors": inner.file_errors.iter().map(|(p, e)| json!({"file": p, "error": e})).collect::<Vec<_>>(),
            "shadowed_api_rules": inner.shadowed.keys().collect::<Vec<_>>(),
        })
    }

    /// Active alerts (pending and firing), in the shape of Prometheus's `/api/v1/alerts`.
    pub fn alerts_json(&self) -> Value {
        let inner = self.inner.lock();
        let mut alerts = Vec::new();
        for (name, l) in &inner.rules {
            let all = l
                .state
                .instances
                .iter()
                .map(|x| (x, false))
                .chain(l.state.safety_alerts.iter().map(|x| (x, true)));
            for ((key, a), safety) in all {
                if a.state == AlertState::Resolved {
                    continue;
                }
                let mut labels = a.labels.clone();
                if !safety {
                    labels.insert("alertname".into(), name.clone());
                }
                alerts.push(json!({
                    "labels": labels,
                    "annotations": a.annotations,
                    "state": a.state.as_str(),
                    "activeAt": eval::rfc3339(a.active_at),
                    "firedAt": a.fired_at.map(eval::rfc3339),
                    "keepFiringSince": a.keep_firing_since.map(eval::rfc3339),
                    "value": a.value.map(|v| v.to_string()),
                    "rule": name,
                    "version": l.state.version,
                    "instance": key,
                }));
            }
        }
        json!({"status": "success", "data": {"alerts": alerts}})
    }

    /// Approves (`approve = true`) or denies an action awaiting approval.
    pub async fn decide_approval(self: &Arc<Self>, id: &str, approve: bool) -> Result<Value> {
        let now = self.now();
        let found = {
            let mut inner = self.inner.lock();
            let rule = inner
                .rules
                .iter()
                .find(|(_, l)| l.state.approvals.contains_key(id))
                .map(|(n, _)| n.clone());
            let Some(rule) = rule else {
                return Err(Error::ActionNotFound(id.to_string()));
            };
            let l = inner.rules.get_mut(&rule).expect("found above");
            let ap = l.state.approvals.remove(id).expect("found above");
            let def = l.def.clone();
            let inst = l.state.instances.get(&ap.instance).cloned();
            (rule, def, ap, inst, l.state.version)
        };
        let (rule, def, ap, inst, version) = found;
        let new_id = uuid::Uuid::new_v4().to_string();
        let evidence = inst.as_ref().map_or("[]".into(), |a| {
            serde_json::to_string(&[&a.row]).unwrap_or_default()
        });
        let row = ActionRow {
            id: new_id.clone(),
            rule: rule.clone(),
            version,
            evaluation_time: ap.evaluation_time,
            entity: Some(ap.entity.clone()),
            instance: ap.instance.clone(),
            status: "firing".into(),
            action: def
                .action
                .as_ref()
                .map_or("none".into(), |a| format!("{:?}", a.kind).to_lowercase()),
            mode: "approval".into(),
            decision: if approve {
                Decision::Approved
            } else {
                Decision::Denied
            },
            reason: None,
            detail: format!("{} {id}", if approve { "approval of" } else { "denial of" }),
            evidence,
            outcome: None,
            message: String::new(),
            finished_at: None,
        };
        let run = match (&inst, approve) {
            (Some(a), true) => Some(core::request(
                &def,
                version,
                &ap.instance,
                a,
                "firing",
                now,
                &new_id,
                &format!(
                    "{}/api/v1/rules/{}",
                    self.external_url().trim_end_matches('/'),
                    def.name
                ),
            )),
            _ => None,
        };
        if run.is_some() {
            let mut inner = self.inner.lock();
            inner.in_flight.total += 1;
            *inner.in_flight.per_rule.entry(rule.clone()).or_default() += 1;
            inner
                .in_flight
                .entities
                .insert((rule.clone(), ap.entity.clone()));
            if let Some(l) = inner.rules.get_mut(&rule) {
                // The approval's placeholder in the safety history becomes the action.
                if let Some(a) = l.state.acted.iter_mut().find(|a| a.id == id) {
                    a.id = new_id.clone();
                }
            }
        }
        self.record_rows(vec![row.clone()]).await;
        self.persist_state(&rule).await;
        if let (Some(req), Some(action)) = (run, def.action.clone()) {
            self.spawn_action(def, action, req, row.clone());
        }
        Ok(
            json!({"id": new_id, "approval_of": id, "decision": row.decision.as_str(), "rule": rule, "entity": ap.entity}),
        )
    }

    pub async fn reset_breaker(&self, name: &str) -> Result<Value> {
        let now = self.now();
        let was = {
            let mut inner = self.inner.lock();
            let l = inner
                .rules
                .get_mut(name)
                .ok_or_else(|| Error::NotFound(name.to_string()))?;
            let was = l.state.breaker.open;
            l.state.breaker.open = false;
            l.state.breaker.since = None;
            l.state.breaker.reason.clear();
            l.state.breaker.reset_at = Some(now);
            was
        };
        self.persist_state(name).await;
        info!(rule = name, was_open = was, "circuit breaker reset");
        Ok(json!({"rule": name, "was_open": was, "reset_at": eval::rfc3339(now)}))
    }

    /// Pending approvals, for `GET /api/v1/actions?pending`.
    pub fn approvals_json(&self) -> Value {
        let inner = self.inner.lock();
        let mut out = Vec::new();
        for (name, l) in &inner.rules {
            for a in l.state.approvals.values() {
                out.push(json!({
                    "id": a.id, "rule": name, "entity": a.entity, "instance": a.instance,
                    "evaluation_time": eval::rfc3339(a.evaluation_time),
                    "expires_at": eval::rfc3339(a.expires_at),
                }));
            }
        }
        json!({"approvals": out})
    }

    pub(crate) fn snapshot_actions(&self) -> Vec<ActionRow> {
        self.inner.lock().actions.iter().cloned().collect()
    }

    pub(crate) fn snapshot_rules(&self) -> Vec<RuleSnapshot> {
        self.inner
            .lock()
            .rules
            .values()
            .map(|l| {
                (
                    l.def.clone(),
                    l.source.clone(),
                    l.state.clone(),
                    l.last_error.clone(),
                    l.last_duration_ms,
                )
            })
            .collect()
    }

    pub fn query_engine(&self) -> Result<Arc<QueryEngine>> {
        self.query().cloned()
    }

    pub fn global_limits(&self) -> GlobalLimits {
        self.config.global
    }
}

fn live_of(inner: &Inner, name: &str, now: i64) -> Live {
    let global_acted_last_hour = inner
        .rules
        .values()
        .flat_map(|l| l.state.acted.iter())
        .filter(|a| a.acted.at > now - HOUR_NS)
        .count() as u32;
    Live {
        global_acted_last_hour,
        in_flight_rule: inner.in_flight.per_rule.get(name).copied().unwrap_or(0),
        in_flight_global: inner.in_flight.total,
        busy: inner
            .in_flight
            .entities
            .iter()
            .filter(|(r, _)| r == name)
            .map(|(_, e)| e.clone())
            .collect(),
    }
}

/// The inventory of a self-heal rule, when its limits need one.
pub(crate) async fn gather_inventory(
    q: &QueryEngine,
    def: &RuleDef,
    tables: &[String],
    at: i64,
    samples: &[crate::state::Sample],
) -> Result<Option<Inventory>> {
    let Some(safety) = def.safety.as_ref().filter(|_| def.kind == Kind::SelfHeal) else {
        return Ok(None);
    };
    if samples.is_empty() && safety.max_candidates.is_none() {
        return Ok(None);
    }
    let Some(sql) = eval::inventory_sql(def, tables) else {
        return Ok(None);
    };
    let batches = eval::run_sql(q, &def.db, &sql, at).await?;
    Ok(Some(eval::inventory(def, &batches)?))
}

fn loaded_json(l: &Loaded) -> Value {
    let active = |s: AlertState| l.state.instances.values().filter(|a| a.state == s).count();
    json!({
        "name": l.def.name,
        "version": l.state.version,
        "source": l.source,
        "definition": &*l.def,
        "health": if l.last_error.is_some() { "err" } else if l.state.last_eval.is_some() { "ok" } else { "unknown" },
        "last_error": l.last_error,
        "warnings": l.warnings,
        "last_evaluation": l.state.last_eval.map(eval::rfc3339),
        "evaluation_ms": l.last_duration_ms,
        "pending": active(AlertState::Pending),
        "firing": active(AlertState::Firing),
        "breaker": {"open": l.state.breaker.open, "since": l.state.breaker.since.map(eval::rfc3339), "reason": l.state.breaker.reason},
        "awaiting_approval": l.state.approvals.len(),
    })
}

/// Line protocol for a record rule's rows: labels as tags, `value` as the field.
pub fn record_lines(def: &RuleDef, samples: &[crate::state::Sample], at: i64) -> String {
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace(',', "\\,")
            .replace('=', "\\=")
            .replace(' ', "\\ ")
    };
    let mut body = String::new();
    let table = def.into.as_deref().unwrap_or_default();
    for s in samples {
        let Some(v) = s.value.filter(|v| v.is_finite()) else {
            continue;
        };
        body.push_str(&esc(table));
        for (k, val) in &s.labels {
            if k == "time" || val.is_empty() {
                continue;
            }
            body.push(',');
            body.push_str(&esc(k));
            body.push('=');
            body.push_str(&esc(val));
        }
        body.push_str(&format!(" value={v:?} {at}\n"));
    }
    body
}

/// `*.toml` files of the rules directory with their modification times.
fn dir_signature(dir: &Path) -> Result<Vec<(PathBuf, SystemTime, u64)>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::invalid(format!(
            "reading the rules directory {}: {e}",
            dir.display()
        ))
    })?;
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "toml")
            && let Ok(m) = e.metadata()
        {
            out.push((p, m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        }
    }
    out.sort();
    Ok(out)
}

type FileRules = Vec<(PathBuf, Result<Vec<RuleDef>>)>;

fn read_dir_rules(dir: &Path) -> Result<FileRules> {
    let mut out: FileRules = Vec::new();
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (p, _, _) in dir_signature(dir)? {
        let parsed = std::fs::read_to_string(&p)
            .map_err(|e| Error::invalid(format!("reading {}: {e}", p.display())))
            .and_then(|t| definition::parse_toml(&t));
        let parsed = parsed.and_then(|defs| {
            for d in &defs {
                if let Some(other) = names.get(&d.name) {
                    return Err(Error::invalid(format!(
                        "rule {:?} is also defined in {}",
                        d.name,
                        other.display()
                    )));
                }
            }
            for d in &defs {
                names.insert(d.name.clone(), p.clone());
            }
            Ok(defs)
        });
        out.push((p, parsed));
    }
    Ok(out)
}
