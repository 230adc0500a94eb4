//! Scheduling: the tick loop, the evaluation grid, and one evaluation of a
//! rule — its SQL, the pure step of [`crate::core`], then what follows
//! (records, the decision log, actions).
//!
//! # Invariants
//! - A rule is evaluated at multiples of its `every` ([`grid`]); a tick that
//!   comes late evaluates once, at the latest grid point, not once per
//!   missed point.
//! - One evaluation of a rule at a time; at most
//!   `max_concurrent_evaluations` rules query at once.
//! - An evaluation whose rule changed while its SQL ran is dropped: the
//!   next one uses the new definition.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use fleetlake_query::{QueryEngine, ScanShare};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::RulesEngine;
use super::dispatch::live_of;
use super::rounds::Phase;
use crate::actions;
use crate::core::{self, ActionRow, Env};
use crate::definition::{Eval, Kind, RuleDef};
use crate::error::Result;
use crate::eval;
use crate::safety::Inventory;
use crate::state::Sample;
use crate::stream::Touched;
use crate::stream::eval::Covered;
use crate::validate::{Compiled, Mode, validate};

/// Rows of writes an `on_write` rule keeps to evaluate the groups they
/// touched; past them, its next evaluation reads every group.
const MAX_TOUCHED_ROWS: usize = 1 << 20;

/// The series writes touched since an `on_write` rule's last evaluation
/// read them.
#[derive(Debug, Default)]
pub(super) struct Touches {
    writes: Vec<Touched>,
    rows: usize,
    /// Too many to keep: evaluate every group.
    all: bool,
}

impl Touches {
    fn add(&mut self, writes: &[Touched]) {
        for w in writes {
            self.rows += w.len();
            if self.rows > MAX_TOUCHED_ROWS {
                self.all = true;
                self.writes = Vec::new();
            }
            if !self.all {
                self.writes.push(w.clone());
            }
        }
    }

    /// The writes to evaluate, or `None` for every group.
    fn take(&mut self) -> Option<Vec<Touched>> {
        let t = std::mem::take(self);
        (!t.all).then_some(t.writes)
    }
}

/// How often streaming states drop points past their windows. Answers
/// never depend on it (an evaluation reads its window's points only, and
/// retention is applied when answering); it bounds how much past the
/// window a state holds. A pass over every series under the state's write
/// lock: every second it cost a quarter of the rules' CPU at 100,000 hosts.
const EVICT_EVERY: Duration = Duration::from_secs(15);

/// A fill waits until no new state was queued for this long...
const FILL_SETTLE: Duration = Duration::from_millis(250);
/// ...but no longer than this after the first.
const FILL_SETTLE_MAX: Duration = Duration::from_secs(2);

/// Adds the tag columns of `more` missing from `into`. A table's tags
/// only come, never go: the union is its latest set.
fn union_tags(into: &mut Vec<String>, more: &[String]) {
    for tag in more {
        if !into.contains(tag) {
            into.push(tag.clone());
        }
    }
}

/// How an evaluation reads besides running its rule's SQL.
#[derive(Default)]
struct Reads {
    /// A streaming rule answers for the groups of these series only (an
    /// `on_write` evaluation).
    touched: Option<Vec<Touched>>,
    /// A batch rule reads the tables this covers through it.
    share: Option<Arc<ScanShare>>,
}

/// A rule due at a tick.
struct Due {
    name: String,
    at: i64,
    on_write: bool,
    /// The (database, table)s it reads, when it runs as batch SQL.
    reads: Vec<(String, String)>,
}

/// The grid point of `every` at or before `now`.
pub(super) fn grid(now: i64, every: i64) -> i64 {
    now - now.rem_euclid(every.max(1))
}

