//! What the engine writes down: the decision log behind `system.actions`
//! (in memory, the newest rows, and appended to `_rules/actions/`) and
//! each rule's state (`_rules/state/`), so a restart neither resets `for`
//! timers nor re-runs actions.
//!
//! # Invariants
//! - A row with the id of an earlier one replaces it (an action's outcome
//!   completes the row of its decision), in memory and when the log is read
//!   back at start-up.
//! - A rule's state object is written under that rule's lock, the snapshot
//!   taken under it, so a later state object is never overwritten by an
//!   earlier snapshot; different rules' objects are written concurrently.

use std::collections::BTreeMap;

use tracing::error;

use super::RulesEngine;
use crate::core::ActionRow;
use crate::error::Result;

/// A rule's state is written at least this often while it changes only in
/// what a restart recomputes (values, rows, last evaluation): 5 minutes.
const REFRESH_NS: i64 = 300_000_000_000;

/// State objects written at once by the persister (their fsyncs overlap).
const PERSIST_AT_ONCE: usize = 16;

/// Rows of `system.actions` kept in memory (the newest).
const MAX_ACTION_ROWS: usize = 100_000;

impl RulesEngine {
    /// Reads the decision log back at start-up: the newest
    /// [`MAX_ACTION_ROWS`] rows, each in its latest version.
    pub(super) async fn restore_action_log(&self) -> Result<()> {
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
        self.inner.lock().actions = log.into_iter().skip(skip).collect();
        Ok(())
    }

    /// Appends rows to `system.actions` and to the log on the object store.
    pub(super) async fn record_rows(&self, rows: Vec<ActionRow>) {
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

    pub(super) async fn persist_state(&self, name: &str) {
        self.write_state(name, StateWrite::Always).await;
    }

    /// Persists rule `name`'s state after an evaluation only when what a
    /// restart needs changed (an instance's lifecycle, actions, breaker,
    /// approvals, version), or when the last write is older than
    /// [`REFRESH_NS`]: an fsync'd object per rule per evaluation would cost
    /// a round of 1,000 rules seconds of disk.
    pub(super) async fn persist_state_if_changed(&self, name: &str) {
        self.write_state(name, StateWrite::IfChanged).await;
    }

    /// Leaves rule `name`'s state to the persister: an evaluation that
    /// starts no action does not wait for the disk. The persister writes
    /// without an fsync (a round of 1,000 rules changes hundreds of states,
    /// and their fsyncs would queue the WAL's behind them): a crash loses
    /// at most the changes the kernel had not written back, and a `for`
    /// timer starts again. States an action depends on are written durably
    /// before it starts ([`RulesEngine::persist_state_if_changed`]).
    pub(super) fn mark_dirty(&self, name: &str) {
        self.dirty.lock().insert(name.to_string());
        self.dirty_notify.notify_one();
    }

    /// Writes the states marked dirty, [`PERSIST_AT_ONCE`] at a time.
    pub async fn flush_dirty(&self) {
        use futures::StreamExt;
        let names = std::mem::take(&mut *self.dirty.lock());
        futures::stream::iter(names)
            .for_each_concurrent(PERSIST_AT_ONCE, |n| async move {
                self.write_state(&n, StateWrite::IfChangedLazily).await;
            })
            .await;
    }

    /// Writes dirty states as they come, until shutdown (the scheduler
    /// flushes what is left when it stops).
    pub(super) async fn run_persister(
        self: std::sync::Arc<Self>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.dirty_notify.notified() => {}
            }
            self.flush_dirty().await;
        }
    }

    async fn write_state(&self, name: &str, how: StateWrite) {
        let lock = self
            .state_locks
            .lock()
            .entry(name.to_string())
            .or_default()
            .clone();
        let _g = lock.lock().await;
        let now = self.now();
        let st = {
            let mut inner = self.inner.lock();
            let Some(l) = inner.rules.get_mut(name) else {
                return;
            };
            let print = l.state.durable_fingerprint();
            let fresh = l
                .persisted
                .is_some_and(|(p, at)| p == print && now.saturating_sub(at) < REFRESH_NS);
            if fresh && how != StateWrite::Always {
                return;
            }
            l.persisted = Some((print, now));
            l.state.clone()
        };
        let written = if how == StateWrite::IfChangedLazily {
            self.store.put_lazy("state", name, &st).await
        } else {
            self.store.put("state", name, &st).await
        };
        if let Err(e) = written {
            error!(rule = name, error = %e, "persisting rule state failed");
            if let Some(l) = self.inner.lock().rules.get_mut(name) {
                l.persisted = None;
            }
        }
    }
}

/// How [`RulesEngine::write_state`] writes a rule's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StateWrite {
    /// Now, durably.
    Always,
    /// Durably, when a restart would see a change (or the last write is
    /// older than [`REFRESH_NS`]).
    IfChanged,
    /// As `IfChanged`, left to the kernel's writeback.
    IfChangedLazily,
}
