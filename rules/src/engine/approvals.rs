//! Human decisions on self-heal rules: approving or denying an action that
//! awaits approval, approvals expiring (denied by default), and resetting
//! a rule's circuit breaker.
//!
//! # Invariants
//! - An approval is decided once: it leaves the rule's state when approved,
//!   denied or expired, and each of those leaves a row in `system.actions`.
//! - An approved action replaces the approval's placeholder in the safety
//!   history, so it counts against the limits once, not twice.

use std::sync::Arc;

use serde_json::{Value, json};
use tracing::info;

use super::RulesEngine;
use crate::core::{self, ActionRow};
use crate::error::{Error, Result};
use crate::eval;
use crate::safety::Decision;

impl RulesEngine {
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
                &self.generator_url(&def.name),
            )),
            _ => None,
        };
        if run.is_some() {
            let mut inner = self.inner.lock();
            inner.in_flight.begin(&rule, Some(&ap.entity));
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

    /// Expires the approvals of every rule whose `approval_ttl` has passed;
    /// run each tick, so an approval expires even when its rule's
    /// evaluations are far apart.
    pub(super) async fn expire_approvals(self: &Arc<Self>) {
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
}
