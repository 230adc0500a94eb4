//! What the engine writes down: the decision log behind `system.actions`
//! (in memory, the newest rows, and appended to `_rules/actions/`) and
//! each rule's state (`_rules/state/`), so a restart neither resets `for`
//! timers nor re-runs actions.
//!
//! # Invariants
//! - A row with the id of an earlier one replaces it (an action's outcome
//!   completes the row of its decision), in memory and when the log is read
//!   back at start-up.
//! - Writes go out under `persist`, one at a time, so a later state object
//!   is never overwritten by an earlier snapshot.

use std::collections::BTreeMap;

use tracing::error;

use super::RulesEngine;
use crate::core::ActionRow;
use crate::error::Result;

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
        let _g = self.persist.lock().await;
        let st = self.inner.lock().rules.get(name).map(|l| l.state.clone());
        if let Some(st) = st
            && let Err(e) = self.store.put("state", name, &st).await
        {
            error!(rule = name, error = %e, "persisting rule state failed");
        }
    }
}
