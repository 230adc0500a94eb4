//! Streaming evaluation: rules of the dominant fleet shape ([`shape`]) are
//! answered from state fed by the write path ([`state`]) instead of a query
//! per evaluation ([`eval`]).
//!
//! The [`Hub`] is the write path's [`WriteObserver`]: every durable write is
//! queued (in WAL order, off the request's path) and applied by one task to
//! the state of each (database, table, field) some streaming rule reads —
//! one pass per write however many rules share it. A new state is first
//! filled from a query of the table over its window (the buffer and
//! Parquet), so a rule answers the same before and after a restart.
//!
//! # Invariants
//! - A rule is answered from state only once its state is filled; until
//!   then (and whenever the state is over its memory budget) it runs as
//!   batch SQL.
//! - Points filled from the query carry sequence 0: a write seen by the
//!   observer wins over them (it is newer or the same row).

pub mod eval;
pub mod shape;
pub mod state;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use fleetlake_ingest::observer::WriteObserver;
use fleetlake_ingest::validate::TableWrite;
use fleetlake_query::QueryEngine;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tracing::warn;

use crate::engine::{Phase, Phases};
use crate::error::Result;
use shape::Shape;
use state::{FieldState, Keys};

/// Which state a rule reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StateKey {
    pub db: String,
    pub table: String,
    /// `None`: rows only.
    pub field: Option<String>,
}

impl StateKey {
    pub fn of(db: &str, shape: &Shape) -> Self {
        Self {
            db: db.to_string(),
            table: shape.table.clone(),
            field: shape.field.clone(),
        }
    }
}

enum Event {
    /// The readers of a state changed (see [`Registry`]): make, resize or
    /// drop its slot to match.
    Sync(StateKey),
    Write {
        seq: u64,
        db: String,
        tables: Vec<TableWrite>,
    },
    Delete {
        db: String,
        table: String,
        min_time: i64,
        max_time: i64,
        tags: Vec<(String, String)>,
        before_seq: u64,
    },
}

struct Slot {
    state: FieldState,
    /// Filled from the query: rules may read it.
    ready: bool,
    /// Filling it passed the memory budget: it was emptied and its rules
    /// run as batch SQL until they are installed again.
    refused: bool,
    /// An `on_write` rule reads it: writes say which series they touched.
    watched: bool,
}

/// The series of one write to a table (one key per row, repeats kept).
pub type Touched = Arc<Vec<state::SeriesKey>>;

/// Which rules read which state, with the points each keeps and whether it
/// is evaluated on write: changed at
/// once by [`Hub::attach`] and [`Hub::detach`] (installing a rule never
/// waits for the state's lock), and carried over to the slots by the next
/// [`Event::Sync`].
#[derive(Default)]
struct Registry {
    /// Per state, per rule: what it reads.
    readers: HashMap<StateKey, HashMap<String, Reader>>,
}

/// How far back a rule reads (ns), and for an `on_write` rule the tags it
/// groups by.
type Reader = (i64, Option<Vec<String>>);

#[derive(Default)]
struct Inner {
    slots: HashMap<StateKey, Slot>,
    /// Series keys per (database, table), shared by the table's slots.
    keys: HashMap<(String, String), Keys>,
}

/// Groups at an instant, made once: evaluations that need the same groups
/// while one is passing over the state wait for its result instead of
/// passing again.
type Once = Arc<std::sync::OnceLock<Arc<eval::Groups>>>;

/// The groups of the last [`SHARED_INSTANTS`] instants, per state and shape.
type Shared = HashMap<(StateKey, String), VecDeque<(i64, Once)>>;

/// Instants whose groups are kept per state and shape: a round's
/// evaluations at its grid instant still find theirs while `on_write`
/// evaluations of the same shape ask at later instants.
const SHARED_INSTANTS: usize = 4;

/// Slots per table, per database: writes to other tables are skipped on
/// the WAL writer's thread without waiting for an evaluation.
type Tables = HashMap<String, HashMap<String, usize>>;