impl RulesEngine {
    pub(super) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut last_reload = std::time::Instant::now();
        let mut last_evict = std::time::Instant::now();
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
            if last_evict.elapsed() >= EVICT_EVERY {
                last_evict = std::time::Instant::now();
                let catalog = self.ingester.catalog().state();
                let hub = self.hub.clone();
                // A pass over every series: off the runtime's workers.
                let _ = crate::background::run(move || {
                    hub.evict(now, |db, table| {
                        catalog
                            .databases
                            .get(db)
                            .and_then(|d| d.retention_of(table))
                    });
                })
                .await;
            }
            let due: Vec<Due> = {
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
                        let reads = match l.mode {
                            Mode::Batch(_) => l
                                .tables
                                .iter()
                                .map(|t| (l.def.db.clone(), t.clone()))
                                .collect(),
                            Mode::Streaming(_) => Vec::new(),
                        };
                        Due {
                            name: n.clone(),
                            at,
                            on_write: l.def.eval == Eval::OnWrite,
                            reads,
                        }
                    })
                    .collect()
            };
            {
                let mut inner = self.inner.lock();
                for d in &due {
                    inner.rounds.begin(d.at, 1);
                }
            }
            let shares = self.scan_shares(&due);
            for Due {
                name, at, on_write, ..
            } in due
            {
                let me = self.clone();
                let permits = permits.clone();
                let dispatched = std::time::Instant::now();
                let share = shares.get(&at).cloned();
                evals.spawn(async move {
                    // An on_write rule does not queue behind a round's
                    // evaluations: while it waits, its writes would wait.
                    // (It streams: it holds no query's memory.)
                    let _permit = if on_write {
                        None
                    } else {
                        // The semaphore is never closed.
                        permits.acquire_owned().await.ok()
                    };
                    me.phases.add(Phase::Queued, dispatched.elapsed());
                    me.evaluate_in(
                        &name,
                        at,
                        Reads {
                            touched: None,
                            share,
                        },
                    )
                    .await;
                    me.inner.lock().rounds.finish(at, me.now());
                    me.evaluated(&name);
                });
            }
        }
        evals.shutdown().await;
        self.flush_dirty().await;
        let mut tasks = std::mem::take(&mut *self.tasks.lock());
        // Running actions get a moment to finish and record their outcome.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
    }

    /// For each instant of `due`, the share of the table windows that
    /// several of its batch rules read (dropped with the last evaluation
    /// holding it).
    fn scan_shares(&self, due: &[Due]) -> HashMap<i64, Arc<ScanShare>> {
        let Ok(q) = self.query() else {
            return HashMap::new();
        };
        let mut readers: HashMap<i64, HashMap<(String, String), usize>> = HashMap::new();
        for d in due {
            for t in &d.reads {
                *readers
                    .entry(d.at)
                    .or_default()
                    .entry(t.clone())
                    .or_default() += 1;
            }
        }
        readers
            .into_iter()
            .filter_map(|(at, tables)| {
                let shared: HashSet<(String, String)> = tables
                    .into_iter()
                    .filter(|(_, n)| *n > 1)
                    .map(|(t, _)| t)
                    .collect();
                // A shared window holds no more than one query may.
                let cap = q.config().memory_limit;
                (!shared.is_empty()).then(|| {
                    (
                        at,
                        Arc::new(ScanShare::new(shared, cap, self.scan_stats.clone())),
                    )
                })
            })
            .collect()
    }

    /// Evaluates rule `name` at `at` and carries out what follows.
    pub async fn evaluate(self: &Arc<Self>, name: &str, at: i64) {
        self.evaluate_in(name, at, Reads::default()).await;
    }

    /// [`RulesEngine::evaluate`], reading as `reads` says.
    async fn evaluate_in(self: &Arc<Self>, name: &str, at: i64, reads: Reads) {
        let started = std::time::Instant::now();
        let Some((def, mut tables, mut mode, mut plan)) = ({
            let inner = self.inner.lock();
            inner
                .rules
                .get(name)
                // An on-write evaluation may have seen a later instant
                // already: time does not run backwards for a rule.
                .filter(|l| l.state.last_eval.is_none_or(|t| t <= at))
                .map(|l| {
                    (
                        l.def.clone(),
                        l.tables.clone(),
                        l.mode.clone(),
                        l.plan.clone(),
                    )
                })
        }) else {
            return;
        };
        let result = self
            .gather(&def, &mut tables, &mut mode, &mut plan, at, reads)
            .await;
        let (samples, inventory, scope) = match result {
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
        let applying = std::time::Instant::now();
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
            l.mode = mode;
            l.plan = plan;
            let mut new_id = || uuid::Uuid::new_v4().to_string();
            let env = Env {
                global: self.config.global,
                live,
                inventory,
                generator_url: self.generator_url(&def.name),
                new_id: &mut new_id,
            };
            let scope = scope.as_ref().map(|c| c as &dyn crate::state::Scope);
            let out = core::apply_in(&def, &mut l.state, samples, scope, at, env);
            l.last_error = (out.duplicate_rows > 0).then(|| {
                format!(
                    "{} rows repeat another row's labels; only the first of each counts",
                    out.duplicate_rows
                )
            });
            l.last_duration_ms = started.elapsed().as_secs_f64() * 1e3;
            for (row, run) in &out.decisions {
                if run.is_some() {
                    inner.in_flight.begin(name, row.entity.as_deref());
                }
            }
            out
        };
        self.phases.add(Phase::Apply, applying.elapsed());
        for t in outcome
            .transitions
            .iter()
            .chain(&outcome.safety_transitions)
        {
            info!(rule = name, instance = %t.key, change = ?t.change, "alert transition");
        }
        let recording = std::time::Instant::now();
        let rows: Vec<ActionRow> = outcome.decisions.iter().map(|(r, _)| r.clone()).collect();
        // Before an action starts, its decision and what it changed are on
        // disk (a restart does not run it again); otherwise the persister
        // writes the state.
        if outcome.decisions.iter().any(|(_, run)| run.is_some()) {
            tokio::join!(self.record_rows(rows), self.persist_state_if_changed(name));
        } else {
            self.record_rows(rows).await;
            self.mark_dirty(name);
        }
        self.phases.add(Phase::Record, recording.elapsed());
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

    /// The rows of the rule's SQL at `at`, the inventory when safety needs
    /// it, and for an evaluation of the groups `touched` series fall in,
    /// the instances it speaks for.
    async fn gather(
        &self,
        def: &RuleDef,
        tables: &mut Vec<String>,
        mode: &mut Mode,
        plan: &mut Option<Arc<datafusion::logical_expr::LogicalPlan>>,
        at: i64,
        reads: Reads,
    ) -> Result<(Vec<Sample>, Option<Inventory>, Option<Covered>)> {
        let Reads { touched, share } = reads;
        let q = self.query()?;
        if tables.is_empty() {
            // Planned before its tables existed: plan again (cheap) to learn
            // them, and whether the rule streams.
            if let Ok(v) = validate(q, def).await
                && !v.tables.is_empty()
            {
                *tables = v.tables;
                *plan = v.plan;
                *mode = self.attach_stream(def, v.mode);
            }
        }
        let mut scope = None;
        let partial = match (&*mode, touched) {
            (Mode::Streaming(c), Some(touched)) => {
                self.stream_touched(c, &def.labels, at, touched).await?
            }
            _ => None,
        };
        let streamed = match (partial, &mut *mode) {
            (Some((answer, covered)), _) => {
                scope = Some(covered);
                Some(answer)
            }
            (None, Mode::Streaming(c)) => {
                let b = self.streamed(q, c, at).await?;
                if b.is_none() && self.hub.refused(&c.key) {
                    // Views and system.rules say so from now on.
                    *mode = Mode::Batch(
                        "its streaming state went over --rules-state-memory while it was filled"
                            .into(),
                    );
                }
                b
            }
            (None, Mode::Batch(_)) => None,
        };
        let batches = match streamed {
            Some(b) => vec![b],
            None => {
                let t = std::time::Instant::now();
                let b = self.run_batch(q, def, plan, at, share.as_ref()).await;
                self.phases.add(Phase::Sql, t.elapsed());
                b?
            }
        };
        let samples = eval::samples(def, &batches)?;
        let inventory = gather_inventory(q, def, tables, at, &samples).await?;
        Ok((samples, inventory, scope))
    }
}

