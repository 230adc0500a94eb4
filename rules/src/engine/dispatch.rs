//! Carrying out actions: what is in flight (per rule, in total, per
//! entity), the task that runs an action, and its outcome — into the
//! decision log and the rule's circuit breaker.
//!
//! # Invariants
//! - Every action counted by [`InFlight::begin`] is uncounted by exactly
//!   one [`InFlight::end`], when its task finishes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tracing::warn;

use super::{Inner, RulesEngine};
use crate::actions::{self, ActionRequest};
use crate::attach::{self, Attachment};
use crate::core::{self, ActionRow, Live};
use crate::definition::{ActionDef, ActionKind, RuleDef};

const HOUR_NS: i64 = 3600 * 1_000_000_000;

/// Actions started and not yet finished.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    per_rule: BTreeMap<String, u32>,
    pub(super) total: u32,
    /// (rule, entity) pairs with an action running.
    entities: BTreeSet<(String, String)>,
}

impl InFlight {
    pub(super) fn begin(&mut self, rule: &str, entity: Option<&str>) {
        self.total += 1;
        *self.per_rule.entry(rule.to_string()).or_default() += 1;
        if let Some(e) = entity {
            self.entities.insert((rule.to_string(), e.to_string()));
        }
    }

    pub(super) fn end(&mut self, rule: &str, entity: Option<&str>) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_rule.get_mut(rule) {
            *n = n.saturating_sub(1);
        }
        if let Some(e) = entity {
            self.entities.remove(&(rule.to_string(), e.to_string()));
        }
    }
}

/// What [`core::apply`] needs to know of the other rules and running actions.
pub(super) fn live_of(inner: &Inner, name: &str, now: i64) -> Live {
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

impl RulesEngine {
    /// Runs `req` in a task of the engine; its outcome completes `row`.
    /// The caller has counted it with [`InFlight::begin`].
    pub(super) fn spawn_action(
        self: &Arc<Self>,
        def: Arc<RuleDef>,
        action: ActionDef,
        mut req: ActionRequest,
        mut row: ActionRow,
    ) {
        let me = self.clone();
        self.tasks.lock().spawn(async move {
            let wants_diagnosis = action.kind == ActionKind::Diagnose
                || action.attach.contains(&Attachment::Diagnosis);
            if wants_diagnosis && req.status == "firing" {
                let d = attach::diagnosis(
                    me.diagnoser.get().map(|d| d.as_ref()),
                    &def.db,
                    &req,
                    action.timeout(),
                    me.external_url(),
                )
                .await;
                req.attachments
                    .insert(Attachment::Diagnosis.key().to_owned(), d);
            }
            // The policy is checked again here: file rules, and rules
            // defined before the server's allow-lists changed.
            let result = match me.config.action_policy.check(&action) {
                Ok(()) => actions::run(&me.http, &action, &req).await,
                Err(e) => Err(format!("not allowed: {e}")),
            };
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
                inner.in_flight.end(&name, row.entity.as_deref());
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_counts_begin_and_end() {
        let mut f = InFlight::default();
        f.begin("a", Some("h1"));
        f.begin("a", None);
        f.begin("b", Some("h1"));
        assert_eq!((f.total, f.per_rule["a"], f.per_rule["b"]), (3, 2, 1));
        assert!(f.entities.contains(&("a".into(), "h1".into())));
        f.end("a", Some("h1"));
        assert_eq!((f.total, f.per_rule["a"]), (2, 1));
        assert!(!f.entities.contains(&("a".into(), "h1".into())));
        // Another rule's action on the same entity is its own.
        assert!(f.entities.contains(&("b".into(), "h1".into())));
        f.end("a", None);
        f.end("b", Some("h1"));
        // An extra end (never expected) does not wrap around.
        f.end("b", Some("h1"));
        assert_eq!((f.total, f.per_rule["a"], f.per_rule["b"]), (0, 0, 0));
        assert!(f.entities.is_empty());
    }
}