/// Streaming state for every streaming rule; see the module docs.
pub struct Hub {
    /// Written by writes, fills and evictions; read by evaluations, which
    /// run side by side.
    inner: RwLock<Inner>,
    /// Groups computed at an instant, by state and shape without `HAVING`:
    /// rules evaluated at the same instant that differ only in their
    /// threshold share one pass over the state (as a batch engine would
    /// share one scan per tick).
    shared: Mutex<Shared>,
    registry: Mutex<Registry>,
    /// Held while a state is filled from a query.
    filling: tokio::sync::Mutex<()>,
    /// Bytes of state as of the last change (for the budget check of
    /// [`Hub::attach`], which does not take the state's lock).
    used: std::sync::atomic::AtomicUsize,
    /// Per state, whether it was refused for the budget (`true`) or is
    /// filled (`false`), as of the last change; a state not listed is not
    /// filled yet. Read by `/metrics` and the scheduler on the runtime's
    /// workers, which must not wait for the state's lock behind a pass or
    /// a drain (on lower-priority threads).
    settled: Mutex<HashMap<StateKey, bool>>,
    tables: RwLock<Tables>,
    /// Writes and deletes not applied yet, oldest first.
    queue: Mutex<VecDeque<Event>>,
    queued: Notify,
    /// Watched states (read by an `on_write` rule) a write changed since
    /// [`Hub::changed`] last took them, with the series each write touched.
    changed: Mutex<HashMap<StateKey, Vec<Touched>>>,
    changed_notify: Notify,
    /// Bytes of state past which no new state is made (rules run as batch).
    budget_bytes: usize,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    pub fn new(budget_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: RwLock::new(Inner::default()),
            shared: Mutex::new(Shared::new()),
            registry: Mutex::new(Registry::default()),
            filling: tokio::sync::Mutex::new(()),
            used: std::sync::atomic::AtomicUsize::new(0),
            settled: Mutex::new(HashMap::new()),
            tables: RwLock::new(Tables::new()),
            queue: Mutex::new(VecDeque::new()),
            queued: Notify::new(),
            changed: Mutex::new(HashMap::new()),
            changed_notify: Notify::new(),
            budget_bytes,
        })
    }

    /// Applies queued writes and deletes as they come (evaluations also
    /// apply what is queued first, so they see every acknowledged write;
    /// the rules of one shape evaluated at one instant share the groups
    /// the first of them made).
    pub async fn run(self: Arc<Self>) {
        loop {
            self.queued.notified().await;
            // Applying a write is CPU work under the state's lock: off the
            // runtime's workers, which serve the writes themselves.
            let me = self.clone();
            if crate::background::run(move || me.drain()).await.is_err() {
                warn!("applying writes to streaming state panicked");
            }
        }
    }

    fn push(&self, ev: Event) {
        self.queue.lock().push_back(ev);
        self.queued.notify_one();
    }

    /// Applies every queued event, in order.
    fn drain(&self) {
        // Nothing queued: evaluations go on side by side under the read lock.
        if self.queue.lock().is_empty() {
            return;
        }
        let mut changed = HashMap::new();
        {
            let mut inner = self.inner.write();
            // The queue is taken whole: the WAL writer's thread pushes to it,
            // and must not wait for this (lower-priority) thread between
            // two events.
            loop {
                let events = std::mem::take(&mut *self.queue.lock());
                if events.is_empty() {
                    break;
                }
                for ev in events {
                    self.apply(&mut inner, ev, &mut changed);
                }
            }
            self.publish(&inner);
        }
        if !changed.is_empty() {
            let mut all = self.changed.lock();
            for (key, mut touched) in changed {
                all.entry(key).or_default().append(&mut touched);
            }
            drop(all);
            self.changed_notify.notify_one();
        }
    }

    /// Waits until writes changed some watched state (one an `on_write`
    /// rule reads), and says which, with the series they touched.
    pub async fn changed(&self) -> HashMap<StateKey, Vec<Touched>> {
        loop {
            let taken = std::mem::take(&mut *self.changed.lock());
            if !taken.is_empty() {
                return taken;
            }
            self.changed_notify.notified().await;
        }
    }

    fn apply(&self, inner: &mut Inner, ev: Event, changed: &mut HashMap<StateKey, Vec<Touched>>) {
        match ev {
            Event::Sync(key) => {
                let (keep, groupings) =
                    self.registry
                        .lock()
                        .readers
                        .get(&key)
                        .map_or((None, Vec::new()), |r| {
                            let mut groupings: Vec<Vec<String>> =
                                r.values().filter_map(|(_, g)| g.clone()).collect();
                            groupings.sort();
                            groupings.dedup();
                            (r.values().map(|(keep, _)| *keep).max(), groupings)
                        });
                let watched = !groupings.is_empty();
                match keep {
                    None => {
                        inner.slots.remove(&key);
                        self.shared.lock().retain(|(k, _), _| *k != key);
                        let table = (key.db.clone(), key.table.clone());
                        if let Some(k) = inner.keys.get_mut(&table) {
                            k.gc();
                            if k.is_empty() {
                                inner.keys.remove(&table);
                            }
                        }
                    }
                    Some(keep) => {
                        let slot = inner.slots.entry(key).or_insert_with(|| Slot {
                            state: FieldState::default(),
                            ready: false,
                            refused: false,
                            watched,
                        });
                        slot.watched = watched;
                        slot.state.index_groupings(groupings);
                        if keep > slot.state.keep_ns {
                            // A longer window: fill again before answering.
                            slot.ready = false;
                        }
                        slot.state.keep_ns = keep;
                    }
                }
            }
            Event::Write { seq, db, tables } => {
                for tw in &tables {
                    let readers: Vec<(StateKey, bool)> = inner
                        .slots
                        .iter()
                        .filter(|(k, s)| k.db == db && k.table == tw.table && !s.refused)
                        .map(|(k, s)| (k.clone(), s.watched))
                        .collect();
                    if readers.is_empty() {
                        continue;
                    }
                    // One pass over the rows for their series, however
                    // many fields of the table rules read.
                    let keys: Touched = Arc::new(
                        inner
                            .keys
                            .entry((db.clone(), tw.table.clone()))
                            .or_default()
                            .of_batch(&tw.batch),
                    );
                    for (key, watched) in readers {
                        if let Some(slot) = inner.slots.get_mut(&key) {
                            slot.state.add(&tw.batch, &keys, key.field.as_deref(), seq);
                        }
                        if watched {
                            changed.entry(key).or_default().push(keys.clone());
                        }
                    }
                }
            }
            Event::Delete {
                db,
                table,
                min_time,
                max_time,
                tags,
                before_seq,
            } => {
                for (key, slot) in inner.slots.iter_mut() {
                    if key.db == db && key.table == table {
                        slot.state.delete(min_time, max_time, &tags, before_seq);
                    }
                }
                if let Some(k) = inner.keys.get_mut(&(db, table)) {
                    k.gc();
                }
            }
        }
    }

    /// Total bytes of state (points, series and their keys) as of the last
    /// change. Takes no lock: `/metrics` asks from the runtime's workers,
    /// which must not wait behind a pass over the state.
    pub fn bytes(&self) -> usize {
        self.used.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Publishes what readers outside the state's lock ask: its bytes,
    /// and which states are filled or refused. Called under the lock
    /// after every change; most drains change no state's readiness, and
    /// leave the published set as it is (no copy of its keys).
    fn publish(&self, inner: &Inner) {
        self.used
            .store(Self::used(inner), std::sync::atomic::Ordering::Relaxed);
        let now = || inner.slots.iter().filter(|(_, s)| s.ready || s.refused);
        let mut settled = self.settled.lock();
        let same = now().count() == settled.len()
            && now().all(|(k, s)| settled.get(k) == Some(&s.refused));
        if !same {
            *settled = now().map(|(k, s)| (k.clone(), s.refused)).collect();
        }
    }

    fn used(inner: &Inner) -> usize {
        inner.slots.values().map(|s| s.state.bytes()).sum::<usize>()
            + inner.keys.values().map(Keys::bytes).sum::<usize>()
    }

    /// States some rule reads that are not filled yet (nor refused for
    /// the budget): their rules wait for the fill.
    pub fn unfilled(&self) -> usize {
        let readers: Vec<StateKey> = self.registry.lock().readers.keys().cloned().collect();
        let settled = self.settled.lock();
        readers.iter().filter(|k| !settled.contains_key(*k)).count()
    }

    /// Whether the state `key` was dropped for the memory budget (its
    /// rules run as batch SQL).
    pub fn refused(&self, key: &StateKey) -> bool {
        self.settled.lock().get(key).copied().unwrap_or(false)
    }

    /// Makes `rule` a reader of the state `key` with window `keep_ns`
    /// (its window plus its interval), evaluated on write (grouping by
    /// `on_write`'s tags) or not, or `None`
    /// when the state is new and the states are over their budget. Does
    /// not wait for the state's lock: the slot follows at the next drain.
    pub fn attach(
        &self,
        rule: &str,
        key: &StateKey,
        keep_ns: i64,
        on_write: Option<Vec<String>>,
    ) -> Option<()> {
        let mut reg = self.registry.lock();
        let exists = reg.readers.contains_key(key);
        if !exists && self.used.load(std::sync::atomic::Ordering::Relaxed) >= self.budget_bytes {
            return None;
        }
        if !exists {
            *self
                .tables
                .write()
                .entry(key.db.clone())
                .or_default()
                .entry(key.table.clone())
                .or_default() += 1;
        }
        reg.readers
            .entry(key.clone())
            .or_default()
            .insert(rule.to_string(), (keep_ns, on_write));
        drop(reg);
        self.push(Event::Sync(key.clone()));
        Some(())
    }

    /// `rule` no longer reads any state; states without readers go (at the
    /// next drain).
    pub fn detach(&self, rule: &str) {
        let mut reg = self.registry.lock();
        let mut touched = Vec::new();
        reg.readers.retain(|key, readers| {
            if readers.remove(rule).is_some() {
                touched.push(key.clone());
            }
            !readers.is_empty()
        });
        for key in &touched {
            if reg.readers.contains_key(key) {
                continue;
            }
            if let Some(t) = self.tables.write().get_mut(&key.db)
                && let Some(n) = t.get_mut(&key.table)
            {
                *n -= 1;
                if *n == 0 {
                    t.remove(&key.table);
                }
            }
        }
        drop(reg);
        for key in touched {
            self.push(Event::Sync(key));
        }
    }

    /// Fills the state `key` from the table's rows of the last `keep_ns`
    /// before `now` (nanoseconds), then marks it ready; `false` when there
    /// was nothing to fill (it is ready, refused, or no rule reads it).
    ///
    /// # Errors
    /// The query failed; the state stays not ready (rules run as batch).
    pub async fn fill(
        self: &Arc<Self>,
        engine: &QueryEngine,
        key: &StateKey,
        tags: &[String],
        now: i64,
    ) -> Result<bool> {
        Ok(self
            .fill_table(engine, std::slice::from_ref(key), tags, now)
            .await?
            > 0)
    }

    /// Fills the states `keys` of one table with one scan of it (over the
    /// longest window they keep), as [`Hub::fill`] does each; returns how
    /// many it filled.
    ///
    /// # Errors
    /// The query failed; the states stay not ready.
    pub async fn fill_table(
        self: &Arc<Self>,
        engine: &QueryEngine,
        keys: &[StateKey],
        tags: &[String],
        now: i64,
    ) -> Result<usize> {
        let Some(first) = keys.first() else {
            return Ok(0);
        };
        debug_assert!(
            keys.iter()
                .all(|k| k.db == first.db && k.table == first.table)
        );
        // One fill at a time: rules of a new state all find it not ready,
        // and the first to get here fills it for the others.
        let _one = self.filling.lock().await;
        let (me, ks) = (self.clone(), keys.to_vec());
        let todo: Vec<(StateKey, i64)> = crate::background::run(move || {
            me.drain();
            let inner = me.inner.read();
            ks.into_iter()
                .filter_map(|k| match inner.slots.get(&k) {
                    Some(s) if !s.refused && !s.ready => Some((k, s.state.keep_ns)),
                    _ => None,
                })
                .collect()
        })
        .await?;
        let Some(keep_ns) = todo.iter().map(|(_, keep)| *keep).max() else {
            return Ok(0);
        };
        let quote = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
        let mut cols: Vec<String> = tags.iter().map(|t| quote(t)).collect();
        cols.push("time".into());
        let mut fields: Vec<&str> = todo
            .iter()
            .filter_map(|(k, _)| k.field.as_deref())
            .collect();
        fields.sort_unstable();
        fields.dedup();
        cols.extend(fields.iter().map(|f| quote(f)));
        let sql = format!(
            "SELECT {} FROM {} WHERE time > to_timestamp_nanos({})",
            cols.join(", "),
            quote(&first.table),
            now.saturating_sub(keep_ns)
        );
        let scan = Instant::now();
        let batches = crate::eval::run_sql(engine, &first.db, &sql, now).await?;
        let (scanned, rows) = (
            scan.elapsed(),
            batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
        );
        let me = self.clone();
        let filled: Vec<StateKey> = todo.into_iter().map(|(k, _)| k).collect();
        let n = filled.len();
        let add = Instant::now();
        crate::background::run(move || me.add_filled(&filled, &batches, now)).await?;
        tracing::info!(
            table = %first.table,
            states = n,
            rows,
            scan_seconds = scanned.as_secs_f64(),
            add_seconds = add.elapsed().as_secs_f64(),
            "streaming states filled"
        );
        Ok(n)
    }

    /// Adds the rows a fill read to the states `keys` (of one table) and
    /// marks them ready, each keeping its own window; past the budget,
    /// empties one instead (its rules run as batch).
    fn add_filled(&self, keys: &[StateKey], batches: &[RecordBatch], now: i64) {
        let Some(first) = keys.first() else {
            return;
        };
        self.drain();
        let mut inner = self.inner.write();
        let Inner {
            slots,
            keys: series,
            ..
        } = &mut *inner;
        let table = (first.db.clone(), first.table.clone());
        let series = series.entry(table.clone()).or_default();
        for b in batches {
            let ks = series.of_batch(b);
            for key in keys {
                if let Some(slot) = slots.get_mut(key) {
                    slot.state.add(b, &ks, key.field.as_deref(), 0);
                }
            }
        }
        for key in keys {
            if let Some(slot) = slots.get_mut(key) {
                // The scan read the longest window of the table's states.
                slot.state.evict(now, None);
                slot.ready = true;
            }
        }
        for key in keys {
            let used = Self::used(&inner);
            if used <= self.budget_bytes {
                break;
            }
            if let Some(slot) = inner.slots.get_mut(key) {
                warn!(
                    table = %key.table,
                    field = ?key.field,
                    used,
                    budget = self.budget_bytes,
                    "streaming state over its memory budget (--rules-state-memory); its rules run as batch SQL"
                );
                slot.state.clear();
                slot.ready = false;
                slot.refused = true;
            }
        }
        if let Some(k) = inner.keys.get_mut(&table) {
            k.gc();
        }
        self.publish(&inner);
    }

    /// Drops points no reader needs any more (older than `now − keep`, or
    /// expired by the table's retention: `retention(db, table)`), then the
    /// series keys no state holds.
    pub fn evict(&self, now: i64, retention: impl Fn(&str, &str) -> Option<i64>) {
        self.drain();
        let mut inner = self.inner.write();
        for (key, slot) in inner.slots.iter_mut() {
            slot.state.evict(now, retention(&key.db, &key.table));
        }
        for k in inner.keys.values_mut() {
            k.gc();
        }
        self.publish(&inner);
    }

    /// The answer of a streaming rule at `now`, or `None` when its state is
    /// not ready (the caller runs the SQL instead).
    ///
    /// # Errors
    /// The answer cannot be built in `schema`.
    /// Points before `expired_before` (the table's retention, as the query
    /// engine applies it) do not count.
    pub fn evaluate(
        &self,
        key: &StateKey,
        shape: &Shape,
        now: i64,
        expired_before: Option<i64>,
        schema: &SchemaRef,
        phases: &Phases,
    ) -> Result<Option<RecordBatch>> {
        let common = Shape {
            having: None,
            outputs: Vec::new(),
            ..shape.clone()
        };
        let shared_key = (key.clone(), format!("{common:?} {expired_before:?}"));
        // Another rule of the shape made the groups of this instant
        // already: the answer needs neither the writes queued since nor
        // the state's lock.
        let made = self.shared.lock().get(&shared_key).and_then(|at| {
            at.iter()
                .find(|(i, _)| *i == now)
                .and_then(|(_, once)| once.get().cloned())
        });
        if let Some(groups) = made {
            let t = Instant::now();
            let answer = eval::answer(shape, &groups, schema);
            phases.add(Phase::Answer, t.elapsed());
            return answer.map(Some);
        }
        let t = Instant::now();
        self.drain();
        phases.add(Phase::Drain, t.elapsed());
        let t = Instant::now();
        let inner = self.inner.read();
        let Some(slot) = inner.slots.get(key).filter(|s| s.ready) else {
            return Ok(None);
        };
        let once = {
            let mut shared = self.shared.lock();
            let at = shared.entry(shared_key).or_default();
            match at.iter().find(|(i, _)| *i == now) {
                Some((_, once)) => once.clone(),
                None => {
                    let once = Once::default();
                    at.push_back((now, once.clone()));
                    if at.len() > SHARED_INSTANTS {
                        at.pop_front();
                    }
                    once
                }
            }
        };
        let mut passed = None;
        let groups = once
            .get_or_init(|| {
                let p = Instant::now();
                let g = Arc::new(eval::groups(shape, &slot.state, now, expired_before, None));
                passed = Some(p);
                g
            })
            .clone();
        // The answer needs the groups only: writes go on meanwhile.
        drop(inner);
        match passed {
            Some(p) => {
                phases.add(Phase::Lock, p.duration_since(t));
                phases.add(Phase::Pass, p.elapsed());
            }
            None => phases.add(Phase::Lock, t.elapsed()),
        }
        let t = Instant::now();
        let answer = eval::answer(shape, &groups, schema);
        phases.add(Phase::Answer, t.elapsed());
        answer.map(Some)
    }

    /// The answer of an `on_write` rule at `now` for the groups of the
    /// series in `touched` only, and those groups before `HAVING` (the
    /// instances the answer speaks for); `None` when its state is not
    /// ready.
    ///
    /// # Errors
    /// The answer cannot be built in `schema`.
    #[allow(clippy::too_many_arguments)]
    pub fn evaluate_touched(
        &self,
        key: &StateKey,
        shape: &Shape,
        now: i64,
        expired_before: Option<i64>,
        schema: &SchemaRef,
        touched: &[Touched],
        phases: &Phases,
    ) -> Result<Option<(RecordBatch, eval::Groups)>> {
        let t = Instant::now();
        self.drain();
        phases.add(Phase::Drain, t.elapsed());
        let t = Instant::now();
        let only = eval::GroupSet::of(shape, touched.iter().flat_map(|t| t.iter()));
        let inner = self.inner.read();
        let Some(slot) = inner.slots.get(key).filter(|s| s.ready) else {
            return Ok(None);
        };
        let p = Instant::now();
        phases.add(Phase::Lock, p.duration_since(t));
        let groups = if only.is_empty() {
            Vec::new()
        } else {
            eval::groups(shape, &slot.state, now, expired_before, Some(&only))
        };
        drop(inner);
        phases.add(Phase::Pass, p.elapsed());
        let t = Instant::now();
        let answer = eval::answer(shape, &groups, schema)?;
        phases.add(Phase::Answer, t.elapsed());
        Ok(Some((answer, groups)))
    }

    fn reads(&self, db: &str, table: &str) -> bool {
        self.tables
            .read()
            .get(db)
            .is_some_and(|t| t.contains_key(table))
    }
}

impl WriteObserver for Hub {
    fn on_write(&self, seq: u64, db: &str, tables: &[TableWrite]) {
        let wanted: Vec<TableWrite> = tables
            .iter()
            .filter(|t| self.reads(db, &t.table))
            .cloned()
            .collect();
        if wanted.is_empty() {
            return;
        }
        self.push(Event::Write {
            seq,
            db: db.to_string(),
            tables: wanted,
        });
    }

    fn on_delete(
        &self,
        db: &str,
        table: &str,
        min_time: i64,
        max_time: i64,
        tags: &[(String, String)],
        before_seq: u64,
    ) {
        self.push(Event::Delete {
            db: db.to_string(),
            table: table.to_string(),
            min_time,
            max_time,
            tags: tags.to_vec(),
            before_seq,
        });
    }
}