impl RulesEngine {
    /// Evaluates `eval = "on_write"` rules as soon as a write changes their
    /// state (at the current time, besides their grid), one evaluation of a
    /// rule at a time.
    pub(super) async fn run_on_write(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let changed = tokio::select! {
                _ = shutdown.cancelled() => return,
                c = self.hub.changed() => c,
            };
            let due: Vec<String> = {
                let mut inner = self.inner.lock();
                inner
                    .rules
                    .iter_mut()
                    .filter_map(|(n, l)| {
                        let Mode::Streaming(c) = &l.mode else {
                            return None;
                        };
                        let touched = changed.get(&c.key)?;
                        if l.def.eval != Eval::OnWrite {
                            return None;
                        }
                        l.touched.add(touched);
                        if l.evaluating {
                            // The write may have come after its state was read.
                            l.rerun = true;
                            return None;
                        }
                        l.evaluating = true;
                        Some(n.clone())
                    })
                    .collect()
            };
            for name in due {
                self.spawn_on_write(name);
            }
        }
    }

    /// Evaluates `name` (marked evaluating) at the current time, for the
    /// groups of the series written since its last `on_write` evaluation.
    fn spawn_on_write(self: &Arc<Self>, name: String) {
        let me = self.clone();
        self.tasks.lock().spawn(async move {
            let touched = me
                .inner
                .lock()
                .rules
                .get_mut(&name)
                .and_then(|l| l.touched.take());
            me.evaluate_in(
                &name,
                me.now(),
                Reads {
                    touched,
                    share: None,
                },
            )
            .await;
            me.evaluated(&name);
        });
    }

    /// An evaluation of `name` ended: the next may start, and one starts
    /// at once when a write changed its state meanwhile.
    fn evaluated(self: &Arc<Self>, name: &str) {
        let again = {
            let mut inner = self.inner.lock();
            let Some(l) = inner.rules.get_mut(name) else {
                return;
            };
            let again = std::mem::take(&mut l.rerun);
            l.evaluating = again;
            again
        };
        if again {
            self.spawn_on_write(name.to_string());
        }
    }

    /// A batch rule's rows: its plan, made when it was installed, run
    /// again; when a table's schema changed, the SQL is planned anew (and
    /// the new plan kept). Rules with the same SQL at the same instant
    /// share one run; rules with other SQL over the same table and window
    /// share its scan through `share`.
    async fn run_batch(
        &self,
        q: &QueryEngine,
        def: &RuleDef,
        plan: &mut Option<Arc<datafusion::logical_expr::LogicalPlan>>,
        at: i64,
        share: Option<&Arc<ScanShare>>,
    ) -> Result<Vec<arrow::record_batch::RecordBatch>> {
        let cell = {
            let mut shared = self.batch_answers.lock();
            // Answers of earlier instants are no longer asked for.
            shared.retain(|(_, _, t), _| *t >= at);
            shared
                .entry((def.db.clone(), def.sql.clone(), at))
                .or_default()
                .clone()
        };
        let answer = cell
            .get_or_try_init(|| async {
                if let Some(p) = plan.as_deref()
                    && let Some(b) = eval::run_plan(q, &def.db, p, at, share).await?
                {
                    return Ok(b);
                }
                *plan = match q.check(&def.db, &def.sql).await {
                    Ok(fleetlake_query::SqlCheck::Planned { plan, .. }) => Some(plan),
                    _ => None,
                };
                eval::run_sql(q, &def.db, &def.sql, at).await
            })
            .await?;
        Ok(answer.clone())
    }

    /// A streaming rule's answer from its state, filling the state first
    /// when it is new; `None` when the state cannot be used (the caller
    /// runs the SQL).
    async fn streamed(
        &self,
        q: &QueryEngine,
        c: &Arc<Compiled>,
        at: i64,
    ) -> Result<Option<arrow::record_batch::RecordBatch>> {
        let expired_before = self.expired_before(&c.key);
        if let Some(b) = self.stream_answer(c, at, expired_before).await? {
            return Ok(Some(b));
        }
        let t = std::time::Instant::now();
        // The table's other states queued for a fill come along: one scan.
        let (mut keys, mut tags) = (vec![c.key.clone()], c.tags.clone());
        self.fills.lock().retain(|k, t| {
            if k.db != c.key.db || k.table != c.key.table {
                return true;
            }
            if *k != c.key {
                keys.push(k.clone());
            }
            union_tags(&mut tags, t);
            false
        });
        let filled = self.hub.fill_table(q, &keys, &tags, self.now()).await;
        self.phases.add(Phase::Sql, t.elapsed());
        if let Err(e) = filled {
            warn!(table = %c.key.table, error = %e, "filling streaming state failed; the rule runs as batch SQL");
            return Ok(None);
        }
        self.stream_answer(c, at, expired_before).await
    }

    /// Fills the streaming states rules attached to, as they attach: one
    /// scan per table for the states of it queued together. A state that
    /// is ready already is left as it is; one whose fill fails is filled
    /// by its rule's next evaluation, or runs as batch SQL.
    pub(super) async fn run_fills(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if self.fills.lock().is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.fills_queued.notified() => continue,
                }
            }
            // Rules come in bursts (a rules file, a deployment's installs,
            // a restart): let the burst end so that one scan per table
            // fills all its states, but fill within FILL_SETTLE_MAX.
            let settle = std::time::Instant::now();
            let mut seen = self.fills.lock().len();
            while settle.elapsed() < FILL_SETTLE_MAX {
                tokio::time::sleep(FILL_SETTLE).await;
                let now = self.fills.lock().len();
                if now == seen {
                    break;
                }
                seen = now;
            }
            let queued: Vec<_> = self.fills.lock().drain().collect();
            let Ok(q) = self.query() else { return };
            let mut tables: std::collections::BTreeMap<(String, String), (Vec<_>, Vec<String>)> =
                Default::default();
            for (key, tags) in queued {
                let t = tables
                    .entry((key.db.clone(), key.table.clone()))
                    .or_default();
                union_tags(&mut t.1, &tags);
                t.0.push(key);
            }
            for ((_, table), (keys, tags)) in tables {
                if shutdown.is_cancelled() {
                    return;
                }
                // The fill logs its scan and its adding itself.
                match self.hub.fill_table(q, &keys, &tags, self.now()).await {
                    Ok(_) => {}
                    Err(e) => {
                        warn!(%table, error = %e, "filling streaming states failed; their rules fill them when evaluated")
                    }
                }
            }
        }
    }

    /// Rows past the table's retention are hidden from streaming rules as
    /// the query engine hides them: before the wall clock's now − retention.
    fn expired_before(&self, key: &crate::stream::StateKey) -> Option<i64> {
        self.ingester
            .catalog()
            .state()
            .databases
            .get(&key.db)
            .and_then(|d| d.retention_of(&key.table))
            .map(|ttl| fleetlake_storage::catalog::now_ns().saturating_sub(ttl))
    }

    /// [`crate::stream::Hub::evaluate_touched`] on a rules thread: the
    /// answer for the groups `touched` series fall in, and the instances
    /// of those groups (for a rule labelled `labels`); `None` when the
    /// state is not ready.
    async fn stream_touched(
        &self,
        c: &Arc<Compiled>,
        labels: &BTreeMap<String, String>,
        at: i64,
        touched: Vec<Touched>,
    ) -> Result<Option<(arrow::record_batch::RecordBatch, Covered)>> {
        let expired_before = self.expired_before(&c.key);
        let (hub, phases, c) = (self.hub.clone(), self.phases.clone(), c.clone());
        let labels = labels.clone();
        crate::background::run(move || {
            let answer = hub.evaluate_touched(
                &c.key,
                &c.shape,
                at,
                expired_before,
                &c.schema,
                &touched,
                &phases,
            )?;
            Ok(answer.map(|(batch, groups)| {
                let covered = Covered::of(&c.shape, &c.schema, &groups, &labels);
                (batch, covered)
            }))
        })
        .await?
    }

    /// [`crate::stream::Hub::evaluate`] on a rules thread ([`crate::background`]): a pass over
    /// a fleet's series is CPU work under the state's lock, and must not
    /// hold up the runtime's workers (which serve writes).
    async fn stream_answer(
        &self,
        c: &Arc<Compiled>,
        at: i64,
        expired_before: Option<i64>,
    ) -> Result<Option<arrow::record_batch::RecordBatch>> {
        let (hub, phases, c) = (self.hub.clone(), self.phases.clone(), c.clone());
        crate::background::run(move || {
            hub.evaluate(&c.key, &c.shape, at, expired_before, &c.schema, &phases)
        })
        .await?
    }
}

/// The inventory of a self-heal rule, when its limits need one.
pub(crate) async fn gather_inventory(
    q: &QueryEngine,
    def: &RuleDef,
    tables: &[String],
    at: i64,
    samples: &[Sample],
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
